// AVX2 scans (the table's selective_scan and head_scan; contracts in kernels/kernels.h).
#pragma once

#include <cstdint>

namespace mambalite {
namespace avx2 {

void selective_scan(int64_t n, int64_t E, int64_t N, const float* x, const float* dt,
                    const float* A, const float* B, const float* C, int64_t ldbc, const float* D,
                    const float* z, int64_t ldz, float* s, float* y, int64_t c0, int64_t c1);
void head_scan(int64_t n, int64_t P, int64_t N, const float* x, int64_t ldx, const float* dt,
               const float* dA, const float* B, const float* C, int64_t ldbc, float Dh,
               const float* z, int64_t ldz, float* s, float* y, int64_t ldy);

}  // namespace avx2
}  // namespace mambalite
