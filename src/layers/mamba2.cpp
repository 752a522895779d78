#include "layers/mamba2.h"

#include <algorithm>
#include <cmath>

namespace mambalite {

Mamba2Block::Mamba2Block(const ModelConfig& c, Binder& b, const std::string& p, int64_t slot)
    : Block(BlockKind::kMamba2), c_(c), slot_(slot) {
  const int64_t D = c.d_model, E = c.d_inner, K = c.d_conv, H = c.n_head, G = c.n_group;
  const int64_t CD = c.conv_dim();
  w_.in_proj = b.matrix(p + "ssm_in.weight", c.in_proj_rows(), D);
  w_.conv_w = conv_weights(b, p + "ssm_conv1d.weight", K, CD);
  // The conv bias is optional in llama.cpp's hybrids (mamba_conv_bias = false).
  w_.conv_b = b.has(p + "ssm_conv1d.bias") ? b.floats(p + "ssm_conv1d.bias", {CD})
                                           : std::vector<float>(static_cast<size_t>(CD), 0.0f);
  w_.dt_b = b.floats(p + "ssm_dt.bias", {H});
  w_.A = b.floats(p + "ssm_a", {1, H});
  w_.D = b.floats(p + "ssm_d", {1, H});
  if (!c.ssm_norm_optional || b.has(p + "ssm_norm.weight")) {
    w_.ssm_norm = b.floats(p + "ssm_norm.weight", {E / G, G});
  }
  w_.out_proj = b.matrix(p + "ssm_out.weight", D, E);
}

size_t Mamba2Block::workspace_floats(int) const {
  return static_cast<size_t>(Compute::kBlock *
                             (c_.in_proj_rows() + c_.conv_dim() + c_.n_head + c_.d_inner));
}

// Mamba-2 prefill runs the recurrence token by token inside the block, with each head's state
// rows held in cache: on a CPU the chunked SSD form costs more arithmetic than the recurrence, and
// its advantage, tensor-core matmuls, does not apply (docs/design.md §1).
void Mamba2Block::forward(Compute& cx, const Seqs& seqs, const float* hn, float* out, int64_t n,
                          float* ws) {
  const ModelConfig& c = c_;
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv;
  const int64_t H = c.n_head, G = c.n_group, P = c.head_dim_ssm();
  const int64_t CD = c.conv_dim(), NR = c.in_proj_rows(), T = Compute::kBlock;
  const int64_t heads_per_group = H / G, group_size = E / G;
  const KernelTable& k = cx.k();
  float* xz = ws;            // (T, NR): z (E), xBC (CD), dt (H)
  float* xc = xz + T * NR;   // (T, CD) = x (E), B (G, N), C (G, N) after conv + SiLU
  float* dts = xc + T * CD;  // (T, H) softplus(dt_raw + dt_bias)
  float* y = dts + T * H;    // (T, E)
  // in_proj and the conv in one job, over the rows in the order xBC, z, dt: a chunk of xBC rows
  // is convolved by the thread that computed it (a channel's conv needs only its own row).
  const Compute::Acts act = cx.prepare(w_.in_proj, hn, D, n);
  cx.pool().parallel_for(CD + E + H, 16, [&](int i, int64_t b, int64_t e) {
    const int64_t c0 = std::min(b, CD), c1 = std::min(e, CD);  // xBC channels
    if (c0 < c1) {
      cx.matmul_rows(w_.in_proj, act, n, xz, NR, E + c0, E + c1, i);
      for (const SeqRows& q : seqs) {  // each sequence's conv window: (K-1, CD)
        k.conv_silu(q.n, K, CD, q.state->conv(slot_), xz + q.row0 * NR + E, NR, w_.conv_w.data(),
                    w_.conv_b.data(), xc + q.row0 * CD, c0, c1);
      }
    }
    const int64_t z0 = std::clamp(b - CD, int64_t{0}, E), z1 = std::clamp(e - CD, int64_t{0}, E);
    cx.matmul_rows(w_.in_proj, act, n, xz, NR, z0, z1, i);
    const int64_t d0 = std::max(b, CD + E), d1 = std::max(e, CD + E);  // dt rows, in place
    cx.matmul_rows(w_.in_proj, act, n, xz, NR, d0, d1, i);
  });
  cx.pool().parallel_for(H, 1, [&](int, int64_t h0, int64_t h1) {
    for (int64_t t = 0; t < n; ++t) {
      float* dt = dts + t * H;
      k.softplus_bias(h1 - h0, xz + t * NR + E + CD + h0, w_.dt_b.data() + h0, dt + h0);
    }
    float dt[Compute::kBlock], dA[Compute::kBlock];  // (n) this head's step and decay
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t t = 0; t < n; ++t) {
        dt[t] = dts[t * H + h];
        dA[t] = std::exp(dt[t] * w_.A[h]);
      }
      const int64_t g = h / heads_per_group;
      for (const SeqRows& q : seqs) {  // each sequence's state: (H, P, N); y = y * silu(z)
        const float* xq = xc + q.row0 * CD;
        k.head_scan(q.n, P, N, xq + h * P, CD, dt + q.row0, dA + q.row0, xq + E + g * N,
                    xq + E + (G + g) * N, CD, w_.D[h], xz + q.row0 * NR + h * P, NR,
                    q.state->ssm(slot_) + h * P * N, y + q.row0 * E + h * P, E);
      }
    }
  });
  if (!w_.ssm_norm.empty())
    cx.for_tokens(n, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {  // gated RMSNorm, each group of E / G channels on its own
        for (int64_t g = 0; g < G; ++g) {
          float* v = y + t * E + g * group_size;
          k.rms_norm(v, w_.ssm_norm.data() + g * group_size, group_size, c.norm_eps, v);
        }
      }
    });
  cx.matmul(w_.out_proj, y, E, n, out, D);
}

}  // namespace mambalite
