// AVX2 + FMA + F16C prefill GEMM (built like kernels_avx2.cpp): activations packed token-minor,
// so that one broadcast weight value meets eight tokens per multiply-add, and the weights read as
// fp32 (Q8_0 and the other quantized types converted a chunk at a time). This is the
// outer-product form of BLAS micro-kernels: 6 rows x 16 tokens keep twelve accumulators busy, and
// each step loads two activation vectors and six weight scalars for twelve multiply-adds, where
// the 4 x 3 dot-product tiles load seven vectors for twelve and reduce horizontally at the end.
#include "kernels/avx2/gemm_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "format/quant_blocks.h"

namespace mambalite {
namespace avx2 {
namespace {

// v[0..8) (row i = 8 values) transposed in place: v[j] lane i = old v[i] lane j.
inline void transpose8(__m256 v[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
  const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
  const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
  const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Values [k, k + 8) of an activation row: fp32, or an ActQ8 row's d * q (exact as in the int8
// products up to the one rounding of the multiply).
inline __m256 load_act(bool q8, const uint8_t* row, int64_t k) {
  if (!q8) return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
  const ActQ8& b = reinterpret_cast<const ActQ8*>(row)[k / kQK];
  const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + k % kQK));
  return _mm256_mul_ps(_mm256_set1_ps(b.d), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
}

// One step of a tile row: c0/c1 += w_r[k] * (a0, a1); the second vector only when V = 2.
template <int V>
inline void row_step(const float* wr, __m256 a0, __m256 a1, __m256& c0, __m256& c1) {
  const __m256 b = _mm256_broadcast_ss(wr);
  c0 = _mm256_fmadd_ps(b, a0, c0);
  if (V > 1) c1 = _mm256_fmadd_ps(b, a1, c1);
}

// c (R, 16) = w (R rows of K, stride ldw) @ p (K, ldp) columns [0, 8V). Twelve named
// accumulators rather than an array: GCC 12 kept an array of them in memory, storing all twelve
// every step.
template <int R, int V>
void gemm_tile(int64_t K, const float* w, int64_t ldw, const float* p, int64_t ldp, float* c) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 c00 = zero, c01 = zero, c10 = zero, c11 = zero, c20 = zero, c21 = zero, c30 = zero,
         c31 = zero, c40 = zero, c41 = zero, c50 = zero, c51 = zero;
  const float* w0 = w;
  const float* w1 = w + (R > 1 ? ldw : 0);
  const float* w2 = w + (R > 2 ? 2 * ldw : 0);
  const float* w3 = w + (R > 3 ? 3 * ldw : 0);
  const float* w4 = w + (R > 4 ? 4 * ldw : 0);
  const float* w5 = w + (R > 5 ? 5 * ldw : 0);
  for (int64_t k = 0; k < K; ++k, p += ldp) {
    const __m256 a0 = _mm256_loadu_ps(p);
    const __m256 a1 = V > 1 ? _mm256_loadu_ps(p + 8) : zero;
    row_step<V>(w0 + k, a0, a1, c00, c01);
    if (R > 1) row_step<V>(w1 + k, a0, a1, c10, c11);
    if (R > 2) row_step<V>(w2 + k, a0, a1, c20, c21);
    if (R > 3) row_step<V>(w3 + k, a0, a1, c30, c31);
    if (R > 4) row_step<V>(w4 + k, a0, a1, c40, c41);
    if (R > 5) row_step<V>(w5 + k, a0, a1, c50, c51);
  }
  const __m256 out[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) _mm256_storeu_ps(c + 16 * r + 8 * v, out[r][v]);
  }
}

template <int V>
void gemm_rows(int64_t K, const float* w, int64_t ldw, const float* p, int64_t ldp, int m,
               float* c) {
  switch (m) {
    case 1:
      return gemm_tile<1, V>(K, w, ldw, p, ldp, c);
    case 2:
      return gemm_tile<2, V>(K, w, ldw, p, ldp, c);
    case 3:
      return gemm_tile<3, V>(K, w, ldw, p, ldp, c);
    case 4:
      return gemm_tile<4, V>(K, w, ldw, p, ldp, c);
    case 5:
      return gemm_tile<5, V>(K, w, ldw, p, ldp, c);
    default:
      return gemm_tile<6, V>(K, w, ldw, p, ldp, c);
  }
}

// Integer tiles, 3 rows x 16 tokens. The panel holds the ActQ8 values token-minor in steps of
// depth (see kernels.h), so that a broadcast of one step of a weight row (four bytes) meets eight
// tokens in one instruction; a block's steps are summed in integers, then folded into fp32 with
// the block's scales, as in the dot products. Per step a tile loads two activation vectors and
// three broadcasts for six products.
//
// Q4_0 on int8 products: steps are quads of depth and maddubs multiplies unsigned nibbles by
// signed activations, pairs summed into int16: 32 multiply-adds per instruction where an fp32
// multiply-add does 8 (faster than the dot products: docs/kernels.md). A block's eight quads
// stay in int16 (at most 8 * 2 * 15 * 127 = 30480); the fold is d_w * (d_x * sum(q * x) - 8 * d_x
// * sum(x)).
//
// Q8_0 on int16 products: steps are pairs of depth, the weights converted to int16 once per pass,
// and vpmaddwd sums each pair into int32: 16 multiply-adds per instruction on the two multiply
// pipes, with the adds on the other two, where fp32 multiply-adds have only the two FMA pipes. A
// block's sixteen pairs stay in int32 (at most 32 * 127 * 127); the fold is d_w * d_x * sum.

// Pins v to a register at this point. Integer additions are associative, so GCC 12 reorders
// the block's 48 product + add chains into trees, computing all products first and spilling them
// to the stack (48 stores and reloads per block); ordering each chain keeps the tile in
// registers (docs/kernels.md).
inline void keep_in_register(__m256i& v) { asm("" : "+x"(v)); }

struct Q4Format {
  using W = uint8_t;  // nibbles, one per value
  static constexpr int kSteps = kQK / 4;
  static constexpr int kScaleRows = 2;  // panel floats per block and token: d, -8 * s
  static __m256i mul(__m256i w, __m256i a) { return _mm256_maddubs_epi16(w, a); }
  static __m256i add(__m256i s, __m256i p) { return _mm256_add_epi16(s, p); }
  struct Scales {
    __m256 d, m8s;
  };
  static Scales scales(const float* ps, int64_t ldp) {
    return {_mm256_loadu_ps(ps), _mm256_loadu_ps(ps + ldp)};
  }
  // f += d_w * (d_x * sum + m8s) for one block's int16 pair sums s (8 tokens).
  static __m256 fold(__m256i s, const Scales& x, const float* dw, __m256 f) {
    const __m256 sum = _mm256_cvtepi32_ps(_mm256_madd_epi16(s, _mm256_set1_epi16(1)));
    return _mm256_fmadd_ps(_mm256_fmadd_ps(sum, x.d, x.m8s), _mm256_broadcast_ss(dw), f);
  }
};

struct Q8Format {
  using W = int16_t;
  static constexpr int kSteps = kQK / 2;
  static constexpr int kScaleRows = 1;  // d
  static __m256i mul(__m256i w, __m256i a) { return _mm256_madd_epi16(w, a); }
  static __m256i add(__m256i s, __m256i p) { return _mm256_add_epi32(s, p); }
  struct Scales {
    __m256 d;
  };
  static Scales scales(const float* ps, int64_t) { return {_mm256_loadu_ps(ps)}; }
  // f += d_w * (d_x * sum) for one block's int32 sums s (8 tokens).
  static __m256 fold(__m256i s, const Scales& x, const float* dw, __m256 f) {
    return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s), x.d), _mm256_broadcast_ss(dw), f);
  }
};

