#include "layers/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "format/fp16.h"
#include "format/quant_blocks.h"
#include "format/quantize.h"

namespace mambalite {
namespace {

// One cache row (a head's hd values) of an F32 or Q8_0 cache: q . k, and acc += w * v (F16
// caches, the default, go a tile at a time through the table's attend_f16).
float dot_row(const KernelTable& k, GgmlType type, const uint8_t* row, const float* q, int64_t hd) {
  float s = 0.0f;
  if (type == GgmlType::F32) {
    s = k.of(GgmlType::F32).dot(hd, row, q);
  } else {
    const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(row);
    for (int64_t j = 0; j < hd / kQK; ++j) {
      float part = 0.0f;
      for (int i = 0; i < kQK; ++i) part += q[j * kQK + i] * static_cast<float>(b[j].qs[i]);
      s += part * fp16_to_fp32(b[j].d);
    }
  }
  return s;
}

void axpy_row(GgmlType type, const uint8_t* row, float w, float* acc, int64_t hd) {
  if (type == GgmlType::F32) {
    const float* v = reinterpret_cast<const float*>(row);
    for (int64_t i = 0; i < hd; ++i) acc[i] += w * v[i];
  } else {
    const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(row);
    for (int64_t j = 0; j < hd / kQK; ++j) {
      const float wd = w * fp16_to_fp32(b[j].d);
      for (int i = 0; i < kQK; ++i) acc[j * kQK + i] += wd * static_cast<float>(b[j].qs[i]);
    }
  }
}

// x (width) fp32 -> one cache row in `type`.
void store_row(GgmlType type, const float* x, int64_t width, uint8_t* row) {
  if (type == GgmlType::F32) {
    std::memcpy(row, x, static_cast<size_t>(width) * sizeof(float));
  } else if (type == GgmlType::F16) {
    uint16_t* h = reinterpret_cast<uint16_t*>(row);
    for (int64_t i = 0; i < width; ++i) h[i] = fp32_to_fp16(x[i]);
  } else {
    quantize_row_q8_0(x, width, row);
  }
}

// exp(x) for the softmax's x = score - max <= 0 (Cephes' expf: n = round(x / ln 2), a degree-7
// polynomial of the remainder, times 2^n; within 2 ulp of std::exp above -87, where it stops).
// Branch-free, so the loop over a tile vectorises; std::exp per position was the slowest part of
// decode at long context.
inline float softmax_exp(float x) {
  x = std::max(x, -87.0f);
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = x - n * 0.693359375f - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * bits_to_float(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
}

// One tile of nj positions of an F32 or Q8_0 cache for one query head: scores into s (nj), then
// the online softmax update of acc (hd) and ml = {running max, running sum}, as the table's
// attend_f16 does for F16 caches.
void attend_tile(const KernelTable& k, GgmlType type, const uint8_t* k0, const uint8_t* v0,
                 size_t row, int64_t nj, const float* qh, float scale, int64_t hd, float* s,
                 float* acc, float* ml) {
  for (int64_t j = 0; j < nj; ++j) s[j] = scale * dot_row(k, type, k0 + j * row, qh, hd);
  float tile_max = -INFINITY;
  for (int64_t j = 0; j < nj; ++j) tile_max = std::max(tile_max, s[j]);
  const float m_new = std::max(ml[0], tile_max);
  const float correction = std::exp(ml[0] - m_new);  // 0 on the first tile
  for (int64_t d = 0; d < hd; ++d) acc[d] *= correction;
  float tile_sum = 0.0f;
  for (int64_t j = 0; j < nj; ++j) {
    s[j] = softmax_exp(s[j] - m_new);
    tile_sum += s[j];
  }
  ml[0] = m_new;
  ml[1] = ml[1] * correction + tile_sum;
  for (int64_t j = 0; j < nj; ++j) axpy_row(type, v0 + j * row, s[j], acc, hd);
}

}  // namespace

int64_t AttentionBlock::thread_floats() const {
  const int64_t group = n_head_ / n_head_kv_;
  return n_head_ * (hd_ + 2) + kTile * (hd_ + group) + group;  // acc, ml, attend_f16's scratch
}

int64_t AttentionBlock::split_count(int64_t n, int64_t max_len, int n_threads) {
  if (n >= 2 * n_threads) return 1;
  const int64_t want = (2 * n_threads + n - 1) / n;
  return std::max<int64_t>(1, std::min(want, max_len / (2 * kTile)));
}

AttentionBlock::AttentionBlock(const ModelConfig& c, const BlockSpec& spec, Binder& b,
                               const std::string& p, int64_t slot)
    : Block(BlockKind::kAttention),
      c_(c),
      n_head_(spec.n_head),
      n_head_kv_(spec.n_head_kv),
      hd_(c.head_dim),
      slot_(slot),
      neox_(c.rope_neox) {
  const int64_t D = c.d_model, HQ = n_head_ * hd_, HKV = n_head_kv_ * hd_;
  w_.wq = b.matrix(p + "attn_q.weight", HQ, D);
  w_.wk = b.matrix(p + "attn_k.weight", HKV, D);
  w_.wv = b.matrix(p + "attn_v.weight", HKV, D);
  w_.wo = b.matrix(p + "attn_output.weight", D, HQ);
  w_.bq = b.optional_floats(p + "attn_q.bias", {HQ});
  w_.bk = b.optional_floats(p + "attn_k.bias", {HKV});
  w_.bv = b.optional_floats(p + "attn_v.bias", {HKV});
  w_.bo = b.optional_floats(p + "attn_output.bias", {D});
  scale_ = c.attn_scale != 0.0f ? c.attn_scale : 1.0f / std::sqrt(static_cast<float>(hd_));
  for (int64_t i = 0; i < c.n_rot / 2; ++i) {
    inv_freq_.push_back(static_cast<float>(
        std::pow(static_cast<double>(c.rope_base), -2.0 * static_cast<double>(i) / c.n_rot)));
  }
}

size_t AttentionBlock::workspace_floats(int n_threads) const {
  const int64_t HQ = n_head_ * hd_, HKV = n_head_kv_ * hd_;
  // q, k, v, att; per thread thread_floats(); chunk partials (n_split > 1 only when
  // n < 2 * threads, so n * n_split < 4 * threads).
  return static_cast<size_t>(Compute::kBlock * (2 * HQ + 2 * HKV) + n_threads * thread_floats() +
                             4 * n_threads * n_head_ * (hd_ + 2));
}

void AttentionBlock::rope(float* x, int64_t n_heads, int64_t pos) const {
  const size_t half = inv_freq_.size();
  for (size_t i = 0; i < half; ++i) {
    const float theta = static_cast<float>(pos) * inv_freq_[i];
    const float cs = std::cos(theta), sn = std::sin(theta);
    // The pair (i, i + n_rot / 2) in the NEOX convention, (2i, 2i + 1) otherwise.
    const int64_t a = neox_ ? static_cast<int64_t>(i) : 2 * static_cast<int64_t>(i);
    const int64_t b = neox_ ? a + static_cast<int64_t>(half) : a + 1;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + h * hd_;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cs - x1 * sn;
      v[b] = x0 * sn + x1 * cs;
    }
  }
}

void AttentionBlock::forward(Compute& cx, const Seqs& seqs, const float* hn, float* out, int64_t n,
                             float* ws) {
  const int64_t D = c_.d_model, HQ = n_head_ * hd_, HKV = n_head_kv_ * hd_;
  const int64_t T = Compute::kBlock;
  float* q = ws;                  // (T, H * hd)
  float* kk = q + T * HQ;         // (T, Hkv * hd)
  float* vv = kk + T * HKV;       // (T, Hkv * hd)
  float* att = vv + T * HKV;      // (T, H * hd)
  float* scratch = att + T * HQ;  // (threads, thread_floats()), then chunk partials
  cx.matmul(w_.wq, hn, D, n, q, HQ);
  cx.matmul(w_.wk, hn, D, n, kk, HKV);
  cx.matmul(w_.wv, hn, D, n, vv, HKV);
  add_bias(w_.bq, q, n, HQ);
  add_bias(w_.bk, kk, n, HKV);
  add_bias(w_.bv, vv, n, HKV);
  // Every state of a model has the same cache layout; each row t has its sequence's cache and
  // its position in it.
  const StateShape& shape = seqs.front().state->shape();
  const GgmlType type = shape.kv_type;
  const size_t row = shape.kv_row_bytes(static_cast<size_t>(slot_));
  const size_t head_bytes = row / static_cast<size_t>(n_head_kv_);
  int64_t pos[Compute::kBlock];  // (n) each row's position
  int64_t seq[Compute::kBlock];  // (n) each row's index in seqs
  int64_t max_len = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    for (int64_t t = 0; t < seqs[i].n; ++t) {
      pos[seqs[i].row0 + t] = seqs[i].state->n_tokens() + t;
      seq[seqs[i].row0 + t] = static_cast<int64_t>(i);
    }
    max_len = std::max(max_len, seqs[i].state->n_tokens() + seqs[i].n);
  }
  auto keys_of = [&](int64_t t) { return seqs[seq[t]].state->keys(static_cast<size_t>(slot_)); };
  auto values_of = [&](int64_t t) {
    return seqs[seq[t]].state->values(static_cast<size_t>(slot_));
  };
  cx.for_tokens(n, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      if (!inv_freq_.empty()) {
        rope(q + t * HQ, n_head_, pos[t]);
        rope(kk + t * HKV, n_head_kv_, pos[t]);
      }
      store_row(type, kk + t * HKV, HKV, keys_of(t) + static_cast<size_t>(pos[t]) * row);
      store_row(type, vv + t * HKV, HKV, values_of(t) + static_cast<size_t>(pos[t]) * row);
    }
  });
  // Work items are (token, chunk of positions), all heads together: a tile of the cache holds
  // every kv head's rows of its positions, so it is read from memory once and used whole
  // (docs/kernels.md). With fewer tokens than about two per thread (decode), the positions split
  // into chunks whose partial softmaxes merge afterwards, as flash-decoding does.
  const int64_t group = n_head_ / n_head_kv_;
  const int64_t n_split = split_count(n, max_len, cx.n_threads());
  const int64_t per_thread = thread_floats();
  const KernelTable& k = cx.k();
  float* part = scratch + cx.n_threads() * per_thread;  // (n, n_split, H, hd + 2)
  cx.pool().parallel_for(n * n_split, 1, [&](int thread, int64_t i0, int64_t i1) {
    float* acc = scratch + thread * per_thread;  // (H, hd)
    float* ml = acc + HQ;                        // (H, 2) running max and sum
    float* tile = ml + 2 * n_head_;              // attend_f16's scratch, or one head's scores
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / n_split, c = i % n_split;
      const int64_t len = pos[t] + 1;  // causal: positions [0, pos[t]] of its own sequence
      const uint8_t* keys = keys_of(t);
      const uint8_t* values = values_of(t);
      const int64_t chunk = (len + n_split * kTile - 1) / (n_split * kTile) * kTile;
      const int64_t b = std::min(len, c * chunk), e = std::min(len, b + chunk);
      const float* qt = q + t * HQ;
      for (int64_t h = 0; h < n_head_; ++h) {
        ml[2 * h] = -INFINITY;
        ml[2 * h + 1] = 0.0f;
      }
      std::fill(acc, acc + HQ, 0.0f);
      for (int64_t j0 = b; j0 < e; j0 += kTile) {
        const int64_t nj = std::min(kTile, e - j0);
        for (int64_t g = 0; g < n_head_kv_; ++g) {
          const size_t off = static_cast<size_t>(j0) * row + g * head_bytes;
          const int64_t h0 = g * group;  // the group's query heads share this kv head
          if (type == GgmlType::F16) {   // the default cache: one call per tile and group
            attend_f16(k, group, nj, hd_, reinterpret_cast<const uint16_t*>(keys + off),
                       reinterpret_cast<const uint16_t*>(values + off),
                       static_cast<int64_t>(row / 2), qt + h0 * hd_, scale_, acc + h0 * hd_,
                       ml + 2 * h0, tile);
          } else {
            for (int64_t h = h0; h < h0 + group; ++h) {
              attend_tile(k, type, keys + off, values + off, row, nj, qt + h * hd_, scale_, hd_,
                          tile, acc + h * hd_, ml + 2 * h);
            }
          }
        }
      }
      for (int64_t h = 0; h < n_head_; ++h) {
        if (n_split == 1) {
          float* o = att + t * HQ + h * hd_;
          const float inv = 1.0f / ml[2 * h + 1];
          for (int64_t d = 0; d < hd_; ++d) o[d] = acc[h * hd_ + d] * inv;
        } else {
          float* pp = part + ((t * n_split + c) * n_head_ + h) * (hd_ + 2);
          pp[0] = ml[2 * h];
          pp[1] = ml[2 * h + 1];
          std::copy(acc + h * hd_, acc + (h + 1) * hd_, pp + 2);
        }
      }
    }
  });
  if (n_split > 1) {  // merge the chunks: o = sum_c acc_c e^(m_c - M) / sum_c l_c e^(m_c - M)
    const int64_t stride = n_head_ * (hd_ + 2);  // between chunks
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t h = 0; h < n_head_; ++h) {
        const float* p0 = part + (t * n_split * n_head_ + h) * (hd_ + 2);
        float mx = -INFINITY;
        for (int64_t c = 0; c < n_split; ++c) mx = std::max(mx, p0[c * stride]);
        float* o = att + t * HQ + h * hd_;
        std::fill(o, o + hd_, 0.0f);
        float l = 0.0f;
        for (int64_t c = 0; c < n_split; ++c) {
          const float* pc = p0 + c * stride;
          if (pc[1] == 0.0f) continue;  // an empty chunk (past the causal end)
          const float w = std::exp(pc[0] - mx);
          l += w * pc[1];
          for (int64_t d = 0; d < hd_; ++d) o[d] += w * pc[2 + d];
        }
        const float inv = 1.0f / l;
        for (int64_t d = 0; d < hd_; ++d) o[d] *= inv;
      }
    }
  }
  cx.matmul(w_.wo, att, HQ, n, out, D);
  add_bias(w_.bo, out, n, D);
}

}  // namespace mambalite
