// Quantizers the `gguf` Python package lacks (Q6_K) and the KV cache's Q8_0, following ggml's
// reference algorithm so that files match llama-quantize's bit for bit.
#pragma once

#include <cstdint>

namespace mambalite {

// out (n / 256 blocks of 210 bytes) = x (n) as Q6_K, as ggml's quantize_row_q6_K_ref.
void quantize_row_q6_k(const float* x, int64_t n, uint8_t* out);

// out (n / 32 blocks of 34 bytes) = x (n) as Q8_0, as ggml's quantize_row_q8_0_ref.
void quantize_row_q8_0(const float* x, int64_t n, uint8_t* out);

}  // namespace mambalite
