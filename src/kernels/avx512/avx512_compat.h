// AVX-512 intrinsics for the files built with AVX-512 flags (kernels_avx512.cpp,
// gemm_avx512.cpp), or, with MAMBALITE_AVX512_EMULATED, through SIMDe's portable AVX-512
// (Debian's libsimde-dev) for the C++ kernel test on machines without AVX-512. The few
// intrinsics SIMDe 0.7 lacks (or emulates slowly) go through the small wrappers below, which have
// internal linkage: each including file gets its own copy, built with its own flags.
#pragma once

#if defined(MAMBALITE_AVX512_EMULATED)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#else
// GCC 12's masked AVX-512 builtins trip -Wuninitialized on their "undefined" source operands
// (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstring>

#include "format/fp16.h"

namespace mambalite {
namespace {

#if defined(MAMBALITE_AVX512_EMULATED)
using Mask64 = simde__mmask64;

// 16 halves (fp16 or bf16 bits) to 16 floats, element by element.
template <typename Convert>
inline __m512 widen16(__m256i h, Convert convert) {
  uint16_t a[16];
  float f[16];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(a), h);
  for (int i = 0; i < 16; ++i) f[i] = convert(a[i]);
  return _mm512_loadu_ps(f);
}
inline __m512 cvt_f16(__m256i h) { return widen16(h, fp16_to_fp32); }
inline float half_to_float(uint16_t h) { return fp16_to_fp32(h); }
inline __m512 cvt_bf16(__m256i h) { return widen16(h, bf16_to_fp32); }
inline __m512 cvt_i32(__m512i v) {
  int32_t a[16];
  float f[16];
  _mm512_storeu_si512(a, v);
  for (int i = 0; i < 16; ++i) f[i] = static_cast<float>(a[i]);
  return _mm512_loadu_ps(f);
}
inline float reduce(__m512 v) {
  float f[16];
  _mm512_storeu_ps(f, v);
  float s = 0.0f;
  for (float x : f) s += x;
  return s;
}
// 128-bit lanes (a0, a1, a2, a3) -> (a0, a2, a1, a3).
inline __m512i lanes_0213(__m512i v) { return simde_mm512_shuffle_i64x2(v, v, 0xD8); }
// 16 int8 to 16 int32 (vpmovsxbd, which SIMDe 0.7 lacks), element by element.
inline __m512i widen_i8(__m128i v) {
  int8_t a[16];
  int32_t b[16];
  _mm_storeu_si128(reinterpret_cast<__m128i*>(a), v);
  for (int i = 0; i < 16; ++i) b[i] = a[i];
  return _mm512_loadu_si512(b);
}
// vshuff32x4: 128-bit lanes of a (the lower two) and b (the upper two) chosen by Imm.
template <int Imm>
inline __m512 shuffle_quarters(__m512 a, __m512 b) {
  return simde_mm512_shuffle_f32x4(a, b, Imm);
}
// Loads of the first lanes of a vector (mask bit i: lane i), zero elsewhere; nothing is read
// past the last lane set.
inline __m512 maskz_load_ps(uint16_t mask, const float* p) {
  float f[16];
  for (int i = 0; i < 16; ++i) f[i] = (mask >> i) & 1 ? p[i] : 0.0f;
  return _mm512_loadu_ps(f);
}
inline __m512i maskz_load_epi32(uint16_t mask, const void* p) {
  int32_t a[16];
  for (int i = 0; i < 16; ++i) {
    a[i] = 0;
    if ((mask >> i) & 1) std::memcpy(a + i, static_cast<const uint8_t*>(p) + 4 * i, 4);
  }
  return _mm512_loadu_si512(a);
}
#else
using Mask64 = __mmask64;
inline __m512 cvt_f16(__m256i h) { return _mm512_cvtph_ps(h); }
// F16C, not fp16.h's portable function: an inline function of external linkage compiled here
// could be the copy the linker keeps for every file (the ODR trap of per-ISA files).
inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }
inline __m512 cvt_bf16(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline __m512 cvt_i32(__m512i v) { return _mm512_cvtepi32_ps(v); }
inline float reduce(__m512 v) { return _mm512_reduce_add_ps(v); }
inline __m512i lanes_0213(__m512i v) { return _mm512_shuffle_i64x2(v, v, 0xD8); }
inline __m512i widen_i8(__m128i v) { return _mm512_cvtepi8_epi32(v); }
template <int Imm>
inline __m512 shuffle_quarters(__m512 a, __m512 b) {
  return _mm512_shuffle_f32x4(a, b, Imm);
}
inline __m512 maskz_load_ps(uint16_t mask, const float* p) {
  return _mm512_maskz_loadu_ps(mask, p);
}
inline __m512i maskz_load_epi32(uint16_t mask, const void* p) {
  return _mm512_maskz_loadu_epi32(mask, p);
}
#endif

}  // namespace
}  // namespace mambalite
