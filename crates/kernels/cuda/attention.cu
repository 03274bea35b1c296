// Attention at inference in one pass per (batch, head): softmax(q·kᵀ + mask)·v
// read straight from the fused q/k/v projection's output [batch, len, 3, heads, d]
// (q already scaled by 1/√d) and written straight into [batch, len, heads, d].
// No [len × len] scores ever reach memory. mask: additive, [batch, len], or null.
// Two kernels, picked by src/attention.rs:
//
// - attention_tc_{bf16,f16}_d{32,64}: tensor cores (mma.sync m16n8k16, sums in
//   f32). A block per (batch, head, up to 128 query rows) stages k and v of the
//   head in shared memory (16-bit, rows padded so ldmatrix hits distinct
//   banks) and the mask as f32; each warp owns 16 query rows and walks the
//   keys 32 (d 32) or 64 (d 64) at a time: S = q·kᵀ in registers, an online softmax on them, P
//   rounded to 16 bits straight into the A fragments of O += P·v (the
//   accumulator layout of one mma is the operand layout of the next, so P
//   never touches shared memory).
// - attention_{bf16,f16,f32}_d{32,64}: CUDA cores, for f32 and the shapes the
//   first does not serve. Each thread owns one query row and keeps a running
//   maximum, sum and output (the online softmax), with k and v of its head in
//   shared memory as f32.
//
// build.rs writes attention.ptx, loaded by src/attention.rs.

#include "convert.cuh"

// ---------------------------------------------------------------- CUDA cores

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

// -------------------------------------------------------------- tensor cores
// Fragment layouts are PTX's for mma.m16n8k16 (lane = 4·g + t): A (16×16) a0
// = row g, columns 2t and 2t+1; a1 the same at row g+8; a2, a3 the same at
// columns +8. B (16×8) b0 = rows 2t, 2t+1 of column g; b1 rows +8. C (16×8)
// c0, c1 = row g, columns 2t, 2t+1; c2, c3 the same at row g+8.

// 16-bit elements of padding per shared k/v row: the 8 rows an ldmatrix
// phase reads then start in 8 different 16-byte bank groups (for d 32 and 64).
#define TC_PAD 8

// Two floats as one 32-bit pair of 16-bit values, `lo` in the low half (the
// lower column of a fragment).
template <bool BF16> __device__ __forceinline__ unsigned int pack(float lo, float hi) {
    unsigned int r;
    if (BF16)
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    else
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// 2^x (MUFU.EX2, flushing denormals; 2^−∞ = 0).
__device__ __forceinline__ float exp2_approx(float x) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

// c += a·b on one 16×8×16 tile, f32 sums.
template <bool BF16>
__device__ __forceinline__ void mma(float (&c)[4], const unsigned int (&a)[4], unsigned int b0,
                                    unsigned int b1) {
    if (BF16)
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8×8 16-bit matrices from shared memory, lane l giving the address of
// row l % 8 of matrix l / 8; TRANS hands each lane a column pair instead of
// a row pair.
template <bool TRANS>
__device__ __forceinline__ void ldmatrix4(unsigned int (&r)[4], const unsigned short *row) {
    unsigned int addr = (unsigned int)__cvta_generic_to_shared(row);
    if (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(addr));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(addr));
}

// 16 bytes from global to shared memory without passing through registers
// (cp.async, Ampere on), or 16 zero bytes where `valid` is false.
__device__ __forceinline__ void copy16_async(void *dst, const void *src, bool valid) {
    unsigned int addr = (unsigned int)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(addr), "l"(src),
                 "r"(valid ? 16 : 0));
}

// A compile-time flag as a value (for the generic lambda below).
template <bool B> struct Flag {
    static constexpr bool value = B;
};

