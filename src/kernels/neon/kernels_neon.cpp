// ARM NEON kernels (AArch64 with the dot-product extension, e.g. Cortex-A55/A76, Apple M, Graviton
// 2+). Built with -march=armv8.2-a+dotprod and used only when the CPU reports ASIMDDP.
#include <arm_neon.h>

#include <cmath>
#include <cstring>

#include "format/fp16.h"
#include "kernels/kernels.h"
#include "kernels/neon/kquants_neon.h"
#include "kernels/neon/simd_neon.h"

namespace mambalite {
namespace {

#include "kernels/kernels_common.inc"

inline float32x4_t load_f16x4(const uint16_t* p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

inline float32x4_t load_bf16x4(const uint16_t* p) {
  return vreinterpretq_f32_u32(vshlq_n_u32(vmovl_u16(vld1_u16(p)), 16));
}

// Four accumulators over 4-wide loads; `load(i)` gives w[i, i + 4), `scalar(i)` one value.
template <typename Load, typename Scalar>
inline float dot4w(int64_t n, const float* x, Load load, Scalar scalar) {
  float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = vfmaq_f32(a0, load(i), vld1q_f32(x + i));
    a1 = vfmaq_f32(a1, load(i + 4), vld1q_f32(x + i + 4));
    a2 = vfmaq_f32(a2, load(i + 8), vld1q_f32(x + i + 8));
    a3 = vfmaq_f32(a3, load(i + 12), vld1q_f32(x + i + 12));
  }
  for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, load(i), vld1q_f32(x + i));
  float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
  for (; i < n; ++i) sum += scalar(i) * x[i];
  return sum;
}

float dot_f32(int64_t n, const uint8_t* w, const float* x) {
  const float* a = reinterpret_cast<const float*>(w);
  return dot4w(n, x, [a](int64_t i) { return vld1q_f32(a + i); }, [a](int64_t i) { return a[i]; });
}

float dot_f16(int64_t n, const uint8_t* w, const float* x) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(w);
  return dot4w(
      n, x, [h](int64_t i) { return load_f16x4(h + i); },
      [h](int64_t i) { return fp16_to_fp32(h[i]); });
}

float dot_bf16(int64_t n, const uint8_t* w, const float* x) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(w);
  return dot4w(
      n, x, [h](int64_t i) { return load_bf16x4(h + i); },
      [h](int64_t i) { return bf16_to_fp32(h[i]); });
}

// The 32 values of a Q4_0 block as int8 in [-8, 7]: values 0..15 and 16..31.
inline void unpack_q4_0(const uint8_t* qs, int8x16_t* lo, int8x16_t* hi) {
  const uint8x16_t v = vld1q_u8(qs);
  const int8x16_t eight = vdupq_n_s8(8);
  *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), eight);
  *hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);
}

inline void unpack_q8_0(const uint8_t* qs, int8x16_t* lo, int8x16_t* hi) {
  const int8_t* q = reinterpret_cast<const int8_t*>(qs);
  *lo = vld1q_s8(q);
  *hi = vld1q_s8(q + 16);
}

// sum_j w[j] * x[j] over one block, with the weights already unpacked to int8.
inline int32_t block_dot(int8x16_t wlo, int8x16_t whi, const ActQ8& x) {
  int32x4_t acc = vdotq_s32(vdupq_n_s32(0), wlo, vld1q_s8(x.qs));
  acc = vdotq_s32(acc, whi, vld1q_s8(x.qs + 16));
  return vaddvq_s32(acc);
}

template <typename Unpack>
inline float dot_q(int64_t n, const uint8_t* w, size_t block_bytes, Unpack unpack, const ActQ8* x) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const uint8_t* blk = w + i * block_bytes;
    uint16_t d;
    std::memcpy(&d, blk, 2);
    int8x16_t lo, hi;
    unpack(blk + 2, &lo, &hi);
    sum += static_cast<float>(block_dot(lo, hi, x[i])) * (half_to_float(d) * x[i].d);
  }
  return sum;
}

float dot_q8_0(int64_t n, const uint8_t* w, const ActQ8* x) {
  return dot_q(n, w, sizeof(BlockQ8_0), unpack_q8_0, x);
}

float dot_q4_0(int64_t n, const uint8_t* w, const ActQ8* x) {
  return dot_q(n, w, sizeof(BlockQ4_0), unpack_q4_0, x);
}

