#include "kernels.h"

#include <cmath>
#include <cstdlib>

#include "dequant.h"
#include "errors.h"

namespace mambalite {

const KernelTable& scalar_kernels();
#if defined(MAMBALITE_HAVE_AVX2)
const KernelTable& avx2_kernels();
#endif

namespace {

bool cpu_has(const std::string& isa) {
  if (isa == "scalar") return true;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (isa == "avx2") {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
  }
#endif
  return false;
}

const KernelTable* built(const std::string& isa) {
  if (isa == "scalar") return &scalar_kernels();
#if defined(MAMBALITE_HAVE_AVX2)
  if (isa == "avx2") return &avx2_kernels();
#endif
  return nullptr;
}

const char* const kKnown[] = {"avx2", "scalar"};  // best first

}  // namespace

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (const char* isa : kKnown) {
    if (built(isa) != nullptr && cpu_has(isa)) out.emplace_back(isa);
  }
  return out;
}

const KernelTable& kernels_for(const std::string& isa) {
  const KernelTable* k = built(isa);
  if (k == nullptr || !cpu_has(isa)) {
    std::string avail;
    for (const std::string& a : available_isas()) avail += (avail.empty() ? "" : ", ") + a;
    throw InvalidArgument("instruction set '" + isa + "' is " +
                          (k == nullptr ? "not built into this mambalite" : "not supported by "
                                                                            "this CPU") +
                          "; available here: " + avail);
  }
  return *k;
}

const KernelTable& select_kernels() {
  const char* env = std::getenv("MAMBALITE_ISA");
  if (env != nullptr && *env != '\0') return kernels_for(env);
  return kernels_for(available_isas().front());
}

bool uses_q8_activations(GgmlType type) {
  return type == GgmlType::Q8_0 || type == GgmlType::Q4_0;
}

size_t activation_row_bytes(GgmlType type, int64_t cols) {
  return uses_q8_activations(type) ? static_cast<size_t>(cols / kQK) * sizeof(ActQ8)
                                   : static_cast<size_t>(cols) * sizeof(float);
}

const uint8_t* prepare_activations(const KernelTable& k, GgmlType type, const float* x,
                                   int64_t ldx, int64_t n, int64_t cols, uint8_t* out,
                                   size_t* stride) {
  if (!uses_q8_activations(type)) {
    *stride = static_cast<size_t>(ldx) * sizeof(float);
    return reinterpret_cast<const uint8_t*>(x);
  }
  *stride = activation_row_bytes(type, cols);
  for (int64_t t = 0; t < n; ++t) {
    k.quantize_act(x + t * ldx, cols, reinterpret_cast<ActQ8*>(out + t * *stride));
  }
  return out;
}

void matmul(const KernelTable& k, const MatView& w, const uint8_t* act, size_t act_stride,
            int64_t n, float* y, int64_t ldy, int64_t r0, int64_t r1, float* scratch) {
  const int64_t cols = w.cols;
  auto act_f32 = [&](int64_t t) { return reinterpret_cast<const float*>(act + t * act_stride); };
  auto act_q8 = [&](int64_t t) { return reinterpret_cast<const ActQ8*>(act + t * act_stride); };
  switch (w.type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16: {
      const auto dot = w.type == GgmlType::F32   ? k.dot_f32
                       : w.type == GgmlType::F16 ? k.dot_f16
                                                 : k.dot_bf16;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t t = 0; t < n; ++t) y[t * ldy + r] = dot(cols, w.row(r), act_f32(t));
      }
      return;
    }
    case GgmlType::Q8_0:
    case GgmlType::Q4_0: {
      const auto dot = w.type == GgmlType::Q8_0 ? k.dot_q8_0 : k.dot_q4_0;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t t = 0; t < n; ++t) y[t * ldy + r] = dot(cols, w.row(r), act_q8(t));
      }
      return;
    }
    default: {  // other llama.cpp types: dequantize each row once, then fp32 dot products
      const uint8_t* row = reinterpret_cast<const uint8_t*>(scratch);
      for (int64_t r = r0; r < r1; ++r) {
        dequantize_row(w.type, w.row(r), cols, scratch);
        for (int64_t t = 0; t < n; ++t) y[t * ldy + r] = k.dot_f32(cols, row, act_f32(t));
      }
      return;
    }
  }
}

float softplus(float v) { return v > 20.0f ? v : std::log1p(std::exp(v)); }

}  // namespace mambalite
