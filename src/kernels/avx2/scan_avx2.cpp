// AVX2 scans: Mamba-1's selective scan and Mamba-2's head scan (decode and the prefill runs of
// decay_runs.h), with the SiLU gate. Built with -mavx2 -mfma -mf16c like kernels_avx2.cpp.
#include "kernels/avx2/scan_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "format/fp16.h"
#include "kernels/avx2/simd_avx2.h"
#include "kernels/decay_runs.h"
#include "kernels/kernels.h"

namespace mambalite {
namespace avx2 {
namespace {

// The portable kernels this file falls back to (odd state sizes); the rest of the shared file is
// kernels_avx2.cpp's.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "kernels/kernels_common.inc"
#pragma GCC diagnostic pop

void silu_row(int64_t n, float* v) {  // declared by kernels_common.inc; unused here
  for (int64_t i = 0; i < n; ++i) v[i] = silu(v[i]);
}

// y (n) *= silu(z (n)) = z / (1 + exp(-z)).
inline void gate_silu(int64_t n, const float* z, float* y) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), silu8(_mm256_loadu_ps(z + i))));
  }
  for (; i < n; ++i) y[i] *= silu(z[i]);
}

// One channel of head_scan4's step: the state row sp[k, k + 8) advanced by T tokens (dx: each
// token's dt * x of the channel), each token's y partial added to its accumulator.
template <int T>
inline void scan_channel(float* sp, int64_t k, __m256 va, __m256 vb, const float* dx, __m256 b0,
                         __m256 c0, __m256 b1, __m256 c1, __m256& acc0, __m256& acc1) {
  __m256 u =
      _mm256_fmadd_ps(_mm256_loadu_ps(sp + k), va, _mm256_mul_ps(_mm256_broadcast_ss(dx), b0));
  acc0 = _mm256_fmadd_ps(u, c0, acc0);
  if (T > 1) {
    u = _mm256_fmadd_ps(u, vb, _mm256_mul_ps(_mm256_broadcast_ss(dx + 4), b1));
    acc1 = _mm256_fmadd_ps(u, c1, acc1);
  }
  _mm256_storeu_ps(sp + k, u);
}

// T (1 or 2) tokens from t of head_scan4: one pass over the four state rows s (4, N) per T
// tokens, sharing each B and C load among four channels.
template <int T>
void scan4_tokens(int64_t t, int64_t N, const float* x, int64_t ldx, const float* dt,
                  const float* dA, const float* B, const float* C, int64_t ldbc, float Dh, float* s,
                  float* y, int64_t ldy) {
  const float* xt = x + t * ldx;
  const float* xu = xt + (T > 1 ? ldx : 0);
  const float dx[8] = {dt[t] * xt[0],
                       dt[t] * xt[1],
                       dt[t] * xt[2],
                       dt[t] * xt[3],
                       T > 1 ? dt[t + 1] * xu[0] : 0.0f,
                       T > 1 ? dt[t + 1] * xu[1] : 0.0f,
                       T > 1 ? dt[t + 1] * xu[2] : 0.0f,
                       T > 1 ? dt[t + 1] * xu[3] : 0.0f};
  const __m256 va = _mm256_set1_ps(dA[t]), vb = _mm256_set1_ps(T > 1 ? dA[t + 1] : 0.0f);
  const float* B0 = B + t * ldbc;
  const float* C0 = C + t * ldbc;
  const float* B1 = B0 + (T > 1 ? ldbc : 0);
  const float* C1 = C0 + (T > 1 ? ldbc : 0);
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
  const char* ahead = reinterpret_cast<const char*>(s);
  for (int64_t k = 0; k < N; k += 8, ahead += 128) {
    if (T == 1) {  // decode: the state streams from DRAM like the weights (32 N bytes per call)
      prefetch_two_levels(ahead);
      prefetch_two_levels(ahead + 64);
    }
    const __m256 b0 = _mm256_loadu_ps(B0 + k), c0 = _mm256_loadu_ps(C0 + k);
    const __m256 b1 = T > 1 ? _mm256_loadu_ps(B1 + k) : b0;
    const __m256 c1 = T > 1 ? _mm256_loadu_ps(C1 + k) : c0;
    scan_channel<T>(s, k, va, vb, dx, b0, c0, b1, c1, a0, e0);
    scan_channel<T>(s + N, k, va, vb, dx + 1, b0, c0, b1, c1, a1, e1);
    scan_channel<T>(s + 2 * N, k, va, vb, dx + 2, b0, c0, b1, c1, a2, e2);
    scan_channel<T>(s + 3 * N, k, va, vb, dx + 3, b0, c0, b1, c1, a3, e3);
  }
  float* yt = y + t * ldy;
  yt[0] = hsum(a0) + Dh * xt[0];
  yt[1] = hsum(a1) + Dh * xt[1];
  yt[2] = hsum(a2) + Dh * xt[2];
  yt[3] = hsum(a3) + Dh * xt[3];
  if (T > 1) {
    float* yu = yt + ldy;
    yu[0] = hsum(e0) + Dh * xu[0];
    yu[1] = hsum(e1) + Dh * xu[1];
    yu[2] = hsum(e2) + Dh * xu[2];
    yu[3] = hsum(e3) + Dh * xu[3];
  }
}