// One step of a tile row: s0/s1 (+)= F::mul(w, (a0, a1)); the second vector only when V = 2.
// First: the block's first step, which starts the sums.
template <class F, int V, bool First>
inline void row_step(__m256i w, __m256i a0, __m256i a1, __m256i& s0, __m256i& s1) {
  const __m256i p0 = F::mul(w, a0);
  s0 = First ? p0 : F::add(s0, p0);
  keep_in_register(s0);
  if (V > 1) {
    const __m256i p1 = F::mul(w, a1);
    s1 = First ? p1 : F::add(s1, p1);
    keep_in_register(s1);
  }
}

// The four bytes of step j of row i (from the value offset `off` of the pass), broadcast.
template <class F>
inline __m256i weight_step(const typename F::W* w, int64_t ldw, int i, int64_t off, int j) {
  int32_t v;
  std::memcpy(&v, w + i * ldw + off + j * (4 / sizeof(typename F::W)), sizeof v);
  return _mm256_set1_epi32(v);
}

// One block's steps [J, F::kSteps) (J = 0 starts the sums) for R <= 3 rows.
template <class F, int R, int V, int J>
inline void block_steps(const typename F::W* w, int64_t ldw, int64_t off, const typename F::W* pa,
                        int64_t ldp, __m256i& s00, __m256i& s01, __m256i& s10, __m256i& s11,
                        __m256i& s20, __m256i& s21) {
  if constexpr (J < F::kSteps) {
    const uint8_t* a = reinterpret_cast<const uint8_t*>(pa) + J * ldp * 4;  // (ldp) steps
    const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
    const __m256i a1 = V > 1 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32))
                             : _mm256_setzero_si256();
    row_step<F, V, J == 0>(weight_step<F>(w, ldw, 0, off, J), a0, a1, s00, s01);
    if (R > 1) row_step<F, V, J == 0>(weight_step<F>(w, ldw, 1, off, J), a0, a1, s10, s11);
    if (R > 2) row_step<F, V, J == 0>(weight_step<F>(w, ldw, 2, off, J), a0, a1, s20, s21);
    block_steps<F, R, V, J + 1>(w, ldw, off, pa, ldp, s00, s01, s10, s11, s20, s21);
  }
}

