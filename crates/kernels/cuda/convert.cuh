// Element conversions shared by the kernels: every kernel computes in f32;
// bf16 and f16 travel as 16-bit integers and are converted with PTX's own
// instructions, so the kernels build with nvcc alone (no CUDA headers).
#pragma once

__device__ __forceinline__ float load(float v) { return v; }
__device__ __forceinline__ float store_f32(float v) { return v; }

__device__ __forceinline__ float load_bf16(unsigned short h) {
    return __uint_as_float(((unsigned int)h) << 16);
}
__device__ __forceinline__ unsigned short store_bf16(float f) {
    unsigned short h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
__device__ __forceinline__ float load_f16(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ unsigned short store_f16(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