// head_scan of four channels (N a multiple of 8), without the gate. Two tokens per pass over the
// state and four channels per B and C load: per 8 values and token three vector operations, two
// loads and half a store (the two-channel, one-token loop below does four loads and one store).
void head_scan4(int64_t n, int64_t N, const float* x, int64_t ldx, const float* dt, const float* dA,
                const float* B, const float* C, int64_t ldbc, float Dh, float* s, float* y,
                int64_t ldy) {
  int64_t t = 0;
  for (; t + 2 <= n; t += 2) scan4_tokens<2>(t, N, x, ldx, dt, dA, B, C, ldbc, Dh, s, y, ldy);
  if (t < n) scan4_tokens<1>(t, N, x, ldx, dt, dA, B, C, ldbc, Dh, s, y, ldy);
}

// Prefill form of head_scan4: runs of tokens as decayed sums. Within a run [t0, t1) of one head,
// with g_t = dA[t0] * ... * dA[t] the decay since the run began, the state is
//   s_t = g_t * (s_{t0 - 1} + sum_{u = t0..t} x_u * Bs_u),  Bs_u = (dt_u / g_u) * B_u,
// so the channels accumulate x * Bs into s~ = s / g_t: one multiply-add per state value and token
// where the recurrence takes two (s * a + dx * B), plus the C contraction, y_t = g_t * (C_t . s~)
// + D x_t. Bs is computed once per token for all the head's channels, and the run's last token
// stores g * s~, the true state. Runs stop before g falls below kMinRunDecay (1/g scales Bs, and
// the rounding of s~ relative to |s~| becomes relative to g * |s~| = |s|, as in the recurrence);
// a token whose own decay is below it goes through the recurrence alone.
// (kRunTokens, kRunMaxState, kMinRunDecay and decay_run: decay_runs.h)

// T (1 or 2) tokens from run position j of four channels: s (4, N) holds s~; Last: scale the
// stored state by gs (the run's decay), back to the true state. Per 8 state values: four loads
// of Bs and C shared by the four channels, and per channel a load, a store and four
// multiply-adds.
template <int T, bool Last>
void run4_tokens(int64_t j, int64_t N, const float* x, int64_t ldx, const float* Bs, const float* C,
                 int64_t ldbc, const float* g, float gs, float Dh, float* s, float* y,
                 int64_t ldy) {
  const float* xt = x + j * ldx;
  const float* xu = xt + (T > 1 ? ldx : 0);
  const float* B0 = Bs + j * N;
  const float* B1 = B0 + (T > 1 ? N : 0);
  const float* C0 = C + j * ldbc;
  const float* C1 = C0 + (T > 1 ? ldbc : 0);
  const __m256 vg = _mm256_set1_ps(gs);
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
  for (int64_t k = 0; k < N; k += 8) {
    const __m256 b0 = _mm256_loadu_ps(B0 + k), c0 = _mm256_loadu_ps(C0 + k);
    const __m256 b1 = _mm256_loadu_ps(B1 + k), c1 = _mm256_loadu_ps(C1 + k);
    __m256* acc[4][2] = {{&a0, &e0}, {&a1, &e1}, {&a2, &e2}, {&a3, &e3}};
    for (int i = 0; i < 4; ++i) {
      float* sp = s + i * N + k;
      __m256 u = _mm256_fmadd_ps(_mm256_broadcast_ss(xt + i), b0, _mm256_loadu_ps(sp));
      *acc[i][0] = _mm256_fmadd_ps(u, c0, *acc[i][0]);
      if (T > 1) {
        u = _mm256_fmadd_ps(_mm256_broadcast_ss(xu + i), b1, u);
        *acc[i][1] = _mm256_fmadd_ps(u, c1, *acc[i][1]);
      }
      _mm256_storeu_ps(sp, Last ? _mm256_mul_ps(u, vg) : u);
    }
  }
  const __m256 sums[2][4] = {{a0, a1, a2, a3}, {e0, e1, e2, e3}};
  for (int u = 0; u < T; ++u) {
    const float* xv = u ? xu : xt;
    float* yv = y + (j + u) * ldy;
    for (int i = 0; i < 4; ++i) yv[i] = g[j + u] * hsum(sums[u][i]) + Dh * xv[i];
  }
}