// c (R, 16) = R rows of format F (values w, scales dw) @ the panel's values pa and block scales
// ps, over nb blocks, columns [0, 8V). Named accumulators, as in gemm_tile.
template <class F, int R, int V>
void gemm_tile_int(int64_t nb, const typename F::W* w, int64_t ldw, const float* dw, int64_t ldd,
                   const typename F::W* pa, const float* ps, int64_t ldp, float* c) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 f00 = zero, f01 = zero, f10 = zero, f11 = zero, f20 = zero, f21 = zero;
  for (int64_t b = 0; b < nb; ++b, pa += kQK * ldp, ps += F::kScaleRows * ldp) {
    __m256i s00, s01, s10, s11, s20, s21;
    block_steps<F, R, V, 0>(w, ldw, kQK * b, pa, ldp, s00, s01, s10, s11, s20, s21);
    const typename F::Scales x0 = F::scales(ps, ldp);
    const typename F::Scales x1 = V > 1 ? F::scales(ps + 8, ldp) : x0;
    f00 = F::fold(s00, x0, dw + b, f00);
    if (V > 1) f01 = F::fold(s01, x1, dw + b, f01);
    if (R > 1) {
      f10 = F::fold(s10, x0, dw + ldd + b, f10);
      if (V > 1) f11 = F::fold(s11, x1, dw + ldd + b, f11);
    }
    if (R > 2) {
      f20 = F::fold(s20, x0, dw + 2 * ldd + b, f20);
      if (V > 1) f21 = F::fold(s21, x1, dw + 2 * ldd + b, f21);
    }
  }
  const __m256 out[3][2] = {{f00, f01}, {f10, f11}, {f20, f21}};
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) _mm256_storeu_ps(c + 16 * r + 8 * v, out[r][v]);
  }
}

// As gemm_tile_int for one vector of 8 tokens (V = 1) and up to 6 rows: each step's activation
// vector meets six broadcasts where the 3-row tile had three, the registers the second vector
// would take holding rows 3-5 instead (12 accumulators, as in the 3 x 2 tile).
template <class F, int R>
void gemm_tile_int_8tokens(int64_t nb, const typename F::W* w, int64_t ldw, const float* dw,
                           int64_t ldd, const typename F::W* pa, const float* ps, int64_t ldp,
                           float* c) {
  __m256 f[6];
  for (int r = 0; r < R; ++r) f[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, pa += kQK * ldp, ps += F::kScaleRows * ldp) {
    __m256i s[6];
    const uint8_t* a = reinterpret_cast<const uint8_t*>(pa);
    for (int j = 0; j < F::kSteps; ++j) {
      const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j * ldp * 4));
      for (int r = 0; r < R; ++r) {
        const __m256i p = F::mul(weight_step<F>(w, ldw, r, kQK * b, j), a0);
        s[r] = j == 0 ? p : F::add(s[r], p);
        keep_in_register(s[r]);
      }
    }
    const typename F::Scales x = F::scales(ps, ldp);
    for (int r = 0; r < R; ++r) f[r] = F::fold(s[r], x, dw + r * ldd + b, f[r]);
  }
  for (int r = 0; r < R; ++r) _mm256_storeu_ps(c + 16 * r, f[r]);
}

