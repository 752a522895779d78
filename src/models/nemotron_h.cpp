// NVIDIA Nemotron-H (llama.cpp's `nemotron_h`): each layer is one block with its own RMSNorm
// (attn_norm) and residual: a Mamba-2 mixer when its head_count_kv and feed_forward_length entries
// are both 0, attention (no positional encoding) when only feed_forward_length is 0, and a
// squared-ReLU MLP otherwise.
#include "errors.h"
#include "models/architectures.h"

namespace mambalite {

void read_nemotron_h(const GgufFile& f, ModelConfig& c) {
  const std::string& a = c.architecture;
  read_mamba2_hparams(f, c);
  read_attention_hparams(f, c);
  c.n_rot = 0;  // Nemotron-H's attention layers have no positional encoding
  const std::vector<uint64_t> kv = f.get_uint_per_layer(a + ".attention.head_count_kv", c.n_layer);
  const std::vector<uint64_t> ff = f.get_uint_per_layer(a + ".feed_forward_length", c.n_layer);
  const std::vector<uint64_t> heads = f.get_uint_per_layer(a + ".attention.head_count", c.n_layer);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    BlockSpec b{BlockKind::kMamba2, l, "attn_norm"};
    if (ff[l] > 0) {
      b.kind = BlockKind::kFfnRelu2;
      b.n_ff = static_cast<int64_t>(ff[l]);
    } else if (kv[l] > 0) {
      b.kind = BlockKind::kAttention;
      b.n_head = static_cast<int64_t>(heads[l]);
      b.n_head_kv = static_cast<int64_t>(kv[l]);
    }
    c.blocks.push_back(b);
  }
}

}  // namespace mambalite