// Q6_K: each 32-value activation block meets 16-byte halves of one ql slice (low or high
// nibbles of ql[0, 32) or ql[32, 64) of the half-block), two bits of each qh byte, and two
// 16-value sub-blocks with their own int8 scales (one per 16-lane vector).
float dot_q6_k(int64_t n, const uint8_t* w, const ActQ8* x) {
  const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(w);
  const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(3);
  const int8x16_t m32 = vdupq_n_s8(32);
  float32x4_t acc = vdupq_n_f32(0.0f);
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float d = half_to_float(b[i].d);
    const ActQ8* xb = x + i * (kQKK / kQK);
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = b[i].ql + 64 * half;
      const uint8_t* qh = b[i].qh + 32 * half;
      const int8_t* sc = b[i].scales + 8 * half;
      const uint8x16_t l[4] = {vld1q_u8(ql), vld1q_u8(ql + 16), vld1q_u8(ql + 32),
                               vld1q_u8(ql + 48)};
      const uint8x16_t h[2] = {vld1q_u8(qh), vld1q_u8(qh + 16)};
      for (int c = 0; c < 4; ++c) {  // values [32 c, 32 c + 32) of this half
        const ActQ8& a = xb[4 * half + c];
        const int8x16_t shift = vdupq_n_s8(static_cast<int8_t>(-2 * c));
        int32x4_t isum = vdupq_n_s32(0);
        for (int sub = 0; sub < 2; ++sub) {
          const uint8x16_t src = l[2 * (c & 1) + sub];
          const uint8x16_t lo = c < 2 ? vandq_u8(src, m4) : vshrq_n_u8(src, 4);
          const uint8x16_t hi = vshlq_n_u8(vandq_u8(vshlq_u8(h[sub], shift), m3), 4);
          const int8x16_t q = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, hi)), m32);
          const int32x4_t dq = vdotq_s32(vdupq_n_s32(0), q, vld1q_s8(a.qs + 16 * sub));
          isum = vmlaq_n_s32(isum, dq, sc[2 * c + sub]);
        }
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(isum), d * a.d);
      }
    }
  }
  return vaddvq_f32(acc);
}

// Four activation rows at once, each weight vector loaded and converted once.
template <typename Load, typename Scalar>
inline void dot4x4(int64_t n, const uint8_t* xb, size_t stride, Load load, Scalar scalar,
                   float* out) {
  const float* x[4];
  for (int t = 0; t < 4; ++t) x[t] = reinterpret_cast<const float*>(xb + t * stride);
  float32x4_t a[4], b[4];
  for (int t = 0; t < 4; ++t) a[t] = b[t] = vdupq_n_f32(0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const float32x4_t w0 = load(i), w1 = load(i + 4);
    for (int t = 0; t < 4; ++t) {
      a[t] = vfmaq_f32(a[t], w0, vld1q_f32(x[t] + i));
      b[t] = vfmaq_f32(b[t], w1, vld1q_f32(x[t] + i + 4));
    }
  }
  for (int t = 0; t < 4; ++t) {
    float sum = vaddvq_f32(vaddq_f32(a[t], b[t]));
    for (int64_t j = i; j < n; ++j) sum += scalar(j) * x[t][j];
    out[t] = sum;
  }
}

void dot4_f32(int64_t n, const uint8_t* w, const uint8_t* x, size_t stride, float* out) {
  const float* a = reinterpret_cast<const float*>(w);
  dot4x4(
      n, x, stride, [a](int64_t i) { return vld1q_f32(a + i); }, [a](int64_t i) { return a[i]; },
      out);
}

void dot4_f16(int64_t n, const uint8_t* w, const uint8_t* x, size_t stride, float* out) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(w);
  dot4x4(
      n, x, stride, [h](int64_t i) { return load_f16x4(h + i); },
      [h](int64_t i) { return fp16_to_fp32(h[i]); }, out);
}

void dot4_bf16(int64_t n, const uint8_t* w, const uint8_t* x, size_t stride, float* out) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(w);
  dot4x4(
      n, x, stride, [h](int64_t i) { return load_bf16x4(h + i); },
      [h](int64_t i) { return bf16_to_fp32(h[i]); }, out);
}

template <typename Unpack>
inline void dot_q_x4(int64_t n, const uint8_t* w, size_t block_bytes, Unpack unpack,
                     const uint8_t* xb, size_t stride, float* out) {
  const ActQ8* x[4];
  for (int t = 0; t < 4; ++t) x[t] = reinterpret_cast<const ActQ8*>(xb + t * stride);
  float sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t i = 0; i < n / kQK; ++i) {
    const uint8_t* blk = w + i * block_bytes;
    uint16_t d;
    std::memcpy(&d, blk, 2);
    const float dw = half_to_float(d);
    int8x16_t lo, hi;
    unpack(blk + 2, &lo, &hi);
    for (int t = 0; t < 4; ++t) {
      sum[t] += static_cast<float>(block_dot(lo, hi, x[t][i])) * (dw * x[t][i].d);
    }
  }
  for (int t = 0; t < 4; ++t) out[t] = sum[t];
}