// gemm_panel_q4_0 / gemm_panel_q8_0: m rows in tiles of three (six for one vector of tokens),
// over K values.
template <class F>
void gemm_rows_int(int64_t K, const typename F::W* w, int64_t ldw, const float* dw, int64_t ldd,
                   const typename F::W* pa, const float* ps, int64_t ldp, int m, int v, float* c) {
  const int64_t nb = K / kQK;
  if (v == 1) {
    using Tile = void (*)(int64_t, const typename F::W*, int64_t, const float*, int64_t,
                          const typename F::W*, const float*, int64_t, float*);
    static constexpr Tile kTiles[6] = {gemm_tile_int_8tokens<F, 1>, gemm_tile_int_8tokens<F, 2>,
                                       gemm_tile_int_8tokens<F, 3>, gemm_tile_int_8tokens<F, 4>,
                                       gemm_tile_int_8tokens<F, 5>, gemm_tile_int_8tokens<F, 6>};
    kTiles[std::clamp(m, 1, 6) - 1](nb, w, ldw, dw, ldd, pa, ps, ldp, c);
    return;
  }
  for (int i = 0; i < m; i += 3) {
    const typename F::W* wi = w + i * ldw;
    const float* di = dw + i * ldd;
    const int rows = std::min(3, m - i);
    using Tile = void (*)(int64_t, const typename F::W*, int64_t, const float*, int64_t,
                          const typename F::W*, const float*, int64_t, float*);
    static constexpr Tile kTiles[2][3] = {
        {gemm_tile_int<F, 1, 1>, gemm_tile_int<F, 2, 1>, gemm_tile_int<F, 3, 1>},
        {gemm_tile_int<F, 1, 2>, gemm_tile_int<F, 2, 2>, gemm_tile_int<F, 3, 2>}};
    kTiles[v - 1][rows - 1](nb, wi, ldw, di, ldd, pa, ps, ldp, c + 16 * i);
  }
}

}  // namespace

void pack_panel(bool q8, const uint8_t* act, size_t stride, int64_t n, int64_t K, float* p,
                int64_t ldp) {
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t t0 = 0; t0 < ldp; t0 += 8) {
    const uint8_t* rows[8];  // null past the last token: those columns are zero
    for (int i = 0; i < 8; ++i) rows[i] = t0 + i < n ? act + (t0 + i) * stride : nullptr;
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
      __m256 v[8];
      for (int i = 0; i < 8; ++i) v[i] = rows[i] != nullptr ? load_act(q8, rows[i], k) : zero;
      transpose8(v);
      for (int j = 0; j < 8; ++j) _mm256_storeu_ps(p + (k + j) * ldp + t0, v[j]);
    }
    for (; k < K; ++k) {  // fp32 rows whose length is not a multiple of 8 (ActQ8 rows are whole
                          // blocks of 32)
      for (int i = 0; i < 8; ++i) {
        p[k * ldp + t0 + i] = rows[i] ? reinterpret_cast<const float*>(rows[i])[k] : 0.0f;
      }
    }
  }
}

bool row_to_f32(GgmlType type, const uint8_t* row, int64_t n, float* out) {
  if (type == GgmlType::F16 || type == GgmlType::BF16) {  // n a multiple of 8 (a GEMM pass)
    if (n % 8 != 0) return false;
    const __m128i* h = reinterpret_cast<const __m128i*>(row);
    for (int64_t i = 0; i < n / 8; ++i) {
      const __m128i v = _mm_loadu_si128(h + i);
      _mm256_storeu_ps(out + 8 * i, type == GgmlType::F16 ? _mm256_cvtph_ps(v)
                                                          : _mm256_castsi256_ps(_mm256_slli_epi32(
                                                                _mm256_cvtepu16_epi32(v), 16)));
    }
    return true;
  }
  if (type != GgmlType::Q8_0) return false;
  const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(row);
  for (int64_t j = 0; j < n / kQK; ++j) {
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[j].d));
    for (int q = 0; q < kQK; q += 8) {
      const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[j].qs + q));
      _mm256_storeu_ps(out + j * kQK + q,
                       _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))));
    }
  }
  return true;
}

void gemm_panel(int64_t K, const float* w, int64_t ldw, const float* p, int64_t ldp, int m, int v,
                float* c) {
  if (v == 1) {
    gemm_rows<1>(K, w, ldw, p, ldp, m, c);
  } else {
    gemm_rows<2>(K, w, ldw, p, ldp, m, c);
  }
}

