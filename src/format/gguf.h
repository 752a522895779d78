// GGUF reader: memory-maps a file and parses its header, metadata and tensor table. Every count,
// length, offset and size is checked against the file before it is used, so a truncated or
// corrupt file raises FormatError instead of reading out of bounds.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "format/ggml_types.h"
#include "format/mapped_file.h"

namespace mambalite {

enum class GgufType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

const char* gguf_type_name(GgufType type);

// One metadata value. Scalars are widened into `i`/`u`/`f`; strings and array payloads point
// into the mapping (valid while the GgufFile lives).
struct GgufValue {
  GgufType type = GgufType::UINT8;
  int64_t i = 0;         // signed integer types and BOOL
  uint64_t u = 0;        // unsigned integer types and BOOL
  double f = 0.0;        // FLOAT32 / FLOAT64
  std::string_view str;  // STRING
  // ARRAY: element type, count, and either raw little-endian scalars or the strings.
  GgufType elem_type = GgufType::UINT8;
  uint64_t count = 0;
  const uint8_t* raw = nullptr;
  std::vector<std::string_view> strings;

  bool is_integer() const;
};

struct GgufTensor {
  std::string name;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ggml order: ne[0] is contiguous
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;  // from the start of the data section
  size_t nbytes = 0;
  const uint8_t* data = nullptr;

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  std::string shape_string() const;  // "{768, 50280}"
};

class GgufFile {
 public:
  // Opens (maps or reads, as MappedFile) and validates `path`; throws FileError or FormatError.
  explicit GgufFile(const std::string& path, FileMode mode = FileMode::kMap);

  const std::string& path() const { return file_->path(); }
  size_t file_size() const { return file_->size(); }
  bool mapped() const { return file_->mapped(); }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }

  const std::vector<std::string>& keys() const { return key_order_; }
  const GgufValue* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Typed getters: throw FormatError naming the key when it is absent or of the wrong type.
  uint64_t get_uint(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  uint64_t get_uint_or(const std::string& key, uint64_t fallback) const;
  double get_float_or(const std::string& key, double fallback) const;
  bool get_bool_or(const std::string& key, bool fallback) const;
  // A per-layer value: an integer array of n entries, or one integer for every layer (llama.cpp
  // writes head_count_kv and feed_forward_length either way).
  std::vector<uint64_t> get_uint_per_layer(const std::string& key, size_t n) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(const std::string& name) const;

 private:
  void parse();

  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<std::string> key_order_;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace mambalite
