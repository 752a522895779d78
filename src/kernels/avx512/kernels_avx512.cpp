// AVX-512 kernels (F, BW, VL and VNNI: Intel Ice Lake / Sapphire Rapids and later, AMD Zen 4 and
// later). Built with -mavx512f -mavx512bw -mavx512vl -mavx512vnni and used only when the CPU (and
// the OS, for the zmm state) reports all four. The fp32/f16/bf16 products are 16 floats wide, the
// integer ones on VNNI's vpdpbusd, where AVX2 needs sign, maddubs and madd: decode's Q8_0 product
// one block per 256-bit vpdpbusd on sign-flipped weights (see dot_q8_0), its Q4_0 one four
// blocks' nibbles per 512-bit one, its Q6_K one 64 values per 512-bit one, the four-token ones
// two blocks per 512-bit one; the prefill GEMM is gemm_avx512.cpp's.
// The Mamba-1 scan runs 16 channels per vector in prefill and one channel per vector in decode,
// Mamba-2's prefill head scan 16 state values per vector. The other entries (activation
// quantization, norms, conv, Mamba-2's decode scan) are the AVX2 table's.
//
// The same source is also compiled with MAMBALITE_AVX512_EMULATED against SIMDe's portable
// AVX-512 (Debian's libsimde-dev), into the C++ kernel test only, so that machines without
// AVX-512 (CI among them) still check these kernels' indexing, tails and block layouts against
// the scalar table (avx512_compat.h wraps the few intrinsics SIMDe 0.7 lacks).
#include <cmath>
#include <cstddef>
#include <cstring>

#include "format/fp16.h"
#include "kernels/avx512/avx512_compat.h"
#include "kernels/avx512/gemm_avx512.h"
#include "kernels/decay_runs.h"
#include "kernels/kernels.h"

namespace mambalite {

const KernelTable& avx2_kernels();

namespace {

// Same prefetch distance as the AVX2 kernels (decode streams every weight once).
constexpr int kPrefetchBytes = 4096;
constexpr int kLanes16 = 16;  // floats per vector

inline __m256i load256(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline void prefetch(const void* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0);
}
// Two levels, for weights that stream while the core has more work per byte than a plain read:
// to L2 8 KB ahead, then on to L1 1 KB ahead.
constexpr int kPrefetchL2Bytes = 8192;
constexpr int kPrefetchL1Bytes = 1024;
inline void prefetch_two_levels(const void* p) {
  const char* c = reinterpret_cast<const char*>(p);
  _mm_prefetch(c + kPrefetchL2Bytes, _MM_HINT_T1);
  _mm_prefetch(c + kPrefetchL1Bytes, _MM_HINT_T0);
}

// ---------------------------------------------------------------------------------------------
// 16- and 32-bit weights: fp32 products, 16 wide.

// Weight values [i, i + 16) of a row as floats, and one value for the tails.
struct F32Row {
  static constexpr int kElem = 4;
  static __m512 load(const uint8_t* w, int64_t i) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(w) + i);
  }
  static float scalar(const uint8_t* w, int64_t i) { return reinterpret_cast<const float*>(w)[i]; }
};
struct F16Row {
  static constexpr int kElem = 2;
  static __m512 load(const uint8_t* w, int64_t i) { return cvt_f16(load256(w + 2 * i)); }
  static float scalar(const uint8_t* w, int64_t i) {
    return fp16_to_fp32(reinterpret_cast<const uint16_t*>(w)[i]);
  }
};
struct BF16Row {
  static constexpr int kElem = 2;
  static __m512 load(const uint8_t* w, int64_t i) { return cvt_bf16(load256(w + 2 * i)); }
  static float scalar(const uint8_t* w, int64_t i) {
    return bf16_to_fp32(reinterpret_cast<const uint16_t*>(w)[i]);
  }
};

// dot(w (n), x (n)): four accumulators over 16-wide loads.
template <typename Row>
float dot16(int64_t n, const uint8_t* w, const float* x) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    // 64 values per step: 256 bytes of f32, 128 of f16 / bf16, prefetched to L2 then L1.
    for (int l = 0; l < Row::kElem; ++l) prefetch_two_levels(w + i * Row::kElem + 64 * l);
    a0 = _mm512_fmadd_ps(Row::load(w, i), _mm512_loadu_ps(x + i), a0);
    a1 = _mm512_fmadd_ps(Row::load(w, i + 16), _mm512_loadu_ps(x + i + 16), a1);
    a2 = _mm512_fmadd_ps(Row::load(w, i + 32), _mm512_loadu_ps(x + i + 32), a2);
    a3 = _mm512_fmadd_ps(Row::load(w, i + 48), _mm512_loadu_ps(x + i + 48), a3);
  }
  for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(Row::load(w, i), _mm512_loadu_ps(x + i), a0);
  float sum = reduce(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  for (; i < n; ++i) sum += Row::scalar(w, i) * x[i];
  return sum;
}

// out[t] = dot(w, x_t) for four activation rows (x + t * stride bytes): each weight vector is
// loaded once for the four, two accumulators per token.
template <typename Row>
void dot16x4(int64_t n, const uint8_t* w, const uint8_t* xb, size_t stride, float* out) {
  const float* x[4];
  for (int t = 0; t < 4; ++t) x[t] = reinterpret_cast<const float*>(xb + t * stride);
  __m512 a[4], b[4];
  for (int t = 0; t < 4; ++t) a[t] = b[t] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 w0 = Row::load(w, i), w1 = Row::load(w, i + 16);
    for (int t = 0; t < 4; ++t) {
      a[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[t] + i), a[t]);
      b[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x[t] + i + 16), b[t]);
    }
  }
  for (; i + 16 <= n; i += 16) {
    const __m512 w0 = Row::load(w, i);
    for (int t = 0; t < 4; ++t) a[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[t] + i), a[t]);
  }
  for (int t = 0; t < 4; ++t) {
    float sum = reduce(_mm512_add_ps(a[t], b[t]));
    for (int64_t j = i; j < n; ++j) sum += Row::scalar(w, j) * x[t][j];
    out[t] = sum;
  }
}

