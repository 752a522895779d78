#include "mamba_config.h"

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
  if (a == "mamba2") {
    throw FormatError("'" + f.path() +
                      "' is a Mamba-2 model; this version of mambalite runs "
                      "Mamba-1 ('mamba') models only");
  }
  if (a != "mamba") {
    throw FormatError("'" + f.path() + "' holds a '" + a +
                      "' model, but mambalite runs Mamba "
                      "models (architecture 'mamba')");
  }
  if (f.get_bool_or(a + ".ssm.dt_b_c_rms", false)) {
    throw FormatError("'" + f.path() + "' is a FalconMamba model (" + a +
                      ".ssm.dt_b_c_rms = true); this version runs plain Mamba-1 models only");
  }
  c.d_model = dim(f, a + ".embedding_length", 1 << 16);
  c.n_layer = dim(f, a + ".block_count", 1 << 12);
  c.d_inner = dim(f, a + ".ssm.inner_size", 1 << 18);
  c.d_state = dim(f, a + ".ssm.state_size", 1 << 12);
  c.d_conv = dim(f, a + ".ssm.conv_kernel", 64);
  c.dt_rank = dim(f, a + ".ssm.time_step_rank", 1 << 16);
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
