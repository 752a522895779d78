// AVX-512 prefill GEMM (built like kernels_avx512.cpp, and like it also through SIMDe for the
// kernel test): the outer-product tiles of gemm_avx2.cpp, 16 tokens per vector and 32 per call
// (gemm_cols), 6 rows x 32 tokens in twelve accumulators.
//
// - fp32: one broadcast weight meets 16 tokens per multiply-add, 32 products per cycle on the
//   two 512-bit FMA pipes where AVX2 has 16.
// - Q4_0 and Q8_0 on VNNI: the weights as unsigned bytes (Q4_0's nibbles, Q8_0's values + 128),
//   the activations' int8 values in quads of depth, and vpdpbusd sums four byte products per
//   32-bit lane into int32: 64 multiply-adds per instruction, against AVX2's 32 (Q4_0, maddubs)
//   and 16 (Q8_0, vpmaddwd). Each block's sums start from the panel's correction -offset *
//   sum(x), so they end as the exact sum(q * x) of the dot products; the fold is one multiply-add
//   by d_w * d_x.
// - The offset types (Q4_K, Q5_K, Q5_0, Q4_1, Q5_1: w = d * q + o per block, q unsigned) on the
//   same tiles: their values as they are, the offsets added through the activations' block sums.
#include "kernels/avx512/gemm_avx512.h"

#include <algorithm>
#include <cstring>

#include "format/quant_blocks.h"
#include "kernels/avx512/avx512_compat.h"
#include "kernels/avx512/gemm_tiles_avx512.h"
#include "kernels/kquants_generic.h"

