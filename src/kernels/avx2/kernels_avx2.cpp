// AVX2 + FMA + F16C kernels (x86-64, Haswell and later). Built with -mavx2 -mfma -mf16c and used
// only when the CPU reports all three.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "format/fp16.h"
#include "kernels/avx2/attention_avx2.h"
#include "kernels/avx2/gemm_avx2.h"
#include "kernels/avx2/kquants_avx2.h"
#include "kernels/avx2/scan_avx2.h"
#include "kernels/avx2/simd_avx2.h"
#include "kernels/decay_runs.h"
#include "kernels/kernels.h"

namespace mambalite {
namespace {

#include "kernels/kernels_common.inc"

using avx2::exp8;
using avx2::hsum;
using avx2::kPrefetchBytes;
using avx2::load32;
using avx2::mul_sum_u4_i8;
using avx2::nibbles_q4_0;
using avx2::prefetch_two_levels;
using avx2::silu8;

// Four independent accumulators over 8-wide loads; `load(i)` gives w[i, i + 8) as floats and
// `scalar(i)` one value for the tail.
// `w` and `elem` (bytes per value) give the prefetch address.
template <typename Load, typename Scalar>
inline float dot8(int64_t n, const float* x, const uint8_t* w, int elem, Load load, Scalar scalar) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    // f32 rows are plain streaming, which the hardware prefetcher handles; the 16-bit types do
    // enough work per byte to benefit from software prefetch.
    if (elem == 2) {
      _mm_prefetch(reinterpret_cast<const char*>(w + i * elem) + kPrefetchBytes, _MM_HINT_T0);
    }
    a0 = _mm256_fmadd_ps(load(i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(load(i + 8), _mm256_loadu_ps(x + i + 8), a1);
    a2 = _mm256_fmadd_ps(load(i + 16), _mm256_loadu_ps(x + i + 16), a2);
    a3 = _mm256_fmadd_ps(load(i + 24), _mm256_loadu_ps(x + i + 24), a3);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load(i), _mm256_loadu_ps(x + i), a0);
  float sum = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < n; ++i) sum += scalar(i) * x[i];
  return sum;
}

float dot_f32(int64_t n, const uint8_t* w, const float* x) {
  const float* a = reinterpret_cast<const float*>(w);
  return dot8(
      n, x, w, 4, [a](int64_t i) { return _mm256_loadu_ps(a + i); },
      [a](int64_t i) { return a[i]; });
}

float dot_f16(int64_t n, const uint8_t* w, const float* x) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(w);
  return dot8(
      n, x, w, 2,
      [h](int64_t i) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i)));
      },
      [h](int64_t i) { return fp16_to_fp32(h[i]); });
}

float dot_bf16(int64_t n, const uint8_t* w, const float* x) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(w);
  return dot8(
      n, x, w, 2,
      [h](int64_t i) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
      },
      [h](int64_t i) { return bf16_to_fp32(h[i]); });
}

// Sum of w[j] * x[j] over 32 int8 pairs, as 8 int32 lanes converted to float.
inline __m256 mul_sum_i8(__m256i w, __m256i x) {
  const __m256i ax = _mm256_sign_epi8(w, w);  // |w| (as unsigned)
  const __m256i sx = _mm256_sign_epi8(x, w);  // x * sign(w)
  const __m256i dot16 = _mm256_maddubs_epi16(ax, sx);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(dot16, _mm256_set1_epi16(1)));
}

float dot_q8_0(int64_t n, const uint8_t* w, const ActQ8* x) {
  const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(w);
  const int64_t nb = n / kQK;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    _mm_prefetch(reinterpret_cast<const char*>(b + i) + kPrefetchBytes, _MM_HINT_T0);
    const __m256 d0 = _mm256_set1_ps(_cvtsh_ss(b[i].d) * x[i].d);
    const __m256 d1 = _mm256_set1_ps(_cvtsh_ss(b[i + 1].d) * x[i + 1].d);
    acc0 = _mm256_fmadd_ps(d0, mul_sum_i8(load32(b[i].qs), load32(x[i].qs)), acc0);
    acc1 = _mm256_fmadd_ps(d1, mul_sum_i8(load32(b[i + 1].qs), load32(x[i + 1].qs)), acc1);
  }
  for (; i < nb; ++i) {
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[i].d) * x[i].d);
    acc0 = _mm256_fmadd_ps(d, mul_sum_i8(load32(b[i].qs), load32(x[i].qs)), acc0);
  }
  return hsum(_mm256_add_ps(acc0, acc1));
}