// Launch: batch·heads·⌈len / (16·warps)⌉ blocks of 32·warps threads (at most
// 256), shared memory keys·(4·(D + TC_PAD) + 4) bytes with keys = len
// rounded up to 16. KEYS: keys per online-softmax step (a multiple of 16).
template <bool BF16, int D, int KEYS>
__device__ __forceinline__ void attention_tc(const unsigned short *__restrict__ qkv,
                                             const unsigned short *__restrict__ mask,
                                             unsigned short *__restrict__ out, unsigned int len,
                                             unsigned int heads) {
    constexpr int ROW = D + TC_PAD;
    extern __shared__ __align__(16) unsigned char tc_shared[];
    // Keys past len are zeros in k and v and −∞ in the mask (weight 0).
    unsigned int keys = (len + 15) / 16 * 16;
    unsigned short *ks = (unsigned short *)tc_shared, *vs = ks + keys * ROW;
    float *bias = (float *)(vs + keys * ROW);
    // Blocks of one head side by side: the later ones find k and v in L2.
    unsigned int warps = blockDim.x / 32, tiles = (len + 16 * warps - 1) / (16 * warps);
    unsigned int bh = blockIdx.x / tiles, tile = blockIdx.x % tiles;
    unsigned int b = bh / heads, h = bh % heads;
    unsigned int hidden = heads * D, stride = 3 * hidden;
    const unsigned short *base = qkv + (unsigned long long)b * len * stride + h * D;

    // Every load of the block is in flight at once: k and v as asynchronous
    // copies, q and the mask into registers, before the one wait.
    for (unsigned int idx = threadIdx.x; idx < keys * (D / 8); idx += blockDim.x) {
        unsigned int j = idx / (D / 8), c = idx % (D / 8) * 8;
        const unsigned short *row = base + (unsigned long long)min(j, len - 1) * stride + c;
        copy16_async(ks + j * ROW + c, row + hidden, j < len);
        copy16_async(vs + j * ROW + c, row + 2 * hidden, j < len);
    }
    asm volatile("cp.async.commit_group;");

    unsigned int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    unsigned int q0 = (tile * warps + threadIdx.x / 32) * 16;
    unsigned int row_lo = q0 + g, row_hi = q0 + g + 8;
    bool lo_in = row_lo < len, hi_in = row_hi < len;
    // q as A fragments, straight from global memory (rows past len: zeros).
    unsigned int qa[D / 16][4];
    {
        const unsigned short *q_lo = base + (unsigned long long)row_lo * stride + 2 * t;
        const unsigned short *q_hi = base + (unsigned long long)row_hi * stride + 2 * t;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            qa[kk][0] = lo_in ? *(const unsigned int *)(q_lo + kk * 16) : 0;
            qa[kk][1] = hi_in ? *(const unsigned int *)(q_hi + kk * 16) : 0;
            qa[kk][2] = lo_in ? *(const unsigned int *)(q_lo + kk * 16 + 8) : 0;
            qa[kk][3] = hi_in ? *(const unsigned int *)(q_hi + kk * 16 + 8) : 0;
        }
    }

    for (unsigned int j = threadIdx.x; j < keys; j += blockDim.x) {
        float add = 0.0f;
        if (j >= len)
            add = -INFINITY;
        else if (mask)
            add = BF16 ? load_bf16(mask[(unsigned long long)b * len + j])
                       : load_f16(mask[(unsigned long long)b * len + j]);
        bias[j] = add;
    }
    asm volatile("cp.async.wait_all;" ::: "memory");
    __syncthreads();
    if (q0 >= len) return;  // no __syncthreads below

    float o[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    // Running maximum and (this lane's share of the) sum of rows g and g+8.
    // A finite start: a fully masked row then weighs exp(−∞) = 0 everywhere.
    float m_lo = -1e30f, m_hi = -1e30f, l_lo = 0.0f, l_hi = 0.0f;

    // KEYS keys from k0 on; FULL: all of them below `keys` (no checks per
    // 16 keys, so the compiler interleaves the whole step).
    auto step = [&](unsigned int k0, auto full) {
        constexpr bool FULL = decltype(full)::value;
        float s[KEYS / 8][4];
        // S = q·kᵀ + mask, 16 keys (two C tiles) at a time.
#pragma unroll
        for (int j = 0; j < KEYS / 16; j++) {
            if (FULL || k0 + 16 * j < keys) {
#pragma unroll
                for (int e = 0; e < 4; e++) s[2 * j][e] = s[2 * j + 1][e] = 0.0f;
#pragma unroll
                for (int kk = 0; kk < D / 16; kk++) {
                    // Matrices: keys +0 / +8 (lane / 16) × d +0 / +8 (lane / 8 % 2):
                    // b0, b1 of the first 8 keys, then of the next 8.
                    unsigned int kb[4];
                    ldmatrix4<false>(kb, ks + (k0 + 16 * j + lane / 16 * 8 + lane % 8) * ROW +
                                             kk * 16 + lane / 8 % 2 * 8);
                    mma<BF16>(s[2 * j], qa[kk], kb[0], kb[1]);
                    mma<BF16>(s[2 * j + 1], qa[kk], kb[2], kb[3]);
                }
#pragma unroll
                for (int n = 2 * j; n < 2 * j + 2; n++) {
                    float2 add = *(const float2 *)(bias + k0 + 8 * n + 2 * t);
                    s[n][0] += add.x, s[n][1] += add.y, s[n][2] += add.x, s[n][3] += add.y;
                }
            } else {
#pragma unroll
                for (int e = 0; e < 4; e++) s[2 * j][e] = s[2 * j + 1][e] = -INFINITY;
            }
        }

        // Online softmax: the 4 lanes of a row (same g) share its maximum.
        float max_lo = m_lo, max_hi = m_hi;
#pragma unroll
        for (int n = 0; n < KEYS / 8; n++) {
            max_lo = fmaxf(max_lo, fmaxf(s[n][0], s[n][1]));
            max_hi = fmaxf(max_hi, fmaxf(s[n][2], s[n][3]));
        }
#pragma unroll
        for (int x = 1; x < 4; x *= 2) {
            max_lo = fmaxf(max_lo, __shfl_xor_sync(0xffffffffu, max_lo, x));
            max_hi = fmaxf(max_hi, __shfl_xor_sync(0xffffffffu, max_hi, x));
        }
        // exp(s − m) as 2^(s·log₂e − m·log₂e): one FFMA before each MUFU.EX2.
        const float LOG2E = 1.4426950408889634f;
        float rescale_lo = exp2_approx((m_lo - max_lo) * LOG2E);
        float rescale_hi = exp2_approx((m_hi - max_hi) * LOG2E);
        m_lo = max_lo, m_hi = max_hi;
        float shift_lo = -m_lo * LOG2E, shift_hi = -m_hi * LOG2E;
        l_lo *= rescale_lo, l_hi *= rescale_hi;
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
            o[n][0] *= rescale_lo, o[n][1] *= rescale_lo;
            o[n][2] *= rescale_hi, o[n][3] *= rescale_hi;
        }
#pragma unroll
        for (int n = 0; n < KEYS / 8; n++) {
            s[n][0] = exp2_approx(fmaf(s[n][0], LOG2E, shift_lo));
            s[n][1] = exp2_approx(fmaf(s[n][1], LOG2E, shift_lo));
            s[n][2] = exp2_approx(fmaf(s[n][2], LOG2E, shift_hi));
            s[n][3] = exp2_approx(fmaf(s[n][3], LOG2E, shift_hi));
            l_lo += s[n][0] + s[n][1], l_hi += s[n][2] + s[n][3];
        }

        // O += P·v, 16 keys (one A fragment: two C tiles of P) at a time.
#pragma unroll
        for (int j = 0; j < KEYS / 16; j++) {
            if (FULL || k0 + 16 * j < keys) {
                unsigned int pa[4] = {
                    pack<BF16>(s[2 * j][0], s[2 * j][1]),
                    pack<BF16>(s[2 * j][2], s[2 * j][3]),
                    pack<BF16>(s[2 * j + 1][0], s[2 * j + 1][1]),
                    pack<BF16>(s[2 * j + 1][2], s[2 * j + 1][3]),
                };
#pragma unroll
                for (int n = 0; n < D / 16; n++) {
                    // Transposed matrices: keys +0 / +8 (lane / 8 % 2) × d +0 / +8
                    // (lane / 16): b0, b1 of output columns 16n.., then 16n+8..
                    unsigned int vb[4];
                    ldmatrix4<true>(vb, vs + (k0 + 16 * j + lane / 8 % 2 * 8 + lane % 8) * ROW +
                                            n * 16 + lane / 16 * 8);
                    mma<BF16>(o[2 * n], pa, vb[0], vb[1]);
                    mma<BF16>(o[2 * n + 1], pa, vb[2], vb[3]);
                }
            }
        }
    };
    unsigned int k0 = 0;
    for (; k0 + KEYS <= keys; k0 += KEYS) step(k0, Flag<true>());
    if (k0 < keys) step(k0, Flag<false>());

