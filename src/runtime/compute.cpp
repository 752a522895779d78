#include "runtime/compute.h"

#include <algorithm>

namespace mambalite {

void Compute::reserve(int64_t max_cols) {
  scratch_.resize(static_cast<size_t>(pool_.size()) * matmul_scratch_floats(max_cols));
  // The largest prepared activations: ActQ8 blocks plus a type's copies or sums of them.
  size_t act_row = 0;
  for (const GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q6_K}) {
    act_row = std::max(act_row, activation_row_bytes(type, max_cols + kQK));
  }
  act_.resize(static_cast<size_t>(kBlock) * act_row);
  panel_.resize(panel_floats(max_cols, kBlock));
}

void Compute::for_tokens(int64_t n, const std::function<void(int64_t t0, int64_t t1)>& fn) {
  if (n < kParallelTokens) {
    fn(0, n);
    return;
  }
  pool_.parallel_for(n, 1, [&](int, int64_t t0, int64_t t1) { fn(t0, t1); });
}

Compute::Acts Compute::prepare(const MatView& w, const float* x, int64_t ldx, int64_t n) {
  Acts a{nullptr, 0, nullptr};
  if (!uses_q8_activations(w.type)) {
    a.rows = prepare_activations(*k_, w.type, x, ldx, n, w.cols, act_.data(), &a.stride);
  } else {
    a.rows = act_.data();
    a.stride = activation_row_bytes(w.type, w.cols);
    for_tokens(n, [&](int64_t t0, int64_t t1) {
      size_t s = 0;
      prepare_activations(*k_, w.type, x + t0 * ldx, ldx, t1 - t0, w.cols,
                          act_.data() + static_cast<size_t>(t0) * a.stride, &s);
    });
  }
  if (uses_gemm(*k_, w.type, n)) {  // packed once here, shared by the threads' row ranges
    pack_panels(*k_, w.type, a.rows, a.stride, n, w.cols, panel_.data());
    a.panels = panel_.data();
  }
  return a;
}

void Compute::matmul_rows(const MatView& w, const Acts& act, int64_t n, float* y, int64_t ldy,
                          int64_t r0, int64_t r1, int thread) {
  if (r0 >= r1) return;
  const size_t per_thread = scratch_.size() / static_cast<size_t>(pool_.size());
  mambalite::matmul(*k_, w, act.rows, act.stride, n, y, ldy, r0, r1,
                    scratch_.data() + static_cast<size_t>(thread) * per_thread, act.panels);
}

void Compute::matmul(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y,
                     int64_t ldy) {
  const Acts act = prepare(w, x, ldx, n);
  pool_.parallel_for(w.rows, 16, [&](int i, int64_t r0, int64_t r1) {
    matmul_rows(w, act, n, y, ldy, r0, r1, i);
  });
}

}  // namespace mambalite
