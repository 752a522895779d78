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
// caches, the default, go a tile at a time through kv_scores_f16 / kv_accumulate_f16).
float dot_row(const KernelTable& k, GgmlType type, const uint8_t* row, const float* q, int64_t hd) {
  float s = 0.0f;
  if (type == GgmlType::F32) {
    s = k.dot_f32(hd, row, q);
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

}  // namespace

AttentionBlock::AttentionBlock(const ModelConfig& c, const BlockSpec& spec, Binder& b,
                               const std::string& p, int64_t slot)
    : Block(BlockKind::kAttention),
      c_(c),
      n_head_(spec.n_head),
      n_head_kv_(spec.n_head_kv),
      hd_(c.head_dim),
      slot_(slot) {
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
  return static_cast<size_t>(Compute::kBlock * (2 * HQ + 2 * HKV) + n_threads * (kTile + hd_));
}

void AttentionBlock::rope(float* x, int64_t n_heads, int64_t pos) const {
  const size_t half = inv_freq_.size();
  for (size_t i = 0; i < half; ++i) {
    const float theta = static_cast<float>(pos) * inv_freq_[i];
    const float cs = std::cos(theta), sn = std::sin(theta);
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + h * hd_ + 2 * static_cast<int64_t>(i);
      const float x0 = v[0], x1 = v[1];
      v[0] = x0 * cs - x1 * sn;
      v[1] = x0 * sn + x1 * cs;
    }
  }
}

void AttentionBlock::forward(Compute& cx, State& state, const float* hn, float* out, int64_t n,
                             float* ws) {
  const int64_t D = c_.d_model, HQ = n_head_ * hd_, HKV = n_head_kv_ * hd_;
  const int64_t T = Compute::kBlock, pos0 = state.n_tokens();
  float* q = ws;                  // (T, H * hd)
  float* kk = q + T * HQ;         // (T, Hkv * hd)
  float* vv = kk + T * HKV;       // (T, Hkv * hd)
  float* att = vv + T * HKV;      // (T, H * hd)
  float* scratch = att + T * HQ;  // (threads, kTile + hd)
  cx.matmul(w_.wq, hn, D, n, q, HQ);
  cx.matmul(w_.wk, hn, D, n, kk, HKV);
  cx.matmul(w_.wv, hn, D, n, vv, HKV);
  add_bias(w_.bq, q, n, HQ);
  add_bias(w_.bk, kk, n, HKV);
  add_bias(w_.bv, vv, n, HKV);
  const GgmlType type = state.shape().kv_type;
  const size_t row = state.shape().kv_row_bytes(static_cast<size_t>(slot_));
  const size_t head_bytes = row / static_cast<size_t>(n_head_kv_);
  uint8_t* keys = state.keys(static_cast<size_t>(slot_));
  uint8_t* values = state.values(static_cast<size_t>(slot_));
  cx.for_tokens(n, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      if (!inv_freq_.empty()) {
        rope(q + t * HQ, n_head_, pos0 + t);
        rope(kk + t * HKV, n_head_kv_, pos0 + t);
      }
      store_row(type, kk + t * HKV, HKV, keys + static_cast<size_t>(pos0 + t) * row);
      store_row(type, vv + t * HKV, HKV, values + static_cast<size_t>(pos0 + t) * row);
    }
  });
  const int64_t group = n_head_ / n_head_kv_;
  const KernelTable& k = cx.k();
  cx.pool().parallel_for(n * n_head_, 1, [&](int thread, int64_t i0, int64_t i1) {
    float* s = scratch + thread * (kTile + hd_);  // (kTile) scores
    float* acc = s + kTile;                       // (hd)
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / n_head_, h = i % n_head_, g = h / group;
      const float* qh = q + t * HQ + h * hd_;
      const int64_t len = pos0 + t + 1;  // causal: positions [0, pos0 + t]
      float m = -INFINITY, l = 0.0f;
      std::fill(acc, acc + hd_, 0.0f);
      for (int64_t j0 = 0; j0 < len; j0 += kTile) {
        const int64_t nj = std::min(kTile, len - j0);
        const uint8_t* k0 = keys + static_cast<size_t>(j0) * row + g * head_bytes;
        const uint8_t* v0 = values + static_cast<size_t>(j0) * row + g * head_bytes;
        if (type == GgmlType::F16) {  // the default cache: one call per tile
          kv_scores_f16(k, nj, hd_, reinterpret_cast<const uint16_t*>(k0),
                        static_cast<int64_t>(row / 2), qh, scale_, s);
        } else {
          for (int64_t j = 0; j < nj; ++j) s[j] = scale_ * dot_row(k, type, k0 + j * row, qh, hd_);
        }
        float tile_max = -INFINITY;
        for (int64_t j = 0; j < nj; ++j) tile_max = std::max(tile_max, s[j]);
        const float m_new = std::max(m, tile_max);
        const float correction = std::exp(m - m_new);  // 0 on the first tile
        l *= correction;
        for (int64_t d = 0; d < hd_; ++d) acc[d] *= correction;
        float tile_sum = 0.0f;
        for (int64_t j = 0; j < nj; ++j) {
          s[j] = softmax_exp(s[j] - m_new);
          tile_sum += s[j];
        }
        l += tile_sum;
        if (type == GgmlType::F16) {
          kv_accumulate_f16(k, nj, hd_, reinterpret_cast<const uint16_t*>(v0),
                            static_cast<int64_t>(row / 2), s, acc);
        } else {
          for (int64_t j = 0; j < nj; ++j) axpy_row(type, v0 + j * row, s[j], acc, hd_);
        }
        m = m_new;
      }
      float* o = att + t * HQ + h * hd_;
      const float inv = 1.0f / l;
      for (int64_t d = 0; d < hd_; ++d) o[d] = acc[d] * inv;
    }
  });
  cx.matmul(w_.wo, att, HQ, n, out, D);
  add_bias(w_.bo, out, n, D);
}

}  // namespace mambalite
