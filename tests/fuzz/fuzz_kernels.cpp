// libFuzzer target: arbitrary weight blocks of every type the engine reads (NaN, infinite and
// denormal scales included) through dequantize_row and, for the types with products, matmul of
// 1 to 40 tokens on every kernel table of this machine (the scalar oracle, AVX2, AVX-512), whose
// paths differ by token count (matrix-vector, dot tiles, in-place products, conversion GEMM).
// Crashes and sanitizer reports are findings. What non-finite scales give: dequantize_row gives
// them through (NaN or infinite values where the scale is); the products give non-finite sums
// for the rows that hold such a block, never an out-of-range access.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "format/dequant.h"
#include "format/ggml_types.h"
#include "kernels/kernels.h"

using namespace mambalite;

namespace {

constexpr GgmlType kTypes[] = {
    GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0,   GgmlType::Q4_0,
    GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q4_K,   GgmlType::Q5_K,
    GgmlType::Q6_K, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::IQ4_NL, GgmlType::IQ4_XS,
};

// Bytes taken from the input in turn, zeros past its end.
struct Reader {
  const uint8_t* data;
  size_t size, pos = 0;
  uint8_t byte() { return pos < size ? data[pos++] : 0; }
  void fill(uint8_t* out, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = byte();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in{data, size};
  const GgmlType type = kTypes[in.byte() % (sizeof(kTypes) / sizeof(kTypes[0]))];
  if (!dequant_supported(type)) return 0;
  const GgmlTypeTraits traits = ggml_type_traits(static_cast<uint32_t>(type));
  const int64_t quantum = traits.block_size == 1 ? 8 : traits.block_size;
  const int64_t cols = quantum * (1 + in.byte() % (traits.block_size >= 256 ? 2 : 9));
  const int64_t rows = 1 + in.byte() % 13;
  const int64_t tokens = 1 + in.byte() % 40;
  const size_t row_bytes = static_cast<size_t>(cols / traits.block_size) * traits.type_size;
  std::vector<uint8_t> w(row_bytes * static_cast<size_t>(rows));
  in.fill(w.data(), w.size());
  std::vector<float> x(static_cast<size_t>(tokens * cols));
  for (float& v : x) {  // activations: small values from the input (the model's are finite)
    v = static_cast<float>(static_cast<int8_t>(in.byte())) / 16.0f;
  }
  std::vector<float> values(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r)
    dequantize_row(type, w.data() + r * row_bytes, cols, values.data());

  const MatView view{type, w.data(), rows, cols, row_bytes};
  for (const std::string& isa : available_isas()) {
    const KernelTable& k = kernels_for(isa);
    std::vector<uint8_t> act(activation_row_bytes(type, cols) * static_cast<size_t>(tokens));
    size_t stride = 0;
    const uint8_t* a =
        prepare_activations(k, type, x.data(), cols, tokens, cols, act.data(), &stride);
    std::vector<float> y(static_cast<size_t>(rows * tokens)), scratch(matmul_scratch_floats(cols));
    if (uses_gemm(k, type, tokens)) {
      std::vector<float> panels(panel_floats(cols, tokens));
      pack_panels(k, type, a, stride, tokens, cols, panels.data());
      matmul(k, view, a, stride, tokens, y.data(), rows, 0, rows, scratch.data(), panels.data());
    }
    matmul(k, view, a, stride, tokens, y.data(), rows, 0, rows, scratch.data());
    matmul(k, view, a, stride, 1, y.data(), rows, 0, rows, scratch.data());
  }
  return 0;
}
