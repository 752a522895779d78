#include "format/gguf.h"

#include <cstring>
#include <limits>

#include "errors.h"

namespace mambalite {
namespace {

constexpr uint64_t kMaxDims = 4;
// Limits far above anything real, so that a corrupt count cannot make us allocate wildly.
constexpr uint64_t kMaxStringLength = uint64_t{1} << 30;

// Bounds-checked little-endian reader over the mapping.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, const char* what) const {
    if (n > remaining()) {
      throw FormatError(
          "'" + path_ + "' is truncated: reading " + what + " at byte " + std::to_string(pos_) +
          " needs " + std::to_string(n) + " bytes but the file has " + std::to_string(remaining()) +
          " left (file size " + std::to_string(size_) + "). Re-download or re-export the file.");
    }
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view read_string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    if (n > kMaxStringLength) {
      throw FormatError("'" + path_ + "' is corrupt: " + what + " claims a length of " +
                        std::to_string(n) + " bytes");
    }
    need(n, what);
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }
  const uint8_t* skip(uint64_t n, const char* what) {
    need(n, what);
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::BOOL:
      return 1;
    case GgufType::UINT16:
    case GgufType::INT16:
      return 2;
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::FLOAT32:
      return 4;
    case GgufType::UINT64:
    case GgufType::INT64:
    case GgufType::FLOAT64:
      return 8;
    default:
      return 0;
  }
}

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::FLOAT64); }

void read_scalar(Cursor& c, GgufType t, GgufValue& v, const char* what) {
  switch (t) {
    case GgufType::UINT8:
      v.u = c.read<uint8_t>(what);
      v.i = static_cast<int64_t>(v.u);
      break;
    case GgufType::INT8:
      v.i = c.read<int8_t>(what);
      v.u = static_cast<uint64_t>(v.i);
      break;
    case GgufType::UINT16:
      v.u = c.read<uint16_t>(what);
      v.i = static_cast<int64_t>(v.u);
      break;
    case GgufType::INT16:
      v.i = c.read<int16_t>(what);
      v.u = static_cast<uint64_t>(v.i);
      break;
    case GgufType::UINT32:
      v.u = c.read<uint32_t>(what);
      v.i = static_cast<int64_t>(v.u);
      break;
    case GgufType::INT32:
      v.i = c.read<int32_t>(what);
      v.u = static_cast<uint64_t>(v.i);
      break;
    case GgufType::UINT64:
      v.u = c.read<uint64_t>(what);
      v.i = static_cast<int64_t>(v.u);
      break;
    case GgufType::INT64:
      v.i = c.read<int64_t>(what);
      v.u = static_cast<uint64_t>(v.i);
      break;
    case GgufType::FLOAT32:
      v.f = c.read<float>(what);
      break;
    case GgufType::FLOAT64:
      v.f = c.read<double>(what);
      break;
    case GgufType::BOOL:
      v.u = c.read<uint8_t>(what) != 0;
      v.i = static_cast<int64_t>(v.u);
      break;
    default:
      break;
  }
}

}  // namespace

const char* gguf_type_name(GgufType type) {
  static const char* names[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                "int32",  "float32", "bool",   "string", "array",
                                "uint64", "int64",   "float64"};
  const auto i = static_cast<uint32_t>(type);
  return i < 13 ? names[i] : "unknown";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::UINT16:
    case GgufType::INT16:
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::UINT64:
    case GgufType::INT64:
      return true;
    default:
      return false;
  }
}

std::string GgufTensor::shape_string() const {
  std::string s = "{";
  for (int d = 0; d < n_dims; ++d) s += (d ? ", " : "") + std::to_string(ne[d]);
  return s + "}";
}

GgufFile::GgufFile(const std::string& path, FileMode mode)
    : file_(std::make_unique<MappedFile>(path, mode)) {
  parse();
}