void dot4_q8_0(int64_t n, const uint8_t* w, const uint8_t* x, size_t stride, float* out) {
  dot_q_x4(n, w, sizeof(BlockQ8_0), unpack_q8_0, x, stride, out);
}

void dot4_q4_0(int64_t n, const uint8_t* w, const uint8_t* x, size_t stride, float* out) {
  dot_q_x4(n, w, sizeof(BlockQ4_0), unpack_q4_0, x, stride, out);
}

// Same values as the scalar version: max |x|, d = amax / 127, q = round-half-even(x * (1/d)).
void quantize_act(const float* x, int64_t n, ActQ8* out) {
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float32x4_t v[8];
    float32x4_t amax = vdupq_n_f32(0.0f);
    for (int j = 0; j < 8; ++j) {
      v[j] = vld1q_f32(x + 4 * j);
      amax = vmaxq_f32(amax, vabsq_f32(v[j]));
    }
    const float d = vmaxvq_f32(amax) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    out[i].d = d;
    int32x4_t sum = vdupq_n_s32(0);
    for (int j = 0; j < 8; j += 2) {
      const int32x4_t q0 = vcvtnq_s32_f32(vmulq_n_f32(v[j], id));
      const int32x4_t q1 = vcvtnq_s32_f32(vmulq_n_f32(v[j + 1], id));
      sum = vaddq_s32(sum, vaddq_s32(q0, q1));
      const int16x8_t q16 = vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1));
      vst1_s8(out[i].qs + 4 * j, vqmovn_s16(q16));
    }
    out[i].s = d * static_cast<float>(vaddvq_s32(sum));
  }
}

// exp for x <= 88 (Cephes' polynomial, about 1 ulp); inputs below -87 give about 1.6e-38.
inline float32x4_t exp4(float32x4_t x) {
  x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(88.0f)), vdupq_n_f32(-87.0f));
  const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
  x = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
  x = vfmsq_f32(x, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t y = vdupq_n_f32(1.9875691500e-4f);
  y = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), y, x);
  y = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), y, x);
  y = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), y, x);
  y = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), y, x);
  y = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), y, x);
  y = vfmaq_f32(vaddq_f32(x, vdupq_n_f32(1.0f)), y, vmulq_f32(x, x));
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  return vmulq_f32(y, vreinterpretq_f32_s32(e));
}

// softplus as in kernels_avx2.cpp: max(v, 0) + log1p(exp(-|v|)), log1p by Cephes' logf on
// m = 1 + u in (1, 2] plus the rounding correction (u - (m - 1)) / m; v itself above 20.
inline float32x4_t softplus4(float32x4_t v) {
  const float32x4_t one = vdupq_n_f32(1.0f);
  const float32x4_t u = exp4(vnegq_f32(vabsq_f32(v)));
  const float32x4_t m = vaddq_f32(one, u);
  const uint32x4_t hi = vcgeq_f32(m, vdupq_n_f32(1.41421356237f));
  const float32x4_t e = vreinterpretq_f32_u32(vandq_u32(hi, vreinterpretq_u32_f32(one)));
  const float32x4_t x = vsubq_f32(vbslq_f32(hi, vmulq_n_f32(m, 0.5f), m), one);
  const float32x4_t z = vmulq_f32(x, x);
  float32x4_t y = vdupq_n_f32(7.0376836292e-2f);
  y = vfmaq_f32(vdupq_n_f32(-1.1514610310e-1f), y, x);
  y = vfmaq_f32(vdupq_n_f32(1.1676998740e-1f), y, x);
  y = vfmaq_f32(vdupq_n_f32(-1.2420140846e-1f), y, x);
  y = vfmaq_f32(vdupq_n_f32(1.4249322787e-1f), y, x);
  y = vfmaq_f32(vdupq_n_f32(-1.6668057665e-1f), y, x);
  y = vfmaq_f32(vdupq_n_f32(2.0000714765e-1f), y, x);
  y = vfmaq_f32(vdupq_n_f32(-2.4999993993e-1f), y, x);
  y = vfmaq_f32(vdupq_n_f32(3.3333331174e-1f), y, x);
  y = vmulq_f32(vmulq_f32(y, x), z);
  y = vfmaq_n_f32(y, e, -2.12194440e-4f);
  y = vfmsq_f32(y, vdupq_n_f32(0.5f), z);
  float32x4_t r = vfmaq_n_f32(vaddq_f32(x, y), e, 0.693359375f);
  r = vaddq_f32(r, vdivq_f32(vsubq_f32(u, vsubq_f32(m, one)), m));
  const float32x4_t sp = vaddq_f32(vmaxq_f32(v, vdupq_n_f32(0.0f)), r);
  return vbslq_f32(vcgtq_f32(v, vdupq_n_f32(20.0f)), v, sp);
}