// out[2 * r + t] = dot(w_r, x_t) for four weight rows (w + r * row_bytes) and two activation rows
// (x + t * stride bytes): each activation vector serves the four rows.
template <typename Row>
void tile16_4x2(int64_t n, const uint8_t* w, size_t row_bytes, const uint8_t* xb, size_t stride,
                float* out) {
  const float* x0 = reinterpret_cast<const float*>(xb);
  const float* x1 = reinterpret_cast<const float*>(xb + stride);
  const uint8_t* rows[4] = {w, w + row_bytes, w + 2 * row_bytes, w + 3 * row_bytes};
  __m512 a[4], b[4];
  for (int r = 0; r < 4; ++r) a[r] = b[r] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v0 = _mm512_loadu_ps(x0 + i), v1 = _mm512_loadu_ps(x1 + i);
    for (int r = 0; r < 4; ++r) {
      const __m512 wr = Row::load(rows[r], i);
      a[r] = _mm512_fmadd_ps(wr, v0, a[r]);
      b[r] = _mm512_fmadd_ps(wr, v1, b[r]);
    }
  }
  for (int r = 0; r < 4; ++r) {
    float s0 = reduce(a[r]), s1 = reduce(b[r]);
    for (int64_t j = i; j < n; ++j) {
      const float v = Row::scalar(rows[r], j);
      s0 += v * x0[j];
      s1 += v * x1[j];
    }
    out[2 * r] = s0;
    out[2 * r + 1] = s1;
  }
}

// ---------------------------------------------------------------------------------------------
// Int8 products: two 32-value blocks per register, lanes 0-7 summing block 0 and lanes 8-15
// block 1, each pair of blocks scaled once by (d_w * d_x) in its half.

inline float block_scale(const uint8_t* block) {
  uint16_t bits;
  std::memcpy(&bits, block, 2);
  return _cvtsh_ss(bits);  // F16C
}

// Blocks a and b's 32 bytes at byte offset `off` of each, as one register; b == nullptr gives
// zeros in the upper half (an odd last block).
inline __m512i load_pair(const uint8_t* a, const uint8_t* b, size_t off) {
  const __m256i hi = b != nullptr ? load256(b + off) : _mm256_setzero_si256();
  return _mm512_inserti64x4(_mm512_castsi256_si512(load256(a + off)), hi, 1);
}

// Scale a in the lower 8 lanes, b in the upper 8.
inline __m512 scale_pair(float a, float b) {
  return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(a), _mm512_set1_ps(b));
}

// Two Q4_0 blocks' nibbles as bytes in [0, 15], in value order: block a's 32 values in the lower
// 256 bits (low nibbles then high), block b's in the upper (zeros when b is null).
inline __m512i nibbles_pair(const uint8_t* a, const uint8_t* b) {
  const __m128i qa = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + 2));
  const __m128i qb =
      b != nullptr ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2)) : _mm_setzero_si128();
  const __m256i both = _mm256_set_m128i(qb, qa);  // (qa, qb)
  const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(both), _mm256_srli_epi16(both, 4), 1);
  // v's 128-bit lanes: (qa, qb, qa >> 4, qb >> 4) -> (qa, qa >> 4, qb, qb >> 4), then mask.
  return _mm512_and_si512(lanes_0213(v), _mm512_set1_epi8(0x0F));
}

// |w| and the sign mask of w, for signed x signed products through vpdpbusd (unsigned x signed).
struct SignedWeights {
  __m512i abs;
  Mask64 neg;
  explicit SignedWeights(__m512i w) : abs(_mm512_abs_epi8(w)), neg(_mm512_movepi8_mask(w)) {}
  // Per 32-bit lane: sum of four w * x products (x negated where w < 0, then |w| * x).
  __m512i dot(__m512i x) const {
    const __m512i zero = _mm512_setzero_si512();
    return _mm512_dpbusd_epi32(zero, abs, _mm512_mask_sub_epi8(x, neg, zero, x));
  }
};

// Activation blocks x[i] and x[i + 1] (or zeros for a missing second block).
inline __m512i act_pair(const ActQ8* x, int64_t i, bool pair) {
  return load_pair(reinterpret_cast<const uint8_t*>(x + i),
                   pair ? reinterpret_cast<const uint8_t*>(x + i + 1) : nullptr,
                   offsetof(ActQ8, qs));
}

