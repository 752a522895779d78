#include "models/mamba_config.h"

#include "errors.h"

namespace mambalite {
namespace {

int64_t dim(const GgufFile& f, const std::string& key, int64_t max_value) {
  const uint64_t v = f.get_uint(key);
  if (v == 0 || v > static_cast<uint64_t>(max_value)) {
    throw FormatError("'" + f.path() + "': metadata '" + key + "' = " + std::to_string(v) +
                      " is out of range (1 to " + std::to_string(max_value) + ")");
  }
  return static_cast<int64_t>(v);
}

}  // namespace

MambaConfig MambaConfig::from_gguf(const GgufFile& f) {
  MambaConfig c;
  if (!f.has("general.architecture")) {
    throw FormatError("'" + f.path() +
                      "' has no 'general.architecture'; it is not a model file "
                      "written by llama.cpp or mambalite");
  }
  c.architecture = f.get_string("general.architecture");
  const std::string& a = c.architecture;
  if (a != "mamba" && a != "mamba2") {
    throw FormatError("'" + f.path() + "' holds a '" + a +
                      "' model, but mambalite runs Mamba models (architecture 'mamba' or "
                      "'mamba2')");
  }
  c.d_model = dim(f, a + ".embedding_length", 1 << 16);
  c.n_layer = dim(f, a + ".block_count", 1 << 12);
  c.d_inner = dim(f, a + ".ssm.inner_size", 1 << 18);
  c.d_state = dim(f, a + ".ssm.state_size", 1 << 12);
  c.d_conv = dim(f, a + ".ssm.conv_kernel", 64);
  if (c.is_mamba2()) {
    // llama.cpp stores the number of heads under time_step_rank for Mamba-2.
    c.n_head = dim(f, a + ".ssm.time_step_rank", 1 << 16);
    c.n_group = f.has(a + ".ssm.group_count") ? dim(f, a + ".ssm.group_count", 1 << 12) : 1;
    if (c.d_inner % c.n_head != 0 || c.n_head % c.n_group != 0) {
      throw FormatError("'" + f.path() + "': Mamba-2 needs n_head to divide inner_size and " +
                        "group_count to divide n_head, but inner_size = " +
                        std::to_string(c.d_inner) + ", n_head = " + std::to_string(c.n_head) +
                        ", group_count = " + std::to_string(c.n_group));
    }
  } else {
    c.dt_rank = dim(f, a + ".ssm.time_step_rank", 1 << 16);
    c.dt_b_c_rms = f.get_bool_or(a + ".ssm.dt_b_c_rms", false);
    // llama.cpp files do not record FalconMamba's mixer eps: 1e-6 is the released model's value.
    const double mixer_eps = f.get_float_or("mambalite.ssm.mixer_rms_epsilon", 1e-6);
    if (!(mixer_eps > 0.0 && mixer_eps < 1.0)) {
      throw FormatError("'" + f.path() + "': mambalite.ssm.mixer_rms_epsilon = " +
                        std::to_string(mixer_eps) + " is out of range (0, 1)");
    }
    c.mixer_eps = static_cast<float>(mixer_eps);
  }
  const double eps = f.get_float_or(a + ".attention.layer_norm_rms_epsilon", 1e-5);
  if (!(eps > 0.0 && eps < 1.0)) {
    throw FormatError("'" + f.path() + "': layer_norm_rms_epsilon = " + std::to_string(eps) +
                      " is out of range (0, 1)");
  }
  c.norm_eps = static_cast<float>(eps);
  const GgufTensor* embd = f.find_tensor("token_embd.weight");
  if (embd == nullptr || embd->n_dims != 2) {
    throw FormatError("'" + f.path() +
                      "' lacks a 2-D tensor 'token_embd.weight', so its vocabulary "
                      "size is unknown");
  }
  c.n_vocab = embd->ne[1];
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  return c;
}

}  // namespace mambalite
