// AVX2 attention over an F16 KV cache. A tile's K rows, then its V rows, are converted to fp32
// once and used by every query head of the kv head's group; the softmax runs 8 lanes wide.
#include "kernels/avx2/attention_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "format/fp16.h"
#include "kernels/avx2/simd_avx2.h"

namespace mambalite {
namespace avx2 {
namespace {

// rows (nj) of hd halves, stride apart -> out (nj, hd) floats.
void rows_to_f32(int64_t nj, int64_t hd, const uint16_t* r, int64_t stride, float* out) {
  const int64_t h8 = hd / 8 * 8;
  for (int64_t j = 0; j < nj; ++j, r += stride, out += hd) {
    for (int64_t i = 0; i < hd; i += 32) {  // 16 rows ahead: cache rows are strided slices
      _mm_prefetch(reinterpret_cast<const char*>(r + 16 * stride + i), _MM_HINT_T0);
    }
    int64_t i = 0;
    for (; i < h8; i += 8) {
      _mm256_storeu_ps(out + i,
                       _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + i))));
    }
    for (; i < hd; ++i) out[i] = fp16_to_fp32(r[i]);
  }
}

// s[j] = scale * (q . kf_j) for nj rows of kf (nj, hd): eight rows per pass share each q load.
void scores(int64_t nj, int64_t hd, const float* kf, const float* q, float scale, float* s) {
  const int64_t h8 = hd / 8 * 8;
  int64_t j = 0;
  for (; j + 8 <= nj; j += 8) {
    const float* r = kf + j * hd;
    __m256 a[8];
    for (int u = 0; u < 8; ++u) a[u] = _mm256_setzero_ps();
    for (int64_t i = 0; i < h8; i += 8) {
      const __m256 x = _mm256_loadu_ps(q + i);
      for (int u = 0; u < 8; ++u) a[u] = _mm256_fmadd_ps(x, _mm256_loadu_ps(r + u * hd + i), a[u]);
    }
    __m256 sum = hsum8(a);
    if (h8 < hd) {
      alignas(32) float tail[8];
      for (int u = 0; u < 8; ++u) {
        float t = 0.0f;
        for (int64_t i = h8; i < hd; ++i) t += q[i] * r[u * hd + i];
        tail[u] = t;
      }
      sum = _mm256_add_ps(sum, _mm256_load_ps(tail));
    }
    _mm256_storeu_ps(s + j, _mm256_mul_ps(sum, _mm256_set1_ps(scale)));
  }
  for (; j < nj; ++j) {
    const float* r = kf + j * hd;
    __m256 a = _mm256_setzero_ps();
    for (int64_t i = 0; i < h8; i += 8) {
      a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(r + i), a);
    }
    float t = hsum(a);
    for (int64_t i = h8; i < hd; ++i) t += q[i] * r[i];
    s[j] = scale * t;
  }
}

// s (nj) -> e^(s - m) in place; returns their sum.
float exp_shifted(int64_t nj, float m, float* s) {
  const __m256 vm = _mm256_set1_ps(m);
  __m256 sum = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= nj; j += 8) {
    const __m256 p = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
    _mm256_storeu_ps(s + j, p);
    sum = _mm256_add_ps(sum, p);
  }
  float total = hsum(sum);
  for (; j < nj; ++j) {
    s[j] = std::exp(s[j] - m);
    total += s[j];
  }
  return total;
}

// acc (hd) = c * acc + sum_j p[j] * vf_j, 64 columns at a time in registers.
void accumulate(int64_t nj, int64_t hd, const float* vf, const float* p, float c, float* acc) {
  const __m256 vc = _mm256_set1_ps(c);
  const int64_t h8 = hd / 8 * 8;
  for (int64_t c0 = 0; c0 < h8; c0 += 64) {
    const int64_t nv = std::min<int64_t>(8, (h8 - c0) / 8);
    __m256 a[8];
    for (int64_t u = 0; u < nv; ++u) a[u] = _mm256_mul_ps(vc, _mm256_loadu_ps(acc + c0 + 8 * u));
    for (int64_t j = 0; j < nj; ++j) {
      const __m256 w = _mm256_set1_ps(p[j]);
      const float* r = vf + j * hd + c0;
      for (int64_t u = 0; u < nv; ++u) a[u] = _mm256_fmadd_ps(w, _mm256_loadu_ps(r + 8 * u), a[u]);
    }
    for (int64_t u = 0; u < nv; ++u) _mm256_storeu_ps(acc + c0 + 8 * u, a[u]);
  }
  for (int64_t i = h8; i < hd; ++i) {
    float t = c * acc[i];
    for (int64_t j = 0; j < nj; ++j) t += p[j] * vf[j * hd + i];
    acc[i] = t;
  }
}

}  // namespace

void axpy_f16(int64_t n, float a, const uint16_t* v, float* y) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + i)));
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, x, _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += a * fp16_to_fp32(v[i]);
}

void attend_f16(int64_t g, int64_t nj, int64_t hd, const uint16_t* k, const uint16_t* v,
                int64_t stride, const float* q, float scale, float* acc, float* ml,
                float* scratch) {
  float* f = scratch;        // (nj, hd): the K rows, then the V rows, as floats
  float* s = f + nj * hd;    // (g, nj): scores, then softmax weights
  float* corr = s + g * nj;  // (g): each head's rescale of acc
  rows_to_f32(nj, hd, k, stride, f);
  for (int64_t u = 0; u < g; ++u) {
    float* su = s + u * nj;
    scores(nj, hd, f, q + u * hd, scale, su);
    float tile_max = -INFINITY;
    for (int64_t j = 0; j < nj; ++j) tile_max = std::max(tile_max, su[j]);
    const float m_new = std::max(ml[2 * u], tile_max);
    corr[u] = std::exp(ml[2 * u] - m_new);  // 0 on the first tile (m = -inf)
    ml[2 * u + 1] = corr[u] * ml[2 * u + 1] + exp_shifted(nj, m_new, su);
    ml[2 * u] = m_new;
  }
  rows_to_f32(nj, hd, v, stride, f);
  for (int64_t u = 0; u < g; ++u) accumulate(nj, hd, f, s + u * nj, corr[u], acc + u * hd);
}

}  // namespace avx2
}  // namespace mambalite
