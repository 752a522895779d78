// AVX2 products of the types whose blocks of 32 are w = d * q + o (K-quants' sub-blocks, Q5_0,
// Q4_1, Q5_1) on int8 activations, and their rows for the int16 GEMM (contracts in
// kernels/kernels.h and kernels/kquants_generic.h).
#pragma once

#include <cstdint>

#include "format/ggml_types.h"
#include "format/quant_blocks.h"

namespace mambalite {
namespace avx2 {

float dot_q4_k(int64_t n, const uint8_t* w, const ActQ8* x);
float dot_q5_k(int64_t n, const uint8_t* w, const ActQ8* x);
float dot_q5_0(int64_t n, const uint8_t* w, const ActQ8* x);
float dot_q4_1(int64_t n, const uint8_t* w, const ActQ8* x);
float dot_q5_1(int64_t n, const uint8_t* w, const ActQ8* x);
void offset_to_i16(GgmlType type, const uint8_t* row, int64_t n, int16_t* q, float* d, float* o);

}  // namespace avx2
}  // namespace mambalite
