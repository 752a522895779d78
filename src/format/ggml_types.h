// ggml tensor types as stored in GGUF files: ids, names, block sizes and byte sizes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mambalite {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
};

struct GgmlTypeTraits {
  const char* name;    // "q8_0"; nullptr for an id ggml does not define
  int64_t block_size;  // values per block (1 for plain types)
  size_t type_size;    // bytes per block
};

// Traits of a raw type id read from a file; name == nullptr when the id is unknown.
GgmlTypeTraits ggml_type_traits(uint32_t type);

// Upper-case name for messages ("Q8_0"), or "type 123" for an unknown id.
std::string ggml_type_name(GgmlType type);

// Bytes used by a row of `n` values; throws FormatError when n is not a multiple of the block.
size_t ggml_row_size(GgmlType type, int64_t n);

}  // namespace mambalite
