// AI21 Jamba (llama.cpp's `jamba`): every layer is RMSNorm -> (Mamba-1 or attention) -> residual,
// then RMSNorm -> FFN -> residual. The Mamba-1 mixers normalise dt, B and C with weighted RMSNorms
// (eps: the model's); attention has no positional encoding. A layer is attention exactly when its
// head_count_kv entry is non-zero, and its FFN is routed experts exactly when it has a router
// (ffn_gate_inp), a SwiGLU MLP otherwise. The router's weights are the full softmax's
// probabilities of the chosen experts, not renormalised over them.
#include "errors.h"
#include "models/architectures.h"

namespace mambalite {

void read_jamba(const GgufFile& f, ModelConfig& c) {
  const std::string& a = c.architecture;
  c.d_inner = read_dim(f, a + ".ssm.inner_size", 1 << 18);
  c.d_state = read_dim(f, a + ".ssm.state_size", 1 << 12);
  c.d_conv = read_dim(f, a + ".ssm.conv_kernel", 64);
  c.dt_rank = read_dim(f, a + ".ssm.time_step_rank", 1 << 16);
  c.dt_b_c_rms = true;
  c.mixer_eps = c.norm_eps;
  read_attention_hparams(f, c);
  c.n_rot = 0;
  c.n_expert = static_cast<int64_t>(f.get_uint_or(a + ".expert_count", 0));
  c.moe_norm_topk = false;
  const std::vector<uint64_t> kv = f.get_uint_per_layer(a + ".attention.head_count_kv", c.n_layer);
  const std::vector<uint64_t> heads = f.get_uint_per_layer(a + ".attention.head_count", c.n_layer);
  bool any_moe = false;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    BlockSpec mixer{kv[l] == 0 ? BlockKind::kMamba1 : BlockKind::kAttention, l, "attn_norm"};
    mixer.n_head = static_cast<int64_t>(heads[l]);
    mixer.n_head_kv = static_cast<int64_t>(kv[l]);
    c.blocks.push_back(mixer);
    const std::string p = "blk." + std::to_string(l) + ".";
    const bool moe = f.find_tensor(p + "ffn_gate_inp.weight") != nullptr;
    any_moe = any_moe || moe;
    BlockSpec ffn{moe ? BlockKind::kMoe : BlockKind::kFfnGated, l, "ffn_norm"};
    const GgufTensor* up = f.find_tensor(p + (moe ? "ffn_up_exps.weight" : "ffn_up.weight"));
    ffn.n_ff = up != nullptr && up->n_dims >= 2 ? up->ne[1] : 0;
    c.blocks.push_back(ffn);
  }
  if (any_moe) {
    if (c.n_expert <= 0) {
      throw FormatError("'" + f.path() + "' has expert layers but no " + a + ".expert_count");
    }
    c.n_expert_used = read_dim(f, a + ".expert_used_count", c.n_expert);
  }
}

}  // namespace mambalite
