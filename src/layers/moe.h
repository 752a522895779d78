// Granite's mixture of experts: a router (softmax over the top-k of its logits, which equals a
// softmax over all experts renormalised over the chosen k), SwiGLU experts stored as 3-D tensors
// ffn_{gate,up,down}_exps, and an optional shared SwiGLU expert (ffn_*_shexp) added to their sum.
// Only the chosen experts' weights are read for each token.
#pragma once

#include <algorithm>

#include "layers/block.h"

namespace mambalite {

struct MoeWeights {
  MatView router;                   // (n_expert, D)
  std::vector<MatView> gate, up;    // n_expert x (n_ff, D)
  std::vector<MatView> down;        // n_expert x (D, n_ff)
  MatView gate_sh, up_sh, down_sh;  // shared expert (n_ff_shexp); rows 0 when absent
};

class MoeBlock : public Block {
 public:
  MoeBlock(const ModelConfig& c, const BlockSpec& spec, Binder& b, const std::string& prefix);
  void forward(Compute& cx, const Seqs& seqs, const float* hn, float* out, int64_t n,
               float* ws) override;
  size_t workspace_floats(int n_threads) const override;
  int64_t max_cols() const override { return std::max({d_model_, n_ff_, n_ff_sh_}); }

 private:
  MoeWeights w_;
  int64_t d_model_, n_ff_, n_ff_sh_, n_expert_, n_used_;
  bool norm_topk_;  // ModelConfig::moe_norm_topk
};

}  // namespace mambalite
