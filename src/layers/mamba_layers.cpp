// The mixers of one layer for a block of n <= kBlock tokens: Mamba-1 (and FalconMamba) and
// Mamba-2 (DESIGN.md §1). Both read hn_ = RMSNorm(resid_) and write out_ (run_block adds it).
#include <algorithm>
#include <cmath>

#include "model.h"

namespace mambalite {

void Model::mamba1_layer(State& state, int64_t l, int64_t n) {
  const MambaConfig& c = config_;
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank;
  const int64_t ldbc = R + 2 * N;
  const KernelTable& k = *k_;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  // Four barriers per layer: a channel's conv needs only its own in_proj rows, and its scan only
  // its own dt_proj row, so those pairs run in one parallel job over the same channel ranges.
  Acts act = prepare(w.in_proj, hn_.data(), D, n);
  float* window = state.conv(l);  // (K-1, E)
  pool_.parallel_for(E, 16, [&](int i, int64_t c0, int64_t c1) {
    // xz: (n, 2E): x rows [c0, c1) and z rows [E + c0, E + c1) of in_proj.
    matmul_rows(w.in_proj, act, n, xz_.data(), 2 * E, c0, c1, i);
    matmul_rows(w.in_proj, act, n, xz_.data(), 2 * E, E + c0, E + c1, i);
    k.conv_silu(n, K, E, window, xz_.data(), 2 * E, w.conv_w.data(), w.conv_b.data(), xc_.data(),
                c0, c1);
  });
  parallel_matmul(w.x_proj, xc_.data(), E, n, dbc_.data(), ldbc);  // dbc: (n, R + 2N)
  if (c.dt_b_c_rms) {  // FalconMamba: weightless RMSNorm of dt, B and C, each on its own
    for (int64_t t = 0; t < n; ++t) {
      float* row = dbc_.data() + t * ldbc;
      k.rms_norm(row, ones_.data(), R, c.mixer_eps, row);
      k.rms_norm(row + R, ones_.data(), N, c.mixer_eps, row + R);
      k.rms_norm(row + R + N, ones_.data(), N, c.mixer_eps, row + R + N);
    }
  }
  act = prepare(w.dt_proj, dbc_.data(), ldbc, n);
  float* s = state.ssm(l);  // (E, N)
  pool_.parallel_for(E, 16, [&](int i, int64_t c0, int64_t c1) {
    matmul_rows(w.dt_proj, act, n, dt_.data(), E, c0, c1, i);  // dt: (n, E)
    for (int64_t t = 0; t < n; ++t) {
      float* dt = dt_.data() + t * E;
      k.softplus_bias(c1 - c0, dt + c0, w.dt_b.data() + c0, dt + c0);
    }
    k.selective_scan(n, E, N, xc_.data(), dt_.data(), w.A.data(), dbc_.data() + R,
                     dbc_.data() + R + N, ldbc, w.D.data(), xz_.data() + E, 2 * E, s, y_.data(), c0,
                     c1);
  });
  parallel_matmul(w.out_proj, y_.data(), E, n, out_.data(), D);  // out: (n, D)
}

// Mamba-2 prefill runs the recurrence token by token inside the block, with each head's state
// rows held in cache: on a CPU the chunked SSD form costs more arithmetic than the recurrence
// (its intra-chunk products add about chunk * (N + P) / 2 multiply-adds per token and channel
// group to the recurrence's 2 * N * P), and its advantage, tensor-core matmuls, does not apply.
// What the CPU does take from it is the chunk's cumulative decay: the AVX2 head_scan rescales B
// by it over runs of up to 16 tokens, one multiply-add per state value and token fewer.
void Model::mamba2_layer(State& state, int64_t l, int64_t n) {
  const MambaConfig& c = config_;
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv;
  const int64_t H = c.n_head, G = c.n_group, P = c.head_dim();
  const int64_t CD = c.conv_dim(), NR = c.in_proj_rows();
  const int64_t heads_per_group = H / G, group_size = E / G;
  const KernelTable& k = *k_;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  // in_proj and the conv in one job, over the rows in the order xBC, z, dt: a chunk of xBC rows
  // is convolved by the thread that computed it (a channel's conv needs only its own row).
  // zxbcdt = xz_: (n, NR), rows z (E), xBC (CD), dt (H).
  const Acts act = prepare(w.in_proj, hn_.data(), D, n);
  float* window = state.conv(l);  // (K-1, CD)
  pool_.parallel_for(CD + E + H, 16, [&](int i, int64_t b, int64_t e) {
    const int64_t c0 = std::min(b, CD), c1 = std::min(e, CD);  // xBC channels
    if (c0 < c1) {
      matmul_rows(w.in_proj, act, n, xz_.data(), NR, E + c0, E + c1, i);
      k.conv_silu(n, K, CD, window, xz_.data() + E, NR, w.conv_w.data(), w.conv_b.data(),
                  xc_.data(), c0, c1);  // xc: (n, CD) = x (E), B (G, N), C (G, N)
    }
    const int64_t z0 = std::clamp(b - CD, int64_t{0}, E), z1 = std::clamp(e - CD, int64_t{0}, E);
    matmul_rows(w.in_proj, act, n, xz_.data(), NR, z0, z1, i);
    const int64_t d0 = std::max(b, CD + E), d1 = std::max(e, CD + E);  // dt rows, in place
    matmul_rows(w.in_proj, act, n, xz_.data(), NR, d0, d1, i);
  });
  float* s = state.ssm(l);  // (H, P, N)
  pool_.parallel_for(H, 1, [&](int, int64_t h0, int64_t h1) {
    for (int64_t t = 0; t < n; ++t) {  // dt_: (n, H) = softplus(dt_raw + dt_bias)
      k.softplus_bias(h1 - h0, xz_.data() + t * NR + E + CD + h0, w.dt_b.data() + h0,
                      dt_.data() + t * H + h0);
    }
    float dt[kBlock], dA[kBlock];  // (n) this head's step and decay
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t t = 0; t < n; ++t) {
        dt[t] = dt_[t * H + h];
        dA[t] = std::exp(dt[t] * w.A[h]);
      }
      const int64_t g = h / heads_per_group;
      k.head_scan(n, P, N, xc_.data() + h * P, CD, dt, dA, xc_.data() + E + g * N,
                  xc_.data() + E + (G + g) * N, CD, w.D[h], xz_.data() + h * P, NR, s + h * P * N,
                  y_.data() + h * P, E);  // y: (n, E) = y * silu(z)
    }
  });
  for_tokens(n, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {  // gated RMSNorm, each group of E / G channels on its own
      for (int64_t g = 0; g < G; ++g) {
        float* v = y_.data() + t * E + g * group_size;
        k.rms_norm(v, w.ssm_norm.data() + g * group_size, group_size, c.norm_eps, v);
      }
    }
  });
  parallel_matmul(w.out_proj, y_.data(), E, n, out_.data(), D);  // out: (n, D)
}

}  // namespace mambalite
