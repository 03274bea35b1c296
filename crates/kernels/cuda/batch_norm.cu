// Batch norm in training mode, as per-channel kernels over NCHW data
// (plane = H·W; [N, C] data has plane = 1). Element i is in channel
// (i / plane) % channels; a channel holds n·plane elements.
//
//   channel_sums: out[c] += Σ a·m, out[C + c] += Σ a·m·b (b = a·m when b is
//                 null; m = [mask > 0], or 1 when mask is null), summed in
//                 f32 per thread and f64 across threads and blocks (atomics
//                 into a zeroed buffer); grid (C, parts).
//   sums_to_f32:  the f64 sums as f32.
//   channel_affine: y = x·scale[c] + shift[c] + residual (shift and residual
//                 may be null), times [mask > 0] when mask is given, then
//                 max(·, 0) when relu; in f32, rounded once.
//   bn_finalize:  from the sums [Σx | Σx²] (f32, 2·C), γ and β (T, C):
//                 out = [scale | shift | mean | biased var] (f32, 4·C), with
//                 scale = γ/√(var + ε), shift = β − mean·scale.
//   bn_finalize_grad: the gradients of the sums, γ and β from those of
//                 [scale | shift] (f32, 2·C, or the apply pass's (Σdy, Σdy·x)
//                 when from_dot): out = [dΣx | dΣx² | dγ | dβ].
//   bn_coefficients: the input gradient's per-channel terms A, B, C
//                 (f32, 3·C) from the statistics and (Σdy, Σdy·x):
//                 dx = A·dy + B·x + C is batch norm's whole input gradient,
//                 through the normalisation and through the statistics.
//   bn_dx:        dx = A[c]·dy + B[c]·x + C[c].
//   bn_running:   running = (1 − m)·running + m·stat (f32, C), the variance
//                 made unbiased by count/(count − 1).
//
// Same conventions as epilogue.cu: no CUDA headers, bf16/f16 as 16-bit
// integers converted with PTX instructions. build.rs writes batch_norm.ptx,
// loaded at run time by src/batch_norm/gpu.rs.

#include "convert.cuh"

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024);
// the result is valid in thread 0.
__device__ __forceinline__ double block_sum(double v, double *shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    int warps = blockDim.x >> 5;
    v = (int)threadIdx.x < warps ? shared[threadIdx.x] : 0.0;
    if (warp == 0)
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    __syncthreads();
    return v;
}

#define CHANNEL_SUMS(NAME, T, LOAD)                                                   \
    extern "C" __global__ void NAME(const T *a, const T *b, const T *mask,            \
                                    double *out, unsigned int n, unsigned int plane, \
                                    unsigned int channels, unsigned int per_block) { \
        __shared__ double shared[32];                                                 \
        unsigned int c = blockIdx.x;                                                  \
        unsigned int m = n * plane;                                                   \
        unsigned int begin = blockIdx.y * per_block;                                  \
        unsigned int end = min(begin + per_block, m);                                 \
        float s0 = 0.0f, s1 = 0.0f;                                                   \
        for (unsigned int j = begin + threadIdx.x; j < end; j += blockDim.x) {        \
            unsigned int k = j / plane, p = j - k * plane;                            \
            unsigned long long at = ((unsigned long long)k * channels + c) * plane + p; \
            float va = LOAD(a[at]);                                                   \
            if (mask && !(LOAD(mask[at]) > 0.0f)) va = 0.0f;                          \
            float vb = b ? LOAD(b[at]) : va;                                          \
            s0 += va;                                                                 \
            s1 += va * vb;                                                            \
        }                                                                             \
        double t0 = block_sum((double)s0, shared);                                    \
        double t1 = block_sum((double)s1, shared);                                    \
        if (threadIdx.x == 0) {                                                       \
            atomicAdd(&out[c], t0);                                                   \
            atomicAdd(&out[channels + c], t1);                                        \
        }                                                                             \
    }

CHANNEL_SUMS(channel_sums_bf16, unsigned short, load_bf16)
CHANNEL_SUMS(channel_sums_f16, unsigned short, load_f16)
CHANNEL_SUMS(channel_sums_f32, float, load)

extern "C" __global__ void sums_to_f32(const double *in, float *out, unsigned int count) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) out[i] = (float)in[i];
}

#define CHANNEL_AFFINE(NAME, T, LOAD, STORE)                                          \
    extern "C" __global__ void NAME(const T *x, const float *scale, const float *shift, \
                                    const T *residual, const T *mask, T *y,          \
                                    unsigned int total,                              \
                                    unsigned int plane, unsigned int channels,       \
                                    int relu) {                                      \
        unsigned int step = gridDim.x * blockDim.x;                                   \
        for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total;       \
             i += step) {                                                             \
            unsigned int c = (i / plane) % channels;                                  \
            float v = LOAD(x[i]) * scale[c];                                          \
            if (shift) v += shift[c];                                                 \
            if (residual) v += LOAD(residual[i]);                                     \
            if (mask && !(LOAD(mask[i]) > 0.0f)) v = 0.0f;                            \
            if (relu) v = fmaxf(v, 0.0f);                                             \
            y[i] = STORE(v);                                                          \
        }                                                                             \
    }