// Decode's Q8_0 product, 8 blocks at a time against the row's ActQ8Group copies, two blocks per
// 512-bit register (one per half): the weights' sign bits flipped make them unsigned (w + 128),
// so vpdpbusd takes them as they are, its lane sums starting from the group's -128 * sum(x) terms
// (exact); the 8 weight scales come in two word permutes. Per pair of blocks that is an insert, a
// flip, vpdpbusd, a conversion, a permute of the scales and a multiply-add, where the pairs of the
// four-token product below also take |w|, the signs and a negation (fewer cycles than one block
// per 256-bit register: docs/kernels.md). Tail blocks (nb % 8) go in pairs.
float dot_q8_0(int64_t n, const uint8_t* w, const ActQ8* x) {
  const int64_t nb = n / kQK;
  constexpr int64_t kB = sizeof(BlockQ8_0);
  const ActQ8Group* g = reinterpret_cast<const ActQ8Group*>(x + nb);
  const __m512i scale_words =
      _mm512_setr_epi32(17 << 16, 51 << 16 | 34, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i scale_words_hi =
      _mm512_setr_epi32(21 << 16 | 4, 55 << 16 | 38, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512i pair_scales[4];  // pair k's scales: 2k in the lower 8 lanes, 2k + 1 in the upper
  for (int k = 0; k < 4; ++k) {
    pair_scales[k] =
        _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(2 * k), _mm512_set1_epi32(2 * k + 1));
  }
  __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  int64_t i = 0;
  for (; i + 8 <= nb; i += 8, ++g) {
    const uint8_t* b = w + i * kB;
    for (int l = 0; l < 5; ++l) prefetch_two_levels(b + 64 * l);  // 272 bytes: 4.25 lines
    // The scales are 16-bit words 0, 17, 34, 51 of the group's first 128 bytes and 4, 21, 38,
    // 55 of the 128 from byte 128: two word permutes (a gather was slower).
    const __m512i lo4 =
        _mm512_permutex2var_epi16(_mm512_loadu_si512(b), scale_words, _mm512_loadu_si512(b + 64));
    const __m512i hi4 = _mm512_permutex2var_epi16(_mm512_loadu_si512(b + 128), scale_words_hi,
                                                  _mm512_loadu_si512(b + 192));
    const __m128i halves =
        _mm_unpacklo_epi64(_mm512_castsi512_si128(lo4), _mm512_castsi512_si128(hi4));
    const __m512 scale = _mm512_castps256_ps512(_mm256_mul_ps(
        _mm256_cvtph_ps(halves), _mm256_loadu_ps(g->d)));  // d_w * d_x, per block (lanes 0-7)
    for (int k = 0; k < 4; ++k) {  // blocks 2k and 2k + 1, one per 256-bit half
      const uint8_t* p = b + 2 * k * kB;
      const __m512i wu = _mm512_xor_si512(
          _mm512_inserti64x4(_mm512_castsi256_si512(load256(p + 2)), load256(p + kB + 2), 1), flip);
      const __m512i sums = _mm512_dpbusd_epi32(_mm512_loadu_si512(g->m128[2 * k]), wu,
                                               _mm512_loadu_si512(g->qs + 2 * kQK * k));
      acc[k % 2] =
          _mm512_fmadd_ps(cvt_i32(sums), _mm512_permutexvar_ps(pair_scales[k], scale), acc[k % 2]);
    }
  }
  __m512 tail = _mm512_setzero_ps();
  for (; i < nb; i += 2) {
    const uint8_t* b = w + i * kB;
    const bool pair = i + 1 < nb;
    const SignedWeights wq(load_pair(b, pair ? b + kB : nullptr, 2));
    const float s1 = pair ? block_scale(b + kB) * x[i + 1].d : 0.0f;
    tail = _mm512_fmadd_ps(scale_pair(block_scale(b) * x[i].d, s1),
                           cvt_i32(wq.dot(act_pair(x, i, pair))), tail);
  }
  return reduce(_mm512_add_ps(tail, _mm512_add_ps(acc[0], acc[1])));
}

// Decode's Q4_0 product, 8 blocks at a time against the row's ActQ4Quads copies: four blocks'
// 16 nibble bytes per 512-bit register, their low nibbles then (shifted) their high ones, two
// vpdpbusd per quad (the nibbles are unsigned as they are) starting from the quad's -8 * sum(x)
// lane terms (exact); the 8 scales come in one two-register word permute of the group's first
// 128 bytes (a gather was slower), each quad's per-block scales in one more permute. Tail blocks
// (nb % 8) one per 256-bit register.
float dot_q4_0(int64_t n, const uint8_t* w, const ActQ8* x) {
  const int64_t nb = n / kQK;
  constexpr int64_t kB = sizeof(BlockQ4_0);
  const ActQ4Quads* g =
      reinterpret_cast<const ActQ4Quads*>(reinterpret_cast<const ActQ4Group*>(x + nb) + nb / 8);
  const __m512i scale_words = _mm512_setr_epi32(9 << 16, 27 << 16 | 18, 45 << 16 | 36,
                                                63 << 16 | 54, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i quad_scales[2] = {
      _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
      _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7)};
  __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  int64_t i = 0;
  for (; i + 8 <= nb; i += 8, ++g) {
    const uint8_t* b = w + i * kB;
    for (int l = 0; l < 3; ++l) prefetch_two_levels(b + 64 * l);  // 144 bytes: 2.25 lines
    // The scales are 16-bit words 0, 9, ..., 63 of the group's first 128 bytes.
    const __m512i words =
        _mm512_permutex2var_epi16(_mm512_loadu_si512(b), scale_words, _mm512_loadu_si512(b + 64));
    const __m256 scale8 = _mm256_mul_ps(_mm256_cvtph_ps(_mm512_castsi512_si128(words)),
                                        _mm256_loadu_ps(g->d));  // d_w * d_x, per block
    const __m512 scale =
        _mm512_castpd_ps(_mm512_insertf64x4(_mm512_setzero_pd(), _mm256_castps_pd(scale8), 0));
    for (int h = 0; h < 2; ++h) {
      const uint8_t* q = b + 4 * h * kB + 2;  // the quad's nibbles, 16 bytes per block
      __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
      v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + kB)), 1);
      v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 2 * kB)), 2);
      v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 3 * kB)), 3);
      const __m512i lo = _mm512_and_si512(v, m4);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
      __m512i sums =
          _mm512_dpbusd_epi32(_mm512_loadu_si512(g->m8[h]), lo, _mm512_loadu_si512(g->lo[h]));
      sums = _mm512_dpbusd_epi32(sums, hi, _mm512_loadu_si512(g->hi[h]));
      acc[h] = _mm512_fmadd_ps(cvt_i32(sums), _mm512_permutexvar_ps(quad_scales[h], scale), acc[h]);
    }
  }
  __m256 tail = _mm256_setzero_ps();
  float offset = 0.0f;  // sum of d_w * s_x over the tail blocks
  for (; i < nb; ++i) {
    const uint8_t* b = w + i * kB;
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m256i m4y = _mm256_set1_epi8(0x0F);
    const __m256i v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4y);
    const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), v, load256(x[i].qs));
    const float dw = block_scale(b);
    offset += dw * x[i].s;
    tail = _mm256_fmadd_ps(_mm256_set1_ps(dw * x[i].d), _mm256_cvtepi32_ps(sums), tail);
  }
  const __m512 low = _mm512_castpd_ps(  // tail in the lower half, zeros above
      _mm512_insertf64x4(_mm512_setzero_pd(), _mm256_castps_pd(tail), 0));
  return reduce(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), low)) - 8.0f * offset;
}