void GgufFile::parse() {
  const std::string& p = file_->path();
  Cursor c(file_->data(), file_->size(), p);
  if (file_->size() < 4 || std::memcmp(file_->data(), "GGUF", 4) != 0) {
    throw FormatError("'" + p +
                      "' is not a GGUF file (it does not start with the magic 'GGUF'). "
                      "Convert the checkpoint with `mambalite export` first.");
  }
  c.skip(4, "the magic");
  version_ = c.read<uint32_t>("the GGUF version");
  if (version_ < 2 || version_ > 3) {
    throw FormatError("'" + p + "' is GGUF version " + std::to_string(version_) +
                      "; only versions 2 and 3 are supported. Re-export the model.");
  }
  const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
  const uint64_t n_kv = c.read<uint64_t>("the metadata count");
  // Each entry needs at least 12 bytes (key length + type), each tensor info at least 24.
  if (n_kv > c.remaining() / 12 || n_tensors > c.remaining() / 24) {
    throw FormatError("'" + p + "' is corrupt or truncated: it claims " + std::to_string(n_kv) +
                      " metadata entries and " + std::to_string(n_tensors) +
                      " tensors, more than its " + std::to_string(file_->size()) +
                      " bytes can hold");
  }

  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string key(c.read_string("a metadata key"));
    const uint32_t raw_type = c.read<uint32_t>("a metadata type");
    if (!valid_type(raw_type)) {
      throw FormatError("'" + p + "' is corrupt: metadata '" + key + "' has unknown type " +
                        std::to_string(raw_type));
    }
    GgufValue v;
    v.type = static_cast<GgufType>(raw_type);
    if (v.type == GgufType::STRING) {
      v.str = c.read_string("a metadata string");
    } else if (v.type == GgufType::ARRAY) {
      const uint32_t et = c.read<uint32_t>("an array type");
      if (!valid_type(et) || et == static_cast<uint32_t>(GgufType::ARRAY)) {
        throw FormatError("'" + p + "': metadata '" + key + "' is an array of unsupported type " +
                          std::to_string(et));
      }
      v.elem_type = static_cast<GgufType>(et);
      v.count = c.read<uint64_t>("an array length");
      if (v.elem_type == GgufType::STRING) {
        if (v.count > c.remaining() / 8) {
          throw FormatError("'" + p + "' is truncated or corrupt: metadata '" + key + "' claims " +
                            std::to_string(v.count) + " strings");
        }
        v.strings.reserve(v.count);
        for (uint64_t i = 0; i < v.count; ++i)
          v.strings.push_back(c.read_string("an array string"));
      } else {
        const size_t es = scalar_size(v.elem_type);
        if (v.count > c.remaining() / es) c.need(std::numeric_limits<uint64_t>::max(), "an array");
        v.raw = c.skip(v.count * es, "an array");
      }
    } else {
      read_scalar(c, v.type, v, "a metadata value");
    }
    if (kv_.count(key))
      throw FormatError("'" + p + "' is corrupt: duplicate metadata key '" + key + "'");
    key_order_.push_back(key);
    kv_.emplace(key, std::move(v));
  }

  if (const GgufValue* a = find("general.alignment")) {
    if (!a->is_integer() || a->u == 0 || a->u > (1u << 20) || (a->u & (a->u - 1)) != 0) {
      throw FormatError("'" + p + "': general.alignment must be a power of two, found " +
                        std::to_string(a->u));
    }
    alignment_ = static_cast<uint32_t>(a->u);
  }

  tensors_.reserve(n_tensors);
  for (uint64_t t = 0; t < n_tensors; ++t) {
    GgufTensor ti;
    ti.name = std::string(c.read_string("a tensor name"));
    const uint32_t n_dims = c.read<uint32_t>("a tensor rank");
    if (n_dims == 0 || n_dims > kMaxDims) {
      throw FormatError("'" + p + "' is corrupt: tensor '" + ti.name + "' has " +
                        std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
    }
    ti.n_dims = static_cast<int>(n_dims);
    uint64_t n_elem = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const int64_t ne = c.read<int64_t>("a tensor dimension");
      if (ne <= 0 || static_cast<uint64_t>(ne) > (uint64_t{1} << 40) ||
          n_elem > (uint64_t{1} << 48) / static_cast<uint64_t>(ne)) {
        throw FormatError("'" + p + "' is corrupt: tensor '" + ti.name + "' has dimension " +
                          std::to_string(ne));
      }
      ti.ne[d] = ne;
      n_elem *= static_cast<uint64_t>(ne);
    }
    const uint32_t type = c.read<uint32_t>("a tensor type");
    const GgmlTypeTraits tr = ggml_type_traits(type);
    if (tr.name == nullptr) {
      throw FormatError("'" + p + "': tensor '" + ti.name + "' has unknown ggml type " +
                        std::to_string(type) + "; the file may come from a newer llama.cpp");
    }
    ti.type = static_cast<GgmlType>(type);
    if (ti.ne[0] % tr.block_size != 0) {
      throw FormatError("'" + p + "' is corrupt: tensor '" + ti.name + "' of type " +
                        ggml_type_name(ti.type) + " has rows of " + std::to_string(ti.ne[0]) +
                        " values, not a multiple of its block size " +
                        std::to_string(tr.block_size));
    }
    ti.nbytes = n_elem / tr.block_size * tr.type_size;
    ti.offset = c.read<uint64_t>("a tensor offset");
    if (tensor_index_.count(ti.name)) {
      throw FormatError("'" + p + "' is corrupt: duplicate tensor '" + ti.name + "'");
    }
    tensor_index_.emplace(ti.name, tensors_.size());
    tensors_.push_back(std::move(ti));
  }

  const size_t end_of_info = c.pos();
  data_offset_ = (end_of_info + alignment_ - 1) / alignment_ * alignment_;
  const size_t size = file_->size();
  const size_t data_size = data_offset_ <= size ? size - data_offset_ : 0;
  for (GgufTensor& ti : tensors_) {
    if (ti.offset % alignment_ != 0) {
      throw FormatError("'" + p + "' is corrupt: tensor '" + ti.name + "' starts at offset " +
                        std::to_string(ti.offset) + ", not a multiple of the alignment " +
                        std::to_string(alignment_));
    }
    if (data_offset_ > size || ti.offset > data_size || ti.nbytes > data_size - ti.offset) {
      throw FormatError("'" + p + "' is truncated: tensor '" + ti.name + "' needs bytes " +
                        std::to_string(data_offset_ + ti.offset) + " to " +
                        std::to_string(data_offset_ + ti.offset + ti.nbytes) +
                        " but the file has " + std::to_string(size) +
                        " bytes. Re-download or re-export the file.");
    }
    ti.data = file_->data() + data_offset_ + ti.offset;
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
const GgufValue& require(const GgufFile& f, const std::string& key) {
  const GgufValue* v = f.find(key);
  if (v == nullptr) {
    throw FormatError("'" + f.path() + "' lacks the metadata key '" + key +
                      "'. Re-export the model with `mambalite export`.");
  }
  return *v;
}
[[noreturn]] void wrong_type(const GgufFile& f, const std::string& key, const GgufValue& v,
                             const char* want) {
  throw FormatError("'" + f.path() + "': metadata '" + key + "' should be " + want + " but is " +
                    gguf_type_name(v.type));
}
}  // namespace