namespace mambalite {
namespace MAMBALITE_AVX512_NS {
namespace {

// One step of a tile row: c0/c1 += w_r[k] * (a0, a1); the second vector only when V = 2.
template <int V>
inline void row_step(const float* wr, __m512 a0, __m512 a1, __m512& c0, __m512& c1) {
  const __m512 b = _mm512_set1_ps(*wr);
  c0 = _mm512_fmadd_ps(b, a0, c0);
  if (V > 1) c1 = _mm512_fmadd_ps(b, a1, c1);
}

// c (R, 32) = w (R rows of K, stride ldw) @ p (K, ldp) columns [0, 16 (V - 1)) and the lanes of
// `last` of the next 16. Named accumulators, as in gemm_avx2.cpp (GCC 12 keeps an array of them
// in memory).
template <int R, int V>
void gemm_tile(int64_t K, const float* w, int64_t ldw, const float* p, int64_t ldp, uint16_t last,
               float* c) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 c00 = zero, c01 = zero, c10 = zero, c11 = zero, c20 = zero, c21 = zero, c30 = zero,
         c31 = zero, c40 = zero, c41 = zero, c50 = zero, c51 = zero;
  const float* w0 = w;
  const float* w1 = w + (R > 1 ? ldw : 0);
  const float* w2 = w + (R > 2 ? 2 * ldw : 0);
  const float* w3 = w + (R > 3 ? 3 * ldw : 0);
  const float* w4 = w + (R > 4 ? 4 * ldw : 0);
  const float* w5 = w + (R > 5 ? 5 * ldw : 0);
  for (int64_t k = 0; k < K; ++k, p += ldp) {
    const __m512 a0 = V > 1 ? _mm512_loadu_ps(p) : maskz_load_ps(last, p);
    const __m512 a1 = V > 1 ? maskz_load_ps(last, p + kLanes) : zero;
    row_step<V>(w0 + k, a0, a1, c00, c01);
    if (R > 1) row_step<V>(w1 + k, a0, a1, c10, c11);
    if (R > 2) row_step<V>(w2 + k, a0, a1, c20, c21);
    if (R > 3) row_step<V>(w3 + k, a0, a1, c30, c31);
    if (R > 4) row_step<V>(w4 + k, a0, a1, c40, c41);
    if (R > 5) row_step<V>(w5 + k, a0, a1, c50, c51);
  }
  const __m512 out[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) _mm512_storeu_ps(c + 2 * kLanes * r + kLanes * v, out[r][v]);
  }
}

// s0/s1 += four-byte products of the broadcast weight quad with (a0, a1).
template <int V>
inline void row_step_u8(const uint8_t* wq, __m512i a0, __m512i a1, __m512i& s0, __m512i& s1) {
  int32_t q;
  std::memcpy(&q, wq, 4);
  const __m512i b = _mm512_set1_epi32(q);
  s0 = _mm512_dpbusd_epi32(s0, b, a0);
  keep_in_register(s0);
  if (V > 1) {
    s1 = _mm512_dpbusd_epi32(s1, b, a1);
    keep_in_register(s1);
  }
}

// c (R, 32) = R rows of unsigned weight bytes (w, row stride ldw; scales dw, row stride ldd) @
// the panel's quads pq and block words ps over nb blocks, columns as in gemm_tile.
template <int R, int V>
void gemm_tile_u8(int64_t nb, const uint8_t* w, int64_t ldw, const float* dw, int64_t ldd,
                  const uint8_t* pq, const float* ps, int64_t ldp, uint16_t last, float* c) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 f00 = zero, f01 = zero, f10 = zero, f11 = zero, f20 = zero, f21 = zero, f30 = zero,
         f31 = zero, f40 = zero, f41 = zero, f50 = zero, f51 = zero;
  const uint16_t m0 = V > 1 ? 0xFFFF : last;
  for (int64_t b = 0; b < nb; ++b, pq += kQK * ldp, ps += 2 * ldp) {
    // Each token's correction -offset * sum(x) starts its sums.
    const __m512i o0 = maskz_load_epi32(m0, ps + ldp);
    const __m512i o1 = V > 1 ? maskz_load_epi32(last, ps + ldp + kLanes) : _mm512_setzero_si512();
    __m512i s00 = o0, s01 = o1, s10 = o0, s11 = o1, s20 = o0, s21 = o1, s30 = o0, s31 = o1,
            s40 = o0, s41 = o1, s50 = o0, s51 = o1;
    const uint8_t* wb = w + kQK * b;
    for (int j = 0; j < kQK / 4; ++j) {  // quads of depth
      const uint8_t* a = pq + j * ldp * 4;
      const __m512i a0 = maskz_load_epi32(m0, a);
      const __m512i a1 = V > 1 ? maskz_load_epi32(last, a + 4 * kLanes) : _mm512_setzero_si512();
      row_step_u8<V>(wb + 4 * j, a0, a1, s00, s01);
      if (R > 1) row_step_u8<V>(wb + ldw + 4 * j, a0, a1, s10, s11);
      if (R > 2) row_step_u8<V>(wb + 2 * ldw + 4 * j, a0, a1, s20, s21);
      if (R > 3) row_step_u8<V>(wb + 3 * ldw + 4 * j, a0, a1, s30, s31);
      if (R > 4) row_step_u8<V>(wb + 4 * ldw + 4 * j, a0, a1, s40, s41);
      if (R > 5) row_step_u8<V>(wb + 5 * ldw + 4 * j, a0, a1, s50, s51);
    }
    const __m512 d0 = maskz_load_ps(m0, ps);
    const __m512 d1 = V > 1 ? maskz_load_ps(last, ps + kLanes) : zero;
    f00 = fold(s00, d0, dw[b], f00);
    if (V > 1) f01 = fold(s01, d1, dw[b], f01);
    if (R > 1) {
      f10 = fold(s10, d0, dw[ldd + b], f10);
      if (V > 1) f11 = fold(s11, d1, dw[ldd + b], f11);
    }
    if (R > 2) {
      f20 = fold(s20, d0, dw[2 * ldd + b], f20);
      if (V > 1) f21 = fold(s21, d1, dw[2 * ldd + b], f21);
    }
    if (R > 3) {
      f30 = fold(s30, d0, dw[3 * ldd + b], f30);
      if (V > 1) f31 = fold(s31, d1, dw[3 * ldd + b], f31);
    }
    if (R > 4) {
      f40 = fold(s40, d0, dw[4 * ldd + b], f40);
      if (V > 1) f41 = fold(s41, d1, dw[4 * ldd + b], f41);
    }
    if (R > 5) {
      f50 = fold(s50, d0, dw[5 * ldd + b], f50);
      if (V > 1) f51 = fold(s51, d1, dw[5 * ldd + b], f51);
    }
  }
  const __m512 out[6][2] = {{f00, f01}, {f10, f11}, {f20, f21}, {f30, f31}, {f40, f41}, {f50, f51}};
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) _mm512_storeu_ps(c + 2 * kLanes * r + kLanes * v, out[r][v]);
  }
}