void softplus_bias(int64_t n, const float* x, const float* bias, float* out) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    vst1q_f32(out + i, softplus4(vaddq_f32(vld1q_f32(x + i), vld1q_f32(bias + i))));
  if (i < n) {  // the tail through a padded vector, so every element gets the same arithmetic
    float a[4] = {0}, b[4] = {0};
    std::memcpy(a, x + i, static_cast<size_t>(n - i) * sizeof(float));
    std::memcpy(b, bias + i, static_cast<size_t>(n - i) * sizeof(float));
    vst1q_f32(a, softplus4(vaddq_f32(vld1q_f32(a), vld1q_f32(b))));
    std::memcpy(out + i, a, static_cast<size_t>(n - i) * sizeof(float));
  }
}

inline float32x4_t silu4(float32x4_t z) {
  return vdivq_f32(z, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(z))));
}

// y (n) *= silu(z (n)) = z / (1 + exp(-z)).
inline void gate_silu(int64_t n, const float* z, float* y) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_f32(vld1q_f32(y + i), silu4(vld1q_f32(z + i))));
  for (; i < n; ++i) y[i] *= silu(z[i]);
}

inline void silu_row(int64_t n, float* v) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(v + i, silu4(vld1q_f32(v + i)));
  for (; i < n; ++i) v[i] = silu(v[i]);
}

void selective_scan(int64_t n, int64_t E, int64_t N, const float* x, const float* dt,
                    const float* A, const float* B, const float* C, int64_t ldbc, const float* D,
                    const float* z, int64_t ldz, float* s, float* y, int64_t c0, int64_t c1) {
  if (N % 4 != 0) {
    selective_scan_generic(n, E, N, x, dt, A, B, C, ldbc, D, z, ldz, s, y, c0, c1);
    return;
  }
  for (int64_t c = c0; c < c1; ++c) {
    float* sc = s + c * N;
    const float* Ac = A + c * N;
    for (int64_t t = 0; t < n; ++t) {
      const float xv = x[t * E + c];
      const float d = dt[t * E + c];
      const float dx = d * xv;
      const float* Bt = B + t * ldbc;
      const float* Ct = C + t * ldbc;
      float32x4_t acc = vdupq_n_f32(0.0f);
      for (int64_t k = 0; k < N; k += 4) {
        const float32x4_t dA = exp4(vmulq_n_f32(vld1q_f32(Ac + k), d));
        const float32x4_t sk = vfmaq_f32(vmulq_n_f32(vld1q_f32(Bt + k), dx), vld1q_f32(sc + k), dA);
        vst1q_f32(sc + k, sk);
        acc = vfmaq_f32(acc, sk, vld1q_f32(Ct + k));
      }
      y[t * E + c] = vaddvq_f32(acc) + D[c] * xv;
    }
  }
  for (int64_t t = 0; t < n; ++t) gate_silu(c1 - c0, z + t * ldz + c0, y + t * E + c0);
}

