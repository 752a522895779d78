// Mamba-1 and FalconMamba (llama.cpp's `mamba`): every layer is RMSNorm -> Mamba-1 mixer.
#include "errors.h"
#include "models/architectures.h"

namespace mambalite {

void read_mamba(const GgufFile& f, ModelConfig& c) {
  const std::string& a = c.architecture;
  c.d_inner = read_dim(f, a + ".ssm.inner_size", 1 << 18);
  c.d_state = read_dim(f, a + ".ssm.state_size", 1 << 12);
  c.d_conv = read_dim(f, a + ".ssm.conv_kernel", 64);
  c.dt_rank = read_dim(f, a + ".ssm.time_step_rank", 1 << 16);
  c.dt_b_c_rms = f.get_bool_or(a + ".ssm.dt_b_c_rms", false);
  // llama.cpp files do not record FalconMamba's mixer eps: 1e-6 is the released model's value.
  c.mixer_eps = read_positive_float(f, "mambalite.ssm.mixer_rms_epsilon", 1e-6, 1.0);
  for (int64_t l = 0; l < c.n_layer; ++l) c.blocks.push_back({BlockKind::kMamba1, l, "attn_norm"});
}

}  // namespace mambalite
