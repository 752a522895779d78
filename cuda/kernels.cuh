// Launchers of the CUDA backend's kernels (decode.cu: one token; prefill.cu: blocks of tokens).
// All enqueue on `stream` and return at once; shapes are in the comments, row-major.
#pragma once

#include "common.cuh"

namespace mambalite {
namespace cuda {

// The activation vector of a matrix-vector product, as read into shared memory: x, or the
// RMSNorm of x normalised in `groups` equal groups and scaled by norm_w (when norm_w is set).
struct VecIn {
  const float* x = nullptr;       // (cols)
  const float* norm_w = nullptr;  // (cols) or nullptr
  int groups = 1;
  float eps = 0.0f;
};
constexpr int kMaxNormGroups = 64;

// ---- decode (decode.cu)
// Launch settings of the one-token kernels: the GPU's SM count, and whether to use programmatic
// dependent launch (sm_90+).
struct LaunchCfg {
  int n_sm = 1;
  bool pdl = false;
};
// Optional epilogue of a matrix-vector product: rows [row0, row0 + C) of its output are the
// inputs of a causal conv's C channels for one token, which it applies: out (C) =
// silu(conv([window; x]) + b), window (K-1, C) shifted by one; w: (K, C).
struct ConvEpi {
  int64_t row0 = 0, C = 0;
  int K = 0;
  float* window = nullptr;
  const float* w = nullptr;
  const float* b = nullptr;
  float* out = nullptr;
};
// y (rows) = w @ vec(in), or y += w @ vec(in) when add; then the conv epilogue, if any.
void matvec(const DevMat& w, const VecIn& in, float* y, bool add, const LaunchCfg& cfg,
            cudaStream_t stream, const ConvEpi& conv = ConvEpi());
// out (n, D) = rows ids[t] of the embedding (ids on the device).
void embed(const DevMat& e, const int32_t* ids, int64_t n, float* out, cudaStream_t stream);
// Mamba-1 selective-scan step for one token, fused: dt = softplus(dt_proj @ dbc[:R] + dt_b),
// s = s * exp(dt A) + dt x B, y = (s . C + D x) * silu(z). FalconMamba (rms) first normalises
// dt, B and C without weights.
struct Scan1Step {
  DevMat dt_proj;             // (E, R)
  const float* dbc;           // (R + 2N): dt, B, C
  const float* x;             // (E) conv output
  const float* z;             // (E)
  const float *dt_b, *A, *D;  // (E), (E, N), (E)
  float* s;                   // (E, N)
  float* y;                   // (E)
  int64_t E, N, R;
  bool rms;
  float eps;
};
void scan1_step(const Scan1Step& a, const LaunchCfg& cfg, cudaStream_t stream);

// Mamba-2 step for one token: per head h (group g), dt = softplus(dt_raw[h] + dt_b[h]),
// s (P, N) = s * exp(dt A[h]) + dt x B_g, y = (s . C_g + D[h] x) * silu(z).
struct Scan2Step {
  const float* xbc;           // (E + 2GN) conv output: x (H, P), B (G, N), C (G, N)
  const float* z;             // (E)
  const float* dt_raw;        // (H)
  const float *dt_b, *A, *D;  // (H)
  float* s;                   // (H, P, N)
  float* y;                   // (E)
  int64_t H, P, N, G;
};
void scan2_step(const Scan2Step& a, cudaStream_t stream);

// ---- prefill (prefill.cu)
// out (n, ld_out)[:cols] = x normalised per row in `groups` groups, times w (nullptr: 1).
void rms_norm_rows(const float* x, int64_t ldx, int64_t n, int64_t cols, int groups, const float* w,
                   float eps, float* out, int64_t ld_out, cudaStream_t stream);
// Y (n, ldy)[:rows] = X (n, ldx)[:cols] @ w^T (or += when add); quantized weights are
// dequantized tile by tile in shared memory.
void gemm(const DevMat& w, const float* X, int64_t ldx, int64_t n, float* Y, int64_t ldy, bool add,
          cudaStream_t stream);
// Causal conv over n tokens: out (n, C) = silu(conv + b), x (n, ldx); window (K-1, C) updated.
void conv_seq(int64_t n, int64_t K, int64_t C, float* window, const float* x, int64_t ldx,
              const float* w, const float* b, float* out, cudaStream_t stream);

// Mamba-1 selective scan over n tokens, one warp per channel, the state in registers.
struct Scan1Seq {
  int64_t n, E, N;
  const float* x;   // (n, E) conv output
  const float* dt;  // (n, E) dt_proj output, before bias and softplus
  const float* B;   // (n, ldbc)
  const float* C;   // (n, ldbc)
  int64_t ldbc;
  const float* z;  // (n, ldz)
  int64_t ldz;
  const float *dt_b, *A, *D;  // (E), (E, N), (E)
  float* s;                   // (E, N)
  float* y;                   // (n, E)
};
void scan1_seq(const Scan1Seq& a, cudaStream_t stream);

// Mamba-2 scan over n tokens, one warp per (head, p) row of the state, in registers.
struct Scan2Seq {
  int64_t n, H, P, N, G;
  const float* xbc;           // (n, E + 2GN) conv output
  const float* zxbcdt;        // (n, NR): z (E), xBC, dt_raw (H)
  int64_t nr;                 // NR
  const float *dt_b, *A, *D;  // (H)
  float* s;                   // (H, P, N)
  float* y;                   // (n, E)
};
void scan2_seq(const Scan2Seq& a, cudaStream_t stream);

}  // namespace cuda
}  // namespace mambalite
