#include "layers/mamba1.h"

#include <algorithm>

namespace mambalite {

Mamba1Block::Mamba1Block(const ModelConfig& c, Binder& b, const std::string& p, int64_t slot)
    : Block(BlockKind::kMamba1), c_(c), slot_(slot) {
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank;
  w_.in_proj = b.matrix(p + "ssm_in.weight", 2 * E, D);
  w_.conv_w = conv_weights(b, p + "ssm_conv1d.weight", K, E);
  w_.conv_b = b.floats(p + "ssm_conv1d.bias", {E});
  w_.x_proj = b.matrix(p + "ssm_x.weight", R + 2 * N, E);
  w_.dt_proj = b.matrix(p + "ssm_dt.weight", E, R);
  w_.dt_b = b.floats(p + "ssm_dt.bias", {E});
  w_.A = b.floats(p + "ssm_a", {N, E});
  w_.D = b.floats(p + "ssm_d", {E});
  w_.out_proj = b.matrix(p + "ssm_out.weight", D, E);
  if (c.dt_b_c_rms) {  // weights when the file has them (Jamba), else ones (FalconMamba)
    auto norm = [&](const char* name, int64_t n) {
      std::vector<float> w = b.optional_floats(p + name, {n});
      if (w.empty()) w.assign(static_cast<size_t>(n), 1.0f);
      return w;
    };
    w_.dt_norm = norm("ssm_dt_norm.weight", R);
    w_.b_norm = norm("ssm_b_norm.weight", N);
    w_.c_norm = norm("ssm_c_norm.weight", N);
  }
}

size_t Mamba1Block::workspace_floats(int) const {
  const int64_t E = c_.d_inner;
  return static_cast<size_t>(Compute::kBlock * (2 * E + E + c_.dt_rank + 2 * c_.d_state + 2 * E));
}

int64_t Mamba1Block::max_cols() const { return std::max({c_.d_model, c_.d_inner, c_.dt_rank}); }

void Mamba1Block::forward(Compute& cx, const Seqs& seqs, const float* hn, float* out, int64_t n,
                          float* ws) {
  const int64_t D = c_.d_model, E = c_.d_inner, N = c_.d_state, K = c_.d_conv, R = c_.dt_rank;
  const int64_t T = Compute::kBlock, ldbc = R + 2 * N;
  const KernelTable& k = cx.k();
  float* xz = ws;              // (T, 2E): x, z
  float* xc = xz + T * 2 * E;  // (T, E) conv + SiLU output
  float* dbc = xc + T * E;     // (T, R + 2N): dt, B, C
  float* dt = dbc + T * ldbc;  // (T, E) softplus step
  float* y = dt + T * E;       // (T, E)
  // Four barriers per layer: a channel's conv needs only its own in_proj rows, and its scan only
  // its own dt_proj row, so those pairs run in one parallel job over the same channel ranges.
  Compute::Acts act = cx.prepare(w_.in_proj, hn, D, n);
  cx.pool().parallel_for(E, 16, [&](int i, int64_t c0, int64_t c1) {
    // x rows [c0, c1) and z rows [E + c0, E + c1) of in_proj.
    cx.matmul_rows(w_.in_proj, act, n, xz, 2 * E, c0, c1, i);
    cx.matmul_rows(w_.in_proj, act, n, xz, 2 * E, E + c0, E + c1, i);
    for (const SeqRows& q : seqs) {  // each sequence's conv window: (K-1, E)
      k.conv_silu(q.n, K, E, q.state->conv(slot_), xz + q.row0 * 2 * E, 2 * E, w_.conv_w.data(),
                  w_.conv_b.data(), xc + q.row0 * E, c0, c1);
    }
  });
  cx.matmul(w_.x_proj, xc, E, n, dbc, ldbc);
  if (c_.dt_b_c_rms) {  // RMSNorm of dt, B and C, each on its own
    for (int64_t t = 0; t < n; ++t) {
      float* row = dbc + t * ldbc;
      k.rms_norm(row, w_.dt_norm.data(), R, c_.mixer_eps, row);
      k.rms_norm(row + R, w_.b_norm.data(), N, c_.mixer_eps, row + R);
      k.rms_norm(row + R + N, w_.c_norm.data(), N, c_.mixer_eps, row + R + N);
    }
  }
  act = cx.prepare(w_.dt_proj, dbc, ldbc, n);
  cx.pool().parallel_for(E, 16, [&](int i, int64_t c0, int64_t c1) {
    cx.matmul_rows(w_.dt_proj, act, n, dt, E, c0, c1, i);
    for (int64_t t = 0; t < n; ++t) {
      float* row = dt + t * E;
      k.softplus_bias(c1 - c0, row + c0, w_.dt_b.data() + c0, row + c0);
    }
    for (const SeqRows& q : seqs) {  // each sequence's state: (E, N)
      const float* bc = dbc + q.row0 * ldbc;
      k.selective_scan(q.n, E, N, xc + q.row0 * E, dt + q.row0 * E, w_.A.data(), bc + R, bc + R + N,
                       ldbc, w_.D.data(), xz + q.row0 * 2 * E + E, 2 * E, q.state->ssm(slot_),
                       y + q.row0 * E, c0, c1);
    }
  });
  cx.matmul(w_.out_proj, y, E, n, out, D);
}

}  // namespace mambalite
