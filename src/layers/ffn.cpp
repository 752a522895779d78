#include "layers/ffn.h"

#include <cmath>

namespace mambalite {
void swiglu(float* g, const float* u, int64_t n, int64_t n_ff, int64_t ld) {
  for (int64_t t = 0; t < n; ++t) {
    float* gr = g + t * ld;
    const float* ur = u + t * ld;
    for (int64_t i = 0; i < n_ff; ++i) gr[i] = gr[i] / (1.0f + std::exp(-gr[i])) * ur[i];
  }
}

FfnBlock::FfnBlock(const ModelConfig& c, const BlockSpec& spec, Binder& b, const std::string& p)
    : Block(spec.kind), d_model_(c.d_model), n_ff_(spec.n_ff) {
  const int64_t D = c.d_model, F = spec.n_ff;
  if (spec.kind == BlockKind::kFfnGated) {
    w_.gate = b.matrix(p + "ffn_gate.weight", F, D);
    w_.b_gate = b.optional_floats(p + "ffn_gate.bias", {F});
  }
  w_.up = b.matrix(p + "ffn_up.weight", F, D);
  w_.down = b.matrix(p + "ffn_down.weight", D, F);
  w_.b_up = b.optional_floats(p + "ffn_up.bias", {F});
  w_.b_down = b.optional_floats(p + "ffn_down.bias", {D});
}

void FfnBlock::forward(Compute& cx, const Seqs&, const float* hn, float* out, int64_t n,
                       float* ws) {
  const int64_t D = d_model_, F = n_ff_;
  float* u = ws;                       // (T, F)
  float* g = u + Compute::kBlock * F;  // (T, F)
  cx.matmul(w_.up, hn, D, n, u, F);
  add_bias(w_.b_up, u, n, F);
  if (kind() == BlockKind::kFfnGated) {
    cx.matmul(w_.gate, hn, D, n, g, F);
    add_bias(w_.b_gate, g, n, F);
    swiglu(g, u, n, F, F);
    u = g;
  } else {
    for (int64_t i = 0; i < n * F; ++i) {
      const float r = std::max(u[i], 0.0f);
      u[i] = r * r;
    }
  }
  cx.matmul(w_.down, u, F, n, out, D);
  add_bias(w_.b_down, out, n, D);
}

}  // namespace mambalite
