// Hyper-parameters of a model and the plan of its layers, read from GGUF metadata with llama.cpp's
// keys (docs/design.md). Each architecture's file in src/models/ fills this from the file: which
// blocks each layer stacks, and how its hyper-parameters are named. Everything else in the engine
// (binding, workspace, state, the CUDA backend) is derived from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/gguf.h"

namespace mambalite {

// The kinds of block a layer can stack. Each reads RMSNorm(residual) and adds its output to the
// residual stream (times residual_scale).
enum class BlockKind {
  kMamba1,     // Mamba-1 / FalconMamba mixer (conv window + (E, N) state)
  kMamba2,     // Mamba-2 mixer (conv window + (H, P, N) state)
  kAttention,  // grouped-query attention with a KV cache
  kFfnGated,   // SwiGLU: down(silu(gate x) * up x)
  kFfnRelu2,   // squared ReLU: down(relu(up x)^2)
  kMoe,        // routed SwiGLU experts, top-k, with an optional shared SwiGLU expert
};

const char* block_kind_name(BlockKind kind);  // "mamba1", "attention", ...

struct BlockSpec {
  BlockKind kind;
  int64_t layer = 0;      // the GGUF block index ("blk.<layer>.")
  std::string norm;       // the pre-norm's tensor name within the block ("attn_norm")
  int64_t n_head = 0;     // attention
  int64_t n_head_kv = 0;  // attention
  int64_t n_ff = 0;       // FFN width (MoE: each expert's)
  // Runs beside the block before it (Falcon-H1): it reads that block's normalised input, and the
  // two outputs are summed before the residual add.
  bool parallel = false;
};

struct ModelConfig {
  std::string architecture;  // general.architecture
  int64_t d_model = 0;       // D
  int64_t n_layer = 0;       // GGUF blocks
  int64_t n_vocab = 0;       // rows of token_embd (padding ids included)
  float norm_eps = 1e-5f;
  bool tied_embeddings = true;
  int64_t n_ctx_train = 0;  // context_length (0: not given)

  // Mamba mixers (docs/design.md notation).
  int64_t d_inner = 0;  // E
  int64_t d_state = 0;  // N
  int64_t d_conv = 0;   // K
  int64_t dt_rank = 0;  // R (Mamba-1)
  int64_t n_head = 0;   // H (Mamba-2; head_dim P = E / H)
  int64_t n_group = 1;  // G (Mamba-2): B and C are shared by H / G heads
  // RMSNorms on dt (before dt_proj), B and C, with eps mixer_eps: weightless in FalconMamba,
  // with weights (ssm_dt_norm, ssm_b_norm, ssm_c_norm) in Jamba.
  bool dt_b_c_rms = false;
  float mixer_eps = 1e-6f;
  // Mamba-2's gated RMSNorm (ssm_norm) may be absent, gating y with silu(z) alone (Falcon-H1
  // without mamba_rms_norm); elsewhere a missing one is a malformed file.
  bool ssm_norm_optional = false;

  // Attention.
  int64_t head_dim = 0;  // per head, for Q, K and V
  int64_t n_rot = 0;     // leading dims of each head that RoPE rotates (0: no positions)
  // RoPE's pairs: (i, i + n_rot / 2), as transformers' rotate_half and llama.cpp's NEOX type
  // rotate them (Falcon-H1), or adjacent (2i, 2i + 1), llama.cpp's NORM type on permuted Q/K.
  bool rope_neox = false;
  float rope_base = 10000.0f;
  float attn_scale = 0.0f;  // q.k multiplier; 0: 1 / sqrt(head_dim)

  // Mixture of experts.
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_ff_shexp = 0;  // shared expert width (0: none)
  // The chosen experts' weights: a softmax over their logits (Granite), or their probabilities
  // in the softmax over all experts (Jamba).
  bool moe_norm_topk = true;

  // Granite's µP scalars (1 = off): embeddings times embedding_scale, every block's output times
  // residual_scale, logits divided by logit_scale.
  float embedding_scale = 1.0f;
  float residual_scale = 1.0f;
  float logit_scale = 1.0f;

  std::vector<BlockSpec> blocks;  // in evaluation order

  int64_t head_dim_ssm() const { return n_head > 0 ? d_inner / n_head : 0; }
  // Channels of the causal conv and rows of ssm_in, for this model's Mamba blocks (0 without).
  int64_t conv_dim() const;
  int64_t in_proj_rows() const;
  // The kind of the model's Mamba blocks (all are of one kind), or false when it has none.
  bool has_block(BlockKind kind) const;
  int64_t count_blocks(BlockKind kind) const;
  bool pure_mamba() const;  // only Mamba blocks: what the CUDA backend runs

  // Reads and validates the hyper-parameters of any supported architecture; throws FormatError
  // with a clear message.
  static ModelConfig from_gguf(const GgufFile& file);
};

// Reading helpers for the architecture files: a positive integer <= max_value under `key`, and a
// positive float (with a default when absent).
int64_t read_dim(const GgufFile& f, const std::string& key, int64_t max_value);
float read_positive_float(const GgufFile& f, const std::string& key, double fallback,
                          double max_value);
// The Mamba-2 mixer's keys ({arch}.ssm.*; H under time_step_rank, as llama.cpp writes them).
void read_mamba2_hparams(const GgufFile& f, ModelConfig& c);
// The attention keys shared by the hybrids (head_count, key_length, rope, scale).
void read_attention_hparams(const GgufFile& f, ModelConfig& c);

}  // namespace mambalite
