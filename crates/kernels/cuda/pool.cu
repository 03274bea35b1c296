// Max pooling over NCHW planes with PyTorch's semantics (padding never
// wins: it counts as −∞), forward and backward. The backward pass is two:
// each window's maximum found again by the forward's rule (the first strict
// maximum in row-major order, as PyTorch picks) and kept as its place in the
// window, one byte; then a gather, each input element summing the output
// gradients of the windows whose maximum it is (no atomics). Searching every
// covering window from each input element instead took 1.8 ms for
// ResNet-50's stem pool at bf16 batch 64 on an H100, twelve times the forward.
//
// Conventions as in epilogue.cu (no CUDA headers, 16-bit types converted
// with PTX). build.rs writes pool.ptx, loaded by src/max_pool.rs.

#include "convert.cuh"

struct Pool {
    unsigned int h, w, oh, ow, k, s, pad;
};

// The flat index (within its plane) of window (oy, ox)'s maximum.
template <typename T, float (*LOAD)(T)>
__device__ __forceinline__ int window_argmax(const T *plane, Pool p, int oy, int ox, float *best) {
    int arg = -1;
    float m = __int_as_float(0xff800000);  // −∞
    int y0 = oy * (int)p.s - (int)p.pad, x0 = ox * (int)p.s - (int)p.pad;
    for (int dy = 0; dy < (int)p.k; dy++) {
        int iy = y0 + dy;
        if (iy < 0 || iy >= (int)p.h) continue;
        for (int dx = 0; dx < (int)p.k; dx++) {
            int ix = x0 + dx;
            if (ix < 0 || ix >= (int)p.w) continue;
            float v = LOAD(plane[iy * p.w + ix]);
            if (arg < 0 || v > m) {
                m = v;
                arg = iy * (int)p.w + ix;
            }
        }
    }
    *best = m;
    return arg;
}

#define MAX_POOL(SUFFIX, T, LOAD, STORE)                                              \
    extern "C" __global__ void max_pool_##SUFFIX(const T *x, T *y, unsigned int planes, \
                                                 Pool p) {                            \
        unsigned long long total = (unsigned long long)planes * p.oh * p.ow;          \
        unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;         \
        for (unsigned long long i = blockIdx.x * blockDim.x + threadIdx.x; i < total; \
             i += step) {                                                             \
            unsigned long long plane = i / (p.oh * p.ow);                             \
            unsigned int r = (unsigned int)(i - plane * p.oh * p.ow);                 \
            float m;                                                                  \
            window_argmax<T, LOAD>(x + plane * p.h * p.w, p, r / p.ow, r % p.ow, &m); \
            y[i] = STORE(m);                                                          \
        }                                                                             \
    }                                                                                 \
    extern "C" __global__ void max_pool_arg_##SUFFIX(const T *x, unsigned char *arg,     \
                                                     unsigned int planes, Pool p) {   \
        unsigned long long total = (unsigned long long)planes * p.oh * p.ow;          \
        unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;         \
        for (unsigned long long i = blockIdx.x * blockDim.x + threadIdx.x; i < total; \
             i += step) {                                                             \
            unsigned long long plane = i / (p.oh * p.ow);                             \
            unsigned int r = (unsigned int)(i - plane * p.oh * p.ow);                 \
            int oy = r / p.ow, ox = r % p.ow;                                         \
            float m;                                                                  \
            int at = window_argmax<T, LOAD>(x + plane * p.h * p.w, p, oy, ox, &m);    \
            /* As (row, column) within the window; a window always holds one      \
               input element, so `at` is never −1. */                               \
            int wy = at / (int)p.w - (oy * (int)p.s - (int)p.pad);                    \
            int wx = at % (int)p.w - (ox * (int)p.s - (int)p.pad);                    \
            arg[i] = (unsigned char)(wy * (int)p.k + wx);                             \
        }                                                                             \
    }                                                                                 \
    extern "C" __global__ void max_pool_grad_##SUFFIX(const unsigned char *arg,       \
                                                      const T *dy, T *dx,             \
                                                      unsigned int planes, Pool p) {  \
        unsigned long long total = (unsigned long long)planes * p.h * p.w;            \
        unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;         \
        for (unsigned long long i = blockIdx.x * blockDim.x + threadIdx.x; i < total; \
             i += step) {                                                             \
            unsigned long long plane = i / (p.h * p.w);                               \
            int r = (int)(i - plane * p.h * p.w);                                     \
            int iy = r / (int)p.w, ix = r % (int)p.w;                                 \
            const unsigned char *ap = arg + plane * p.oh * p.ow;                      \
            const T *dyp = dy + plane * p.oh * p.ow;                                  \
            /* Windows oy with oy·s − pad ≤ iy ≤ oy·s − pad + k − 1. */               \
            int hi_y = (iy + (int)p.pad) / (int)p.s;                                  \
            int lo_y = iy + (int)p.pad - (int)p.k + 1;                                \
            lo_y = lo_y <= 0 ? 0 : (lo_y + (int)p.s - 1) / (int)p.s;                  \
            int hi_x = (ix + (int)p.pad) / (int)p.s;                                  \
            int lo_x = ix + (int)p.pad - (int)p.k + 1;                                \
            lo_x = lo_x <= 0 ? 0 : (lo_x + (int)p.s - 1) / (int)p.s;                  \
            float sum = 0.0f;                                                         \
            for (int oy = lo_y; oy <= hi_y && oy < (int)p.oh; oy++)                   \
                for (int ox = lo_x; ox <= hi_x && ox < (int)p.ow; ox++) {             \
                    int wy = iy - (oy * (int)p.s - (int)p.pad);                       \
                    int wx = ix - (ox * (int)p.s - (int)p.pad);                       \
                    if (ap[oy * p.ow + ox] == wy * (int)p.k + wx)                     \
                        sum += LOAD(dyp[oy * p.ow + ox]);                             \
                }                                                                     \
            dx[i] = STORE(sum);                                                       \
        }                                                                             \
    }

MAX_POOL(bf16, unsigned short, load_bf16, store_bf16)
MAX_POOL(f16, unsigned short, load_f16, store_f16)
MAX_POOL(f32, float, load, store_f32)
