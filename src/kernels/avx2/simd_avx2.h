// Small AVX2 helpers shared by the AVX2 kernel files (compiled with -mavx2 -mfma -mf16c only).
#pragma once

#include <immintrin.h>

namespace mambalite {
namespace avx2 {

// Decode streams every weight once from DRAM; prefetching this far ahead hides the latency far
// better than the hardware prefetcher alone (docs/kernels.md).
constexpr int kPrefetchBytes = 4096;
// Two levels, for data that streams while the core has more work per byte than a plain read
// (the Mamba-2 decode scan's state): to L2 8 KB ahead, then on to L1 1 KB ahead.
constexpr int kPrefetchL2Bytes = 8192;
constexpr int kPrefetchL1Bytes = 1024;
inline void prefetch_two_levels(const char* p) {
  _mm_prefetch(p + kPrefetchL2Bytes, _MM_HINT_T1);
  _mm_prefetch(p + kPrefetchL1Bytes, _MM_HINT_T0);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The eight sums of a[0..8) in one vector: lane i = sum of a[i]'s lanes.
inline __m256 hsum8(const __m256* a) {
  const __m256 t0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 t1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  // t0 = [s0 s1 s2 s3 (low halves) | s0 s1 s2 s3 (high halves)], likewise t1 for s4..s7
  return _mm256_add_ps(_mm256_permute2f128_ps(t0, t1, 0x20), _mm256_permute2f128_ps(t0, t1, 0x31));
}

// exp for x <= 88 (Cephes' polynomial, about 1 ulp); inputs below -87 give about 1.6e-38
// instead of a smaller number, which is zero for the state update's and the softmax's purposes.
inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// silu(z) = z / (1 + exp(-z)).
inline __m256 silu8(__m256 z) {
  return _mm256_div_ps(
      z, _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), z))));
}

inline __m256i load32(const int8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// The 32 nibbles of a Q4_0 block as bytes in [0, 15]: low nibbles (values 0..15) in the lower
// 128 bits, high nibbles (values 16..31) in the upper.
inline __m256i nibbles_q4_0(const uint8_t* qs) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// sum(q * x) over a block, q unsigned nibbles, x signed: maddubs takes them as they are.
inline __m256 mul_sum_u4_i8(__m256i q, __m256i x) {
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(q, x), _mm256_set1_epi16(1)));
}

}  // namespace avx2
}  // namespace mambalite
