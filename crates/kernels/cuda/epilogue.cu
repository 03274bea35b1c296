// The end of a layer at inference, in one pass over its output:
// y = act(y + bias[channel] + z), in place, contiguous, summed in f32 and
// rounded once. The channel of element i is (i / plane) % channels: NCHW
// convolution outputs have plane = H·W, linear layers' [.., out] outputs
// plane = 1. `z` (the residual) may be null. act: 0 none, 1 ReLU, 2 GELU
// (erf), 3 GELU (tanh approximation).
//
// No CUDA headers: bf16 and f16 travel as 16-bit integers and are converted
// with PTX's own instructions, so the PTX builds with nvcc alone.
// build.rs compiles this to epilogue.ptx at build time (the `cuda` feature),
// loaded at run time by src/epilogue.rs.

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

// The same for linear layers (plane 1) in bf16/f16 with an even number of
// channels: each thread owns two neighbouring channels (one 32-bit word:
// the lower channel in the low half), keeps their bias in registers and
// walks down the rows, so there is no division per element and every
// access is a whole word. Launch: x over channel pairs, y over rows.
#define EPILOGUE_ROWS(NAME, LOAD, STORE)                                              \
    extern "C" __global__ void NAME(unsigned int *y, const unsigned int *bias,        \
                                    const unsigned int *z, unsigned int rows,        \
                                    unsigned int pairs, int act) {                   \
        unsigned int p = blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (p >= pairs) return;                                                       \
        unsigned int bb = bias[p];                                                    \
        float b0 = LOAD((unsigned short)(bb & 0xffffu));                              \
        float b1 = LOAD((unsigned short)(bb >> 16));                                  \
        for (unsigned int r = blockIdx.y; r < rows; r += gridDim.y) {                 \
            unsigned long long at = (unsigned long long)r * pairs + p;                \
            unsigned int v = y[at];                                                   \
            float v0 = LOAD((unsigned short)(v & 0xffffu)) + b0;                      \
            float v1 = LOAD((unsigned short)(v >> 16)) + b1;                          \
            if (z) {                                                                  \
                unsigned int w = z[at];                                               \
                v0 += LOAD((unsigned short)(w & 0xffffu));                            \
                v1 += LOAD((unsigned short)(w >> 16));                                \
            }                                                                         \
            y[at] = (unsigned int)STORE(activate(v0, act)) |                          \
                    ((unsigned int)STORE(activate(v1, act)) << 16);                   \
        }                                                                             \
    }

EPILOGUE_ROWS(epilogue_rows_bf16, load_bf16, store_bf16)
EPILOGUE_ROWS(epilogue_rows_f16, load_f16, store_f16)
