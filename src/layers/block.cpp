#include "layers/block.h"

#include "layers/attention.h"
#include "layers/ffn.h"
#include "layers/mamba1.h"
#include "layers/mamba2.h"
#include "layers/moe.h"

namespace mambalite {

std::unique_ptr<Block> make_block(const BlockSpec& spec, const ModelConfig& c, Binder& b,
                                  int64_t slot) {
  const std::string p = "blk." + std::to_string(spec.layer) + ".";
  switch (spec.kind) {
    case BlockKind::kMamba1:
      return std::make_unique<Mamba1Block>(c, b, p, slot);
    case BlockKind::kMamba2:
      return std::make_unique<Mamba2Block>(c, b, p, slot);
    case BlockKind::kAttention:
      return std::make_unique<AttentionBlock>(c, spec, b, p, slot);
    case BlockKind::kFfnGated:
    case BlockKind::kFfnRelu2:
      return std::make_unique<FfnBlock>(c, spec, b, p);
    case BlockKind::kMoe:
      return std::make_unique<MoeBlock>(c, spec, b, p);
  }
  return nullptr;
}

void add_bias(const std::vector<float>& b, float* y, int64_t n, int64_t ld) {
  if (b.empty()) return;
  for (int64_t t = 0; t < n; ++t)
    for (size_t i = 0; i < b.size(); ++i) y[t * ld + static_cast<int64_t>(i)] += b[i];
}

std::vector<float> conv_weights(Binder& b, const std::string& name, int64_t K, int64_t C) {
  const std::vector<float> conv = b.floats(name, {K, C});  // (C, K)
  if (conv.empty()) return {};
  std::vector<float> w(static_cast<size_t>(K * C));
  for (int64_t e = 0; e < C; ++e)
    for (int64_t k = 0; k < K; ++k) w[k * C + e] = conv[e * K + k];
  return w;
}

}  // namespace mambalite
