#include "layers/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "layers/ffn.h"

namespace mambalite {

MoeBlock::MoeBlock(const ModelConfig& c, const BlockSpec& spec, Binder& b, const std::string& p)
    : Block(BlockKind::kMoe),
      d_model_(c.d_model),
      n_ff_(spec.n_ff),
      n_ff_sh_(c.n_ff_shexp),
      n_expert_(c.n_expert),
      n_used_(c.n_expert_used),
      norm_topk_(c.moe_norm_topk) {
  const int64_t D = c.d_model, F = spec.n_ff, X = c.n_expert;
  w_.router = b.matrix(p + "ffn_gate_inp.weight", X, D);
  w_.gate = b.matrices(p + "ffn_gate_exps.weight", X, F, D);
  w_.up = b.matrices(p + "ffn_up_exps.weight", X, F, D);
  w_.down = b.matrices(p + "ffn_down_exps.weight", X, D, F);
  if (n_ff_sh_ > 0) {
    w_.gate_sh = b.matrix(p + "ffn_gate_shexp.weight", n_ff_sh_, D);
    w_.up_sh = b.matrix(p + "ffn_up_shexp.weight", n_ff_sh_, D);
    w_.down_sh = b.matrix(p + "ffn_down_shexp.weight", D, n_ff_sh_);
  }
}

size_t MoeBlock::workspace_floats(int) const {
  const int64_t T = Compute::kBlock, F = std::max(n_ff_, n_ff_sh_);
  // router logits, per token the chosen experts' weights, gathered rows, gate and up, down.
  return static_cast<size_t>(T * n_expert_ + T * n_expert_ + T * d_model_ + 2 * T * F +
                             T * d_model_);
}

void MoeBlock::forward(Compute& cx, const Seqs&, const float* hn, float* out, int64_t n,
                       float* ws) {
  const int64_t D = d_model_, X = n_expert_, T = Compute::kBlock, F = std::max(n_ff_, n_ff_sh_);
  float* logits = ws;              // (T, X) router logits
  float* weight = logits + T * X;  // (T, X) each token's weight per expert, 0 when not chosen
  float* xs = weight + T * X;      // (T, D) the rows routed to one expert
  float* g = xs + T * D;           // (T, F)
  float* u = g + T * F;            // (T, F)
  float* y = u + T * F;            // (T, D)
  cx.matmul(w_.router, hn, D, n, logits, X);
  std::fill(weight, weight + n * X, 0.0f);
  std::vector<int64_t> order(static_cast<size_t>(X));
  for (int64_t t = 0; t < n; ++t) {
    const float* lt = logits + t * X;
    std::iota(order.begin(), order.end(), 0);
    // Top-k by logit, ties to the lower index (torch.topk's order on CPU).
    std::partial_sort(
        order.begin(), order.begin() + n_used_, order.end(),
        [&](int64_t a, int64_t b) { return lt[a] > lt[b] || (lt[a] == lt[b] && a < b); });
    const float top = lt[order[0]];
    float sum = 0.0f;
    const int64_t n_sum = norm_topk_ ? n_used_ : X;
    for (int64_t k = 0; k < n_sum; ++k) sum += std::exp(lt[order[k]] - top);
    for (int64_t k = 0; k < n_used_; ++k) {
      weight[t * X + order[k]] = std::exp(lt[order[k]] - top) / sum;
    }
  }
  if (n_ff_sh_ > 0) {
    cx.matmul(w_.gate_sh, hn, D, n, g, n_ff_sh_);
    cx.matmul(w_.up_sh, hn, D, n, u, n_ff_sh_);
    swiglu(g, u, n, n_ff_sh_, n_ff_sh_);
    cx.matmul(w_.down_sh, g, n_ff_sh_, n, out, D);
  } else {
    std::fill(out, out + n * D, 0.0f);
  }
  std::vector<int64_t> rows;  // tokens routed to the expert
  for (int64_t e = 0; e < X; ++e) {
    rows.clear();
    for (int64_t t = 0; t < n; ++t) {
      if (weight[t * X + e] != 0.0f) rows.push_back(t);
    }
    if (rows.empty()) continue;  // its weights are not read
    const int64_t m = static_cast<int64_t>(rows.size());
    for (int64_t i = 0; i < m; ++i) std::memcpy(xs + i * D, hn + rows[i] * D, D * sizeof(float));
    cx.matmul(w_.gate[e], xs, D, m, g, n_ff_);
    cx.matmul(w_.up[e], xs, D, m, u, n_ff_);
    swiglu(g, u, m, n_ff_, n_ff_);
    cx.matmul(w_.down[e], g, n_ff_, m, y, D);
    for (int64_t i = 0; i < m; ++i) {
      const float wt = weight[rows[i] * X + e];
      float* o = out + rows[i] * D;
      for (int64_t d = 0; d < D; ++d) o[d] += wt * y[i * D + d];
    }
  }
}

}  // namespace mambalite
