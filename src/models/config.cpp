#include "models/config.h"

#include <cmath>
#include <stdexcept>

#include "errors.h"
#include "models/architectures.h"

namespace mambalite {
namespace {

struct Architecture {
  const char* name;
  ReadArchitecture read;
};

const Architecture kArchitectures[] = {
    {"mamba", read_mamba},
    {"mamba2", read_mamba2},
    {"granitehybrid", read_granite_hybrid},
    {"nemotron_h", read_nemotron_h},
    {"jamba", read_jamba},
    {"falcon-h1", read_falcon_h1},
};

std::string supported_names() {
  std::string s;
  for (const Architecture& a : kArchitectures)
    s += (s.empty() ? "'" : ", '") + std::string(a.name) + "'";
  return s;
}

}  // namespace

const char* block_kind_name(BlockKind kind) {
  switch (kind) {
    case BlockKind::kMamba1:
      return "mamba1";
    case BlockKind::kMamba2:
      return "mamba2";
    case BlockKind::kAttention:
      return "attention";
    case BlockKind::kFfnGated:
      return "ffn";
    case BlockKind::kFfnRelu2:
      return "ffn_relu2";
    case BlockKind::kMoe:
      return "moe";
  }
  return "?";
}

int64_t read_dim(const GgufFile& f, const std::string& key, int64_t max_value) {
  const uint64_t v = f.get_uint(key);
  if (v == 0 || v > static_cast<uint64_t>(max_value)) {
    throw FormatError("'" + f.path() + "': metadata '" + key + "' = " + std::to_string(v) +
                      " is out of range (1 to " + std::to_string(max_value) + ")");
  }
  return static_cast<int64_t>(v);
}

float read_positive_float(const GgufFile& f, const std::string& key, double fallback,
                          double max_value) {
  const double v = f.get_float_or(key, fallback);
  if (!(v > 0.0 && v <= max_value)) {
    throw FormatError("'" + f.path() + "': metadata '" + key + "' = " + std::to_string(v) +
                      " is out of range (0, " + std::to_string(max_value) + "]");
  }
  return static_cast<float>(v);
}

void read_mamba2_hparams(const GgufFile& f, ModelConfig& c) {
  const std::string& a = c.architecture;
  c.d_inner = read_dim(f, a + ".ssm.inner_size", 1 << 18);
  c.d_state = read_dim(f, a + ".ssm.state_size", 1 << 12);
  c.d_conv = read_dim(f, a + ".ssm.conv_kernel", 64);
  // llama.cpp stores the number of heads under time_step_rank for Mamba-2.
  c.n_head = read_dim(f, a + ".ssm.time_step_rank", 1 << 16);
  c.n_group = f.has(a + ".ssm.group_count") ? read_dim(f, a + ".ssm.group_count", 1 << 12) : 1;
  if (c.d_inner % c.n_head != 0 || c.n_head % c.n_group != 0) {
    throw FormatError(
        "'" + f.path() + "': Mamba-2 needs n_head to divide inner_size and " +
        "group_count to divide n_head, but inner_size = " + std::to_string(c.d_inner) +
        ", n_head = " + std::to_string(c.n_head) + ", group_count = " + std::to_string(c.n_group));
  }
}

void read_attention_hparams(const GgufFile& f, ModelConfig& c) {
  const std::string& a = c.architecture;
  const std::vector<uint64_t> heads = f.get_uint_per_layer(a + ".attention.head_count", c.n_layer);
  uint64_t n_head = 0;
  for (const uint64_t h : heads) n_head = std::max(n_head, h);
  if (f.has(a + ".attention.key_length")) {
    c.head_dim = read_dim(f, a + ".attention.key_length", 1 << 12);
    if (f.has(a + ".attention.value_length") &&
        read_dim(f, a + ".attention.value_length", 1 << 12) != c.head_dim) {
      throw FormatError("'" + f.path() + "': attention.key_length and value_length differ; " +
                        "mambalite needs one head size for Q, K and V");
    }
  } else if (n_head > 0) {
    c.head_dim = c.d_model / static_cast<int64_t>(n_head);
  }
  c.n_rot = static_cast<int64_t>(f.get_uint_or(a + ".rope.dimension_count", c.head_dim));
  c.rope_base = read_positive_float(f, a + ".rope.freq_base", 10000.0, 1e12);
  const double scale = f.get_float_or(a + ".attention.scale", 0.0);
  if (!(scale >= 0.0 && scale < 1e6)) {
    throw FormatError("'" + f.path() + "': attention.scale = " + std::to_string(scale) +
                      " is out of range [0, 1e6)");
  }
  c.attn_scale = static_cast<float>(scale);
}

int64_t ModelConfig::conv_dim() const {
  if (has_block(BlockKind::kMamba2)) return d_inner + 2 * n_group * d_state;
  return has_block(BlockKind::kMamba1) ? d_inner : 0;
}

int64_t ModelConfig::in_proj_rows() const {
  if (has_block(BlockKind::kMamba2)) return d_inner + conv_dim() + n_head;
  return has_block(BlockKind::kMamba1) ? 2 * d_inner : 0;
}

bool ModelConfig::has_block(BlockKind kind) const { return count_blocks(kind) > 0; }

int64_t ModelConfig::count_blocks(BlockKind kind) const {
  int64_t n = 0;
  for (const BlockSpec& b : blocks) n += b.kind == kind;
  return n;
}

bool ModelConfig::pure_mamba() const {
  for (const BlockSpec& b : blocks) {
    if (b.kind != BlockKind::kMamba1 && b.kind != BlockKind::kMamba2) return false;
  }
  return true;
}

ModelConfig ModelConfig::from_gguf(const GgufFile& f) {
  ModelConfig c;
  if (!f.has("general.architecture")) {
    throw FormatError("'" + f.path() +
                      "' has no 'general.architecture'; it is not a model file "
                      "written by llama.cpp or mambalite");
  }
  c.architecture = f.get_string("general.architecture");
  const std::string& a = c.architecture;
  const Architecture* arch = nullptr;
  for (const Architecture& known : kArchitectures) {
    if (a == known.name) arch = &known;
  }
  if (arch == nullptr) {
    throw FormatError("'" + f.path() + "' holds a '" + a +
                      "' model, but mambalite runs the architectures " + supported_names());
  }
  c.d_model = read_dim(f, a + ".embedding_length", 1 << 16);
  c.n_layer = read_dim(f, a + ".block_count", 1 << 12);
  c.n_ctx_train = static_cast<int64_t>(f.get_uint_or(a + ".context_length", 0));
  const std::string eps_key = f.has(a + ".attention.layer_norm_rms_epsilon")
                                  ? a + ".attention.layer_norm_rms_epsilon"
                                  : a + ".attention.layer_norm_epsilon";
  c.norm_eps = read_positive_float(f, eps_key, 1e-5, 0.999999);
  const GgufTensor* embd = f.find_tensor("token_embd.weight");
  if (embd == nullptr || embd->n_dims != 2) {
    throw FormatError("'" + f.path() +
                      "' lacks a 2-D tensor 'token_embd.weight', so its vocabulary "
                      "size is unknown");
  }
  c.n_vocab = embd->ne[1];
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  arch->read(f, c);
  // What the blocks need of the hyper-parameters, checked once for every architecture (after it
  // has switched RoPE off where it has none).
  if (c.has_block(BlockKind::kAttention) && (c.n_rot > c.head_dim || c.n_rot % 2 != 0)) {
    throw FormatError("'" + f.path() + "': rope.dimension_count = " + std::to_string(c.n_rot) +
                      " must be even and at most the head size " + std::to_string(c.head_dim));
  }
  for (size_t i = 0; i < c.blocks.size(); ++i) {
    const BlockSpec& b = c.blocks[i];
    if (b.parallel && (i == 0 || c.blocks[i - 1].parallel || c.blocks[i - 1].norm != b.norm)) {
      throw std::logic_error("a parallel block must follow a sequential one with its norm");
    }
    const std::string where = "'" + f.path() + "': layer " + std::to_string(b.layer) + " (" +
                              block_kind_name(b.kind) + ")";
    if (b.kind == BlockKind::kAttention &&
        (b.n_head <= 0 || b.n_head_kv <= 0 || b.n_head % b.n_head_kv != 0 || c.head_dim <= 0 ||
         b.n_head * c.head_dim > (1 << 18))) {
      throw FormatError(where + " has head_count " + std::to_string(b.n_head) +
                        " and head_count_kv " + std::to_string(b.n_head_kv) + " with head size " +
                        std::to_string(c.head_dim) +
                        ": attention needs both positive, head_count_kv dividing head_count");
    }
    if ((b.kind == BlockKind::kFfnGated || b.kind == BlockKind::kFfnRelu2 ||
         b.kind == BlockKind::kMoe) &&
        (b.n_ff <= 0 || b.n_ff > (1 << 20))) {
      throw FormatError(where + " has no usable feed-forward width (" + std::to_string(b.n_ff) +
                        "; its up-projection tensor is missing or malformed)");
    }
  }
  if (c.has_block(BlockKind::kMoe) && (c.n_expert <= 0 || c.n_expert > 4096 ||
                                       c.n_expert_used <= 0 || c.n_expert_used > c.n_expert)) {
    throw FormatError("'" + f.path() + "': expert_count = " + std::to_string(c.n_expert) +
                      " and expert_used_count = " + std::to_string(c.n_expert_used) +
                      " do not describe a mixture of experts (1 <= used <= count <= 4096)");
  }
  return c;
}

}  // namespace mambalite
