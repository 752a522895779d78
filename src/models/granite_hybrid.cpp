// IBM Granite-4.0-H and Bamba (llama.cpp's `granitehybrid`): every layer is RMSNorm -> (Mamba-2
// or attention) -> residual, then RMSNorm -> FFN -> residual, the FFN a SwiGLU MLP (dense) or
// routed experts beside a shared SwiGLU expert (MoE). A layer is attention exactly when its entry
// of head_count_kv is non-zero. Granite-4.0-H has no positional encoding (rope.scaling.finetuned
// false); Bamba uses RoPE over rope.dimension_count leading dims of each head.
#include "errors.h"
#include "models/architectures.h"

namespace mambalite {

void read_granite_hybrid(const GgufFile& f, ModelConfig& c) {
  const std::string& a = c.architecture;
  read_mamba2_hparams(f, c);
  read_attention_hparams(f, c);
  c.embedding_scale = read_positive_float(f, a + ".embedding_scale", 1.0, 1e6);
  c.residual_scale = read_positive_float(f, a + ".residual_scale", 1.0, 1e6);
  c.logit_scale = read_positive_float(f, a + ".logit_scale", 1.0, 1e6);
  // Granite reads rope.scaling.finetuned as the switch for RoPE, true when absent.
  if (!f.get_bool_or(a + ".rope.scaling.finetuned", true)) c.n_rot = 0;
  c.n_expert = static_cast<int64_t>(f.get_uint_or(a + ".expert_count", 0));
  const std::vector<uint64_t> kv = f.get_uint_per_layer(a + ".attention.head_count_kv", c.n_layer);
  const std::vector<uint64_t> heads = f.get_uint_per_layer(a + ".attention.head_count", c.n_layer);
  const std::string p0 = "blk.0.";
  for (int64_t l = 0; l < c.n_layer; ++l) {
    BlockSpec mixer{kv[l] == 0 ? BlockKind::kMamba2 : BlockKind::kAttention, l, "attn_norm"};
    mixer.n_head = static_cast<int64_t>(heads[l]);
    mixer.n_head_kv = static_cast<int64_t>(kv[l]);
    c.blocks.push_back(mixer);
    // FFN widths come from the tensors: a dense model's MLP is its shared_intermediate_size,
    // which the converter does not write as feed_forward_length.
    const std::string p = "blk." + std::to_string(l) + ".";
    BlockSpec ffn{c.n_expert > 0 ? BlockKind::kMoe : BlockKind::kFfnGated, l, "ffn_norm"};
    const GgufTensor* up =
        f.find_tensor(p + (c.n_expert > 0 ? "ffn_up_exps.weight" : "ffn_up.weight"));
    ffn.n_ff = up != nullptr && up->n_dims >= 2 ? up->ne[1] : 0;
    c.blocks.push_back(ffn);
  }
  if (c.n_expert > 0) {
    c.n_expert_used = read_dim(f, a + ".expert_used_count", c.n_expert);
    const GgufTensor* sh = f.find_tensor(p0 + "ffn_up_shexp.weight");
    c.n_ff_shexp = sh != nullptr && sh->n_dims == 2 ? sh->ne[1] : 0;
  }
}

}  // namespace mambalite
