// Quantizers the `gguf` Python package lacks (the K-quants) and the KV cache's Q8_0, following
// ggml's reference algorithms so that files match llama-quantize's (without an imatrix) bit for bit.
#pragma once

#include <cstdint>

namespace mambalite {

// out (n / 256 blocks of 210 bytes) = x (n) as Q6_K, as ggml's quantize_row_q6_K_ref.
void quantize_row_q6_k(const float* x, int64_t n, uint8_t* out);

// out (n / 256 blocks of 144 bytes) = x (n) as Q4_K, as ggml's quantize_row_q4_K_ref.
void quantize_row_q4_k(const float* x, int64_t n, uint8_t* out);

// out (n / 256 blocks of 176 bytes) = x (n) as Q5_K, as ggml's quantize_row_q5_K_ref.
void quantize_row_q5_k(const float* x, int64_t n, uint8_t* out);

// out (n / 32 blocks of 34 bytes) = x (n) as Q8_0, as ggml's quantize_row_q8_0_ref.
void quantize_row_q8_0(const float* x, int64_t n, uint8_t* out);

}  // namespace mambalite