uint64_t GgufFile::get_uint(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (!v.is_integer()) wrong_type(*this, key, v, "an integer");
  if (v.i < 0 && v.type != GgufType::UINT64) {
    throw FormatError("'" + path() + "': metadata '" + key + "' is negative (" +
                      std::to_string(v.i) + ")");
  }
  return v.u;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (v.type == GgufType::FLOAT32 || v.type == GgufType::FLOAT64) return v.f;
  if (v.is_integer()) return static_cast<double>(v.i);
  wrong_type(*this, key, v, "a number");
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (v.type == GgufType::BOOL || v.is_integer()) return v.u != 0;
  wrong_type(*this, key, v, "a bool");
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufType::STRING) wrong_type(*this, key, v, "a string");
  return std::string(v.str);
}

uint64_t GgufFile::get_uint_or(const std::string& key, uint64_t fallback) const {
  return has(key) ? get_uint(key) : fallback;
}
double GgufFile::get_float_or(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool_or(const std::string& key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}

std::vector<uint64_t> GgufFile::get_uint_per_layer(const std::string& key, size_t n) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufType::ARRAY) return std::vector<uint64_t>(n, get_uint(key));
  const size_t width = v.elem_type == GgufType::UINT8 || v.elem_type == GgufType::INT8     ? 1
                       : v.elem_type == GgufType::UINT16 || v.elem_type == GgufType::INT16 ? 2
                       : v.elem_type == GgufType::UINT32 || v.elem_type == GgufType::INT32 ? 4
                       : v.elem_type == GgufType::UINT64 || v.elem_type == GgufType::INT64 ? 8
                                                                                           : 0;
  if (width == 0 || v.count != n) {
    throw FormatError("'" + path() + "': metadata '" + key + "' should be an integer or an array " +
                      "of " + std::to_string(n) + " integers (one per layer), but it is an array " +
                      "of " + std::to_string(v.count) + " " + gguf_type_name(v.elem_type));
  }
  const bool is_signed = v.elem_type == GgufType::INT8 || v.elem_type == GgufType::INT16 ||
                         v.elem_type == GgufType::INT32 || v.elem_type == GgufType::INT64;
  std::vector<uint64_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t u = 0;
    std::memcpy(&u, v.raw + i * width, width);  // little endian
    if (is_signed && (u >> (8 * width - 1)) & 1) {
      throw FormatError("'" + path() + "': metadata '" + key + "' has a negative entry at layer " +
                        std::to_string(i));
    }
    out[i] = u;
  }
  return out;
}

}  // namespace mambalite