// As gemm_tile_u8 for a panel of at most 8 tokens (ldp 8) in octets: each vector holds the 8
// tokens' next 8 values (token t in 64-bit lane t), times a broadcast of the row's 8 weight
// bytes, so that all 16 lanes work where the quad layout would leave half of them idle; lanes 2t
// and 2t + 1 hold token t's two quad sums, added after the blocks. The block words are as
// pack_panel_u8's for ldp 8, widened here to both lanes of each token.
template <int R>
void gemm_tile_u8_octets(int64_t nb, const uint8_t* w, int64_t ldw, const float* dw, int64_t ldd,
                         const uint8_t* po, const float* ps, float* c) {
  const __m512i pairs = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  __m512 f[6];
  for (int r = 0; r < R; ++r) f[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, po += kQK * 8, ps += 2 * 8) {
    const __m512 dx = _mm512_permutexvar_ps(pairs, _mm512_castps256_ps512(_mm256_loadu_ps(ps)));
    const __m512i o = _mm512_maskz_permutexvar_epi32(
        0x5555, pairs,
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ps + 8))));
    __m512i s[6];
    for (int r = 0; r < R; ++r) s[r] = o;
    const uint8_t* wb = w + kQK * b;
    for (int j = 0; j < kQK / 8; ++j) {  // octets of depth
      const __m512i a = _mm512_loadu_si512(po + 64 * j);
      for (int r = 0; r < R; ++r) {
        int64_t q;
        std::memcpy(&q, wb + r * ldw + 8 * j, 8);
        s[r] = _mm512_dpbusd_epi32(s[r], _mm512_set1_epi64(q), a);
        keep_in_register(s[r]);
      }
    }
    for (int r = 0; r < R; ++r) f[r] = fold(s[r], dx, dw[r * ldd + b], f[r]);
  }
  const __m512i evens = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odds = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 15, 13, 11, 9, 7, 5, 3, 1);
  for (int r = 0; r < R; ++r) {  // token t: lanes 2t + 2t + 1
    const __m512 sums =
        _mm512_add_ps(_mm512_permutexvar_ps(evens, f[r]), _mm512_permutexvar_ps(odds, f[r]));
    _mm256_storeu_ps(c + 2 * kLanes * r, _mm512_castps512_ps256(sums));
  }
}

// The tile of m rows and (v + 1) / 2 vectors from a table of Tile<R, V> instances.
template <typename Tile>
inline Tile pick(const Tile (&tiles)[2][6], int m, int v) {
  return tiles[v > 2 ? 1 : 0][std::clamp(m, 1, 6) - 1];
}

}  // namespace

void gemm_panel(int64_t K, const float* w, int64_t ldw, const float* p, int64_t ldp, int m, int v,
                float* c) {
  using Tile = void (*)(int64_t, const float*, int64_t, const float*, int64_t, uint16_t, float*);
  static constexpr Tile kTiles[2][6] = {{gemm_tile<1, 1>, gemm_tile<2, 1>, gemm_tile<3, 1>,
                                         gemm_tile<4, 1>, gemm_tile<5, 1>, gemm_tile<6, 1>},
                                        {gemm_tile<1, 2>, gemm_tile<2, 2>, gemm_tile<3, 2>,
                                         gemm_tile<4, 2>, gemm_tile<5, 2>, gemm_tile<6, 2>}};
  pick(kTiles, m, v)(K, w, ldw, p, ldp, last_mask(v), c);
}

