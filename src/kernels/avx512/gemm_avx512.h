// The AVX-512 prefill GEMM (gemm_avx512.cpp), entries of the AVX-512 kernel table (kernels.h
// documents them). In a namespace of its own, as gemm_avx2.h; the kernel test also builds these
// through SIMDe's emulation (MAMBALITE_AVX512_EMULATED), into a second namespace.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/ggml_types.h"

#if defined(MAMBALITE_AVX512_EMULATED)
#define MAMBALITE_AVX512_NS avx512_emulated
#else
#define MAMBALITE_AVX512_NS avx512
#endif

namespace mambalite {
namespace MAMBALITE_AVX512_NS {

void gemm_panel(int64_t K, const float* w, int64_t ldw, const float* p, int64_t ldp, int m, int v,
                float* c);
void pack_panel_u8(const uint8_t* act, size_t stride, int64_t n, int64_t K, uint8_t* p, int64_t ldp,
                   int offset);
void q8_0_to_u8(const uint8_t* row, int64_t n, uint8_t* q, float* d);
void offset_to_u8(GgmlType type, const uint8_t* row, int64_t n, uint8_t* q, float* d, float* o);
void gemm_blocks_u8(GgmlType type, int64_t K, const uint8_t* w, size_t ldw, int64_t rows,
                    const float* panels, int64_t n, float* y, int64_t ldy);
void gemm_panel_u8(int64_t K, const uint8_t* w, int64_t ldw, const float* dw, int64_t ldd,
                   const uint8_t* pq, const float* ps, int64_t ldp, int m, int v, float* c);

}  // namespace MAMBALITE_AVX512_NS
}  // namespace mambalite
