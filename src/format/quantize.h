// Quantizers the `gguf` Python package lacks (Q6_K), following ggml's reference algorithm so
// that files match llama-quantize's bit for bit.
#pragma once

#include <cstdint>

namespace mambalite {

// out (n / 256 blocks of 210 bytes) = x (n) as Q6_K, as ggml's quantize_row_q6_K_ref.
void quantize_row_q6_k(const float* x, int64_t n, uint8_t* out);

}  // namespace mambalite
