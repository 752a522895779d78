// Portable kernels. The inner loops keep independent partial sums so that compilers vectorise
// them without reassociating floating point (no -ffast-math needed).
#include <cmath>
#include <cstring>

#include "fp16.h"
#include "kernels.h"

namespace mambalite {
namespace {

constexpr int kLanes = 16;

float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[kLanes] = {0};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float sum = 0.0f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (int j = 0; j < kLanes; ++j) sum += acc[j];
  return sum;
}

void row_to_f32(const MatView& w, int64_t r, float* out) {
  const uint8_t* p = w.row(r);
  switch (w.type) {
    case GgmlType::F32:
      std::memcpy(out, p, static_cast<size_t>(w.cols) * sizeof(float));
      break;
    case GgmlType::F16: {
      const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
      for (int64_t i = 0; i < w.cols; ++i) out[i] = fp16_to_fp32_fast(h[i]);
      break;
    }
    case GgmlType::BF16: {
      const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
      for (int64_t i = 0; i < w.cols; ++i) out[i] = bf16_to_fp32(h[i]);
      break;
    }
    default:
      // Unreachable: the model rejects unsupported types at load time.
      std::memset(out, 0, static_cast<size_t>(w.cols) * sizeof(float));
  }
}

void matmul(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy,
            int64_t r0, int64_t r1, float* scratch) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* wr;
    if (w.type == GgmlType::F32) {
      wr = reinterpret_cast<const float*>(w.row(r));
    } else {
      row_to_f32(w, r, scratch);  // converted once, used for all n tokens
      wr = scratch;
    }
    for (int64_t t = 0; t < n; ++t) y[t * ldy + r] = dot_f32(wr, x + t * ldx, w.cols);
  }
}

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

inline float silu(float v) { return v / (1.0f + std::exp(-v)); }

void conv_silu(int64_t n, int64_t K, int64_t E, float* window, const float* x, int64_t ldx,
               const float* w, const float* bias, float* out, int64_t c0, int64_t c1) {
  const int64_t km1 = K - 1;
  // Input row j of the extended sequence [window rows; x rows].
  auto in = [&](int64_t j) { return j < km1 ? window + j * E : x + (j - km1) * ldx; };
  for (int64_t t = 0; t < n; ++t) {
    float* o = out + t * E;
    for (int64_t c = c0; c < c1; ++c) o[c] = bias[c];
    for (int64_t k = 0; k < K; ++k) {
      const float* src = in(t + k);
      const float* wk = w + k * E;
      for (int64_t c = c0; c < c1; ++c) o[c] += wk[c] * src[c];
    }
    for (int64_t c = c0; c < c1; ++c) o[c] = silu(o[c]);
  }
  // New window = the last K-1 rows of the extended sequence. Row j reads row n + j > j, which
  // has not been overwritten yet, so ascending order is safe.
  for (int64_t j = 0; j < km1; ++j) {
    const float* src = in(n + j);
    float* dst = window + j * E;
    if (src != dst) std::memcpy(dst + c0, src + c0, static_cast<size_t>(c1 - c0) * sizeof(float));
  }
}

void selective_scan(int64_t n, int64_t E, int64_t N, const float* x, const float* dt,
                    const float* A, const float* B, const float* C, int64_t ldbc, const float* D,
                    const float* z, int64_t ldz, float* s, float* y, int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; ++c) {
    float* sc = s + c * N;
    const float* Ac = A + c * N;
    for (int64_t t = 0; t < n; ++t) {
      const float d = dt[t * E + c];
      const float xv = x[t * E + c];
      const float dx = d * xv;
      const float* Bt = B + t * ldbc;
      const float* Ct = C + t * ldbc;
      float acc = 0.0f;
      for (int64_t k = 0; k < N; ++k) {
        sc[k] = sc[k] * std::exp(d * Ac[k]) + dx * Bt[k];
        acc += sc[k] * Ct[k];
      }
      y[t * E + c] = (acc + D[c] * xv) * silu(z[t * ldz + c]);
    }
  }
}

const KernelTable kScalar = {"scalar", row_to_f32, matmul, rms_norm, conv_silu, selective_scan};

}  // namespace

const KernelTable& scalar_kernels() { return kScalar; }

}  // namespace mambalite