// The fp16 scales of Q4_0 blocks b[0..8) in the order 0, 2, 4, 6, 1, 3, 5, 7. A 32-byte load at
// block 2k (byte 36k) holds its scale in bytes 0-1 of the low lane and block 2k + 1's in bytes
// 2-3 of the high lane (byte 18); one pshufb per load moves them to 16-bit lane k, so that the
// low lane collects the even blocks and the high lane the odd ones. The loads stay inside the
// group's 144 bytes (faster than gathers or inserts: docs/kernels.md).
alignas(32) constexpr int8_t kQ4ScaleShuffle[4][32] = {
    {0, 1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
     2, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
    {-1, -1, 0, 1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
     -1, -1, 2, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
    {-1, -1, -1, -1, 0, 1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
     -1, -1, -1, -1, 2, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
    {-1, -1, -1, -1, -1, -1, 0, 1, -1, -1, -1, -1, -1, -1, -1, -1,
     -1, -1, -1, -1, -1, -1, 2, 3, -1, -1, -1, -1, -1, -1, -1, -1}};

inline __m256 q4_0_scales8(const BlockQ4_0* b) {
  const int8_t* p = reinterpret_cast<const int8_t*>(b);
  __m256i h = _mm256_setzero_si256();
  for (int k = 0; k < 4; ++k) {
    const __m256i m = _mm256_load_si256(reinterpret_cast<const __m256i*>(kQ4ScaleShuffle[k]));
    h = _mm256_or_si256(h, _mm256_shuffle_epi8(load32(p + 36 * k), m));
  }
  // 64-bit lanes 0 (scales of blocks 0, 2, 4, 6) and 2 (1, 3, 5, 7) into the low 128 bits.
  return _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(h, 0x08)));
}

// Groups of 8 Q4_0 blocks against a row's ActQ4Group copies: each register holds two weight
// blocks' low (or high) nibbles. unpack_q4_0_group splits the weights; group_sums_q4_0 gives the
// 8 blocks' sums sum(q * x) of one activation row in one vector (one lane per block, in the
// ActQ4Group order), reduced by hadds so that the scales apply with two multiply-adds per group.
struct Q4Group {
  __m256i lo[4], hi[4];  // pair p: low (high) nibbles of blocks 2p and 2p + 1
};

inline Q4Group unpack_q4_0_group(const BlockQ4_0* b) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  Q4Group g;
  for (int p = 0; p < 4; ++p) {
    const __m256i q = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(b[2 * p + 1].qs),
                                          reinterpret_cast<const __m128i*>(b[2 * p].qs));
    g.lo[p] = _mm256_and_si256(q, m4);
    g.hi[p] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
  }
  return g;
}

inline __m256 group_sums_q4_0(const Q4Group& w, const ActQ4Group& x) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i sums[4];  // pair p: 4 int32 partial sums of block 2p, then 4 of block 2p + 1
  for (int p = 0; p < 4; ++p) {
    // Each maddubs lane is at most 2 * 15 * 127, so two of them add without overflow.
    const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(w.lo[p], load32(x.qs + 64 * p)),
                                         _mm256_maddubs_epi16(w.hi[p], load32(x.qs + 64 * p + 32)));
    sums[p] = _mm256_madd_epi16(p16, ones);
  }
  return _mm256_cvtepi32_ps(
      _mm256_hadd_epi32(_mm256_hadd_epi32(sums[0], sums[1]), _mm256_hadd_epi32(sums[2], sums[3])));
}