// One run of L tokens for channels [0, P4) (a multiple of 4), x, C and y already at the run.
void run4(int64_t L, int64_t P4, int64_t N, const float* x, int64_t ldx, const float* Bs,
          const float* C, int64_t ldbc, const float* g, float Dh, float* s, float* y, int64_t ldy) {
  const float gs = g[L - 1];
  for (int64_t p = 0; p < P4; p += 4) {
    float* sp = s + p * N;
    int64_t j = 0;
    for (; j + 2 < L; j += 2) {
      run4_tokens<2, false>(j, N, x + p, ldx, Bs, C, ldbc, g, gs, Dh, sp, y + p, ldy);
    }
    if (j + 2 == L) {
      run4_tokens<2, true>(j, N, x + p, ldx, Bs, C, ldbc, g, gs, Dh, sp, y + p, ldy);
    } else {
      run4_tokens<1, true>(j, N, x + p, ldx, Bs, C, ldbc, g, gs, Dh, sp, y + p, ldy);
    }
  }
}

// head_scan4 over channels [0, P4) for n tokens, by runs (N a multiple of 8, N <= kRunMaxState).
void head_scan4_runs(int64_t n, int64_t P4, int64_t N, const float* x, int64_t ldx, const float* dt,
                     const float* dA, const float* B, const float* C, int64_t ldbc, float Dh,
                     float* s, float* y, int64_t ldy) {
  alignas(32) float Bs[kRunTokens * kRunMaxState];  // (L, N)
  float g[kRunTokens];                              // (L) decay since the run began
  int64_t t0 = 0;
  while (t0 < n) {
    if (!(dA[t0] >= kMinRunDecay)) {  // a decay this strong: the recurrence, for one token
      for (int64_t p = 0; p < P4; p += 4) {
        scan4_tokens<1>(t0, N, x + p, ldx, dt, dA, B, C, ldbc, Dh, s + p * N, y + p, ldy);
      }
      ++t0;
      continue;
    }
    const int64_t L = decay_run(dA, t0, n, g);
    for (int64_t j = 0; j < L; ++j) {
      const __m256 scale = _mm256_set1_ps(dt[t0 + j] / g[j]);
      const float* Bt = B + (t0 + j) * ldbc;
      for (int64_t k = 0; k < N; k += 8) {
        _mm256_store_ps(Bs + j * N + k, _mm256_mul_ps(scale, _mm256_loadu_ps(Bt + k)));
      }
    }
    run4(L, P4, N, x + t0 * ldx, ldx, Bs, C + t0 * ldbc, ldbc, g, Dh, s, y + t0 * ldy, ldy);
    t0 += L;
  }
}

}  // namespace

void selective_scan(int64_t n, int64_t E, int64_t N, const float* x, const float* dt,
                    const float* A, const float* B, const float* C, int64_t ldbc, const float* D,
                    const float* z, int64_t ldz, float* s, float* y, int64_t c0, int64_t c1) {
  if (N % 8 != 0) {
    selective_scan_generic(n, E, N, x, dt, A, B, C, ldbc, D, z, ldz, s, y, c0, c1);
    return;
  }
  for (int64_t c = c0; c < c1; ++c) {
    float* sc = s + c * N;
    const float* Ac = A + c * N;
    // The state and A rows stream from memory, a channel's rows once for all n tokens.
    for (int64_t b = 0; b < N * 4; b += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(sc) + kPrefetchBytes + b, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(Ac) + kPrefetchBytes + b, _MM_HINT_T0);
    }
    for (int64_t t = 0; t < n; ++t) {
      const float xv = x[t * E + c];
      const __m256 d = _mm256_set1_ps(dt[t * E + c]);
      const __m256 dx = _mm256_set1_ps(dt[t * E + c] * xv);
      const float* Bt = B + t * ldbc;
      const float* Ct = C + t * ldbc;
      __m256 acc = _mm256_setzero_ps();
      for (int64_t k = 0; k < N; k += 8) {
        const __m256 dA = exp8(_mm256_mul_ps(d, _mm256_loadu_ps(Ac + k)));
        const __m256 sk = _mm256_fmadd_ps(_mm256_loadu_ps(sc + k), dA,
                                          _mm256_mul_ps(dx, _mm256_loadu_ps(Bt + k)));
        _mm256_storeu_ps(sc + k, sk);
        acc = _mm256_fmadd_ps(sk, _mm256_loadu_ps(Ct + k), acc);
      }
      y[t * E + c] = hsum(acc) + D[c] * xv;
    }
  }
  for (int64_t t = 0; t < n; ++t) gate_silu(c1 - c0, z + t * ldz + c0, y + t * E + c0);
}

