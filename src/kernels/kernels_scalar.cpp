// The portable reference kernels. Inner loops keep independent partial sums so that compilers
// vectorise them without reassociating floating point (no -ffast-math needed).
#include <cmath>
#include <cstring>

#include "format/fp16.h"
#include "kernels/kernels.h"
#include "kernels/kquants_generic.h"

namespace mambalite {
namespace {

#include "kernels/kernels_common.inc"

inline void silu_row(int64_t n, float* v) {
  for (int64_t i = 0; i < n; ++i) v[i] = silu(v[i]);
}

constexpr int kLanes = 16;

template <typename Load>
float dot_lanes(int64_t n, const float* x, Load load) {
  float acc[kLanes] = {0};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += load(i + j) * x[i + j];
  }
  float sum = 0.0f;
  for (; i < n; ++i) sum += load(i) * x[i];
  for (int j = 0; j < kLanes; ++j) sum += acc[j];
  return sum;
}

float dot_f32(int64_t n, const uint8_t* w, const float* x) {
  const float* a = reinterpret_cast<const float*>(w);
  return dot_lanes(n, x, [a](int64_t i) { return a[i]; });
}

float dot_f16(int64_t n, const uint8_t* w, const float* x) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(w);
  return dot_lanes(n, x, [h](int64_t i) { return fp16_to_fp32_fast(h[i]); });
}

float dot_bf16(int64_t n, const uint8_t* w, const float* x) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(w);
  return dot_lanes(n, x, [h](int64_t i) { return bf16_to_fp32(h[i]); });
}

float dot_q8_0(int64_t n, const uint8_t* w, const ActQ8* x) {
  const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(w);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int32_t acc = 0;
    for (int j = 0; j < kQK; ++j) acc += b[i].qs[j] * x[i].qs[j];
    sum += static_cast<float>(acc) * (fp16_to_fp32(b[i].d) * x[i].d);
  }
  return sum;
}

float dot_q4_0(int64_t n, const uint8_t* w, const ActQ8* x) {
  const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(w);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int32_t acc = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      acc += ((b[i].qs[j] & 0x0F) - 8) * x[i].qs[j];
      acc += ((b[i].qs[j] >> 4) - 8) * x[i].qs[j + kQK / 2];
    }
    sum += static_cast<float>(acc) * (fp16_to_fp32(b[i].d) * x[i].d);
  }
  return sum;
}

// Four separate dot products: the reference the tiled versions are tested against.
template <typename X, float (*Dot)(int64_t, const uint8_t*, const X*)>
void dot4(int64_t n, const uint8_t* w, const uint8_t* x, size_t stride, float* out) {
  for (int i = 0; i < 4; ++i) out[i] = Dot(n, w, reinterpret_cast<const X*>(x + i * stride));
}

void quantize_act(const float* x, int64_t n, ActQ8* out) {
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    out[i].d = d;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      out[i].qs[j] = static_cast<int8_t>(std::nearbyint(x[j] * id));
      sum += out[i].qs[j];
    }
    out[i].s = d * static_cast<float>(sum);
  }
}

KernelTable make_table() {
  KernelTable k;
  k.name = "scalar";
  k.of(GgmlType::F32).dot = dot_as<float, dot_f32>;
  k.of(GgmlType::F16).dot = dot_as<float, dot_f16>;
  k.of(GgmlType::BF16).dot = dot_as<float, dot_bf16>;
  k.of(GgmlType::Q8_0).dot = dot_as<ActQ8, dot_q8_0>;
  k.of(GgmlType::Q4_0).dot = dot_as<ActQ8, dot_q4_0>;
  k.of(GgmlType::Q6_K).dot = dot_as<ActQ8, dot_q6_k_generic>;
  k.of(GgmlType::Q4_K).dot = dot_as<ActQ8, kquants::dot_q4_k>;
  k.of(GgmlType::Q5_K).dot = dot_as<ActQ8, kquants::dot_q5_k>;
  k.of(GgmlType::Q5_0).dot = dot_as<ActQ8, kquants::dot_q5_0>;
  k.of(GgmlType::Q4_1).dot = dot_as<ActQ8, kquants::dot_q4_1>;
  k.of(GgmlType::Q5_1).dot = dot_as<ActQ8, kquants::dot_q5_1>;
  k.of(GgmlType::F32).dot4 = dot4<float, dot_f32>;
  k.of(GgmlType::F16).dot4 = dot4<float, dot_f16>;
  k.of(GgmlType::BF16).dot4 = dot4<float, dot_bf16>;
  k.of(GgmlType::Q8_0).dot4 = dot4<ActQ8, dot_q8_0>;
  k.of(GgmlType::Q4_0).dot4 = dot4<ActQ8, dot_q4_0>;
  k.of(GgmlType::F32).tile4x2 = tile4x2_generic<dot_f32>;
  k.of(GgmlType::F16).tile4x2 = tile4x2_generic<dot_f16>;
  k.of(GgmlType::BF16).tile4x2 = tile4x2_generic<dot_bf16>;
  k.quantize_act = quantize_act;
  k.rms_norm = rms_norm;
  k.softplus_bias = softplus_bias_generic;
  k.conv_silu = conv_silu;
  k.selective_scan = selective_scan_generic;
  k.head_scan = head_scan_generic;
  return k;
}

}  // namespace

const KernelTable& scalar_kernels() {
  static const KernelTable k = make_table();  // built on first use
  return k;
}

}  // namespace mambalite
