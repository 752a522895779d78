// AVX-512 products on weight blocks read in place (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K): the VNNI tiles
// of gemm_avx512.cpp without its conversion pass. Each tile of rows runs the whole depth through
// every 32-token panel in turn, its rows read from memory once (prefetched a few tiles ahead)
// and then from L1. At a few tokens a converted weight byte is shared by too few products to pay
// for the trip through a buffer, and merging the conversion GEMM's pass-by-pass partial sums cost
// as much again; in prefill the same tiles were still 1-30% faster (kernels.cpp, reads_in_place).
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>

#include "format/quant_blocks.h"
#include "kernels/avx512/avx512_compat.h"
#include "kernels/avx512/gemm_avx512.h"
#include "kernels/avx512/gemm_tiles_avx512.h"
#include "kernels/kquants_generic.h"

namespace mambalite {
namespace MAMBALITE_AVX512_NS {
namespace {

// The weight bytes of octet j (depth 8 j to 8 j + 7) of a Q8_0 or Q4_0 block, broadcast to
// every 64-bit lane as unsigned values: Q8_0's flipped by 128, Q4_0's nibbles (elements i and
// i + 16 share byte i, so octets 0 and 1 are the low nibbles of bytes 0-7 and 8-15, octets 2 and
// 3 their high nibbles).
template <GgmlType T>
inline __m512i block_octet(const uint8_t* qs, int j) {
  int64_t q;
  if (T == GgmlType::Q8_0) {
    std::memcpy(&q, qs + 8 * j, 8);
    return _mm512_xor_si512(_mm512_set1_epi64(q), _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  std::memcpy(&q, qs + 8 * (j % 2), 8);
  const __m512i b = _mm512_set1_epi64(q);
  const __m512i nibbles = _mm512_set1_epi8(0x0F);
  return _mm512_and_si512(j < 2 ? b : _mm512_srli_epi16(b, 4), nibbles);
}

// As gemm_tile_u8_octets for R rows of Q8_0 or Q4_0 blocks read in place (row stride ldw bytes)
// over the whole depth: small batches share each weight byte among too few tokens to pay for a
// conversion pass through a buffer, and the tile's sums need no pass-by-pass merging.
template <GgmlType T, int R>
void gemm_tile_blocks_octets(int64_t nb, const uint8_t* w, size_t ldw, const uint8_t* po,
                             const float* ps, const uint8_t* ahead, float* c) {
  constexpr size_t kBlockBytes = T == GgmlType::Q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
  const __m512i pairs = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  __m512 f[6];
  for (int r = 0; r < R; ++r) f[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, po += kQK * 8, ps += 2 * 8) {
    const __m512 dx = _mm512_permutexvar_ps(pairs, _mm512_castps256_ps512(_mm256_loadu_ps(ps)));
    const __m512i o = _mm512_maskz_permutexvar_epi32(
        0x5555, pairs,
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ps + 8))));
    // The rows of a later tile (R ldw contiguous bytes at ahead) fetched a slice per block.
    const uint8_t* slice = ahead + b * R * kBlockBytes;
    for (size_t i = 0; i < R * kBlockBytes; i += 64) __builtin_prefetch(slice + i);
    __m512i a[kQK / 8];
    for (int j = 0; j < kQK / 8; ++j) a[j] = _mm512_loadu_si512(po + 64 * j);
    for (int r = 0; r < R; ++r) {
      const uint8_t* block = w + r * ldw + b * kBlockBytes;  // f16 scale, then the values
      uint16_t h;
      std::memcpy(&h, block, 2);
      __m512i s = o;
      for (int j = 0; j < kQK / 8; ++j) {
        s = _mm512_dpbusd_epi32(s, block_octet<T>(block + 2, j), a[j]);
        keep_in_register(s);
      }
      f[r] = fold(s, dx, half_to_float(h), f[r]);
    }
  }
  const __m512i evens = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odds = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 15, 13, 11, 9, 7, 5, 3, 1);
  for (int r = 0; r < R; ++r) {  // token t: lanes 2t + 2t + 1
    const __m512 sums =
        _mm512_add_ps(_mm512_permutexvar_ps(evens, f[r]), _mm512_permutexvar_ps(odds, f[r]));
    _mm256_storeu_ps(c + 8 * r, _mm512_castps512_ps256(sums));
  }
}

// Quad j (depth 4 j to 4 j + 3) of a Q8_0 or Q4_0 block as block_octet's, in every 32-bit lane.
template <GgmlType T>
inline __m512i block_quad(const uint8_t* qs, int j) {
  int32_t q;
  if (T == GgmlType::Q8_0) {
    std::memcpy(&q, qs + 4 * j, 4);
    return _mm512_xor_si512(_mm512_set1_epi32(q), _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  std::memcpy(&q, qs + 4 * (j % 4), 4);
  const __m512i b = _mm512_set1_epi32(q);
  const __m512i nibbles = _mm512_set1_epi8(0x0F);
  return _mm512_and_si512(j < 4 ? b : _mm512_srli_epi16(b, 4), nibbles);
}

// As gemm_tile_blocks_octets for 9 to 32 tokens, on gemm_tile_u8's quad panels (ldp 16 or 32):
// columns [0, 16 (V - 1)) and the lanes of `last` of the next 16.
template <GgmlType T, int R, int V>
void gemm_tile_blocks_quads(int64_t nb, const uint8_t* w, size_t ldw, const uint8_t* pq,
                            const float* ps, int64_t ldp, uint16_t last, const uint8_t* ahead,
                            float* c) {
  constexpr size_t kBlockBytes = T == GgmlType::Q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
  const uint16_t m0 = V > 1 ? 0xFFFF : last;
  __m512 f[6][2];
  for (int r = 0; r < R; ++r) f[r][0] = f[r][1] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, pq += kQK * ldp, ps += 2 * ldp) {
    const uint8_t* slice = ahead + b * R * kBlockBytes;
    for (size_t i = 0; i < R * kBlockBytes; i += 64) __builtin_prefetch(slice + i);
    const __m512i o0 = maskz_load_epi32(m0, ps + ldp);
    const __m512i o1 = V > 1 ? maskz_load_epi32(last, ps + ldp + kLanes) : _mm512_setzero_si512();
    __m512i s[6][2];
    for (int r = 0; r < R; ++r) {
      s[r][0] = o0;
      s[r][1] = o1;
    }
    for (int j = 0; j < kQK / 4; ++j) {
      const uint8_t* a = pq + j * ldp * 4;
      const __m512i a0 = maskz_load_epi32(m0, a);
      const __m512i a1 = V > 1 ? maskz_load_epi32(last, a + 4 * kLanes) : _mm512_setzero_si512();
      for (int r = 0; r < R; ++r) {
        const __m512i q = block_quad<T>(w + r * ldw + b * kBlockBytes + 2, j);
        s[r][0] = _mm512_dpbusd_epi32(s[r][0], q, a0);
        keep_in_register(s[r][0]);
        if (V > 1) {
          s[r][1] = _mm512_dpbusd_epi32(s[r][1], q, a1);
          keep_in_register(s[r][1]);
        }
      }
    }
    const __m512 d0 = maskz_load_ps(m0, ps);
    const __m512 d1 = V > 1 ? maskz_load_ps(last, ps + kLanes) : _mm512_setzero_ps();
    for (int r = 0; r < R; ++r) {
      uint16_t h;
      std::memcpy(&h, w + r * ldw + b * kBlockBytes, 2);
      const float dw = half_to_float(h);
      f[r][0] = fold(s[r][0], d0, dw, f[r][0]);
      if (V > 1) f[r][1] = fold(s[r][1], d1, dw, f[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) _mm512_storeu_ps(c + 2 * kLanes * r + kLanes * v, f[r][v]);
  }
}

// How many tiles ahead gemm_tile_blocks_octets fetches the rows: they come from DRAM, in runs
// too short for the hardware prefetcher (130m batch 8: 1 and 2 ahead x1.46 and x1.53 against
// none, 4 and 8 no better).
constexpr int64_t kAheadTiles = 2;

using OctetTile = void (*)(int64_t nb, const uint8_t* w, size_t ldw, const uint8_t* po,
                           const float* ps, const uint8_t* ahead, float* c);
using QuadTile = void (*)(int64_t nb, const uint8_t* w, size_t ldw, const uint8_t* pq,
                          const float* ps, int64_t ldp, uint16_t last, const uint8_t* ahead,
                          float* c);

// y (n tokens, row stride ldy) columns [0, rows) = the rows of w @ the packed panels (one of K
// values per 32 tokens, as pack_panels lays them out), in tiles of `step` rows: each tile through
// every panel in turn (octets[m - 1] for a panel of up to 8 tokens, quads[v > 2][m - 1] for the
// wider ones), so that its rows are read from memory once and then from L1. nb: the tiles'
// blocks (or super-blocks) along K.
void in_place_rows(const OctetTile (&octets)[6], const QuadTile (&quads)[2][6], int64_t step,
                   int64_t K, int64_t nb, const uint8_t* w, size_t ldw, int64_t rows,
                   const float* panels, int64_t n, float* y, int64_t ldy) {
  constexpr int64_t kPanel = 32;  // tokens per panel
  float c[6 * 2 * kLanes];        // (m, 8 or 32) tokens of a tile's rows
  for (int64_t r = 0; r < rows; r += step) {
    const int m = static_cast<int>(std::min(step, rows - r));
    for (int64_t t0 = 0; t0 < n; t0 += kPanel) {
      const int64_t nt = std::min(kPanel, n - t0), ldp = (nt + 7) / 8 * 8;
      const uint8_t* pq = reinterpret_cast<const uint8_t*>(panels + t0 * K);  // (K, ldp) values
      const float* ps = reinterpret_cast<const float*>(pq + K * ldp);         // block words
      // The first panel fetches the rows of a later tile; the others find this tile's in L1.
      const uint8_t* ahead = w + (t0 == 0 ? r + step * kAheadTiles : r) * ldw;
      const int v = static_cast<int>(ldp / 8);  // vectors of 8 tokens
      if (ldp == 8) {
        octets[m - 1](nb, w + r * ldw, ldw, pq, ps, ahead, c);
      } else {
        quads[v > 2 ? 1 : 0][m - 1](nb, w + r * ldw, ldw, pq, ps, ldp, last_mask(v), ahead, c);
      }
      const int64_t W = ldp == 8 ? 8 : 2 * kLanes;  // the tile's row stride in c
      for (int64_t t = 0; t < nt; ++t) {
        for (int i = 0; i < m; ++i) y[(t0 + t) * ldy + r + i] = c[W * i + t];
      }
    }
  }
}

// Rows of Q8_0 or Q4_0 weights six at a time.
template <GgmlType T>
void gemm_blocks(int64_t K, const uint8_t* w, size_t ldw, int64_t rows, const float* panels,
                 int64_t n, float* y, int64_t ldy) {
  static constexpr OctetTile kOctets[6] = {
      gemm_tile_blocks_octets<T, 1>, gemm_tile_blocks_octets<T, 2>, gemm_tile_blocks_octets<T, 3>,
      gemm_tile_blocks_octets<T, 4>, gemm_tile_blocks_octets<T, 5>, gemm_tile_blocks_octets<T, 6>};
  static constexpr QuadTile kQuads[2][6] = {
      {gemm_tile_blocks_quads<T, 1, 1>, gemm_tile_blocks_quads<T, 2, 1>,
       gemm_tile_blocks_quads<T, 3, 1>, gemm_tile_blocks_quads<T, 4, 1>,
       gemm_tile_blocks_quads<T, 5, 1>, gemm_tile_blocks_quads<T, 6, 1>},
      {gemm_tile_blocks_quads<T, 1, 2>, gemm_tile_blocks_quads<T, 2, 2>,
       gemm_tile_blocks_quads<T, 3, 2>, gemm_tile_blocks_quads<T, 4, 2>,
       gemm_tile_blocks_quads<T, 5, 2>, gemm_tile_blocks_quads<T, 6, 2>}};
  in_place_rows(kOctets, kQuads, 6, K, K / kQK, w, ldw, rows, panels, n, y, ldy);
}

// K-quants in place: a super-block of 256 values is 8 blocks of 32 aligned with the activation
// blocks. Q4_K and Q5_K: block j is w = d sc_j q - dmin m_j (q unsigned, 4 or 5 bits), its
// offset added as -dmin m_j times the tokens' block sums d_x sum(x); Q6_K: w = d sc_h (q - 32) in
// halves of 16 with int8 scales sc_h, q unsigned (6 bits), -32 sum(x) over each half starting its
// integer sum. The tokens' sums sum(x) come from the panel's bytes (vpdpbusd by ones), once per
// block for all the tile's rows: pack_panel_u8 packs these types with offset 0.
// f(std::integral_constant<int, j>) for the 8 blocks j of a super-block, j a constant in each.
template <typename F, int... J>
inline void each_block(F&& f, std::integer_sequence<int, J...>) {
  (f(std::integral_constant<int, J>{}), ...);
}
template <typename F>
inline void each_block(F&& f) {
  each_block(f, std::make_integer_sequence<int, 8>{});
}

template <GgmlType T>
constexpr size_t super_bytes() {
  return T == GgmlType::Q4_K   ? sizeof(BlockQ4_K)
         : T == GgmlType::Q5_K ? sizeof(BlockQ5_K)
                               : sizeof(BlockQ6_K);
}

// A row's scales for one super-block: per block (Q4_K, Q5_K) d sc_j and -dmin m_j, or per half
// (Q6_K) d sc_h.
struct SuperScales {
  float d[16];
  float o[8];
};

template <GgmlType T>
inline void super_scales(const uint8_t* sb, SuperScales& out) {
  if (T == GgmlType::Q6_K) {
    const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(sb);
    const float d = half_to_float(b->d);
    for (int h = 0; h < 16; ++h) out.d[h] = d * static_cast<float>(b->scales[h]);
    return;
  }
  const BlockQ4_K* b = reinterpret_cast<const BlockQ4_K*>(sb);  // Q5_K's head is the same
  uint8_t sc[8], m[8];
  kquants::scales_mins(b->scales, sc, m);
  const float d = half_to_float(b->d), dmin = half_to_float(b->dmin);
  for (int j = 0; j < 8; ++j) {
    out.d[j] = d * static_cast<float>(sc[j]);
    out.o[j] = -dmin * static_cast<float>(m[j]);
  }
}

// G bytes at p (8 or 4) in every G-byte lane.
template <int G>
inline __m512i broadcast_bytes(const uint8_t* p) {
  if (G == 8) {
    int64_t q;
    std::memcpy(&q, p, 8);
    return _mm512_set1_epi64(q);
  }
  int32_t q;
  std::memcpy(&q, p, 4);
  return _mm512_set1_epi32(q);
}

// The unsigned values at depth l to l + G - 1 of block j of a super-block, in every G-byte lane
// (j a constant, so that the shifts are immediates).
template <GgmlType T, int G, int j>
inline __m512i super_values(const uint8_t* sb, int l) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  if (T == GgmlType::Q6_K) {  // low 4 bits in ql, high 2 in qh (ggml's dequantize_row_q6_K)
    const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(sb);
    const int h = j / 4, jj = j % 4;
    const __m512i ql = broadcast_bytes<G>(b->ql + 64 * h + 32 * (jj % 2) + l);
    const __m512i qh = broadcast_bytes<G>(b->qh + 32 * h + l);
    const __m512i lo = _mm512_and_si512(jj >= 2 ? _mm512_srli_epi16(ql, 4) : ql, low4);
    // bits 2 jj and 2 jj + 1 of qh to bits 4 and 5
    const __m512i hi = jj == 0   ? _mm512_slli_epi16(qh, 4)
                       : jj == 1 ? _mm512_slli_epi16(qh, 2)
                       : jj == 2 ? qh
                                 : _mm512_srli_epi16(qh, 2);
    return _mm512_or_si512(lo, _mm512_and_si512(hi, _mm512_set1_epi8(0x30)));
  }
  const uint8_t* qs = T == GgmlType::Q5_K ? reinterpret_cast<const BlockQ5_K*>(sb)->qs
                                          : reinterpret_cast<const BlockQ4_K*>(sb)->qs;
  const __m512i q = broadcast_bytes<G>(qs + 32 * (j / 2) + l);
  const __m512i lo = _mm512_and_si512(j % 2 == 1 ? _mm512_srli_epi16(q, 4) : q, low4);
  if (T == GgmlType::Q4_K) return lo;
  const __m512i qh = broadcast_bytes<G>(reinterpret_cast<const BlockQ5_K*>(sb)->qh + l);
  __m512i bit;  // bit j of each byte to bit 4 (if constexpr: no shift count below 0, even unused)
  if constexpr (j < 4) {
    bit = _mm512_slli_epi16(qh, 4 - j);
  } else {
    bit = _mm512_srli_epi16(qh, j - 4);
  }
  return _mm512_or_si512(lo, _mm512_and_si512(bit, _mm512_set1_epi8(0x10)));
}

// -32 x
inline __m512i minus32(__m512i x) {
  return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(x, 5));
}

// As gemm_tile_blocks_octets for R rows of K-quant super-blocks (nsb of them; rows ldw bytes
// apart).
template <GgmlType T, int R>
void gemm_tile_super_octets(int64_t nsb, const uint8_t* w, size_t ldw, const uint8_t* pa,
                            const float* pw, const uint8_t* ahead, float* c) {
  constexpr size_t kSuper = super_bytes<T>();
  const __m512i pairs = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  const __m512i ones = _mm512_set1_epi8(1);
  __m512 f[6];
  for (int r = 0; r < R; ++r) f[r] = _mm512_setzero_ps();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* slice = ahead + sb * R * kSuper;
    for (size_t i = 0; i < R * kSuper; i += 64) __builtin_prefetch(slice + i);
    SuperScales sc[6];
    for (int r = 0; r < R; ++r) super_scales<T>(w + r * ldw + sb * kSuper, sc[r]);
    each_block([&](auto block) {
      constexpr int j = decltype(block)::value;
      const uint8_t* po = pa + (8 * sb + j) * kQK * 8;
      const float* ps = pw + (8 * sb + j) * 2 * 8;
      const __m512 dx = _mm512_permutexvar_ps(pairs, _mm512_castps256_ps512(_mm256_loadu_ps(ps)));
      __m512i a[4];
      for (int g = 0; g < 4; ++g) a[g] = _mm512_loadu_si512(po + 64 * g);
      const __m512i zero = _mm512_setzero_si512();
      const __m512i xs0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, ones, a[0]), ones, a[1]);
      const __m512i xs1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, ones, a[2]), ones, a[3]);
      const __m512 sx = _mm512_mul_ps(cvt_i32(_mm512_add_epi32(xs0, xs1)), dx);  // d_x sum(x)
      const __m512i m32[2] = {minus32(xs0), minus32(xs1)};
      for (int r = 0; r < R; ++r) {
        const uint8_t* sbp = w + r * ldw + sb * kSuper;
        if (T == GgmlType::Q6_K) {
          for (int h = 0; h < 2; ++h) {
            __m512i s = m32[h];
            for (int g = 2 * h; g < 2 * h + 2; ++g) {
              const __m512i q = super_values<T, 8, j>(sbp, 8 * g);
              s = _mm512_dpbusd_epi32(s, q, a[g]);
              keep_in_register(s);
            }
            f[r] = fold(s, dx, sc[r].d[2 * j + h], f[r]);
          }
        } else {
          __m512i s = zero;
          for (int g = 0; g < 4; ++g) {
            const __m512i q = super_values<T, 8, j>(sbp, 8 * g);
            s = _mm512_dpbusd_epi32(s, q, a[g]);
            keep_in_register(s);
          }
          f[r] = fold(s, dx, sc[r].d[j], f[r]);
          f[r] = _mm512_fmadd_ps(_mm512_set1_ps(sc[r].o[j]), sx, f[r]);
        }
      }
    });
  }
  const __m512i evens = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odds = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 15, 13, 11, 9, 7, 5, 3, 1);
  for (int r = 0; r < R; ++r) {  // token t: lanes 2t + 2t + 1
    const __m512 sums =
        _mm512_add_ps(_mm512_permutexvar_ps(evens, f[r]), _mm512_permutexvar_ps(odds, f[r]));
    _mm256_storeu_ps(c + 8 * r, _mm512_castps512_ps256(sums));
  }
}