CHANNEL_AFFINE(channel_affine_bf16, unsigned short, load_bf16, store_bf16)
CHANNEL_AFFINE(channel_affine_f16, unsigned short, load_f16, store_f16)
CHANNEL_AFFINE(channel_affine_f32, float, load, store_f32)

#define BN_FINALIZE(SUFFIX, T, LOAD)                                                  \
    extern "C" __global__ void bn_finalize_##SUFFIX(const float *sums, const T *gamma, \
                                                    const T *beta, float *out,        \
                                                    unsigned int channels, float count, \
                                                    float eps) {                      \
        unsigned int c = blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (c >= channels) return;                                                    \
        float mean = sums[c] / count;                                                 \
        float var = fmaxf(sums[channels + c] / count - mean * mean, 0.0f);            \
        float scale = LOAD(gamma[c]) / sqrtf(var + eps);                              \
        out[c] = scale;                                                               \
        out[channels + c] = LOAD(beta[c]) - mean * scale;                             \
        out[2 * channels + c] = mean;                                                 \
        out[3 * channels + c] = var;                                                  \
    }                                                                                 \
    extern "C" __global__ void bn_finalize_grad_##SUFFIX(                             \
        const float *sums, const T *gamma, const float *grad, float *out,             \
        unsigned int channels, float count, float eps, int from_dot) {                \
        unsigned int c = blockIdx.x * blockDim.x + threadIdx.x;                       \
        if (c >= channels) return;                                                    \
        float mean = sums[c] / count;                                                 \
        float raw_var = sums[channels + c] / count - mean * mean;                     \
        float var = fmaxf(raw_var, 0.0f);                                             \
        float inv = 1.0f / sqrtf(var + eps);                                          \
        float g = LOAD(gamma[c]);                                                     \
        /* grad: [dscale | dshift], or when from_dot the apply pass's        \
           (Σdy, Σdy·x), which are (dshift, dscale). */                               \
        float g_scale = grad[from_dot ? channels + c : c];                            \
        float g_shift = grad[from_dot ? c : channels + c];                            \
        /* scale = γ·inv, shift = β − mean·γ·inv */                                   \
        float d_inv = g_scale * g - g_shift * mean * g;                               \
        float d_var = raw_var > 0.0f ? -0.5f * d_inv * inv * inv * inv : 0.0f;        \
        float d_mean = -g_shift * g * inv - 2.0f * mean * d_var;                      \
        out[c] = d_mean / count;                                                      \
        out[channels + c] = d_var / count;                                            \
        out[2 * channels + c] = g_scale * inv - g_shift * mean * inv;                 \
        out[3 * channels + c] = g_shift;                                              \
    }

BN_FINALIZE(bf16, unsigned short, load_bf16)
BN_FINALIZE(f16, unsigned short, load_f16)
BN_FINALIZE(f32, float, load)

extern "C" __global__ void bn_running(float *running, const float *stat, unsigned int channels,
                                      float momentum, float unbias) {
    unsigned int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < channels) running[c] = (1.0f - momentum) * running[c] + momentum * stat[c] * unbias;
}

extern "C" __global__ void bn_coefficients(const float *stats, const float *dot, float *coef,
                                           unsigned int channels, float count, float eps) {
    unsigned int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    float scale = stats[c], mean = stats[2 * channels + c], var = stats[3 * channels + c];
    float inv = 1.0f / sqrtf(var + eps);
    float s1 = dot[c];                                  // Σdy
    float s2 = inv * (dot[channels + c] - mean * s1);   // Σdy·x̂
    float b = -scale * inv * s2 / count;
    coef[c] = scale;
    coef[channels + c] = b;
    coef[2 * channels + c] = -scale * s1 / count - b * mean;
}

#define BN_DX(SUFFIX, T, LOAD, STORE)                                                 \
    extern "C" __global__ void bn_dx_##SUFFIX(const T *dy, const T *x, const float *coef, \
                                              T *dx, unsigned int total,              \
                                              unsigned int plane, unsigned int channels) { \
        unsigned int step = gridDim.x * blockDim.x;                                   \
        for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total;       \
             i += step) {                                                             \
            unsigned int c = (i / plane) % channels;                                  \
            dx[i] = STORE(coef[c] * LOAD(dy[i]) + coef[channels + c] * LOAD(x[i]) +   \
                          coef[2 * channels + c]);                                    \
        }                                                                             \
    }

BN_DX(bf16, unsigned short, load_bf16, store_bf16)
BN_DX(f16, unsigned short, load_f16, store_f16)
BN_DX(f32, float, load, store_f32)