// Four channels at a time (head_scan4) when N is a multiple of 8, then two at a time, sharing the
// B and C loads; their state rows stay in L1 across the block's tokens. The gate y *= silu(z)
// runs afterwards, vectorised.
void head_scan(int64_t n, int64_t P, int64_t N, const float* x, int64_t ldx, const float* dt,
               const float* dA, const float* B, const float* C, int64_t ldbc, float Dh,
               const float* z, int64_t ldz, float* s, float* y, int64_t ldy) {
  const int64_t N8 = N & ~int64_t{7};
  int64_t p = 0;
  if (N8 == N && n > 1 && P >= 4 && N <= kRunMaxState) {  // prefill: runs as decayed sums
    p = P & ~int64_t{3};
    head_scan4_runs(n, p, N, x, ldx, dt, dA, B, C, ldbc, Dh, s, y, ldy);
  } else if (N8 == N) {
    for (; p + 4 <= P; p += 4) {
      head_scan4(n, N, x + p, ldx, dt, dA, B, C, ldbc, Dh, s + p * N, y + p, ldy);
    }
  }
  for (; p + 2 <= P; p += 2) {
    float* s0 = s + p * N;
    float* s1 = s0 + N;
    for (int64_t t = 0; t < n; ++t) {
      const float x0 = x[t * ldx + p], x1 = x[t * ldx + p + 1];
      const float dx0 = dt[t] * x0, dx1 = dt[t] * x1, a = dA[t];
      const __m256 va = _mm256_set1_ps(a), vdx0 = _mm256_set1_ps(dx0), vdx1 = _mm256_set1_ps(dx1);
      const float* Bt = B + t * ldbc;
      const float* Ct = C + t * ldbc;
      __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
      int64_t k = 0;
      for (; k + 16 <= N8; k += 16) {
        const __m256 b0 = _mm256_loadu_ps(Bt + k), b1 = _mm256_loadu_ps(Bt + k + 8);
        const __m256 c0 = _mm256_loadu_ps(Ct + k), c1 = _mm256_loadu_ps(Ct + k + 8);
        const __m256 u0 = _mm256_fmadd_ps(_mm256_loadu_ps(s0 + k), va, _mm256_mul_ps(vdx0, b0));
        const __m256 u1 = _mm256_fmadd_ps(_mm256_loadu_ps(s0 + k + 8), va, _mm256_mul_ps(vdx0, b1));
        const __m256 v0 = _mm256_fmadd_ps(_mm256_loadu_ps(s1 + k), va, _mm256_mul_ps(vdx1, b0));
        const __m256 v1 = _mm256_fmadd_ps(_mm256_loadu_ps(s1 + k + 8), va, _mm256_mul_ps(vdx1, b1));
        _mm256_storeu_ps(s0 + k, u0);
        _mm256_storeu_ps(s0 + k + 8, u1);
        _mm256_storeu_ps(s1 + k, v0);
        _mm256_storeu_ps(s1 + k + 8, v1);
        acc0 = _mm256_fmadd_ps(u0, c0, acc0);
        acc1 = _mm256_fmadd_ps(u1, c1, acc1);
        acc2 = _mm256_fmadd_ps(v0, c0, acc2);
        acc3 = _mm256_fmadd_ps(v1, c1, acc3);
      }
      for (; k < N8; k += 8) {
        const __m256 b0 = _mm256_loadu_ps(Bt + k), c0 = _mm256_loadu_ps(Ct + k);
        const __m256 u0 = _mm256_fmadd_ps(_mm256_loadu_ps(s0 + k), va, _mm256_mul_ps(vdx0, b0));
        const __m256 v0 = _mm256_fmadd_ps(_mm256_loadu_ps(s1 + k), va, _mm256_mul_ps(vdx1, b0));
        _mm256_storeu_ps(s0 + k, u0);
        _mm256_storeu_ps(s1 + k, v0);
        acc0 = _mm256_fmadd_ps(u0, c0, acc0);
        acc2 = _mm256_fmadd_ps(v0, c0, acc2);
      }
      float sum0 = hsum(_mm256_add_ps(acc0, acc1)), sum1 = hsum(_mm256_add_ps(acc2, acc3));
      for (; k < N; ++k) {
        s0[k] = s0[k] * a + dx0 * Bt[k];
        s1[k] = s1[k] * a + dx1 * Bt[k];
        sum0 += s0[k] * Ct[k];
        sum1 += s1[k] * Ct[k];
      }
      y[t * ldy + p] = sum0 + Dh * x0;
      y[t * ldy + p + 1] = sum1 + Dh * x1;
    }
  }
  const int64_t P2 = p;  // channels done above; the gate below covers those
  if (p < P) {           // an odd last channel, gate included
    head_scan_generic(n, 1, N, x + p, ldx, dt, dA, B, C, ldbc, Dh, z + p, ldz, s + p * N, y + p,
                      ldy);
  }
  for (int64_t t = 0; t < n; ++t) gate_silu(P2, z + t * ldz, y + t * ldy);
}

}  // namespace avx2
}  // namespace mambalite