// acc += dw * (dx * sums - 8 * s), lane by lane over a group.
inline __m256 scale_group_q4_0(__m256 dw, __m256 sums, const ActQ4Group& x, __m256 acc) {
  return _mm256_fmadd_ps(dw, _mm256_fmadd_ps(_mm256_loadu_ps(x.d), sums, _mm256_loadu_ps(x.m8s)),
                         acc);
}

// One Q4_0 block: dw * dx * sum(q * x) into acc, dw * s into *offset.
inline __m256 block_q4_0(const BlockQ4_0& b, const ActQ8& x, __m256 acc, float* offset) {
  const float dw = _cvtsh_ss(b.d);
  *offset += dw * x.s;
  return _mm256_fmadd_ps(_mm256_set1_ps(dw * x.d), mul_sum_u4_i8(nibbles_q4_0(b.qs), load32(x.qs)),
                         acc);
}

float dot_q4_0(int64_t n, const uint8_t* w, const ActQ8* x) {
  const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(w);
  const int64_t nb = n / kQK;
  const ActQ4Group* g = reinterpret_cast<const ActQ4Group*>(x + nb);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= nb; i += 8, ++g) {
    const char* pf = reinterpret_cast<const char*>(b + i) + kPrefetchBytes;
    _mm_prefetch(pf, _MM_HINT_T0);
    _mm_prefetch(pf + 64, _MM_HINT_T0);
    _mm_prefetch(pf + 128, _MM_HINT_T0);
    acc = scale_group_q4_0(q4_0_scales8(b + i), group_sums_q4_0(unpack_q4_0_group(b + i), *g), *g,
                           acc);
  }
  float offset = 0.0f;
  for (; i < nb; ++i) acc = block_q4_0(b[i], x[i], acc, &offset);
  return hsum(acc) - 8.0f * offset;
}

// Q6_K: each 32-value activation block meets one 32-byte slice of ql (low or high nibbles) plus
// two bits of each qh byte, and two 16-value sub-blocks with their own int8 scales. The 6-bit
// values stay unsigned for maddubs, and the row's ActQ6Offset sums take the 32 offset back out
// in int16 (|sum| <= 2 * 32 * 127). Each chunk's int32 sums are scaled by its activation scale
// into one of two accumulators, and the super-block scale d is applied once per super-block.
float dot_q6_k(int64_t n, const uint8_t* w, const ActQ8* x) {
  const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(w);
  const ActQ6Offset* o = reinterpret_cast<const ActQ6Offset*>(x + n / kQK);
  const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  // Chunk c's scales: int16 scale 2c in every low-lane word, 2c + 1 in every high-lane word.
  const __m256i kScale[4] = {
      _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
                       2, 3, 2, 3, 2, 3),
      _mm256_setr_epi8(4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7,
                       6, 7, 6, 7, 6, 7),
      _mm256_setr_epi8(8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 10, 11, 10, 11, 10, 11, 10,
                       11, 10, 11, 10, 11, 10, 11, 10, 11),
      _mm256_setr_epi8(12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 14, 15, 14,
                       15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15)};
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const char* pf = reinterpret_cast<const char*>(b + i) + kPrefetchBytes;
    _mm_prefetch(pf, _MM_HINT_T0);
    _mm_prefetch(pf + 64, _MM_HINT_T0);
    _mm_prefetch(pf + 128, _MM_HINT_T0);
    _mm_prefetch(pf + 192, _MM_HINT_T0);
    const ActQ8* xb = x + i * (kQKK / kQK);
    const ActQ6Offset* ob = o + i * (kQKK / kQK);
    __m256 a[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = b[i].ql + 64 * half;
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qh + 32 * half));
      // q = low 4 bits | 2 high bits << 4; bits 2c, 2c + 1 of h moved to bits 4, 5 of each byte.
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30)),
          _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                          _mm256_and_si256(_mm256_srli_epi16(h, 2), m30))};
      const __m128i sc8 = _mm_cvtepi8_epi16(
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[i].scales + 8 * half)));
      const __m256i sc = _mm256_broadcastsi128_si256(sc8);
      for (int c = 0; c < 4; ++c) {
        const int blk = 4 * half + c;
        const __m256i p16 =
            _mm256_sub_epi16(_mm256_maddubs_epi16(q[c], load32(xb[blk].qs)),
                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ob[blk].s32)));
        const __m256 v =
            _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_shuffle_epi8(sc, kScale[c])));
        a[c & 1] = _mm256_fmadd_ps(v, _mm256_set1_ps(xb[blk].d), a[c & 1]);
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(b[i].d)), _mm256_add_ps(a[0], a[1]), acc);
  }
  return hsum(acc);
}

