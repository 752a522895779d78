// mambalite._core.kernels: run one ISA's kernels on numpy data, so tests can compare every
// instruction set against the scalar reference and the dequantization against `gguf`.
#include "kernel_bindings.h"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "format/dequant.h"
#include "errors.h"
#include "kernels/kernels.h"
#include "format/quantize.h"

namespace py = pybind11;
using namespace mambalite;

namespace {

using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;
using U8Array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

GgmlType type_from_name(const std::string& name) {
  for (uint32_t t = 0; t < 64; ++t) {
    const GgmlTypeTraits tr = ggml_type_traits(t);
    if (tr.name != nullptr && name == tr.name) return static_cast<GgmlType>(t);
  }
  throw InvalidArgument("unknown ggml type '" + name + "'");
}

MatView view(GgmlType type, const U8Array& raw, int64_t rows, int64_t cols) {
  MatView w;
  w.type = type;
  w.data = raw.data();
  w.rows = rows;
  w.cols = cols;
  w.row_bytes = ggml_row_size(type, cols);
  if (static_cast<size_t>(raw.size()) != w.row_bytes * static_cast<size_t>(rows)) {
    throw InvalidArgument("raw weights have " + std::to_string(raw.size()) + " bytes, expected " +
                          std::to_string(w.row_bytes * rows));
  }
  return w;
}

}  // namespace

void bind_kernels(py::module_& parent) {
  py::module_ m = parent.def_submodule("kernels", "per-ISA kernels, for tests and diagnostics");
  m.def("available_isas", &available_isas, "instruction sets usable here, best first");
  m.def("selected_isa", [] { return std::string(select_kernels().name); });

  m.def("dequantize", [](const std::string& type, const U8Array& raw, int64_t n) {
    const GgmlType t = type_from_name(type);
    if (!dequant_supported(t)) throw InvalidArgument("cannot dequantize " + type);
    if (static_cast<size_t>(raw.size()) != ggml_row_size(t, n)) {
      throw InvalidArgument("size mismatch for " + std::to_string(n) + " values of " + type);
    }
    py::array_t<float> out(n);
    dequantize_row(t, raw.data(), n, out.mutable_data());
    return out;
  });

  // x (rows, cols) quantized to a K-quant: uint8 (rows, cols / 256 * block bytes), as ggml's
  // reference quantizer.
  auto k_quantizer = [](const char* type, size_t block_bytes,
                        void (*row)(const float*, int64_t, uint8_t*)) {
    return [=](const F32Array& x) {
      if (x.ndim() != 2 || x.shape(1) % kQKK != 0) {
        throw InvalidArgument(std::string(type) +
                              " needs a 2-D array with rows of a multiple of 256 values");
      }
      const int64_t rows = x.shape(0), cols = x.shape(1);
      const size_t row_bytes = static_cast<size_t>(cols / kQKK) * block_bytes;
      py::array_t<uint8_t> out(
          {static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(row_bytes)});
      const float* src = x.data();
      uint8_t* dst = out.mutable_data();
      {
        py::gil_scoped_release nogil;
        for (int64_t r = 0; r < rows; ++r) row(src + r * cols, cols, dst + r * row_bytes);
      }
      return out;
    };
  };
  m.def("quantize_q4_k", k_quantizer("Q4_K", sizeof(BlockQ4_K), quantize_row_q4_k));
  m.def("quantize_q5_k", k_quantizer("Q5_K", sizeof(BlockQ5_K), quantize_row_q5_k));
  m.def("quantize_q6_k", k_quantizer("Q6_K", sizeof(BlockQ6_K), quantize_row_q6_k));

  // y (n, rows) = x (n, cols) @ W^T with the given ISA's kernels, W in `type` (raw bytes).
  m.def("matmul", [](const std::string& isa, const std::string& type, const U8Array& raw,
                     int64_t rows, int64_t cols, const F32Array& x) {
    const KernelTable& k = kernels_for(isa);
    const MatView w = view(type_from_name(type), raw, rows, cols);
    if (x.ndim() != 2 || x.shape(1) != cols) throw InvalidArgument("x must be (n, cols)");
    const int64_t n = x.shape(0);
    std::vector<uint8_t> act(activation_row_bytes(w.type, cols) * static_cast<size_t>(n));
    std::vector<float> scratch(matmul_scratch_floats(cols));
    size_t stride = 0;
    const uint8_t* a = prepare_activations(k, w.type, x.data(), cols, n, cols, act.data(), &stride);
    py::array_t<float> y({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(rows)});
    matmul(k, w, a, stride, n, y.mutable_data(), rows, 0, rows, scratch.data());
    return y;
  });

  // (scales (n/32,), values (n,)) of x quantized for the integer dot products.
  m.def("quantize_activations", [](const std::string& isa, const F32Array& x) {
    const KernelTable& k = kernels_for(isa);
    const int64_t n = x.size();
    if (n % kQK) throw InvalidArgument("length must be a multiple of 32");
    std::vector<ActQ8> blocks(static_cast<size_t>(n / kQK));
    k.quantize_act(x.data(), n, blocks.data());
    py::array_t<float> d(n / kQK);
    py::array_t<int8_t> q(n);
    for (int64_t i = 0; i < n / kQK; ++i) {
      d.mutable_data()[i] = blocks[i].d;
      for (int j = 0; j < kQK; ++j) q.mutable_data()[i * kQK + j] = blocks[i].qs[j];
    }
    return py::make_tuple(d, q);
  });

  // y (n, E) and the updated state (E, N) of the selective scan.
  m.def("selective_scan", [](const std::string& isa, const F32Array& x, const F32Array& dt,
                             const F32Array& A, const F32Array& B, const F32Array& C,
                             const F32Array& D, const F32Array& z, const F32Array& s0) {
    const KernelTable& k = kernels_for(isa);
    const int64_t n = x.shape(0), E = x.shape(1), N = A.shape(1);
    py::array_t<float> s({static_cast<py::ssize_t>(E), static_cast<py::ssize_t>(N)});
    std::copy(s0.data(), s0.data() + E * N, s.mutable_data());
    py::array_t<float> y({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(E)});
    k.selective_scan(n, E, N, x.data(), dt.data(), A.data(), B.data(), C.data(), N, D.data(),
                     z.data(), E, s.mutable_data(), y.mutable_data(), 0, E);
    return py::make_tuple(y, s);
  });

  // out (n, E) of conv + SiLU and the updated window (K-1, E).
  m.def("conv_silu", [](const std::string& isa, const F32Array& window0, const F32Array& x,
                        const F32Array& w, const F32Array& bias) {
    const KernelTable& k = kernels_for(isa);
    const int64_t n = x.shape(0), E = x.shape(1), K = w.shape(0);
    py::array_t<float> window({static_cast<py::ssize_t>(K - 1), static_cast<py::ssize_t>(E)});
    std::copy(window0.data(), window0.data() + (K - 1) * E, window.mutable_data());
    py::array_t<float> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(E)});
    k.conv_silu(n, K, E, window.mutable_data(), x.data(), E, w.data(), bias.data(),
                out.mutable_data(), 0, E);
    return py::make_tuple(out, window);
  });

  m.def("rms_norm", [](const std::string& isa, const F32Array& x, const F32Array& w, float eps) {
    py::array_t<float> out(x.size());
    kernels_for(isa).rms_norm(x.data(), w.data(), x.size(), eps, out.mutable_data());
    return out;
  });
}
