// AVX2 + FMA + F16C products of K-quant and legacy offset blocks (built like kernels_avx2.cpp).
#include "kernels/avx2/kquants_avx2.h"

#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "format/fp16.h"
#include "kernels/avx2/simd_avx2.h"
#include "kernels/kquants_generic.h"

namespace mambalite {
namespace avx2 {
namespace {

// Q4_K and Q5_K (kquants_generic.h has the formula): per super-block, each sub-block's 32
// unsigned values meet one activation block in maddubs (at most 2 * 31 * 127 per pair, no
// saturation) and its int32 sums are scaled by sc * a.d; the 8 scales and mins are unpacked
// with ggml's word masks and meet the row's gathered d and s (ActKScales) as vectors, so the
// mins term of a super-block is one multiply-add.
template <bool kFive>
float dot_k(int64_t n, const uint8_t* w, const ActQ8* x) {
  using Block = typename std::conditional<kFive, BlockQ5_K, BlockQ4_K>::type;
  const Block* b = reinterpret_cast<const Block*>(w);
  const int64_t nb = n / kQKK;
  const ActKScales* g = reinterpret_cast<const ActKScales*>(x + n / kQK);
  const __m256i low4 = _mm256_set1_epi8(0x0F), one8 = _mm256_set1_epi8(1);
  const __m256i one16 = _mm256_set1_epi16(1);
  constexpr uint32_t kMask1 = 0x3f3f3f3f, kMask2 = 0x0f0f0f0f, kMask3 = 0x03030303;
  __m256 acc = _mm256_setzero_ps(), accm = acc;
  for (int64_t i = 0; i < nb; ++i) {
    uint32_t u[4];  // bytes 0-7: the 6-bit scales, 8-15: the mins
    std::memcpy(u, b[i].scales, 12);
    u[3] = ((u[2] >> 4) & kMask2) | (((u[1] >> 6) & kMask3) << 4);
    const uint32_t mins_lo = u[1] & kMask1;
    u[1] = (u[2] & kMask2) | (((u[0] >> 6) & kMask3) << 4);
    u[2] = mins_lo;
    u[0] &= kMask1;
    const __m128i sm = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u));
    const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm));
    const __m256 mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8)));
    const __m256 fs = _mm256_mul_ps(sc, _mm256_loadu_ps(g[i].d));  // sc_j * a_j.d
    accm = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(b[i].dmin)),
                           _mm256_mul_ps(mn, _mm256_loadu_ps(g[i].s)), accm);
    const ActQ8* xb = x + i * (kQKK / kQK);
    __m256i qh = _mm256_setzero_si256();
    if constexpr (kFive) qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qh));
    __m256 sub = _mm256_setzero_ps();
    for (int p = 0; p < 4; ++p) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 32 * p));
      __m256i lo = _mm256_and_si256(q, low4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
      if constexpr (kFive) {  // bit j of qh[l] is bit 4 of sub-block j's value l
        lo = _mm256_or_si256(
            lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * p), one8), 4));
        hi = _mm256_or_si256(
            hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * p + 1), one8), 4));
      }
      const __m256i s0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load32(xb[2 * p].qs)), one16);
      const __m256i s1 =
          _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load32(xb[2 * p + 1].qs)), one16);
      const __m256 f0 = _mm256_permutevar8x32_ps(fs, _mm256_set1_epi32(2 * p));
      const __m256 f1 = _mm256_permutevar8x32_ps(fs, _mm256_set1_epi32(2 * p + 1));
      sub = _mm256_fmadd_ps(f0, _mm256_cvtepi32_ps(s0), sub);
      sub = _mm256_fmadd_ps(f1, _mm256_cvtepi32_ps(s1), sub);
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(b[i].d)), sub, acc);
  }
  return hsum(acc) - hsum(accm);
}

// Q5_0: a block's nibbles in value order (nibbles_q4_0), bit 4 from qh spread one bit per byte
// (ggml's bytes_from_bits_32), then as Q4_0 with the offset 16 taken off through a.s.
inline __m256i bits_to_bytes(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int32_t>(bits)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i set = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_cmpeq_epi8(set, _mm256_set1_epi64x(-1));  // 0xFF where the bit is set
}

// Q4_1 / Q5_1: unsigned values (nibbles, plus bit 4 from qh for Q5_1) on maddubs; the offset
// m enters through a.s.
template <bool kFive>
float dot_x_1(int64_t n, const uint8_t* w, const ActQ8* x) {
  using Block = typename std::conditional<kFive, BlockQ5_1, BlockQ4_1>::type;
  const Block* b = reinterpret_cast<const Block*>(w);
  const __m256i high = _mm256_set1_epi8(0x10);
  __m256 acc = _mm256_setzero_ps();
  float offset = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    __m256i q = nibbles_q4_0(b[i].qs);
    if constexpr (kFive) q = _mm256_or_si256(q, _mm256_and_si256(bits_to_bytes(b[i].qh), high));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(b[i].d) * x[i].d),
                          mul_sum_u4_i8(q, load32(x[i].qs)), acc);
    offset += _cvtsh_ss(b[i].m) * x[i].s;
  }
  return hsum(acc) + offset;
}

}  // namespace

float dot_q5_0(int64_t n, const uint8_t* w, const ActQ8* x) {
  const BlockQ5_0* b = reinterpret_cast<const BlockQ5_0*>(w);
  const __m256i high = _mm256_set1_epi8(0x10);
  __m256 acc = _mm256_setzero_ps();
  float offset = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m256i q =
        _mm256_or_si256(nibbles_q4_0(b[i].qs), _mm256_and_si256(bits_to_bytes(b[i].qh), high));
    const float d = _cvtsh_ss(b[i].d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d * x[i].d), mul_sum_u4_i8(q, load32(x[i].qs)), acc);
    offset += d * x[i].s;
  }
  return hsum(acc) - 16.0f * offset;
}

float dot_q4_k(int64_t n, const uint8_t* w, const ActQ8* x) { return dot_k<false>(n, w, x); }
float dot_q5_k(int64_t n, const uint8_t* w, const ActQ8* x) { return dot_k<true>(n, w, x); }

float dot_q4_1(int64_t n, const uint8_t* w, const ActQ8* x) { return dot_x_1<false>(n, w, x); }
float dot_q5_1(int64_t n, const uint8_t* w, const ActQ8* x) { return dot_x_1<true>(n, w, x); }

void offset_to_i16(GgmlType type, const uint8_t* row, int64_t n, int16_t* q, float* d, float* o) {
  kquants::to_offset(type, row, n, q, d, o);
}

}  // namespace avx2
}  // namespace mambalite
