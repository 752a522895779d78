// Compute kernels of the engine behind a table of function pointers, so that each instruction
// set can provide its own implementation and the model code stays the same. This version ships
// the portable scalar table (written so that compilers auto-vectorise it); `kernels()` returns
// the table in use.
//
// Conventions: a weight matrix is `rows` rows of `cols` contiguous values (ggml order: ne0 =
// cols, ne1 = rows); activations are row-major (tokens, channels) in fp32. Functions that take
// a range [begin, end) process only that slice, so callers can split the work across threads.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ggml_types.h"

namespace mambalite {

// A 2-D weight matrix stored in a GGUF file (not owned).
struct MatView {
  GgmlType type = GgmlType::F32;
  const uint8_t* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t row_bytes = 0;

  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
};

struct KernelTable {
  const char* name;

  // out (cols) = row r of w, converted to fp32.
  void (*row_to_f32)(const MatView& w, int64_t r, float* out);

  // y[t * ldy + r] = dot(w row r, x row t) for t in [0, n), r in [r0, r1).
  // x: (n, ldx) with w.cols values used per row; y: (n, ldy); scratch: at least w.cols floats,
  // private to the calling thread.
  void (*matmul)(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy,
                 int64_t r0, int64_t r1, float* scratch);

  // out (n) = x (n) * rsqrt(mean(x^2) + eps) * weight (n).
  void (*rms_norm)(const float* x, const float* weight, int64_t n, float eps, float* out);

  // Causal depthwise conv + SiLU over n tokens, channels [c0, c1) of E, and the window update.
  // window: (K-1, E) the previous K-1 inputs, oldest first (updated in place to the last K-1);
  // x: (n, ldx) new inputs; w: (K, E) with row K-1 multiplying the newest input; bias: (E);
  // out: (n, E).
  void (*conv_silu)(int64_t n, int64_t K, int64_t E, float* window, const float* x, int64_t ldx,
                    const float* w, const float* bias, float* out, int64_t c0, int64_t c1);

  // Mamba-1 selective scan over n tokens for channels [c0, c1) of E, state s: (E, N), fp32.
  // x, dt: (n, E); A: (E, N); B, C: (n, ldbc) (N values each); D: (E); z: (n, ldz);
  // y: (n, E) = (s @ C + D * x) * silu(z).
  void (*selective_scan)(int64_t n, int64_t E, int64_t N, const float* x, const float* dt,
                         const float* A, const float* B, const float* C, int64_t ldbc,
                         const float* D, const float* z, int64_t ldz, float* s, float* y,
                         int64_t c0, int64_t c1);
};

// The portable reference implementation.
const KernelTable& scalar_kernels();

// The table the engine uses.
const KernelTable& kernels();

// softplus as PyTorch computes it (threshold 20).
float softplus(float v);

}  // namespace mambalite