void head_scan(int64_t n, int64_t P, int64_t N, const float* x, int64_t ldx, const float* dt,
               const float* dA, const float* B, const float* C, int64_t ldbc, float Dh,
               const float* z, int64_t ldz, float* s, float* y, int64_t ldy) {
  const int64_t N4 = N & ~int64_t{3};
  for (int64_t p = 0; p < P; ++p) {
    float* sp = s + p * N;
    for (int64_t t = 0; t < n; ++t) {
      const float xv = x[t * ldx + p];
      const float dx = dt[t] * xv;
      const float a = dA[t];
      const float* Bt = B + t * ldbc;
      const float* Ct = C + t * ldbc;
      float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
      int64_t k = 0;
      for (; k + 8 <= N4; k += 8) {
        const float32x4_t s0 =
            vfmaq_n_f32(vmulq_n_f32(vld1q_f32(Bt + k), dx), vld1q_f32(sp + k), a);
        const float32x4_t s1 =
            vfmaq_n_f32(vmulq_n_f32(vld1q_f32(Bt + k + 4), dx), vld1q_f32(sp + k + 4), a);
        vst1q_f32(sp + k, s0);
        vst1q_f32(sp + k + 4, s1);
        acc0 = vfmaq_f32(acc0, s0, vld1q_f32(Ct + k));
        acc1 = vfmaq_f32(acc1, s1, vld1q_f32(Ct + k + 4));
      }
      for (; k < N4; k += 4) {
        const float32x4_t s0 =
            vfmaq_n_f32(vmulq_n_f32(vld1q_f32(Bt + k), dx), vld1q_f32(sp + k), a);
        vst1q_f32(sp + k, s0);
        acc0 = vfmaq_f32(acc0, s0, vld1q_f32(Ct + k));
      }
      float acc = vaddvq_f32(vaddq_f32(acc0, acc1));
      for (; k < N; ++k) {
        sp[k] = sp[k] * a + dx * Bt[k];
        acc += sp[k] * Ct[k];
      }
      y[t * ldy + p] = acc + Dh * xv;
    }
  }
  for (int64_t t = 0; t < n; ++t) gate_silu(P, z + t * ldz, y + t * ldy);
}

void axpy_f16(int64_t n, float a, const uint16_t* v, float* y) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t x = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(v + i)));
    vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), x, a));
  }
  for (; i < n; ++i) y[i] += a * fp16_to_fp32(v[i]);
}
KernelTable make_table() {
  KernelTable k;
  k.name = "neon";
  k.of(GgmlType::F32).dot = dot_as<float, dot_f32>;
  k.of(GgmlType::F16).dot = dot_as<float, dot_f16>;
  k.of(GgmlType::BF16).dot = dot_as<float, dot_bf16>;
  k.of(GgmlType::Q8_0).dot = dot_as<ActQ8, dot_q8_0>;
  k.of(GgmlType::Q4_0).dot = dot_as<ActQ8, dot_q4_0>;
  k.of(GgmlType::Q6_K).dot = dot_as<ActQ8, dot_q6_k>;
  k.of(GgmlType::Q4_K).dot = dot_as<ActQ8, neon::dot_q4_k>;
  k.of(GgmlType::Q5_K).dot = dot_as<ActQ8, neon::dot_q5_k>;
  k.of(GgmlType::Q5_0).dot = dot_as<ActQ8, neon::dot_q5_0>;
  k.of(GgmlType::Q4_1).dot = dot_as<ActQ8, neon::dot_q4_1>;
  k.of(GgmlType::Q5_1).dot = dot_as<ActQ8, neon::dot_q5_1>;
  k.of(GgmlType::F32).dot4 = dot4_f32;
  k.of(GgmlType::F16).dot4 = dot4_f16;
  k.of(GgmlType::BF16).dot4 = dot4_bf16;
  k.of(GgmlType::Q8_0).dot4 = dot4_q8_0;
  k.of(GgmlType::Q4_0).dot4 = dot4_q4_0;
  k.of(GgmlType::F32).tile4x2 = tile4x2_generic<dot_f32>;
  k.of(GgmlType::F16).tile4x2 = tile4x2_generic<dot_f16>;
  k.of(GgmlType::BF16).tile4x2 = tile4x2_generic<dot_bf16>;
  k.quantize_act = quantize_act;
  k.rms_norm = rms_norm;
  k.softplus_bias = softplus_bias;
  k.conv_silu = conv_silu;
  k.selective_scan = selective_scan;
  k.head_scan = head_scan;
  k.of(GgmlType::Q8_0).matvec = matvec_rows<ActQ8, dot_q8_0>;
  k.of(GgmlType::Q4_0).matvec = matvec_rows<ActQ8, dot_q4_0>;
  k.of(GgmlType::Q6_K).matvec = matvec_rows<ActQ8, dot_q6_k>;
  k.of(GgmlType::Q4_K).matvec = matvec_rows<ActQ8, neon::dot_q4_k>;
  k.of(GgmlType::Q5_K).matvec = matvec_rows<ActQ8, neon::dot_q5_k>;
  k.of(GgmlType::Q5_0).matvec = matvec_rows<ActQ8, neon::dot_q5_0>;
  k.of(GgmlType::Q4_1).matvec = matvec_rows<ActQ8, neon::dot_q4_1>;
  k.of(GgmlType::Q5_1).matvec = matvec_rows<ActQ8, neon::dot_q5_1>;
  k.axpy_f16 = axpy_f16;
  return k;
}

}  // namespace

const KernelTable& neon_kernels() {
  static const KernelTable k = make_table();  // built on first use
  return k;
}

}  // namespace mambalite
