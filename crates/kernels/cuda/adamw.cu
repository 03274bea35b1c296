// AdamW (decoupled weight decay, bias-corrected moments), as candle's and
// PyTorch's AdamW compute it, in two passes per variable instead of a dozen:
//
//   adamw_moments: m = β₁·m + (1 − β₁)·g,  v = β₂·v + (1 − β₂)·g²
//                  (state = [m | v], f32, 2·n values; g in the variable's type)
//   adamw_step_T:  θ = θ·(1 − lr·λ) − lr·(m·c₁) / (√(v·c₂) + ε)
//                  (c₁, c₂ the bias corrections 1/(1 − βᵗ))
//
// Conventions as in epilogue.cu. build.rs writes adamw.ptx, loaded by
// src/adamw.rs.

#include "convert.cuh"

#define ADAMW(SUFFIX, T, LOAD, STORE)                                                 \
    extern "C" __global__ void adamw_moments_##SUFFIX(float *state, const T *g,       \
                                                      unsigned int n, float beta1,    \
                                                      float beta2) {                  \
        unsigned int step = gridDim.x * blockDim.x;                                   \
        for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) { \
            float gi = LOAD(g[i]);                                                    \
            state[i] = beta1 * state[i] + (1.0f - beta1) * gi;                        \
            state[n + i] = beta2 * state[n + i] + (1.0f - beta2) * gi * gi;           \
        }                                                                             \
    }                                                                                 \
    extern "C" __global__ void adamw_step_##SUFFIX(T *theta, const float *state,      \
                                                   unsigned int n, float lr,          \
                                                   float decay, float c1, float c2,   \
                                                   float eps) {                       \
        unsigned int step = gridDim.x * blockDim.x;                                   \
        for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) { \
            float update = (state[i] * c1) / (sqrtf(state[n + i] * c2) + eps);        \
            theta[i] = STORE(LOAD(theta[i]) * decay - lr * update);                   \
        }                                                                             \
    }

ADAMW(bf16, unsigned short, load_bf16, store_bf16)
ADAMW(f16, unsigned short, load_f16, store_f16)
ADAMW(f32, float, load, store_f32)