// Decode's Q6_K product: per 256-value block, four 512-bit registers of 64 unsigned 6-bit values
// in value order (the low nibbles or high nibbles of 64 ql bytes, with their two qh bits put in
// by one bitwise select), each against 64 of the row's ActQ6Group values in one vpdpbusd
// starting from the group's exact -32 * sum(x) lane terms; each lane's scale is the block's d
// times its 16-value sub-block's int8 scale (one permute of the 16 scales) times its
// activation scale.
float dot_q6_k(int64_t n, const uint8_t* w, const ActQ8* x) {
  const int64_t nb = n / kQK;
  const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(w);
  const ActQ6Group* g =
      reinterpret_cast<const ActQ6Group*>(reinterpret_cast<const ActQ6Offset*>(x + nb) + nb);
  const __m512i low4 = _mm512_set1_epi8(0x0F), high2 = _mm512_set1_epi8(0x33);
  __m512i sub[4];  // register r's lanes: sub-block 4 r + lane / 4
  for (int r = 0; r < 4; ++r) {
    sub[r] = _mm512_setr_epi32(4 * r, 4 * r, 4 * r, 4 * r, 4 * r + 1, 4 * r + 1, 4 * r + 1,
                               4 * r + 1, 4 * r + 2, 4 * r + 2, 4 * r + 2, 4 * r + 2, 4 * r + 3,
                               4 * r + 3, 4 * r + 3, 4 * r + 3);
  }
  __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int64_t i = 0; i < n / kQKK; ++i, ++g) {
    const uint8_t* block = reinterpret_cast<const uint8_t*>(b + i);
    for (int l = 0; l < 4; ++l) prefetch_two_levels(block + 64 * l);  // 210 bytes: 3.3 lines
    const __m512 sc = _mm512_mul_ps(  // the 16 sub-blocks' scales times d
        cvt_i32(widen_i8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].scales)))),
        _mm512_set1_ps(half_to_float(b[i].d)));
    for (int half = 0; half < 2; ++half) {
      const __m512i ql = _mm512_loadu_si512(b[i].ql + 64 * half);  // values' low 4 bits
      const __m256i h = load256(b[i].qh + 32 * half);              // their high 2 bits
      // Bits 0-1 and 4-5 of [h, h >> 2]: the high bits of values 0-63 and of 64-127 (of the half).
      const __m512i hh = _mm512_and_si512(
          _mm512_inserti64x4(_mm512_castsi256_si512(h), _mm256_srli_epi16(h, 2), 1), high2);
      // q = low 4 bits from ql (select where the mask 0x0F has ones), bits 4-5 from hh.
      const __m512i q[2] = {_mm512_ternarylogic_epi32(ql, _mm512_slli_epi16(hh, 4), low4, 0xE4),
                            _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), hh, low4, 0xE4)};
      for (int j = 0; j < 2; ++j) {
        const int r = 2 * half + j;  // values 64 r .. 64 r + 63
        const __m512i sums = _mm512_dpbusd_epi32(_mm512_loadu_si512(g->m32[r]), q[j],
                                                 _mm512_loadu_si512(g->qs + 64 * r));
        const __m512 scale =
            _mm512_mul_ps(_mm512_permutexvar_ps(sub[r], sc), _mm512_loadu_ps(g->d[r]));
        acc[j] = _mm512_fmadd_ps(cvt_i32(sums), scale, acc[j]);
      }
    }
  }
  return reduce(_mm512_add_ps(acc[0], acc[1]));
}