// Four tokens at once: each 8-wide weight load is used by four FMAs (two accumulators per token
// to hide FMA latency).
template <typename Load, typename Scalar>
inline void dot8x4(int64_t n, const uint8_t* xb, size_t stride, Load load, Scalar scalar,
                   float* out) {
  const float* x[4];
  for (int t = 0; t < 4; ++t) x[t] = reinterpret_cast<const float*>(xb + t * stride);
  __m256 a[4], b[4];
  for (int t = 0; t < 4; ++t) a[t] = b[t] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 w0 = load(i), w1 = load(i + 8);
    for (int t = 0; t < 4; ++t) {
      a[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[t] + i), a[t]);
      b[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[t] + i + 8), b[t]);
    }
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 w0 = load(i);
    for (int t = 0; t < 4; ++t) a[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[t] + i), a[t]);
  }
  for (int t = 0; t < 4; ++t) {
    float sum = hsum(_mm256_add_ps(a[t], b[t]));
    for (int64_t j = i; j < n; ++j) sum += scalar(j) * x[t][j];
    out[t] = sum;
  }
}

void dot4_f32(int64_t n, const uint8_t* w, const uint8_t* x, size_t stride, float* out) {
  const float* a = reinterpret_cast<const float*>(w);
  dot8x4(
      n, x, stride, [a](int64_t i) { return _mm256_loadu_ps(a + i); },
      [a](int64_t i) { return a[i]; }, out);
}

void dot4_f16(int64_t n, const uint8_t* w, const uint8_t* x, size_t stride, float* out) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(w);
  dot8x4(
      n, x, stride,
      [h](int64_t i) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i)));
      },
      [h](int64_t i) { return fp16_to_fp32(h[i]); }, out);
}

void dot4_bf16(int64_t n, const uint8_t* w, const uint8_t* x, size_t stride, float* out) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(w);
  dot8x4(
      n, x, stride,
      [h](int64_t i) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
      },
      [h](int64_t i) { return bf16_to_fp32(h[i]); }, out);
}

// 4 weight rows x T activation rows; `load(row, i)` gives row[i, i + 8) as floats, `scalar(row,
// i)` one value. 4T accumulators; each weight vector serves T tokens and each activation vector
// four rows. T = 3 fills the 16 registers (12 accumulators, 3 activations and the weight).
template <int T, typename Load, typename Scalar>
inline void tile4xT(int64_t n, const uint8_t* w, size_t row_bytes, const uint8_t* xb, size_t stride,
                    Load load, Scalar scalar, float* out) {
  const float* x[T];
  for (int t = 0; t < T; ++t) x[t] = reinterpret_cast<const float*>(xb + t * stride);
  const uint8_t* rows[4] = {w, w + row_bytes, w + 2 * row_bytes, w + 3 * row_bytes};
  __m256 a[4][T];
  for (int r = 0; r < 4; ++r) {
    for (int t = 0; t < T; ++t) a[r][t] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v[T];
    for (int t = 0; t < T; ++t) v[t] = _mm256_loadu_ps(x[t] + i);
    for (int r = 0; r < 4; ++r) {
      const __m256 wr = load(rows[r], i);
      for (int t = 0; t < T; ++t) a[r][t] = _mm256_fmadd_ps(wr, v[t], a[r][t]);
    }
  }
  for (int r = 0; r < 4; ++r) {
    for (int t = 0; t < T; ++t) {
      float sum = hsum(a[r][t]);
      for (int64_t j = i; j < n; ++j) sum += scalar(rows[r], j) * x[t][j];
      out[T * r + t] = sum;
    }
  }
}

