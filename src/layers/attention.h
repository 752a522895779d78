// Grouped-query causal attention with a KV cache of n_ctx positions in the State: Q/K/V/O on the
// quantized products, optional biases, RoPE over the first n_rot dims of each head in either of
// llama.cpp's conventions (adjacent pairs on Q/K weights the converter permuted, or NEOX's
// rotate-half pairs on unpermuted ones) or none, and an online
// softmax in fp32 that streams the cache once per query (docs/design.md).
#pragma once

#include <algorithm>

#include "layers/block.h"

namespace mambalite {

struct AttentionWeights {
  MatView wq, wk, wv;                 // (H * hd, D), (Hkv * hd, D), (Hkv * hd, D)
  MatView wo;                         // (D, H * hd)
  std::vector<float> bq, bk, bv, bo;  // optional biases (empty when absent)
};

class AttentionBlock : public Block {
 public:
  AttentionBlock(const ModelConfig& c, const BlockSpec& spec, Binder& b, const std::string& prefix,
                 int64_t slot);
  void forward(Compute& cx, const Seqs& seqs, const float* hn, float* out, int64_t n,
               float* ws) override;
  size_t workspace_floats(int n_threads) const override;
  int64_t max_cols() const override { return std::max(c_.d_model, n_head_ * hd_); }

  const AttentionWeights& weights() const { return w_; }

  // Positions per tile of the online softmax: one max and rescale per tile, not per position.
  static constexpr int64_t kTile = 64;

 private:
  // Chunks the cache positions of each of n query tokens are split into.
  static int64_t split_count(int64_t n, int64_t max_len, int n_threads);
  int64_t thread_floats() const;  // one pool thread's attention scratch
  void rope(float* x, int64_t n_heads, int64_t pos) const;

  const ModelConfig& c_;
  AttentionWeights w_;
  int64_t n_head_, n_head_kv_, hd_;
  int64_t slot_;
  float scale_;
  bool neox_;                    // RoPE pairs (i, i + n_rot / 2) rather than (2i, 2i + 1)
  std::vector<float> inv_freq_;  // (n_rot / 2) base^(-2i / n_rot)
};

}  // namespace mambalite