// Four activation rows (xb + t * stride bytes) against one Q8_0 row: each pair of weight blocks
// is loaded, and its |w| and signs taken, once for the four.
void dot4_q8_0(int64_t n, const uint8_t* w, const uint8_t* xb, size_t stride, float* out) {
  const int64_t nb = n / kQK;
  constexpr size_t kB = sizeof(BlockQ8_0);
  const ActQ8* x[4];
  for (int t = 0; t < 4; ++t) x[t] = reinterpret_cast<const ActQ8*>(xb + t * stride);
  __m512 acc[4];
  for (int t = 0; t < 4; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; i += 2) {
    const uint8_t* b = w + i * kB;
    const bool pair = i + 1 < nb;
    const SignedWeights wq(load_pair(b, pair ? b + kB : nullptr, 2));
    const float d0 = block_scale(b), d1 = pair ? block_scale(b + kB) : 0.0f;
    for (int t = 0; t < 4; ++t) {
      const float s1 = pair ? d1 * x[t][i + 1].d : 0.0f;
      acc[t] = _mm512_fmadd_ps(scale_pair(d0 * x[t][i].d, s1),
                               cvt_i32(wq.dot(act_pair(x[t], i, pair))), acc[t]);
    }
  }
  for (int t = 0; t < 4; ++t) out[t] = reduce(acc[t]);
}

void dot4_q4_0(int64_t n, const uint8_t* w, const uint8_t* xb, size_t stride, float* out) {
  const int64_t nb = n / kQK;
  constexpr size_t kB = sizeof(BlockQ4_0);
  const __m512i zero = _mm512_setzero_si512();
  const ActQ8* x[4];
  for (int t = 0; t < 4; ++t) x[t] = reinterpret_cast<const ActQ8*>(xb + t * stride);
  __m512 acc[4];
  float offset[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int t = 0; t < 4; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; i += 2) {
    const uint8_t* b = w + i * kB;
    const bool pair = i + 1 < nb;
    const __m512i q = nibbles_pair(b, pair ? b + kB : nullptr);
    const float d0 = block_scale(b), d1 = pair ? block_scale(b + kB) : 0.0f;
    for (int t = 0; t < 4; ++t) {
      const float s1 = pair ? d1 * x[t][i + 1].d : 0.0f;
      const __m512i p = _mm512_dpbusd_epi32(zero, q, act_pair(x[t], i, pair));
      acc[t] = _mm512_fmadd_ps(scale_pair(d0 * x[t][i].d, s1), cvt_i32(p), acc[t]);
      offset[t] += d0 * x[t][i].s + (pair ? d1 * x[t][i + 1].s : 0.0f);
    }
  }
  for (int t = 0; t < 4; ++t) out[t] = reduce(acc[t]) - 8.0f * offset[t];
}

// ---------------------------------------------------------------------------------------------
// Mamba-1 selective scan, 16 channels per vector: lane i is channel c + i, and the state's N = 16
// values are 16 registers, one per state index, for the whole run of tokens. Each token's B and C
// values are broadcasts shared by the 16 channels, so a token costs per channel and state value
// one exp (a sixteenth of a vector's), two multiply-adds and a multiply, with no horizontal sum
// (AVX2 keeps a channel's state in two vectors and reduces them every token).

// exp for x <= 88, as AVX2's exp8 (Cephes' polynomial, about 1 ulp), with the power of two
// applied by vscalefps.
inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(y, n);
}

constexpr int kScanState = 16;  // the state size this scan handles (every Mamba-1 release's)

// Tokens from which the 16-channel scan pays for transposing its state in and out.
constexpr int64_t kScanMinTokens = 4;

// y (n) *= silu(z (n)) = z / (1 + exp(-z)), 16 at a time, the tail in scalar.
inline void gate_silu16(int64_t n, const float* z, float* y) {
  const __m512 one = _mm512_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + kLanes16 <= n; i += kLanes16) {
    const __m512 zv = _mm512_loadu_ps(z + i);
    const __m512 silu =
        _mm512_div_ps(zv, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), zv))));
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), silu));
  }
  for (; i < n; ++i) y[i] *= z[i] / (1.0f + std::exp(-z[i]));
}

// Decode (fewer than kScanMinTokens tokens), N = 16: one channel's state in one vector, an exp
// of 16 lanes per channel and token where AVX2 takes two of 8; the state and A rows prefetched
// as they stream from memory.
void scan_channels16(int64_t n, int64_t E, const float* x, const float* dt, const float* A,
                     const float* B, const float* C, int64_t ldbc, const float* D, const float* z,
                     int64_t ldz, float* s, float* y, int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; ++c) {
    float* sc = s + c * kScanState;
    const float* ac = A + c * kScanState;
    prefetch(sc);
    prefetch(ac);
    const __m512 a = _mm512_loadu_ps(ac);
    __m512 v = _mm512_loadu_ps(sc);
    for (int64_t t = 0; t < n; ++t) {
      const float d = dt[t * E + c], xv = x[t * E + c];
      const __m512 dA = exp16(_mm512_mul_ps(_mm512_set1_ps(d), a));
      v = _mm512_fmadd_ps(v, dA,
                          _mm512_mul_ps(_mm512_set1_ps(d * xv), _mm512_loadu_ps(B + t * ldbc)));
      y[t * E + c] = reduce(_mm512_mul_ps(v, _mm512_loadu_ps(C + t * ldbc))) + D[c] * xv;
    }
    _mm512_storeu_ps(sc, v);
  }
  for (int64_t t = 0; t < n; ++t) gate_silu16(c1 - c0, z + t * ldz + c0, y + t * E + c0);
}