template <int T>
void tile4xT_f32(int64_t n, const uint8_t* w, size_t row_bytes, const uint8_t* x, size_t stride,
                 float* out) {
  tile4xT<T>(
      n, w, row_bytes, x, stride,
      [](const uint8_t* row, int64_t i) {
        return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
      },
      [](const uint8_t* row, int64_t i) { return reinterpret_cast<const float*>(row)[i]; }, out);
}

template <int T>
void tile4xT_f16(int64_t n, const uint8_t* w, size_t row_bytes, const uint8_t* x, size_t stride,
                 float* out) {
  tile4xT<T>(
      n, w, row_bytes, x, stride,
      [](const uint8_t* row, int64_t i) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
      },
      [](const uint8_t* row, int64_t i) {
        return fp16_to_fp32(reinterpret_cast<const uint16_t*>(row)[i]);
      },
      out);
}

template <int T>
void tile4xT_bf16(int64_t n, const uint8_t* w, size_t row_bytes, const uint8_t* x, size_t stride,
                  float* out) {
  tile4xT<T>(
      n, w, row_bytes, x, stride,
      [](const uint8_t* row, int64_t i) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
      },
      [](const uint8_t* row, int64_t i) {
        return bf16_to_fp32(reinterpret_cast<const uint16_t*>(row)[i]);
      },
      out);
}

// Integer dot products of one weight block (already as int8 in `wq`) with four activation rows.
template <typename Unpack>
inline void dot_q_x4(int64_t n, const uint8_t* w, size_t block_bytes, Unpack unpack,
                     const uint8_t* xb, size_t stride, float* out) {
  const ActQ8* x[4];
  for (int t = 0; t < 4; ++t) x[t] = reinterpret_cast<const ActQ8*>(xb + t * stride);
  __m256 acc[4];
  for (int t = 0; t < 4; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const uint8_t* blk = w + i * block_bytes;
    uint16_t dbits;
    std::memcpy(&dbits, blk, 2);
    const float dw = _cvtsh_ss(dbits);
    const __m256i wq = unpack(blk + 2);
    const __m256i aw = _mm256_sign_epi8(wq, wq);
    for (int t = 0; t < 4; ++t) {
      const __m256i sx = _mm256_sign_epi8(load32(x[t][i].qs), wq);
      const __m256 dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x[t][i].d), dot, acc[t]);
    }
  }
  for (int t = 0; t < 4; ++t) out[t] = hsum(acc[t]);
}

void dot4_q8_0(int64_t n, const uint8_t* w, const uint8_t* x, size_t stride, float* out) {
  dot_q_x4(
      n, w, sizeof(BlockQ8_0),
      [](const uint8_t* qs) { return load32(reinterpret_cast<const int8_t*>(qs)); }, x, stride,
      out);
}

// Four tokens: each group's weights are unpacked once for the four activation rows.
void dot4_q4_0(int64_t n, const uint8_t* w, const uint8_t* xb, size_t stride, float* out) {
  const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(w);
  const int64_t nb = n / kQK;
  const ActQ8* x[4];
  for (int t = 0; t < 4; ++t) x[t] = reinterpret_cast<const ActQ8*>(xb + t * stride);
  __m256 acc[4];
  for (int t = 0; t < 4; ++t) acc[t] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= nb; i += 8) {
    const __m256 dw = q4_0_scales8(b + i);
    const Q4Group q = unpack_q4_0_group(b + i);
    for (int t = 0; t < 4; ++t) {
      const ActQ4Group& g = reinterpret_cast<const ActQ4Group*>(x[t] + nb)[i / 8];
      acc[t] = scale_group_q4_0(dw, group_sums_q4_0(q, g), g, acc[t]);
    }
  }
  float offset[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (; i < nb; ++i) {
    for (int t = 0; t < 4; ++t) acc[t] = block_q4_0(b[i], x[t][i], acc[t], &offset[t]);
  }
  for (int t = 0; t < 4; ++t) out[t] = hsum(acc[t]) - 8.0f * offset[t];
}

