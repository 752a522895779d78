// A block is one pre-normalised branch of the residual stream: a Mamba mixer, attention, an MLP
// or a mixture of experts (the kinds of models/config.h). Each kind binds its own weights from the
// file, states the workspace it needs and owns its per-sequence cache in the State; the model
// stacks blocks as its architecture file says and runs them in order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "format/binder.h"
#include "models/config.h"
#include "runtime/compute.h"
#include "runtime/state.h"

namespace mambalite {

// One sequence's share of a pass: rows [row0, row0 + n) of the blocks' input are its tokens,
// which follow the state's n_tokens() (a pass holds one sequence in prefill, several in a batch).
struct SeqRows {
  State* state;
  int64_t row0;
  int64_t n;
};
using Seqs = std::vector<SeqRows>;  // in row order, covering the pass's rows

class Block {
 public:
  virtual ~Block() = default;
  BlockKind kind() const { return kind_; }

  // out (n, D) = the block applied to hn (n, D), the normalised residual, for the n <=
  // Compute::kBlock rows of `seqs`; advances each sequence's cache of the block in its state
  // (matrix products run over all n rows at once, the recurrences and attention per sequence).
  // ws: workspace_floats() floats.
  virtual void forward(Compute& cx, const Seqs& seqs, const float* hn, float* out, int64_t n,
                       float* ws) = 0;
  // Floats of workspace for a block of Compute::kBlock tokens on n_threads threads.
  virtual size_t workspace_floats(int n_threads) const = 0;
  // Values per row of the widest matrix product input (sizes Compute's shared buffers).
  virtual int64_t max_cols() const = 0;

 protected:
  explicit Block(BlockKind kind) : kind_(kind) {}

 private:
  BlockKind kind_;
};

// The block of `spec`, its weights bound through `b` under "blk.<layer>.". slot: its index among
// the model's blocks that keep a cache of its kind (Mamba or attention), -1 for the others.
std::unique_ptr<Block> make_block(const BlockSpec& spec, const ModelConfig& c, Binder& b,
                                  int64_t slot);

// y (n, ld) += b on every row, for an optional bias b (nothing when b is empty).
void add_bias(const std::vector<float>& b, float* y, int64_t n, int64_t ld);

// A causal conv's weights, file order (K, C) in ggml's order, i.e. (C, K) rows, transposed to
// (K, C) so the kernels read one tap for all channels contiguously.
std::vector<float> conv_weights(Binder& b, const std::string& name, int64_t K, int64_t C);

}  // namespace mambalite
