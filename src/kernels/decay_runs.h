// The runs of Mamba-2's prefill head scan (kernels_avx2.cpp's head_scan4_runs and the AVX-512
// head scan): within a run of tokens of one head the state is kept divided by the run's
// cumulative decay g (see head_scan4_runs). Scalar code shared by both files; internal linkage,
// so each per-ISA file gets its own copy (no ODR clash).
#pragma once

#include <cstdint>

namespace mambalite {
namespace {

constexpr int64_t kRunTokens = 16;
constexpr int64_t kRunMaxState = 256;  // Bs scratch: (kRunTokens, N <= kRunMaxState)
constexpr float kMinRunDecay = 0x1p-40f;

// The run that starts at token t0 of n (dA[t0] >= kMinRunDecay): returns its length L, at most
// kRunTokens, ending before the cumulative decay would fall below kMinRunDecay; g[0, L) gets the
// decays since the run began (dA[t0] * ... * dA[t0 + j]).
inline int64_t decay_run(const float* dA, int64_t t0, int64_t n, float* g) {
  int64_t L = 0;
  for (float decay = 1.0f; L < kRunTokens && t0 + L < n; ++L) {
    decay *= dA[t0 + L];
    if (!(decay >= kMinRunDecay)) break;
    g[L] = decay;
  }
  return L;
}

}  // namespace
}  // namespace mambalite
