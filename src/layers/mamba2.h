// The Mamba-2 mixer (docs/design.md), as in Mamba-2 and the hybrids' recurrent layers.
#pragma once

#include <algorithm>

#include "layers/block.h"

namespace mambalite {

struct Mamba2Weights {
  MatView in_proj;              // (E + C + H, D): z, xBC, dt  (C = conv_dim)
  std::vector<float> conv_w;    // (K, C)
  std::vector<float> conv_b;    // (C)
  std::vector<float> dt_b;      // (H)
  std::vector<float> A;         // (H) = -exp(A_log)
  std::vector<float> D;         // (H)
  std::vector<float> ssm_norm;  // (E): gated RMSNorm weight per group of E / G; empty: none
  MatView out_proj;             // (D, E)
};

class Mamba2Block : public Block {
 public:
  Mamba2Block(const ModelConfig& c, Binder& b, const std::string& prefix, int64_t slot);
  void forward(Compute& cx, const Seqs& seqs, const float* hn, float* out, int64_t n,
               float* ws) override;
  size_t workspace_floats(int n_threads) const override;
  int64_t max_cols() const override { return std::max(c_.d_model, c_.d_inner); }

  const Mamba2Weights& weights() const { return w_; }
  int64_t slot() const { return slot_; }

 private:
  const ModelConfig& c_;
  Mamba2Weights w_;
  int64_t slot_;
};

}  // namespace mambalite