// Same values as the scalar version: max |x|, d = amax / 127, q = round-half-even(x * (1/d)).
void quantize_act(const float* x, int64_t n, ActQ8* out) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(x + 8 * j);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[j]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float d = _mm_cvtss_f32(m) / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    out[i].d = d;
    __m256i q[4];
    for (int j = 0; j < 4; ++j) q[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], id));
    const __m256i qsum =
        _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(qsum), _mm256_extracti128_si256(qsum, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    out[i].s = d * static_cast<float>(_mm_cvtsi128_si32(s4));
    // Pack 32 int32 to 32 int8 (packs work within 128-bit lanes; the permute restores order).
    const __m256i p16a = _mm256_packs_epi32(q[0], q[1]);
    const __m256i p16b = _mm256_packs_epi32(q[2], q[3]);
    const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    const __m256i fixed =
        _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[i].qs), fixed);
  }
}

// softplus(v) = max(v, 0) + log1p(u) with u = exp(-|v|) in (0, 1], and
// log1p(u) = log(m) + (u - (m - 1)) / m with m = 1 + u in (1, 2]: the second term puts back the
// low bits of u that rounding m lost. log(m) is Cephes' logf (about 1 ulp) specialised to [1, 2]:
// m - 1, or m / 2 - 1 plus ln 2 above sqrt(2), both exact. Above 20 the result is v itself, as in
// PyTorch.
inline __m256 softplus8(__m256 v) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 u = exp8(_mm256_or_ps(v, _mm256_set1_ps(-0.0f)));
  const __m256 m = _mm256_add_ps(one, u);
  const __m256 hi = _mm256_cmp_ps(m, _mm256_set1_ps(1.41421356237f), _CMP_GE_OQ);
  const __m256 e = _mm256_and_ps(hi, one);
  const __m256 x =
      _mm256_sub_ps(_mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), hi), one);
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 y = _mm256_set1_ps(7.0376836292e-2f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(-1.1514610310e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.1676998740e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(-1.2420140846e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.4249322787e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(-1.6668057665e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(2.0000714765e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(-2.4999993993e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(3.3333331174e-1f));
  y = _mm256_mul_ps(_mm256_mul_ps(y, x), z);
  y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
  y = _mm256_fnmadd_ps(_mm256_set1_ps(0.5f), z, y);
  __m256 r = _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), _mm256_add_ps(x, y));
  r = _mm256_add_ps(r, _mm256_div_ps(_mm256_sub_ps(u, _mm256_sub_ps(m, one)), m));
  const __m256 sp = _mm256_add_ps(_mm256_max_ps(v, _mm256_setzero_ps()), r);
  return _mm256_blendv_ps(sp, v, _mm256_cmp_ps(v, _mm256_set1_ps(20.0f), _CMP_GT_OQ));
}

void softplus_bias(int64_t n, const float* x, const float* bias, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i,
                     softplus8(_mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(bias + i))));
  }
  if (i < n) {  // the tail through a padded vector, so every element gets the same arithmetic
    float a[8] = {0}, b[8] = {0};
    std::memcpy(a, x + i, static_cast<size_t>(n - i) * sizeof(float));
    std::memcpy(b, bias + i, static_cast<size_t>(n - i) * sizeof(float));
    _mm256_storeu_ps(a, softplus8(_mm256_add_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(b))));
    std::memcpy(out + i, a, static_cast<size_t>(n - i) * sizeof(float));
  }
}

inline void silu_row(int64_t n, float* v) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, silu8(_mm256_loadu_ps(v + i)));
  for (; i < n; ++i) v[i] = silu(v[i]);
}

