// The end of a layer at inference, in one pass over its output:
// y = act(y + bias[channel] + z), in place, contiguous, summed in f32 and
// rounded once. The channel of element i is (i / plane) % channels: NCHW
// convolution outputs have plane = H·W, linear layers' [.., out] outputs
// plane = 1. `z` (the residual) may be null. act: 0 none, 1 ReLU, 2 GELU
// (erf), 3 GELU (tanh approximation).
//
// No CUDA headers: bf16 and f16 travel as 16-bit integers and are converted
// with PTX's own instructions, so the PTX builds with nvcc alone.
// build-ptx.sh turns this into epilogue.ptx, which is committed and loaded at
// run time (src/epilogue.rs); rebuild it after changing this file.

#include "convert.cuh"

__device__ __forceinline__ float activate(float v, int act) {
    switch (act) {
    case 1: return fmaxf(v, 0.0f);
    case 2: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case 3: return 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    default: return v;
    }
}

#define EPILOGUE(NAME, T, LOAD, STORE)                                              \
    extern "C" __global__ void NAME(T *y, const T *bias, const T *z,                \
                                    unsigned int total, unsigned int plane,         \
                                    unsigned int channels, int act) {               \
        unsigned int step = gridDim.x * blockDim.x;                                 \
        for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total;     \
             i += step) {                                                           \
            float v = LOAD(y[i]) + LOAD(bias[(i / plane) % channels]);              \
            if (z) v += LOAD(z[i]);                                                 \
            y[i] = STORE(activate(v, act));                                         \
        }                                                                           \
    }

EPILOGUE(epilogue_bf16, unsigned short, load_bf16, store_bf16)
EPILOGUE(epilogue_f16, unsigned short, load_f16, store_f16)
EPILOGUE(epilogue_f32, float, load, store_f32)