void selective_scan(int64_t n, int64_t E, int64_t N, const float* x, const float* dt,
                    const float* A, const float* B, const float* C, int64_t ldbc, const float* D,
                    const float* z, int64_t ldz, float* s, float* y, int64_t c0, int64_t c1) {
  if (N == kScanState && n < kScanMinTokens) {
    scan_channels16(n, E, x, dt, A, B, C, ldbc, D, z, ldz, s, y, c0, c1);
    return;
  }
  int64_t c = c0;
  if (N == kScanState && n >= kScanMinTokens) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; c + kLanes16 <= c1; c += kLanes16) {
      // (N, 16) the state and A of channels [c, c + 16), state index major
      alignas(64) float st[kScanState * kLanes16], a[kScanState * kLanes16];
      for (int i = 0; i < kLanes16; ++i) {
        for (int k = 0; k < kScanState; ++k) {
          st[k * kLanes16 + i] = s[(c + i) * N + k];
          a[k * kLanes16 + i] = A[(c + i) * N + k];
        }
      }
      __m512 v[kScanState];
      for (int k = 0; k < kScanState; ++k) v[k] = _mm512_load_ps(st + k * kLanes16);
      const __m512 dv = _mm512_loadu_ps(D + c);
      for (int64_t t = 0; t < n; ++t) {
        const __m512 d = _mm512_loadu_ps(dt + t * E + c), xv = _mm512_loadu_ps(x + t * E + c);
        const __m512 dx = _mm512_mul_ps(d, xv);
        const float* Bt = B + t * ldbc;
        const float* Ct = C + t * ldbc;
        __m512 acc = _mm512_mul_ps(dv, xv);
        for (int k = 0; k < kScanState; ++k) {
          const __m512 dA = exp16(_mm512_mul_ps(d, _mm512_load_ps(a + k * kLanes16)));
          v[k] = _mm512_fmadd_ps(v[k], dA, _mm512_mul_ps(dx, _mm512_set1_ps(Bt[k])));
          acc = _mm512_fmadd_ps(v[k], _mm512_set1_ps(Ct[k]), acc);
        }
        const __m512 zv = _mm512_loadu_ps(z + t * ldz + c);  // y *= silu(z) = z / (1 + exp(-z))
        const __m512 silu =
            _mm512_div_ps(zv, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), zv))));
        _mm512_storeu_ps(y + t * E + c, _mm512_mul_ps(acc, silu));
      }
      for (int k = 0; k < kScanState; ++k) _mm512_store_ps(st + k * kLanes16, v[k]);
      for (int i = 0; i < kLanes16; ++i) {
        for (int k = 0; k < kScanState; ++k) s[(c + i) * N + k] = st[k * kLanes16 + i];
      }
    }
  }
  if (c < c1) {  // other state sizes, short runs and the last channels: AVX2's scan
    avx2_kernels().selective_scan(n, E, N, x, dt, A, B, C, ldbc, D, z, ldz, s, y, c, c1);
  }
}

// ---------------------------------------------------------------------------------------------
// Mamba-2 head scan, prefill: AVX2's runs of decayed sums (kernels_avx2.cpp, head_scan4_runs:
// the state kept as s / g over runs of up to 16 tokens, B pre-scaled by dt / g), 16 state values
// per vector, and the four channels' C sums reduced together. Decode (one token): the plain
// recurrence, 16 wide with the two-level prefetch. State sizes that are not a multiple of 16, and
// fewer than four channels, go to AVX2's head scan.
// (kRunTokens, kRunMaxState, kMinRunDecay and decay_run: decay_runs.h)

// The sums of the 16 lanes of a0 .. a3, as four floats.
alignas(64) constexpr int32_t kSwapPairs[16] = {1, 0, 3,  2,  5,  4,  7,  6,
                                                9, 8, 11, 10, 13, 12, 15, 14};
alignas(64) constexpr int32_t kSwapHalves[16] = {2,  3,  0, 1, 6,  7,  4,  5,
                                                 10, 11, 8, 9, 14, 15, 12, 13};
alignas(64) constexpr int32_t kQuarterFirst[16] = {0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
inline __m128 reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  // Quarters (a.q0 + a.q2, a.q1 + a.q3) of a0 and a1, then of a2 and a3.
  const __m512 t0 = _mm512_add_ps(shuffle_quarters<0x44>(a0, a1), shuffle_quarters<0xEE>(a0, a1));
  const __m512 t1 = _mm512_add_ps(shuffle_quarters<0x44>(a2, a3), shuffle_quarters<0xEE>(a2, a3));
  // Quarter i: four partial sums of a_i; then every element of quarter i: the sum of a_i.
  __m512 u = _mm512_add_ps(shuffle_quarters<0x88>(t0, t1), shuffle_quarters<0xDD>(t0, t1));
  u = _mm512_add_ps(u, _mm512_permutexvar_ps(_mm512_load_si512(kSwapPairs), u));
  u = _mm512_add_ps(u, _mm512_permutexvar_ps(_mm512_load_si512(kSwapHalves), u));
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_load_si512(kQuarterFirst), u));
}

