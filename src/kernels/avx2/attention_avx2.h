// AVX2 attention kernels over an F16 KV cache (the table's axpy_f16 and attend_f16; contracts in
// kernels/kernels.h).
#pragma once

#include <cstdint>

namespace mambalite {
namespace avx2 {

void axpy_f16(int64_t n, float a, const uint16_t* v, float* y);
void attend_f16(int64_t g, int64_t nj, int64_t hd, const uint16_t* k, const uint16_t* v,
                int64_t stride, const float* q, float scale, float* acc, float* ml, float* scratch);

}  // namespace avx2
}  // namespace mambalite
