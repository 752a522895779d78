// NEON products of the types whose blocks of 32 are w = d * q + o (K-quants' sub-blocks, Q5_0,
// Q4_1, Q5_1) on int8 activations (contracts in kernels/kernels.h and kernels/kquants_generic.h).
#pragma once

#include <cstdint>

#include "format/quant_blocks.h"

namespace mambalite {
namespace neon {

float dot_q4_k(int64_t n, const uint8_t* w, const ActQ8* x);
float dot_q5_k(int64_t n, const uint8_t* w, const ActQ8* x);
float dot_q5_0(int64_t n, const uint8_t* w, const ActQ8* x);
float dot_q4_1(int64_t n, const uint8_t* w, const ActQ8* x);
float dot_q5_1(int64_t n, const uint8_t* w, const ActQ8* x);

}  // namespace neon
}  // namespace mambalite
