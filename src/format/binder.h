// Binds a model's tensors by name, checking presence, shape and type, and collects every problem
// so that one error lists them all (the layers bind their own weights through it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "kernels/kernels.h"

namespace mambalite {

class Binder {
 public:
  explicit Binder(const GgufFile& f) : f_(f) {}

  const GgufFile& file() const { return f_; }
  bool has(const std::string& name) const { return f_.find_tensor(name) != nullptr; }

  // A weight matrix of `rows` x `cols` (ggml shape {cols, rows}), used in place.
  MatView matrix(const std::string& name, int64_t rows, int64_t cols);
  // n stacked matrices of rows x cols (ggml shape {cols, rows, n}: MoE experts), used in place.
  std::vector<MatView> matrices(const std::string& name, int64_t n, int64_t rows, int64_t cols);
  // A small tensor converted to an owned fp32 copy, in the file's (ggml) element order.
  std::vector<float> floats(const std::string& name, std::vector<int64_t> ne);
  // The same, or an empty vector when the file has no such tensor (optional biases).
  std::vector<float> optional_floats(const std::string& name, std::vector<int64_t> ne) {
    return has(name) ? floats(name, std::move(ne)) : std::vector<float>{};
  }
  void add_error(std::string message) { errors_.push_back(std::move(message)); }

  void throw_if_errors() const;

 private:
  const GgufTensor* lookup(const std::string& name, std::vector<int64_t> ne);
  bool computable(const std::string& name, const GgufTensor& t);

  const GgufFile& f_;
  std::vector<std::string> errors_;
};

}  // namespace mambalite
