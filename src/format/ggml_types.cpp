#include "format/ggml_types.h"

#include <cctype>

#include "errors.h"

namespace mambalite {

GgmlTypeTraits ggml_type_traits(uint32_t type) {
  switch (type) {
    case 0:
      return {"f32", 1, 4};
    case 1:
      return {"f16", 1, 2};
    case 2:
      return {"q4_0", 32, 18};
    case 3:
      return {"q4_1", 32, 20};
    case 6:
      return {"q5_0", 32, 22};
    case 7:
      return {"q5_1", 32, 24};
    case 8:
      return {"q8_0", 32, 34};
    case 9:
      return {"q8_1", 32, 36};
    case 10:
      return {"q2_k", 256, 84};
    case 11:
      return {"q3_k", 256, 110};
    case 12:
      return {"q4_k", 256, 144};
    case 13:
      return {"q5_k", 256, 176};
    case 14:
      return {"q6_k", 256, 210};
    case 15:
      return {"q8_k", 256, 292};
    case 16:
      return {"iq2_xxs", 256, 66};
    case 17:
      return {"iq2_xs", 256, 74};
    case 18:
      return {"iq3_xxs", 256, 98};
    case 19:
      return {"iq1_s", 256, 50};
    case 20:
      return {"iq4_nl", 32, 18};
    case 21:
      return {"iq3_s", 256, 110};
    case 22:
      return {"iq2_s", 256, 82};
    case 23:
      return {"iq4_xs", 256, 136};
    case 24:
      return {"i8", 1, 1};
    case 25:
      return {"i16", 1, 2};
    case 26:
      return {"i32", 1, 4};
    case 27:
      return {"i64", 1, 8};
    case 28:
      return {"f64", 1, 8};
    case 29:
      return {"iq1_m", 256, 56};
    case 30:
      return {"bf16", 1, 2};
    case 34:
      return {"tq1_0", 256, 54};
    case 35:
      return {"tq2_0", 256, 66};
    case 39:
      return {"mxfp4", 32, 17};
    default:
      return {nullptr, 0, 0};
  }
}

std::string ggml_type_name(GgmlType type) {
  const GgmlTypeTraits t = ggml_type_traits(static_cast<uint32_t>(type));
  if (t.name == nullptr) return "type " + std::to_string(static_cast<uint32_t>(type));
  std::string name = t.name;
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

size_t ggml_row_size(GgmlType type, int64_t n) {
  const GgmlTypeTraits t = ggml_type_traits(static_cast<uint32_t>(type));
  if (t.name == nullptr || n % t.block_size != 0) {
    throw FormatError("a row of " + std::to_string(n) + " values cannot be stored as " +
                      ggml_type_name(type));
  }
  return static_cast<size_t>(n / t.block_size) * t.type_size;
}

}  // namespace mambalite
