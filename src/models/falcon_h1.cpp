// TII Falcon-H1 (llama.cpp's `falcon-h1`): every layer is RMSNorm -> (attention + Mamba-2, in
// parallel on the same normalised input, outputs summed) -> residual, then RMSNorm -> SwiGLU MLP
// -> residual. Attention uses RoPE in the rotate-half (NEOX) convention over whole heads, so Q/K
// are not permuted. Falcon-H1's µP multipliers are folded into the weights at conversion (the
// embedding, Q/K/V/O, ssm_in per segment, ssm_out, the MLP's gate and down, the head), so the
// file needs nothing at run time; its Mamba-2 norm (ssm_norm) is optional, as the model's is.
#include "errors.h"
#include "models/architectures.h"

namespace mambalite {

void read_falcon_h1(const GgufFile& f, ModelConfig& c) {
  const std::string& a = c.architecture;
  read_mamba2_hparams(f, c);
  read_attention_hparams(f, c);
  c.rope_neox = true;
  c.ssm_norm_optional = true;  // present only with mamba_rms_norm, as llama.cpp reads it
  const std::vector<uint64_t> kv = f.get_uint_per_layer(a + ".attention.head_count_kv", c.n_layer);
  const std::vector<uint64_t> heads = f.get_uint_per_layer(a + ".attention.head_count", c.n_layer);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    BlockSpec attn{BlockKind::kAttention, l, "attn_norm"};
    attn.n_head = static_cast<int64_t>(heads[l]);
    attn.n_head_kv = static_cast<int64_t>(kv[l]);
    c.blocks.push_back(attn);
    BlockSpec ssm{BlockKind::kMamba2, l, "attn_norm"};
    ssm.parallel = true;
    c.blocks.push_back(ssm);
    BlockSpec ffn{BlockKind::kFfnGated, l, "ffn_norm"};
    const GgufTensor* up = f.find_tensor("blk." + std::to_string(l) + ".ffn_up.weight");
    ffn.n_ff = up != nullptr && up->n_dims >= 2 ? up->ne[1] : 0;
    c.blocks.push_back(ffn);
  }
}

}  // namespace mambalite
