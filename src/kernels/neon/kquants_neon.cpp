// NEON products of K-quant and legacy offset blocks on int8 activations (built like
// kernels_neon.cpp, with -march=armv8.2-a+dotprod).
#include "kernels/neon/kquants_neon.h"

#include <arm_neon.h>

#include <cstring>
#include <type_traits>

#include "kernels/kquants_generic.h"
#include "kernels/neon/simd_neon.h"

namespace mambalite {
namespace neon {
namespace {

// Q4_K and Q5_K: each 32-byte qs slice holds two sub-blocks (low and high nibbles), each aligned
// with one activation block; Q5_K adds bit j of qh[l] as bit 4 of sub-block j's value l (vtst
// against the bit picks it). Per sub-block: two vdot of its unsigned values (at most 31, so
// int8 as they are) with the block's int8, folded by d * sc * a.d; the mins come off as
// dmin * m * a.s, with a.s = a.d * sum(a.qs) from quantize_act.
template <bool kFive>
float dot_k(int64_t n, const uint8_t* w, const ActQ8* x) {
  using Block = typename std::conditional<kFive, BlockQ5_K, BlockQ4_K>::type;
  const Block* b = reinterpret_cast<const Block*>(w);
  const uint8x16_t m4 = vdupq_n_u8(0x0F), b4 = vdupq_n_u8(0x10);
  float32x4_t acc = vdupq_n_f32(0.0f);
  float mins = 0.0f;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    uint8_t sc[8], m[8];
    kquants::scales_mins(b[i].scales, sc, m);
    const float d = half_to_float(b[i].d), dmin = half_to_float(b[i].dmin);
    const ActQ8* xb = x + i * (kQKK / kQK);
    uint8x16_t h[2] = {vdupq_n_u8(0), vdupq_n_u8(0)};
    if constexpr (kFive) h[0] = vld1q_u8(b[i].qh), h[1] = vld1q_u8(b[i].qh + 16);
    float sub_mins = 0.0f;
    for (int j = 0; j < 8; ++j) {
      const uint8_t* qs = b[i].qs + 32 * (j / 2);
      const ActQ8& a = xb[j];
      int32x4_t isum = vdupq_n_s32(0);
      for (int half = 0; half < 2; ++half) {
        const uint8x16_t v = vld1q_u8(qs + 16 * half);
        uint8x16_t q = j % 2 == 0 ? vandq_u8(v, m4) : vshrq_n_u8(v, 4);
        if constexpr (kFive) {
          const uint8x16_t bit = vdupq_n_u8(static_cast<uint8_t>(1u << j));
          q = vorrq_u8(q, vandq_u8(vtstq_u8(h[half], bit), b4));
        }
        isum = vdotq_s32(isum, vreinterpretq_s8_u8(q), vld1q_s8(a.qs + 16 * half));
      }
      acc = vfmaq_n_f32(acc, vcvtq_f32_s32(isum), d * static_cast<float>(sc[j]) * a.d);
      sub_mins += static_cast<float>(m[j]) * a.s;
    }
    mins += dmin * sub_mins;
  }
  return vaddvq_f32(acc) - mins;
}

// The legacy blocks llama-quantize mixes into K-quant files (rows that 256 does not divide):
// Q5_0 (x = (q - 16) d), Q4_1 and Q5_1 (x = q d + m), with q unsigned (bit 4 of value j in bit j
// of qh for the 5-bit ones): d * a.d * sum(q * a.qs) plus the offset times a.s.
template <int kKind>  // 0: Q5_0, 1: Q4_1, 2: Q5_1
float dot_legacy(int64_t n, const uint8_t* w, const ActQ8* x) {
  constexpr bool kFive = kKind != 1;
  constexpr size_t kBytes = kKind == 0   ? sizeof(BlockQ5_0)
                            : kKind == 1 ? sizeof(BlockQ4_1)
                                         : sizeof(BlockQ5_1);
  // Bit j of a 16-bit half of qh, per lane j of a 16-byte vector.
  alignas(16) static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128,
                                               1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t m4 = vdupq_n_u8(0x0F), b4 = vdupq_n_u8(0x10), bits = vld1q_u8(kBit);
  float32x4_t acc = vdupq_n_f32(0.0f);
  float offsets = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const uint8_t* blk = w + i * kBytes;
    uint16_t dh, mh = 0;
    std::memcpy(&dh, blk, 2);
    if constexpr (kKind != 0) std::memcpy(&mh, blk + 2, 2);
    const uint8_t* qh = blk + (kKind == 0 ? 2 : 4);
    const uint8_t* qs = qh + (kFive ? 4 : 0);
    const uint8x16_t v = vld1q_u8(qs);
    uint8x16_t lo = vandq_u8(v, m4), hi = vshrq_n_u8(v, 4);  // values 0..15, 16..31
    if constexpr (kFive) {
      // Byte k of qh holds bits 8k..8k+7: lanes 0-7 of the low half read byte 0, 8-15 byte 1.
      const uint8x16_t h_lo = vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1]));
      const uint8x16_t h_hi = vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3]));
      lo = vorrq_u8(lo, vandq_u8(vtstq_u8(h_lo, bits), b4));
      hi = vorrq_u8(hi, vandq_u8(vtstq_u8(h_hi, bits), b4));
    }
    const ActQ8& a = x[i];
    int32x4_t isum = vdotq_s32(vdupq_n_s32(0), vreinterpretq_s8_u8(lo), vld1q_s8(a.qs));
    isum = vdotq_s32(isum, vreinterpretq_s8_u8(hi), vld1q_s8(a.qs + 16));
    const float d = half_to_float(dh);
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(isum), d * a.d);
    offsets += (kKind == 0 ? -16.0f * d : half_to_float(mh)) * a.s;
  }
  return vaddvq_f32(acc) + offsets;
}

}  // namespace

float dot_q4_k(int64_t n, const uint8_t* w, const ActQ8* x) { return dot_k<false>(n, w, x); }
float dot_q5_k(int64_t n, const uint8_t* w, const ActQ8* x) { return dot_k<true>(n, w, x); }
float dot_q5_0(int64_t n, const uint8_t* w, const ActQ8* x) { return dot_legacy<0>(n, w, x); }
float dot_q4_1(int64_t n, const uint8_t* w, const ActQ8* x) { return dot_legacy<1>(n, w, x); }
float dot_q5_1(int64_t n, const uint8_t* w, const ActQ8* x) { return dot_legacy<2>(n, w, x); }

}  // namespace neon
}  // namespace mambalite