uint64_t stream_sum(const uint64_t* p, int64_t n) {
  __m256i a = _mm256_setzero_si256(), b = a;
  for (int64_t i = 0; i < n; i += 8) {  // one cache line per step
    _mm_prefetch(reinterpret_cast<const char*>(p + i) + kPrefetchBytes, _MM_HINT_T0);
    a = _mm256_add_epi64(a, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    b = _mm256_add_epi64(b, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(a, b));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

KernelTable make_table() {
  KernelTable k;
  k.name = "avx2";
  k.of(GgmlType::F32).dot = dot_as<float, dot_f32>;
  k.of(GgmlType::F16).dot = dot_as<float, dot_f16>;
  k.of(GgmlType::BF16).dot = dot_as<float, dot_bf16>;
  k.of(GgmlType::Q8_0).dot = dot_as<ActQ8, dot_q8_0>;
  k.of(GgmlType::Q4_0).dot = dot_as<ActQ8, dot_q4_0>;
  k.of(GgmlType::Q6_K).dot = dot_as<ActQ8, dot_q6_k>;
  k.of(GgmlType::F32).dot4 = dot4_f32;
  k.of(GgmlType::F16).dot4 = dot4_f16;
  k.of(GgmlType::BF16).dot4 = dot4_bf16;
  k.of(GgmlType::Q8_0).dot4 = dot4_q8_0;
  k.of(GgmlType::Q4_0).dot4 = dot4_q4_0;
  k.of(GgmlType::F32).tile4x2 = tile4xT_f32<2>;
  k.of(GgmlType::F16).tile4x2 = tile4xT_f16<2>;
  k.of(GgmlType::BF16).tile4x2 = tile4xT_bf16<2>;
  k.quantize_act = quantize_act;
  k.rms_norm = rms_norm;
  k.softplus_bias = softplus_bias;
  k.conv_silu = conv_silu;
  k.selective_scan = avx2::selective_scan;
  k.head_scan = avx2::head_scan;
  k.of(GgmlType::F32).tile4x3 = tile4xT_f32<3>;
  k.of(GgmlType::F16).tile4x3 = tile4xT_f16<3>;
  k.of(GgmlType::BF16).tile4x3 = tile4xT_bf16<3>;
  k.pack_panel = avx2::pack_panel;
  k.row_to_f32 = avx2::row_to_f32;
  k.gemm_panel = avx2::gemm_panel;
  k.pack_panel_q4_0 = avx2::pack_panel_q4_0;
  k.q4_0_to_nibbles = avx2::q4_0_to_nibbles;
  k.gemm_panel_q4_0 = avx2::gemm_panel_q4_0;
  k.pack_panel_q8_0 = avx2::pack_panel_q8_0;
  k.q8_0_to_i16 = avx2::q8_0_to_i16;
  k.offset_to_i16 = avx2::offset_to_i16;
  k.gemm_panel_q8_0 = avx2::gemm_panel_q8_0;
  k.gemm_cols = 16;
  k.stream_sum = stream_sum;
  k.axpy_f16 = avx2::axpy_f16;
  k.attend_f16 = avx2::attend_f16;
  k.of(GgmlType::Q8_0).matvec = matvec_rows<ActQ8, dot_q8_0>;
  k.of(GgmlType::Q4_0).matvec = matvec_rows<ActQ8, dot_q4_0>;
  k.of(GgmlType::Q6_K).matvec = matvec_rows<ActQ8, dot_q6_k>;
  k.of(GgmlType::Q4_K).dot = dot_as<ActQ8, avx2::dot_q4_k>;
  k.of(GgmlType::Q5_K).dot = dot_as<ActQ8, avx2::dot_q5_k>;
  k.of(GgmlType::Q4_K).matvec = matvec_rows<ActQ8, avx2::dot_q4_k>;
  k.of(GgmlType::Q5_0).dot = dot_as<ActQ8, avx2::dot_q5_0>;
  k.of(GgmlType::Q5_0).matvec = matvec_rows<ActQ8, avx2::dot_q5_0>;
  k.of(GgmlType::Q4_1).dot = dot_as<ActQ8, avx2::dot_q4_1>;
  k.of(GgmlType::Q4_1).matvec = matvec_rows<ActQ8, avx2::dot_q4_1>;
  k.of(GgmlType::Q5_1).dot = dot_as<ActQ8, avx2::dot_q5_1>;
  k.of(GgmlType::Q5_1).matvec = matvec_rows<ActQ8, avx2::dot_q5_1>;
  k.of(GgmlType::Q5_K).matvec = matvec_rows<ActQ8, avx2::dot_q5_k>;
  return k;
}

}  // namespace

const KernelTable& avx2_kernels() {
  static const KernelTable k = make_table();  // built on first use
  return k;
}

}  // namespace mambalite