// T (1 to 4) tokens from run position j of four channels, s (4, N) holding s / g; Last: the
// stored state scaled by gs (the run's decay) back to the true state. Per 16 state values the
// T tokens' Bs and C vectors are shared by the four channels, and each channel's state is loaded
// and stored once for the T tokens (4 x T accumulators and 2 x T vectors: 24 of the 32 zmm).
template <int T, bool Last>
void run4_tokens(int64_t j, int64_t N, const float* x, int64_t ldx, const float* Bs, const float* C,
                 int64_t ldbc, const float* g, float gs, float Dh, float* s, float* y,
                 int64_t ldy) {
  const __m512 vg = _mm512_set1_ps(gs);
  __m512 acc[T][4];
  for (int u = 0; u < T; ++u) {
    for (int i = 0; i < 4; ++i) acc[u][i] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < N; k += kLanes16) {
    __m512 b[T], c[T];
    for (int u = 0; u < T; ++u) {
      b[u] = _mm512_loadu_ps(Bs + (j + u) * N + k);
      c[u] = _mm512_loadu_ps(C + (j + u) * ldbc + k);
    }
    for (int i = 0; i < 4; ++i) {
      float* sp = s + i * N + k;
      __m512 v = _mm512_loadu_ps(sp);
      for (int u = 0; u < T; ++u) {
        v = _mm512_fmadd_ps(_mm512_set1_ps(x[(j + u) * ldx + i]), b[u], v);
        acc[u][i] = _mm512_fmadd_ps(v, c[u], acc[u][i]);
      }
      _mm512_storeu_ps(sp, Last ? _mm512_mul_ps(v, vg) : v);
    }
  }
  const __m128 dh = _mm_set1_ps(Dh);
  for (int u = 0; u < T; ++u) {
    const __m128 sums = reduce4(acc[u][0], acc[u][1], acc[u][2], acc[u][3]);
    _mm_storeu_ps(y + (j + u) * ldy, _mm_fmadd_ps(_mm_set1_ps(g[j + u]), sums,
                                                  _mm_mul_ps(dh, _mm_loadu_ps(x + (j + u) * ldx))));
  }
}

// One token of the plain recurrence for channels [0, P4): decode, and in prefill a decay too
// strong for a run. Stream: decode's state streams from DRAM like the weights (8 N bytes per
// channel read and written per token); the prefetch keeps it ahead of the loads.
template <bool Stream>
void recur4_token(int64_t P4, int64_t N, const float* x, float dt, float dA, const float* B,
                  const float* C, float Dh, float* s, float* y) {
  const __m512 va = _mm512_set1_ps(dA);
  for (int64_t p = 0; p < P4; p += 4) {
    __m512 a[4], dx[4];
    for (int i = 0; i < 4; ++i) {
      a[i] = _mm512_setzero_ps();
      dx[i] = _mm512_set1_ps(dt * x[p + i]);
    }
    const char* ahead = reinterpret_cast<const char*>(s + p * N);
    for (int64_t k = 0; k < N; k += kLanes16, ahead += 4 * 64) {
      if (Stream) {
        for (int l = 0; l < 4; ++l) prefetch_two_levels(ahead + 64 * l);
      }
      const __m512 b = _mm512_loadu_ps(B + k), c = _mm512_loadu_ps(C + k);
      for (int i = 0; i < 4; ++i) {
        float* sp = s + (p + i) * N + k;
        const __m512 u = _mm512_fmadd_ps(_mm512_loadu_ps(sp), va, _mm512_mul_ps(dx[i], b));
        a[i] = _mm512_fmadd_ps(u, c, a[i]);
        _mm512_storeu_ps(sp, u);
      }
    }
    _mm_storeu_ps(
        y + p, _mm_fmadd_ps(_mm_set1_ps(Dh), _mm_loadu_ps(x + p), reduce4(a[0], a[1], a[2], a[3])));
  }
}

void head_scan(int64_t n, int64_t P, int64_t N, const float* x, int64_t ldx, const float* dt,
               const float* dA, const float* B, const float* C, int64_t ldbc, float Dh,
               const float* z, int64_t ldz, float* s, float* y, int64_t ldy) {
  const int64_t P4 = P & ~int64_t{3};
  if (N % kLanes16 != 0 || P4 == 0 || (n > 1 && N > kRunMaxState)) {
    avx2_kernels().head_scan(n, P, N, x, ldx, dt, dA, B, C, ldbc, Dh, z, ldz, s, y, ldy);
    return;
  }
  alignas(64) float Bs[kRunTokens * kRunMaxState];  // (L, N)
  float g[kRunTokens];                              // (L) decay since the run began
  int64_t t0 = 0;
  if (n == 1) {
    recur4_token<true>(P4, N, x, dt[0], dA[0], B, C, Dh, s, y);
    t0 = 1;
  }
  while (t0 < n) {
    if (!(dA[t0] >= kMinRunDecay)) {
      recur4_token<false>(P4, N, x + t0 * ldx, dt[t0], dA[t0], B + t0 * ldbc, C + t0 * ldbc, Dh, s,
                          y + t0 * ldy);
      ++t0;
      continue;
    }
    const int64_t L = decay_run(dA, t0, n, g);
    for (int64_t j = 0; j < L; ++j) {
      const __m512 scale = _mm512_set1_ps(dt[t0 + j] / g[j]);
      const float* Bt = B + (t0 + j) * ldbc;
      for (int64_t k = 0; k < N; k += kLanes16) {
        _mm512_store_ps(Bs + j * N + k, _mm512_mul_ps(scale, _mm512_loadu_ps(Bt + k)));
      }
    }
    const float gs = g[L - 1];
    const float* xr = x + t0 * ldx;
    const float* Cr = C + t0 * ldbc;
    float* yr = y + t0 * ldy;
    for (int64_t p = 0; p < P4; p += 4) {
      float* sp = s + p * N;
      int64_t j = 0;
      for (; j + 4 < L; j += 4) {
        run4_tokens<4, false>(j, N, xr + p, ldx, Bs, Cr, ldbc, g, gs, Dh, sp, yr + p, ldy);
      }
      switch (L - j) {  // the run's last 1 to 4 tokens, the last call storing the true state
        case 4:
          run4_tokens<4, true>(j, N, xr + p, ldx, Bs, Cr, ldbc, g, gs, Dh, sp, yr + p, ldy);
          break;
        case 3:
          run4_tokens<3, true>(j, N, xr + p, ldx, Bs, Cr, ldbc, g, gs, Dh, sp, yr + p, ldy);
          break;
        case 2:
          run4_tokens<2, true>(j, N, xr + p, ldx, Bs, Cr, ldbc, g, gs, Dh, sp, yr + p, ldy);
          break;
        default:
          run4_tokens<1, true>(j, N, xr + p, ldx, Bs, Cr, ldbc, g, gs, Dh, sp, yr + p, ldy);
      }
    }
    t0 += L;
  }
  if (P4 < P) {  // the last channels (gated there)
    avx2_kernels().head_scan(n, P - P4, N, x + P4, ldx, dt, dA, B, C, ldbc, Dh, z + P4, ldz,
                             s + P4 * N, y + P4, ldy);
  }
  for (int64_t t = 0; t < n; ++t) gate_silu16(P4, z + t * ldz, y + t * ldy);  // channels [0, P4)
}

