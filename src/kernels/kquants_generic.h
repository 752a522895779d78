// Q4_K, Q5_K, Q5_0, Q4_1 and Q5_1 products on int8-quantized activations (ActQ8 blocks of 32), in
// portable C++: the scalar table's (the oracle the SIMD versions are tested against) and the tables
// that have no vector version of their own, compiled per ISA so the compiler may vectorise them. A
// super-block of 256 values is 8 sub-blocks of 32, each aligned with one activation block, with
// 6-bit scale sc and min m: w = d * sc * q - dmin * m, so a sub-block's product is
// d * sc * a.d * sum(q * a.qs) - dmin * m * a.s (a.s = a.d * sum(a.qs), kept by quantize_act).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "format/fp16.h"
#include "format/ggml_types.h"
#include "format/quant_blocks.h"

namespace mambalite {
namespace kquants {
// Internal linkage: each table's translation unit compiles its own copy for its ISA.
namespace {

// The 32 bits of a legacy block's qh (bit j: bit 4 of value j), little-endian as ggml writes them.
inline uint32_t bits32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ggml's get_scale_min_k4: the 6-bit scales and mins of the 8 sub-blocks from 12 packed bytes.
inline void scales_mins(const uint8_t* q, uint8_t* sc, uint8_t* m) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = q[j] & 63;
    m[j] = q[j + 4] & 63;
  }
  for (int j = 4; j < 8; ++j) {
    sc[j] = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m[j] = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Sub-block j's 32 unsigned values: nibbles of qs[32 * (j / 2)] (low for even j, high for odd),
// plus 16 where bit j of qh[l] is set (Q5_K only).
template <bool kFive>
inline float dot_k(int64_t n, const uint8_t* w, const ActQ8* x) {
  using Block = typename std::conditional<kFive, BlockQ5_K, BlockQ4_K>::type;
  const Block* b = reinterpret_cast<const Block*>(w);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    uint8_t sc[8], m[8];
    scales_mins(b[i].scales, sc, m);
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    const ActQ8* xb = x + i * (kQKK / kQK);
    float sub = 0.0f, mins = 0.0f;
    for (int j = 0; j < 8; ++j) {
      const uint8_t* qs = b[i].qs + 32 * (j / 2);
      int32_t acc = 0;
      for (int l = 0; l < kQK; ++l) {
        int q = j % 2 == 0 ? qs[l] & 0xF : qs[l] >> 4;
        if constexpr (kFive) q += ((b[i].qh[l] >> j) & 1) << 4;
        acc += q * xb[j].qs[l];
      }
      sub += static_cast<float>(sc[j]) * xb[j].d * static_cast<float>(acc);
      mins += static_cast<float>(m[j]) * xb[j].s;
    }
    sum += d * sub - dmin * mins;
  }
  return sum;
}

// Q5_0 (x = (q - 16) * d, bit 4 of value j in bit j of qh): d * (a.d * sum(q * a.qs) - 16 a.s).
inline float dot_q5_0(int64_t n, const uint8_t* w, const ActQ8* x) {
  const BlockQ5_0* b = reinterpret_cast<const BlockQ5_0*>(w);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const uint32_t qh = bits32(b[i].qh);
    int32_t acc = 0;
    for (int j = 0; j < kQK; ++j) {
      const int nib = j < kQK / 2 ? b[i].qs[j] & 0xF : b[i].qs[j - kQK / 2] >> 4;
      acc += (nib | (((qh >> j) & 1) << 4)) * x[i].qs[j];
    }
    sum += fp16_to_fp32(b[i].d) * (x[i].d * static_cast<float>(acc) - 16.0f * x[i].s);
  }
  return sum;
}

// Q4_1 and Q5_1 (x = q * d + m, q unsigned, 4 or 5 bits): d * a.d * sum(q * a.qs) + m * a.s.
template <bool kFive>
inline float dot_x_1(int64_t n, const uint8_t* w, const ActQ8* x) {
  using Block = typename std::conditional<kFive, BlockQ5_1, BlockQ4_1>::type;
  const Block* b = reinterpret_cast<const Block*>(w);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    uint32_t qh = 0;
    if constexpr (kFive) qh = bits32(b[i].qh);
    int32_t acc = 0;
    for (int j = 0; j < kQK; ++j) {
      const int nib = j < kQK / 2 ? b[i].qs[j] & 0xF : b[i].qs[j - kQK / 2] >> 4;
      acc += (nib | static_cast<int>(((qh >> j) & 1) << 4)) * x[i].qs[j];
    }
    sum += fp16_to_fp32(b[i].d) * x[i].d * static_cast<float>(acc) + fp16_to_fp32(b[i].m) * x[i].s;
  }
  return sum;
}

