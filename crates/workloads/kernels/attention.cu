// Attention at inference in one pass per (batch, head): softmax(q·kᵀ + mask)·v
// read straight from the fused q/k/v projection's output [batch, len, 3, heads, d]
// (q already scaled by 1/√d) and written straight into [batch, len, heads, d].
// No [len × len] scores ever reach memory: each thread owns one query row and
// keeps a running maximum, sum and output (the online softmax), with k and v
// of its head in shared memory as f32. mask: additive, [batch, len], or null.
//
// build-ptx.sh writes attention.ptx, loaded by src/attention.rs.

#include "convert.cuh"

template <typename T, float (*LOAD)(T), T (*STORE)(float), int D>
__device__ __forceinline__ void attention(const T *qkv, const T *mask, T *out,
                                          unsigned int len, unsigned int heads) {
    extern __shared__ float kv[];
    float *ks = kv, *vs = kv + len * D;
    unsigned int b = blockIdx.x / heads, h = blockIdx.x % heads;
    unsigned int hidden = heads * D;
    const T *base = qkv + (unsigned long long)b * len * 3 * hidden;
    for (unsigned int idx = threadIdx.x; idx < len * D; idx += blockDim.x) {
        unsigned int j = idx / D, t = idx % D;
        const T *row = base + (unsigned long long)j * 3 * hidden + h * D + t;
        ks[idx] = LOAD(row[hidden]);
        vs[idx] = LOAD(row[2 * hidden]);
    }
    __syncthreads();
    for (unsigned int i = threadIdx.x; i < len; i += blockDim.x) {
        const T *qrow = base + (unsigned long long)i * 3 * hidden + h * D;
        float q[D], o[D];
#pragma unroll
        for (int t = 0; t < D; t++) {
            q[t] = LOAD(qrow[t]);
            o[t] = 0.0f;
        }
        // A finite start: a masked score of −∞ then weighs exp(−∞) = 0.
        float m = -1e30f, l = 0.0f;
        for (unsigned int j = 0; j < len; j++) {
            float s = 0.0f;
#pragma unroll
            for (int t = 0; t < D; t++) s += q[t] * ks[j * D + t];
            if (mask) s += LOAD(mask[(unsigned long long)b * len + j]);
            float m_new = fmaxf(m, s);
            float rescale = __expf(m - m_new), p = __expf(s - m_new);
            l = l * rescale + p;
#pragma unroll
            for (int t = 0; t < D; t++) o[t] = o[t] * rescale + p * vs[j * D + t];
            m = m_new;
        }
        T *dst = out + ((unsigned long long)b * len + i) * hidden + h * D;
        float inv = 1.0f / l;
#pragma unroll
        for (int t = 0; t < D; t++) dst[t] = STORE(o[t] * inv);
    }
}

#define ATTENTION(SUFFIX, T, LOAD, STORE, D)                                          \
    extern "C" __global__ void attention_##SUFFIX##_d##D(                             \
        const T *qkv, const T *mask, T *out, unsigned int len, unsigned int heads) {  \
        attention<T, LOAD, STORE, D>(qkv, mask, out, len, heads);                     \
    }

ATTENTION(bf16, unsigned short, load_bf16, store_bf16, 32)
ATTENTION(bf16, unsigned short, load_bf16, store_bf16, 64)
ATTENTION(f16, unsigned short, load_f16, store_f16, 32)
ATTENTION(f16, unsigned short, load_f16, store_f16, 64)
ATTENTION(f32, float, load, store_f32, 32)
ATTENTION(f32, float, load, store_f32, 64)