uint64_t stream_sum(const uint64_t* p, int64_t n) {
  __m512i a = _mm512_setzero_si512(), b = a;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {  // two cache lines per step
    prefetch(p + i);
    prefetch(p + i + 8);
    a = _mm512_add_epi64(a, _mm512_load_si512(p + i));
    b = _mm512_add_epi64(b, _mm512_load_si512(p + i + 8));
  }
  if (i < n) a = _mm512_add_epi64(a, _mm512_load_si512(p + i));
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, _mm512_add_epi64(a, b));
  uint64_t sum = 0;
  for (const uint64_t v : lanes) sum += v;
  return sum;
}

KernelTable make_table() {
  KernelTable k = avx2_kernels();  // quantize_act, norms, conv and scans stay AVX2
#if defined(MAMBALITE_AVX512_EMULATED)
  k.name = "avx512-emulated";
#else
  k.name = "avx512";
#endif
  k.of(GgmlType::F32).dot = dot_as<float, dot16<F32Row>>;
  k.of(GgmlType::F16).dot = dot_as<float, dot16<F16Row>>;
  k.of(GgmlType::BF16).dot = dot_as<float, dot16<BF16Row>>;
  k.of(GgmlType::Q8_0).dot = dot_as<ActQ8, dot_q8_0>;
  k.of(GgmlType::Q8_0).matvec = matvec_rows<ActQ8, dot_q8_0>;
  k.of(GgmlType::Q4_0).matvec = matvec_rows<ActQ8, dot_q4_0>;
  k.of(GgmlType::Q6_K).matvec = matvec_rows<ActQ8, dot_q6_k>;
  k.of(GgmlType::F32).matvec = matvec_rows<float, dot16<F32Row>>;
  k.of(GgmlType::F16).matvec = matvec_rows<float, dot16<F16Row>>;
  k.of(GgmlType::BF16).matvec = matvec_rows<float, dot16<BF16Row>>;
  k.of(GgmlType::Q4_0).dot = dot_as<ActQ8, dot_q4_0>;
  k.of(GgmlType::Q6_K).dot = dot_as<ActQ8, dot_q6_k>;
  // 512-bit Q4_0 (quads, scales by one word permute) and Q6_K (whole 64-value registers): both
  // faster than AVX2's, where earlier 512-bit versions were not (docs/kernels.md).
  k.of(GgmlType::F32).dot4 = dot16x4<F32Row>;
  k.of(GgmlType::F16).dot4 = dot16x4<F16Row>;
  k.of(GgmlType::BF16).dot4 = dot16x4<BF16Row>;
  k.selective_scan = selective_scan;
  k.head_scan = head_scan;
  k.of(GgmlType::Q8_0).dot4 = dot4_q8_0;
  k.of(GgmlType::Q4_0).dot4 = dot4_q4_0;
  k.of(GgmlType::F32).tile4x2 = tile16_4x2<F32Row>;
  k.of(GgmlType::F16).tile4x2 = tile16_4x2<F16Row>;
  k.of(GgmlType::BF16).tile4x2 = tile16_4x2<BF16Row>;
  k.of(GgmlType::F32).tile4x3 = nullptr;  // the AVX2 table's 4 x 3 tiles are not used here
  k.of(GgmlType::F16).tile4x3 = nullptr;
  k.of(GgmlType::BF16).tile4x3 = nullptr;
  // Prefill GEMM: AVX2's panel packing (fp32) and weight conversions, 16-wide fp32 tiles and
  // VNNI tiles for Q4_0 and Q8_0 (so not AVX2's int16 Q8_0 tiles), 32 tokens per call.
  k.gemm_panel = MAMBALITE_AVX512_NS::gemm_panel;
  k.pack_panel_q4_0 = nullptr;
  k.gemm_panel_q4_0 = nullptr;
  k.pack_panel_q8_0 = nullptr;
  k.q8_0_to_i16 = nullptr;
  k.gemm_panel_q8_0 = nullptr;
  k.pack_panel_u8 = MAMBALITE_AVX512_NS::pack_panel_u8;
  k.q8_0_to_u8 = MAMBALITE_AVX512_NS::q8_0_to_u8;
  k.offset_to_u8 = MAMBALITE_AVX512_NS::offset_to_u8;
  k.gemm_panel_u8 = MAMBALITE_AVX512_NS::gemm_panel_u8;
  k.gemm_blocks_u8 = MAMBALITE_AVX512_NS::gemm_blocks_u8;
  k.gemm_cols = 32;
  k.stream_sum = stream_sum;
  return k;
}

}  // namespace

#if defined(MAMBALITE_AVX512_EMULATED)
const KernelTable& avx512_emulated_kernels() {
#else
const KernelTable& avx512_kernels() {
#endif
  static const KernelTable k = make_table();
  return k;
}

}  // namespace mambalite