void pack_panel_q4_0(const uint8_t* act, size_t stride, int64_t n, int64_t K, uint8_t* p,
                     int64_t ldp) {
  const int64_t nb = K / kQK;
  float* scales = reinterpret_cast<float*>(p + K * ldp);  // (nb, 2, ldp)
  for (int64_t t0 = 0; t0 < ldp; t0 += 8) {
    const ActQ8* rows[8];  // null past the last token: those columns are zero
    for (int i = 0; i < 8; ++i) {
      rows[i] = t0 + i < n ? reinterpret_cast<const ActQ8*>(act + (t0 + i) * stride) : nullptr;
    }
    for (int64_t b = 0; b < nb; ++b) {
      __m256 v[8];  // token i's 32 values as 8 quads, transposed to quad j's 8 tokens
      for (int i = 0; i < 8; ++i) {
        v[i] = rows[i] != nullptr ? _mm256_loadu_ps(reinterpret_cast<const float*>(rows[i][b].qs))
                                  : _mm256_setzero_ps();
        scales[2 * b * ldp + t0 + i] = rows[i] != nullptr ? rows[i][b].d : 0.0f;
        scales[(2 * b + 1) * ldp + t0 + i] = rows[i] != nullptr ? -8.0f * rows[i][b].s : 0.0f;
      }
      transpose8(v);
      for (int j = 0; j < 8; ++j) {
        _mm256_storeu_ps(reinterpret_cast<float*>(p + ((b * 8 + j) * ldp + t0) * 4), v[j]);
      }
    }
  }
}

void q4_0_to_nibbles(const uint8_t* row, int64_t n, uint8_t* q, float* d) {
  const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(row);
  const __m128i low = _mm_set1_epi8(0x0F);
  for (int64_t j = 0; j < n / kQK; ++j) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[j].qs));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + kQK * j), _mm_and_si128(v, low));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + kQK * j + 16),
                     _mm_and_si128(_mm_srli_epi16(v, 4), low));
    d[j] = _cvtsh_ss(b[j].d);
  }
}

void gemm_panel_q4_0(int64_t K, const uint8_t* w, int64_t ldw, const float* dw, int64_t ldd,
                     const uint8_t* pq, const float* ps, int64_t ldp, int m, int v, float* c) {
  gemm_rows_int<Q4Format>(K, w, ldw, dw, ldd, pq, ps, ldp, m, v, c);
}

void pack_panel_q8_0(const uint8_t* act, size_t stride, int64_t n, int64_t K, int16_t* p,
                     int64_t ldp) {
  const int64_t nb = K / kQK;
  float* scales = reinterpret_cast<float*>(p + K * ldp);  // (nb, ldp)
  for (int64_t t0 = 0; t0 < ldp; t0 += 8) {
    const ActQ8* rows[8];  // null past the last token: those columns are zero
    for (int i = 0; i < 8; ++i) {
      rows[i] = t0 + i < n ? reinterpret_cast<const ActQ8*>(act + (t0 + i) * stride) : nullptr;
    }
    for (int64_t b = 0; b < nb; ++b) {
      for (int i = 0; i < 8; ++i) scales[b * ldp + t0 + i] = rows[i] != nullptr ? rows[i][b].d : 0;
      for (int half = 0; half < 2; ++half) {  // values [16 half, 16 half + 16) of the block
        __m256 v[8];  // token i's 16 values as 8 int16 pairs, transposed to pair j's 8 tokens
        for (int i = 0; i < 8; ++i) {
          v[i] = rows[i] != nullptr
                     ? _mm256_castsi256_ps(_mm256_cvtepi8_epi16(_mm_loadu_si128(
                           reinterpret_cast<const __m128i*>(rows[i][b].qs + 16 * half))))
                     : _mm256_setzero_ps();
        }
        transpose8(v);
        for (int j = 0; j < 8; ++j) {
          const int64_t pair = b * 16 + half * 8 + j;
          _mm256_storeu_ps(reinterpret_cast<float*>(p + (pair * ldp + t0) * 2), v[j]);
        }
      }
    }
  }
}

void q8_0_to_i16(const uint8_t* row, int64_t n, int16_t* q, float* d) {
  const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(row);
  for (int64_t j = 0; j < n / kQK; ++j) {
    for (int h = 0; h < 2; ++h) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[j].qs + 16 * h));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + kQK * j + 16 * h),
                          _mm256_cvtepi8_epi16(v));
    }
    d[j] = _cvtsh_ss(b[j].d);
  }
}

void gemm_panel_q8_0(int64_t K, const int16_t* w, int64_t ldw, const float* dw, int64_t ldd,
                     const int16_t* pa, const float* ps, int64_t ldp, int m, int v, float* c) {
  gemm_rows_int<Q8Format>(K, w, ldw, dw, ldd, pa, ps, ldp, m, v, c);
}

}  // namespace avx2
}  // namespace mambalite