// As gemm_tile_super_octets on quad panels (ldp 16 or 32), columns as gemm_tile_blocks_quads';
// at most 4 rows, so that the sums of two vectors stay in registers.
template <GgmlType T, int R, int V>
void gemm_tile_super_quads(int64_t nsb, const uint8_t* w, size_t ldw, const uint8_t* pa,
                           const float* pw, int64_t ldp, uint16_t last, const uint8_t* ahead,
                           float* c) {
  constexpr size_t kSuper = super_bytes<T>();
  const uint16_t m0 = V > 1 ? 0xFFFF : last;
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i zero = _mm512_setzero_si512();
  __m512 f[4][2];
  for (int r = 0; r < R; ++r) f[r][0] = f[r][1] = _mm512_setzero_ps();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* slice = ahead + sb * R * kSuper;
    for (size_t i = 0; i < R * kSuper; i += 64) __builtin_prefetch(slice + i);
    SuperScales sc[4];
    for (int r = 0; r < R; ++r) super_scales<T>(w + r * ldw + sb * kSuper, sc[r]);
    each_block([&](auto block) {
      constexpr int j = decltype(block)::value;
      const uint8_t* pq = pa + (8 * sb + j) * kQK * ldp;
      const float* ps = pw + (8 * sb + j) * 2 * ldp;
      const __m512 d0 = maskz_load_ps(m0, ps);
      const __m512 d1 = V > 1 ? maskz_load_ps(last, ps + kLanes) : _mm512_setzero_ps();
      __m512i xs[2] = {zero, zero};  // the tokens' sums of the half (Q6_K) or block so far
      __m512i s[4][2];
      for (int h = 0; h < 2; ++h) {
        if (T == GgmlType::Q6_K || h == 0) {
          for (int r = 0; r < R; ++r) s[r][0] = s[r][1] = zero;
        }
        for (int g = 4 * h; g < 4 * h + 4; ++g) {
          const uint8_t* a = pq + g * ldp * 4;
          const __m512i a0 = maskz_load_epi32(m0, a);
          const __m512i a1 = V > 1 ? maskz_load_epi32(last, a + 4 * kLanes) : zero;
          xs[0] = _mm512_dpbusd_epi32(xs[0], ones, a0);
          if (V > 1) xs[1] = _mm512_dpbusd_epi32(xs[1], ones, a1);
          for (int r = 0; r < R; ++r) {
            const __m512i q = super_values<T, 4, j>(w + r * ldw + sb * kSuper, 4 * g);
            s[r][0] = _mm512_dpbusd_epi32(s[r][0], q, a0);
            keep_in_register(s[r][0]);
            if (V > 1) {
              s[r][1] = _mm512_dpbusd_epi32(s[r][1], q, a1);
              keep_in_register(s[r][1]);
            }
          }
        }
        if (T == GgmlType::Q6_K) {  // this half's sums, less 32 sum(x)
          const __m512i n0 = minus32(xs[0]), n1 = minus32(xs[1]);
          for (int r = 0; r < R; ++r) {
            const float dh = sc[r].d[2 * j + h];
            f[r][0] = fold(_mm512_add_epi32(s[r][0], n0), d0, dh, f[r][0]);
            if (V > 1) f[r][1] = fold(_mm512_add_epi32(s[r][1], n1), d1, dh, f[r][1]);
          }
          xs[0] = xs[1] = zero;
        }
      }
      if (T != GgmlType::Q6_K) {
        const __m512 sx0 = _mm512_mul_ps(cvt_i32(xs[0]), d0);
        const __m512 sx1 = V > 1 ? _mm512_mul_ps(cvt_i32(xs[1]), d1) : _mm512_setzero_ps();
        for (int r = 0; r < R; ++r) {
          const __m512 o = _mm512_set1_ps(sc[r].o[j]);
          f[r][0] = _mm512_fmadd_ps(o, sx0, fold(s[r][0], d0, sc[r].d[j], f[r][0]));
          if (V > 1) f[r][1] = _mm512_fmadd_ps(o, sx1, fold(s[r][1], d1, sc[r].d[j], f[r][1]));
        }
      }
    });
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) _mm512_storeu_ps(c + 2 * kLanes * r + kLanes * v, f[r][v]);
  }
}

