// Compiled with -ffp-contract=off: fusing d * q - m into an FMA would change the last bit.
#include "format/dequant.h"

#include <cstring>

#include "format/fp16.h"
#include "format/quant_blocks.h"

namespace mambalite {
namespace {

inline float h2f(uint16_t h) { return fp16_to_fp32(h); }

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void q8_0(const uint8_t* src, int64_t nb, float* y) {
  const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = b[i].qs[j] * d;
  }
}

void q4_0(const uint8_t* src, int64_t nb, float* y) {
  const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = ((b[i].qs[j] & 0x0F) - 8) * d;
      y[j + kQK / 2] = ((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void q4_1(const uint8_t* src, int64_t nb, float* y) {
  const BlockQ4_1* b = reinterpret_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(b[i].d), m = h2f(b[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = (b[i].qs[j] & 0x0F) * d + m;
      y[j + kQK / 2] = (b[i].qs[j] >> 4) * d + m;
    }
  }
}

void q5_0(const uint8_t* src, int64_t nb, float* y) {
  const BlockQ5_0* b = reinterpret_cast<const BlockQ5_0*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(b[i].d);
    const uint32_t qh = load_u32(b[i].qh);
    for (int j = 0; j < kQK / 2; ++j) {
      const uint8_t xh0 = static_cast<uint8_t>(((qh >> j) << 4) & 0x10);
      const uint8_t xh1 = static_cast<uint8_t>((qh >> (j + 12)) & 0x10);
      y[j] = (((b[i].qs[j] & 0x0F) | xh0) - 16) * d;
      y[j + kQK / 2] = (((b[i].qs[j] >> 4) | xh1) - 16) * d;
    }
  }
}

void q5_1(const uint8_t* src, int64_t nb, float* y) {
  const BlockQ5_1* b = reinterpret_cast<const BlockQ5_1*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(b[i].d), m = h2f(b[i].m);
    const uint32_t qh = load_u32(b[i].qh);
    for (int j = 0; j < kQK / 2; ++j) {
      const uint8_t xh0 = static_cast<uint8_t>(((qh >> j) << 4) & 0x10);
      const uint8_t xh1 = static_cast<uint8_t>((qh >> (j + 12)) & 0x10);
      y[j] = ((b[i].qs[j] & 0x0F) | xh0) * d + m;
      y[j + kQK / 2] = ((b[i].qs[j] >> 4) | xh1) * d + m;
    }
  }
}

void q4_k(const uint8_t* src, int64_t nb, float* y) {
  const BlockQ4_K* b = reinterpret_cast<const BlockQ4_K*>(src);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    const uint8_t* q = b[i].qs;
    for (int j = 0, is = 0; j < kQKK; j += 64, is += 2, q += 32) {
      uint8_t sc, m;
      scale_min_k4(is, b[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4(is + 1, b[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

void q5_k(const uint8_t* src, int64_t nb, float* y) {
  const BlockQ5_K* b = reinterpret_cast<const BlockQ5_K*>(src);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    const uint8_t* ql = b[i].qs;
    const uint8_t* qh = b[i].qh;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < kQKK; j += 64, is += 2, ql += 32) {
      uint8_t sc, m;
      scale_min_k4(is, b[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4(is + 1, b[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      u1 = static_cast<uint8_t>(u1 << 2);
      u2 = static_cast<uint8_t>(u2 << 2);
    }
  }
}

void q6_k(const uint8_t* src, int64_t nb, float* y) {
  const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(src);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d);
    const uint8_t* ql = b[i].ql;
    const uint8_t* qh = b[i].qh;
    const int8_t* sc = b[i].scales;
    for (int n = 0; n < kQKK; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

}  // namespace

bool dequant_supported(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

void dequantize_row(GgmlType type, const uint8_t* src, int64_t n, float* out) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(src);
  switch (type) {
    case GgmlType::F32:
      std::memcpy(out, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_fp32(h[i]);
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_fp32(h[i]);
      return;
    case GgmlType::Q8_0:
      q8_0(src, n / kQK, out);
      return;
    case GgmlType::Q4_0:
      q4_0(src, n / kQK, out);
      return;
    case GgmlType::Q4_1:
      q4_1(src, n / kQK, out);
      return;
    case GgmlType::Q5_0:
      q5_0(src, n / kQK, out);
      return;
    case GgmlType::Q5_1:
      q5_1(src, n / kQK, out);
      return;
    case GgmlType::Q4_K:
      q4_k(src, n / kQKK, out);
      return;
    case GgmlType::Q5_K:
      q5_k(src, n / kQKK, out);
      return;
    case GgmlType::Q6_K:
      q6_k(src, n / kQKK, out);
      return;
    default:
      std::memset(out, 0, static_cast<size_t>(n) * sizeof(float));
      return;
  }
}

}  // namespace mambalite
