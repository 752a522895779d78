// The Mamba-1 mixer, with FalconMamba's weightless or Jamba's weighted RMSNorms on dt, B and C
// (docs/design.md).
#pragma once

#include "layers/block.h"

namespace mambalite {

struct Mamba1Weights {
  MatView in_proj;            // (2E, D): x then z
  std::vector<float> conv_w;  // (K, E)
  std::vector<float> conv_b;  // (E)
  MatView x_proj;             // (R + 2N, E): dt, B, C
  MatView dt_proj;            // (E, R)
  std::vector<float> dt_b;    // (E)
  std::vector<float> A;       // (E, N) = -exp(A_log)
  std::vector<float> D;       // (E)
  MatView out_proj;           // (D, E)
  // RMSNorm weights of dt (R), B and C (N) when dt_b_c_rms: Jamba's, or ones (FalconMamba).
  std::vector<float> dt_norm, b_norm, c_norm;
};

class Mamba1Block : public Block {
 public:
  Mamba1Block(const ModelConfig& c, Binder& b, const std::string& prefix, int64_t slot);
  void forward(Compute& cx, const Seqs& seqs, const float* hn, float* out, int64_t n,
               float* ws) override;
  size_t workspace_floats(int n_threads) const override;
  int64_t max_cols() const override;

  const Mamba1Weights& weights() const { return w_; }
  int64_t slot() const { return slot_; }

 private:
  const ModelConfig& c_;
  Mamba1Weights w_;
  int64_t slot_;
};

}  // namespace mambalite
