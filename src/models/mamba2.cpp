// Mamba-2 (llama.cpp's `mamba2`): every layer is RMSNorm -> Mamba-2 mixer.
#include "models/architectures.h"

namespace mambalite {

void read_mamba2(const GgufFile& f, ModelConfig& c) {
  read_mamba2_hparams(f, c);
  for (int64_t l = 0; l < c.n_layer; ++l) c.blocks.push_back({BlockKind::kMamba2, l, "attn_norm"});
}

}  // namespace mambalite
