// ggml block layouts (ggml-common.h) and the engine's own activation block.
#pragma once

#include <cstdint>

namespace mambalite {

constexpr int kQK = 32;    // values per legacy block
constexpr int kQKK = 256;  // values per K-quant super block

#pragma pack(push, 1)
struct BlockQ8_0 {  // x = q * d
  uint16_t d;       // fp16
  int8_t qs[kQK];
};
struct BlockQ4_0 {  // x = (q - 8) * d; value j in the low nibble of qs[j], j + 16 in the high
  uint16_t d;
  uint8_t qs[kQK / 2];
};
struct BlockQ4_1 {  // x = q * d + m
  uint16_t d, m;
  uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {  // x = (q - 16) * d; bit 4 of value j in bit j of qh
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {  // x = q * d + m
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ4_K {  // 8 sub-blocks of 32 with 6-bit scales and mins
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[kQKK / 2];
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
struct BlockQ6_K {  // 16 sub-blocks of 16 with int8 scales
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};
// Activations quantized for the integer dot products: like ggml's Q8_1 but with fp32 scales (the
// buffer is internal, so it keeps them exact). s = d * sum(qs) lets Q4_0 products use the raw
// unsigned nibbles: sum((q - 8) * x) = sum(q * x) - 8 * sum(x).
struct ActQ8 {
  float d;
  float s;
  int8_t qs[kQK];
};
// A prepared Q4_0 activation row holds, after its ActQ8 blocks, each full group of 8 blocks again
// in the order a 256-bit kernel reads them when it takes two weight blocks per register (the
// low nibbles of both in one register, then the high nibbles): the activation side of that
// pairing is done once per row here, instead of once per weight row in the kernel.
struct ActQ4Group {
  float d[8];          // the blocks' scales, in block order 0, 2, 4, 6, 1, 3, 5, 7
  float m8s[8];        // -8 * their ActQ8::s (the nibbles' offset of 8), in the same order
  int8_t qs[8 * kQK];  // per pair (2p, 2p + 1): x_2p[0:16] x_2p+1[0:16] x_2p[16:32] x_2p+1[16:32]
};
// A prepared Q8_0 activation row holds, after its ActQ8 blocks (and only for Q8_0), each full
// group of 8 blocks again for a decode product that makes the weights unsigned (w + 128, their
// sign bits flipped) so that vpdpbusd needs no sign fix-up: the values contiguous, the scales
// contiguous, and per block, minus 128 times the sums of the values in each 4-byte lane of a
// 256-bit register, the offset that the flip adds to vpdpbusd's lane sums, taken off exactly.
struct ActQ8Group {
  float d[8];          // the blocks' scales, in block order
  int32_t m128[8][8];  // [block][lane]: -128 * (qs[4 * lane] + ... + qs[4 * lane + 3])
  int8_t qs[8 * kQK];  // the blocks' values, in block order
};
// A prepared Q4_0 activation row holds, after its ActQ4Group copies, each full group of 8 blocks
// once more for AVX-512's decode product, which takes four weight blocks per 512-bit register
// (their 16 low nibbles each, then their high nibbles): per quad of blocks the values in that
// order, and per 32-bit lane minus 8 times the sum of the 8 values the lane's products take (the
// nibbles' offset, taken off exactly in the int32 sums).
struct ActQ4Quads {
  float d[8];         // the blocks' scales, in block order
  int32_t m8[2][16];  // [quad][lane]: -8 * (lo[4 * lane, +4) + hi[4 * lane, +4) values)
  int8_t lo[2][64];   // [quad]: values 0-15 of each of the quad's four blocks
  int8_t hi[2][64];   // [quad]: values 16-31 of each
};
// A prepared Q6_K activation row holds, after its ActQ8 blocks, one ActQ6Offset per block: the
// pair sums 32 * (x[2k] + x[2k + 1]) that maddubs(32, x) gives. A kernel that multiplies the
// unsigned 6-bit values q by x subtracts them to get sum((q - 32) * x) pairwise, in int16.
struct ActQ6Offset {
  int16_t s32[kQK / 2];
};
// A prepared Q6_K activation row holds, after its ActQ6Offset sums, one ActQ6Group per 256 values
// for AVX-512's decode product, which makes each 64 values' 6-bit weights one 512-bit register:
// the values in order, and per register and 32-bit lane minus 32 times the sum of the lane's 4
// values (the weights' offset, taken off exactly) and the lane's activation scale.
struct ActQ6Group {
  int8_t qs[kQKK];
  int32_t m32[4][16];  // [register][lane]: -32 * (qs[64 * r + 4 * lane, +4) summed)
  float d[4][16];      // [register][lane]: the scale of the ActQ8 block of those values
};
// A prepared Q4_K or Q5_K activation row holds, after its ActQ8 blocks, the scales and scaled
// sums of each super-block's 8 blocks gathered, so that a 256-bit kernel loads them as vectors.
struct ActKScales {
  float d[8];  // the blocks' scales
  float s[8];  // the blocks' d * sum(qs)
};
#pragma pack(pop)

// ggml's get_scale_min_k4: 6-bit scale and min of Q4_K/Q5_K sub-block j from the 12 packed bytes.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 &&
                  sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24 && sizeof(BlockQ4_K) == 144 &&
                  sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210,
              "block layouts must match ggml");
static_assert(sizeof(ActQ8) == 40 && sizeof(ActQ4Group) == 320 && sizeof(ActQ8Group) == 544 &&
                  sizeof(ActQ4Quads) == 416 && sizeof(ActQ6Group) == 768 &&
                  sizeof(ActQ6Offset) == 32 && sizeof(ActKScales) == 64,
              "activation blocks must be packed");

}  // namespace mambalite
