#include "format/binder.h"

#include <algorithm>

#include "errors.h"
#include "format/dequant.h"

namespace mambalite {

bool Binder::computable(const std::string& name, const GgufTensor& t) {
  if (dequant_supported(t.type)) return true;
  errors_.push_back("tensor '" + name + "' is " + ggml_type_name(t.type) +
                    ", which mambalite cannot compute with (supported: F32, F16, BF16, Q8_0, "
                    "Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)");
  return false;
}

MatView Binder::matrix(const std::string& name, int64_t rows, int64_t cols) {
  MatView m;
  const GgufTensor* t = lookup(name, {cols, rows});
  if (t == nullptr || !computable(name, *t)) return m;
  m.type = t->type;
  m.data = t->data;
  m.rows = rows;
  m.cols = cols;
  m.row_bytes = ggml_row_size(t->type, cols);
  return m;
}

std::vector<MatView> Binder::matrices(const std::string& name, int64_t n, int64_t rows,
                                      int64_t cols) {
  const GgufTensor* t = lookup(name, {cols, rows, n});
  if (t == nullptr || !computable(name, *t)) return {};
  std::vector<MatView> out(static_cast<size_t>(n));
  const size_t row_bytes = ggml_row_size(t->type, cols);
  for (int64_t e = 0; e < n; ++e) {
    MatView& m = out[static_cast<size_t>(e)];
    m.type = t->type;
    m.data = t->data + static_cast<size_t>(e * rows) * row_bytes;
    m.rows = rows;
    m.cols = cols;
    m.row_bytes = row_bytes;
  }
  return out;
}

std::vector<float> Binder::floats(const std::string& name, std::vector<int64_t> ne) {
  const GgufTensor* t = lookup(name, ne);
  if (t == nullptr) return {};
  const int64_t n = t->n_elements();
  if (!dequant_supported(t->type) ||
      n % ggml_type_traits(static_cast<uint32_t>(t->type)).block_size) {
    errors_.push_back("tensor '" + name + "' is " + ggml_type_name(t->type) +
                      "; it must be F32 (or another type mambalite can read)");
    return {};
  }
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(t->type, t->data, n, out.data());
  return out;
}

void Binder::throw_if_errors() const {
  if (errors_.empty()) return;
  std::string msg = "'" + f_.path() + "' is not a usable model (" + std::to_string(errors_.size()) +
                    " problem" + (errors_.size() > 1 ? "s" : "") + "):";
  const size_t shown = std::min<size_t>(errors_.size(), 20);
  for (size_t i = 0; i < shown; ++i) msg += "\n  - " + errors_[i];
  if (errors_.size() > shown)
    msg += "\n  - ... and " + std::to_string(errors_.size() - shown) + " more";
  msg += "\nRe-export the checkpoint with `mambalite export`.";
  throw FormatError(msg);
}

const GgufTensor* Binder::lookup(const std::string& name, std::vector<int64_t> ne) {
  const GgufTensor* t = f_.find_tensor(name);
  if (t == nullptr) {
    errors_.push_back("missing tensor '" + name + "'");
    return nullptr;
  }
  ne.resize(4, 1);
  bool ok = true;
  for (int d = 0; d < 4; ++d) ok = ok && t->ne[d] == ne[d];
  if (!ok) {
    std::string want = "{";
    size_t nd = ne.size();
    while (nd > 1 && ne[nd - 1] == 1) --nd;
    for (size_t d = 0; d < nd; ++d) want += (d ? ", " : "") + std::to_string(ne[d]);
    errors_.push_back("tensor '" + name + "' has shape " + t->shape_string() + ", expected " +
                      want + "}");
    return nullptr;
  }
  return t;
}

}  // namespace mambalite
