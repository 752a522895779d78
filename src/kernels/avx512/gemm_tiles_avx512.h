// Helpers of the AVX-512 GEMM tiles (gemm_avx512.cpp, gemm_blocks_avx512.cpp), with internal
// linkage: the kernel test compiles both files into one translation unit under emulation.
#pragma once

#include <cstdint>

#include "kernels/avx512/avx512_compat.h"
#include "kernels/avx512/gemm_avx512.h"

namespace mambalite {
namespace MAMBALITE_AVX512_NS {
namespace {

constexpr int kLanes = 16;  // floats (tokens) per vector

// Lanes [0, 8 v) of the last vector of a call of 8 v tokens: all of them, or its first 8.
inline uint16_t last_mask(int v) { return v % 2 == 1 ? 0x00FF : 0xFFFF; }

// Pins v to a register here, so that GCC keeps each row's sum a chain of vpdpbusd in place
// (as keep_in_register in gemm_avx2.cpp). Not under emulation, where vectors are structs.
inline void keep_in_register(__m512i& v) {
#if !defined(MAMBALITE_AVX512_EMULATED)
  asm("" : "+v"(v));
#else
  (void)v;
#endif
}

// f += d_w * (d_x * s) for one block's exact int32 sums s (16 tokens).
inline __m512 fold(__m512i s, __m512 dx, float dw, __m512 f) {
  return _mm512_fmadd_ps(cvt_i32(s), _mm512_mul_ps(dx, _mm512_set1_ps(dw)), f);
}

}  // namespace
}  // namespace MAMBALITE_AVX512_NS
}  // namespace mambalite
