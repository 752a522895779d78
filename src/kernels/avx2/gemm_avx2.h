// The AVX2 prefill GEMM (gemm_avx2.cpp), entries of the AVX2 kernel table (kernels.h documents
// them). In its own namespace: each ISA's translation unit has different compile flags, so no
// inline or template function may be shared between them under one name.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/ggml_types.h"

namespace mambalite {
namespace avx2 {

void pack_panel(bool q8, const uint8_t* act, size_t stride, int64_t n, int64_t K, float* p,
                int64_t ldp);
bool row_to_f32(GgmlType type, const uint8_t* row, int64_t n, float* out);
void gemm_panel(int64_t K, const float* w, int64_t ldw, const float* p, int64_t ldp, int m, int v,
                float* c);
void pack_panel_q4_0(const uint8_t* act, size_t stride, int64_t n, int64_t K, uint8_t* p,
                     int64_t ldp);
void q4_0_to_nibbles(const uint8_t* row, int64_t n, uint8_t* q, float* d);
void gemm_panel_q4_0(int64_t K, const uint8_t* w, int64_t ldw, const float* dw, int64_t ldd,
                     const uint8_t* pq, const float* ps, int64_t ldp, int m, int v, float* c);
void pack_panel_q8_0(const uint8_t* act, size_t stride, int64_t n, int64_t K, int16_t* p,
                     int64_t ldp);
void q8_0_to_i16(const uint8_t* row, int64_t n, int16_t* q, float* d);
void gemm_panel_q8_0(int64_t K, const int16_t* w, int64_t ldw, const float* dw, int64_t ldd,
                     const int16_t* pa, const float* ps, int64_t ldp, int m, int v, float* c);

}  // namespace avx2
}  // namespace mambalite