#pragma unroll
    for (int x = 1; x < 4; x *= 2) {
        l_lo += __shfl_xor_sync(0xffffffffu, l_lo, x);
        l_hi += __shfl_xor_sync(0xffffffffu, l_hi, x);
    }
    // A row with every key at −∞ comes out as zeros, not 0/0.
    float inv_lo = l_lo > 0.0f ? 1.0f / l_lo : 0.0f, inv_hi = l_hi > 0.0f ? 1.0f / l_hi : 0.0f;
    unsigned short *out_lo = out + ((unsigned long long)b * len + row_lo) * hidden + h * D + 2 * t;
    unsigned short *out_hi = out + ((unsigned long long)b * len + row_hi) * hidden + h * D + 2 * t;
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
        if (lo_in) *(unsigned int *)(out_lo + 8 * n) = pack<BF16>(o[n][0] * inv_lo, o[n][1] * inv_lo);
        if (hi_in) *(unsigned int *)(out_hi + 8 * n) = pack<BF16>(o[n][2] * inv_hi, o[n][3] * inv_hi);
    }
}

// KEYS keys per online-softmax step and registers capped so that BLOCKS
// blocks of 256 threads share an SM: d 32 takes 32 keys at a time in 64
// registers (4 blocks), d 64 64 keys in 128 (2 blocks). On an H100 at batch
// 256, length 128 (ncu) these were the fastest of 32 or 64 keys in 2 to 4
// blocks: d 32 54 µs (64 keys in 3 blocks: 59 µs, in 2: 69 µs), d 64 54 µs
// (32 keys in 3 blocks: 55 µs).
#define ATTENTION_TC(SUFFIX, BF16, D, KEYS, BLOCKS)                                          \
    extern "C" __global__ void __launch_bounds__(256, BLOCKS) attention_tc_##SUFFIX##_d##D(  \
        const unsigned short *qkv, const unsigned short *mask, unsigned short *out,          \
        unsigned int len, unsigned int heads) {                                              \
        attention_tc<BF16, D, KEYS>(qkv, mask, out, len, heads);                             \
    }

ATTENTION_TC(bf16, true, 32, 32, 4)
ATTENTION_TC(bf16, true, 64, 64, 2)
ATTENTION_TC(f16, false, 32, 32, 4)
ATTENTION_TC(f16, false, 64, 64, 2)
