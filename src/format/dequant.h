// Exact dequantization of one row of any weight type the engine loads, following ggml's
// reference order of operations (so results equal gguf.quants.dequantize bit for bit).
#pragma once

#include <cstdint>

#include "format/ggml_types.h"

namespace mambalite {

// True for the types dequantize_row handles.
bool dequant_supported(GgmlType type);

// out (n) = the n values stored at src as `type` (n a multiple of the type's block size).
void dequantize_row(GgmlType type, const uint8_t* src, int64_t n, float* out);

}  // namespace mambalite