// A panel of ldp 8 is laid out in octets for gemm_tile_u8_octets (8 bytes at (octet, token)),
// wider ones in quads (4 bytes at (quad, token)): both put depth k of token t at k * ldp bytes
// and a little, so the callers' offsets hold for either.
void pack_panel_u8(const uint8_t* act, size_t stride, int64_t n, int64_t K, uint8_t* p, int64_t ldp,
                   int offset) {
  const int64_t nb = K / kQK;
  const int group = ldp == 8 ? 8 : 4;                          // bytes of a token side by side
  uint32_t* words = reinterpret_cast<uint32_t*>(p + K * ldp);  // (nb, 2, ldp)
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t t = 0; t < ldp; ++t) {
    const ActQ8* row = t < n ? reinterpret_cast<const ActQ8*>(act + t * stride) : nullptr;
    for (int64_t b = 0; b < nb; ++b) {
      int32_t sum = 0;
      float d = 0.0f;
      for (int g = 0; g < kQK / group; ++g) {  // group g of the block: at depth b * 32 + g group
        uint8_t* dst = p + ((b * kQK / group + g) * ldp + t) * group;
        if (row != nullptr) {
          std::memcpy(dst, row[b].qs + g * group, static_cast<size_t>(group));
        } else {
          std::memset(dst, 0, static_cast<size_t>(group));
        }
      }
      if (row != nullptr) {
        // sum(x) from the unsigned sums of x + 128 in 8-byte groups.
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row[b].qs));
        const __m256i s = _mm256_sad_epu8(_mm256_xor_si256(v, flip), _mm256_setzero_si256());
        const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        sum = static_cast<int32_t>(_mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1)) - 128 * kQK;
        d = row[b].d;
      }
      const int32_t correction = -offset * sum;
      std::memcpy(words + (2 * b) * ldp + t, &d, 4);
      std::memcpy(words + (2 * b + 1) * ldp + t, &correction, 4);
    }
  }
}

void q8_0_to_u8(const uint8_t* row, int64_t n, uint8_t* q, float* d) {
  const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(row);
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t j = 0; j < n / kQK; ++j) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[j].qs));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + kQK * j), _mm256_xor_si256(v, flip));
    d[j] = half_to_float(b[j].d);
  }
}

void offset_to_u8(GgmlType type, const uint8_t* row, int64_t n, uint8_t* q, float* d, float* o) {
  kquants::to_offset(type, row, n, q, d, o);
}

void gemm_panel_u8(int64_t K, const uint8_t* w, int64_t ldw, const float* dw, int64_t ldd,
                   const uint8_t* pq, const float* ps, int64_t ldp, int m, int v, float* c) {
  using Tile = void (*)(int64_t, const uint8_t*, int64_t, const float*, int64_t, const uint8_t*,
                        const float*, int64_t, uint16_t, float*);
  static constexpr Tile kTiles[2][6] = {
      {gemm_tile_u8<1, 1>, gemm_tile_u8<2, 1>, gemm_tile_u8<3, 1>, gemm_tile_u8<4, 1>,
       gemm_tile_u8<5, 1>, gemm_tile_u8<6, 1>},
      {gemm_tile_u8<1, 2>, gemm_tile_u8<2, 2>, gemm_tile_u8<3, 2>, gemm_tile_u8<4, 2>,
       gemm_tile_u8<5, 2>, gemm_tile_u8<6, 2>}};
  if (ldp == 8) {
    using Octets = void (*)(int64_t, const uint8_t*, int64_t, const float*, int64_t, const uint8_t*,
                            const float*, float*);
    static constexpr Octets kOctets[6] = {gemm_tile_u8_octets<1>, gemm_tile_u8_octets<2>,
                                          gemm_tile_u8_octets<3>, gemm_tile_u8_octets<4>,
                                          gemm_tile_u8_octets<5>, gemm_tile_u8_octets<6>};
    kOctets[std::clamp(m, 1, 6) - 1](K / kQK, w, ldw, dw, ldd, pq, ps, c);
    return;
  }
  pick(kTiles, m, v)(K / kQK, w, ldw, dw, ldd, pq, ps, ldp, last_mask(v), c);
}

}  // namespace MAMBALITE_AVX512_NS
}  // namespace mambalite