// Rows of K-quant weights six at a time for up to 8 tokens, else four (gemm_tile_super_quads').
template <GgmlType T>
void gemm_super(int64_t K, const uint8_t* w, size_t ldw, int64_t rows, const float* panels,
                int64_t n, float* y, int64_t ldy) {
  static constexpr OctetTile kOctets[6] = {
      gemm_tile_super_octets<T, 1>, gemm_tile_super_octets<T, 2>, gemm_tile_super_octets<T, 3>,
      gemm_tile_super_octets<T, 4>, gemm_tile_super_octets<T, 5>, gemm_tile_super_octets<T, 6>};
  static constexpr QuadTile kQuads[2][6] = {
      {gemm_tile_super_quads<T, 1, 1>, gemm_tile_super_quads<T, 2, 1>,
       gemm_tile_super_quads<T, 3, 1>, gemm_tile_super_quads<T, 4, 1>, nullptr, nullptr},
      {gemm_tile_super_quads<T, 1, 2>, gemm_tile_super_quads<T, 2, 2>,
       gemm_tile_super_quads<T, 3, 2>, gemm_tile_super_quads<T, 4, 2>, nullptr, nullptr}};
  in_place_rows(kOctets, kQuads, n <= 8 ? 6 : 4, K, K / kQKK, w, ldw, rows, panels, n, y, ldy);
}

}  // namespace

void gemm_blocks_u8(GgmlType type, int64_t K, const uint8_t* w, size_t ldw, int64_t rows,
                    const float* panels, int64_t n, float* y, int64_t ldy) {
  switch (type) {
    case GgmlType::Q8_0:
      return gemm_blocks<GgmlType::Q8_0>(K, w, ldw, rows, panels, n, y, ldy);
    case GgmlType::Q4_0:
      return gemm_blocks<GgmlType::Q4_0>(K, w, ldw, rows, panels, n, y, ldy);
    case GgmlType::Q4_K:
      return gemm_super<GgmlType::Q4_K>(K, w, ldw, rows, panels, n, y, ldy);
    case GgmlType::Q5_K:
      return gemm_super<GgmlType::Q5_K>(K, w, ldw, rows, panels, n, y, ldy);
    default:
      return gemm_super<GgmlType::Q6_K>(K, w, ldw, rows, panels, n, y, ldy);
  }
}

}  // namespace MAMBALITE_AVX512_NS
}  // namespace mambalite
