// AVX-512 products of small batches (2 to 32 tokens) on weight blocks read in place: the VNNI
// tiles of gemm_avx512.cpp without its conversion pass. At a few tokens a converted weight byte
// is shared by too few products to pay for the trip through a buffer, and summing the tile's
// pass-by-pass partial results cost as much again; here each tile runs the whole depth of its
// rows, prefetching the rows of a later tile.
#include <algorithm>
#include <cstring>

#include "format/quant_blocks.h"
#include "kernels/avx512/avx512_compat.h"
#include "kernels/avx512/gemm_avx512.h"
#include "kernels/avx512/gemm_tiles_avx512.h"

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

// Rows [0, rows) of Q8_0 or Q4_0 weights six at a time through gemm_tile_blocks_octets (up to 8
// tokens) or gemm_tile_blocks_quads.
template <GgmlType T>
void gemm_blocks(int64_t K, const uint8_t* w, size_t ldw, int64_t rows, const uint8_t* pq,
                 const float* ps, float* y, int64_t ldy, int n) {
  using Octets = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, const float*,
                          const uint8_t*, float*);
  using Quads = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, const float*, int64_t,
                         uint16_t, const uint8_t*, float*);
  static constexpr Octets kOctets[6] = {
      gemm_tile_blocks_octets<T, 1>, gemm_tile_blocks_octets<T, 2>, gemm_tile_blocks_octets<T, 3>,
      gemm_tile_blocks_octets<T, 4>, gemm_tile_blocks_octets<T, 5>, gemm_tile_blocks_octets<T, 6>};
  static constexpr Quads kQuads[2][6] = {
      {gemm_tile_blocks_quads<T, 1, 1>, gemm_tile_blocks_quads<T, 2, 1>,
       gemm_tile_blocks_quads<T, 3, 1>, gemm_tile_blocks_quads<T, 4, 1>,
       gemm_tile_blocks_quads<T, 5, 1>, gemm_tile_blocks_quads<T, 6, 1>},
      {gemm_tile_blocks_quads<T, 1, 2>, gemm_tile_blocks_quads<T, 2, 2>,
       gemm_tile_blocks_quads<T, 3, 2>, gemm_tile_blocks_quads<T, 4, 2>,
       gemm_tile_blocks_quads<T, 5, 2>, gemm_tile_blocks_quads<T, 6, 2>}};
  const int64_t ldp = (n + 7) / 8 * 8;
  const int v = static_cast<int>(ldp / 8);      // vectors of 8 tokens
  const int64_t W = ldp == 8 ? 8 : 2 * kLanes;  // the tile's row stride in c
  float c[6 * 2 * kLanes];                      // (m, W) tokens of a tile's rows
  for (int64_t r = 0; r < rows; r += 6) {
    const int m = static_cast<int>(std::min<int64_t>(6, rows - r));
    const uint8_t* ahead = w + (r + 6 * kAheadTiles) * ldw;
    if (ldp == 8) {
      kOctets[m - 1](K / kQK, w + r * ldw, ldw, pq, ps, ahead, c);
    } else {
      kQuads[v > 2 ? 1 : 0][m - 1](K / kQK, w + r * ldw, ldw, pq, ps, ldp, last_mask(v), ahead, c);
    }
    for (int t = 0; t < n; ++t) {
      for (int i = 0; i < m; ++i) y[t * ldy + r + i] = c[W * i + t];
    }
  }
}

}  // namespace

void gemm_blocks_u8(GgmlType type, int64_t K, const uint8_t* w, size_t ldw, int64_t rows,
                    const uint8_t* pq, const float* ps, float* y, int64_t ldy, int n) {
  if (type == GgmlType::Q8_0) {
    gemm_blocks<GgmlType::Q8_0>(K, w, ldw, rows, pq, ps, y, ldy, n);
  } else {
    gemm_blocks<GgmlType::Q4_0>(K, w, ldw, rows, pq, ps, y, ldy, n);
  }
}

}  // namespace MAMBALITE_AVX512_NS
}  // namespace mambalite
