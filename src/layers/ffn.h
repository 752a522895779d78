// Dense feed-forward blocks: SwiGLU, down(silu(gate x) * up x) (Granite), and squared ReLU,
// down(relu(up x)^2) (Nemotron-H), with optional biases.
#pragma once

#include <algorithm>

#include "layers/block.h"

namespace mambalite {

struct FfnWeights {
  MatView gate, up;                         // (n_ff, D); gate unused (empty) for squared ReLU
  MatView down;                             // (D, n_ff)
  std::vector<float> b_gate, b_up, b_down;  // optional
};

class FfnBlock : public Block {
 public:
  FfnBlock(const ModelConfig& c, const BlockSpec& spec, Binder& b, const std::string& prefix);
  void forward(Compute& cx, const Seqs& seqs, const float* hn, float* out, int64_t n,
               float* ws) override;
  size_t workspace_floats(int) const override {
    return static_cast<size_t>(2 * Compute::kBlock * n_ff_);
  }
  int64_t max_cols() const override { return std::max(d_model_, n_ff_); }

 private:
  FfnWeights w_;
  int64_t d_model_, n_ff_;
};

// y (n, n_ff) = silu(g) * u in place over g (row stride ld); the SwiGLU activation, shared with
// the experts.
void swiglu(float* g, const float* u, int64_t n, int64_t n_ff, int64_t ld);

}  // namespace mambalite