inline float dot_q4_1(int64_t n, const uint8_t* w, const ActQ8* x) {
  return dot_x_1<false>(n, w, x);
}
inline float dot_q5_1(int64_t n, const uint8_t* w, const ActQ8* x) {
  return dot_x_1<true>(n, w, x);
}

inline float dot_q4_k(int64_t n, const uint8_t* w, const ActQ8* x) { return dot_k<false>(n, w, x); }
inline float dot_q5_k(int64_t n, const uint8_t* w, const ActQ8* x) { return dot_k<true>(n, w, x); }

// kn values (whole blocks; K-quants: whole super-blocks) of a row whose blocks of 32 are
// w = d * q + o with q unsigned, at most 31 (Q4_K, Q5_K, Q5_0, Q4_1, Q5_1), from value 0 of
// `row`, as the integer GEMMs take them: q (kn) the values (int16 or bytes), d and o (kn / 32)
// each block's scale and offset.
template <typename Q>
inline void to_offset(GgmlType type, const uint8_t* row, int64_t kn, Q* q, float* d, float* o) {
  auto nibbles = [](const uint8_t* qs, uint32_t qh, Q* out) {  // a legacy 32-value block
    for (int j = 0; j < kQK / 2; ++j) {
      out[j] = static_cast<Q>((qs[j] & 0xF) | (((qh >> j) & 1) << 4));
      out[j + kQK / 2] = static_cast<Q>((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
    }
  };
  if (type == GgmlType::Q4_K || type == GgmlType::Q5_K) {
    const bool five = type == GgmlType::Q5_K;
    const size_t bytes = five ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
    for (int64_t i = 0; i < kn / kQKK; ++i, row += bytes) {
      // Q4_K and Q5_K share d, dmin and scales; Q5_K's qh comes before its qs.
      const BlockQ4_K* b = reinterpret_cast<const BlockQ4_K*>(row);
      const uint8_t* qh = five ? reinterpret_cast<const BlockQ5_K*>(row)->qh : nullptr;
      const uint8_t* qs = five ? reinterpret_cast<const BlockQ5_K*>(row)->qs : b->qs;
      uint8_t sc[8], m[8];
      scales_mins(b->scales, sc, m);
      const float dd = fp16_to_fp32(b->d), dmin = fp16_to_fp32(b->dmin);
      for (int j = 0; j < 8; ++j) {
        d[8 * i + j] = dd * sc[j];
        o[8 * i + j] = -dmin * m[j];
        Q* out = q + kQKK * i + kQK * j;
        const uint8_t* src = qs + 32 * (j / 2);
        const int shift = 4 * (j % 2);
        if (five) {
          for (int l = 0; l < kQK; ++l) {
            out[l] = static_cast<Q>(((src[l] >> shift) & 0xF) | (((qh[l] >> j) & 1) << 4));
          }
        } else {
          for (int l = 0; l < kQK; ++l) out[l] = static_cast<Q>((src[l] >> shift) & 0xF);
        }
      }
    }
    return;
  }
  for (int64_t j = 0; j < kn / kQK; ++j) {
    if (type == GgmlType::Q5_0) {
      const BlockQ5_0& b = reinterpret_cast<const BlockQ5_0*>(row)[j];
      nibbles(b.qs, bits32(b.qh), q + kQK * j);
      d[j] = fp16_to_fp32(b.d);
      o[j] = -16.0f * d[j];
    } else if (type == GgmlType::Q4_1) {
      const BlockQ4_1& b = reinterpret_cast<const BlockQ4_1*>(row)[j];
      nibbles(b.qs, 0, q + kQK * j);
      d[j] = fp16_to_fp32(b.d);
      o[j] = fp16_to_fp32(b.m);
    } else {  // Q5_1
      const BlockQ5_1& b = reinterpret_cast<const BlockQ5_1*>(row)[j];
      nibbles(b.qs, bits32(b.qh), q + kQK * j);
      d[j] = fp16_to_fp32(b.d);
      o[j] = fp16_to_fp32(b.m);
    }
  }
}

}  // namespace
}  // namespace kquants
}  // namespace mambalite
