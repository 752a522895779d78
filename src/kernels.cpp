#include "kernels.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

#include "dequant.h"
#include "errors.h"

namespace mambalite {

const KernelTable& scalar_kernels();
#if defined(MAMBALITE_HAVE_AVX2)
const KernelTable& avx2_kernels();
#endif
#if defined(MAMBALITE_HAVE_AVX512)
const KernelTable& avx512_kernels();
#endif
#if defined(MAMBALITE_HAVE_NEON)
const KernelTable& neon_kernels();
#endif

namespace {

#if defined(__x86_64__) || defined(__i386__)
// x86 features from cpuid, and whether the OS saves the register state they need (xgetbv):
// portable across GCC and Clang, whose __builtin_cpu_supports names differ (Clang 14 has no
// "f16c").
struct X86Features {
  bool avx2 = false;    // AVX2 + FMA + F16C, with the ymm state enabled
  bool avx512 = false;  // AVX-512 F + BW + VL + VNNI, with the opmask and zmm state enabled
};

X86Features detect_x86() {
  X86Features f;
  unsigned a, b, c, d;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return f;
  const bool fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1,
             f16c = (c >> 29) & 1;
  if (!osxsave || !avx) return f;
  unsigned xcr0_lo, xcr0_hi;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0x6) != 0x6) return f;  // SSE and AVX (ymm) state
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return f;
  f.avx2 = fma && f16c && ((b >> 5) & 1);
  const bool zmm_state = (xcr0_lo & 0xE0) == 0xE0;  // opmask, upper zmm0-15, zmm16-31
  f.avx512 = f.avx2 && zmm_state && ((b >> 16) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1) &&
             ((c >> 11) & 1);  // F, BW, VL; VNNI
  return f;
}
#endif

bool cpu_has(const std::string& isa) {
  if (isa == "scalar") return true;
#if defined(__x86_64__) || defined(__i386__)
  static const X86Features x86 = detect_x86();
  if (isa == "avx2") return x86.avx2;
  if (isa == "avx512") return x86.avx512;
#endif
#if defined(__aarch64__) && defined(__linux__)
  if (isa == "neon") return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__aarch64__) && defined(__APPLE__)
  if (isa == "neon") return true;  // every Apple arm64 CPU has the dot-product extension
#endif
  return false;
}

// The getter of `isa`'s table, or null when it is not built. Called only once cpu_has(isa) holds:
// a table's own code (its construction included) may use the instructions it is built for.
using TableGetter = const KernelTable& (*)();
TableGetter built(const std::string& isa) {
  if (isa == "scalar") return scalar_kernels;
#if defined(MAMBALITE_HAVE_AVX2)
  if (isa == "avx2") return avx2_kernels;
#endif
#if defined(MAMBALITE_HAVE_AVX512)
  if (isa == "avx512") return avx512_kernels;
#endif
#if defined(MAMBALITE_HAVE_NEON)
  if (isa == "neon") return neon_kernels;
#endif
  return nullptr;
}

const char* const kKnown[] = {"avx512", "avx2", "neon", "scalar"};  // best first

}  // namespace

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (const char* isa : kKnown) {
    if (built(isa) != nullptr && cpu_has(isa)) out.emplace_back(isa);
  }
  return out;
}

const KernelTable& kernels_for(const std::string& isa) {
  const TableGetter k = built(isa);
  if (k == nullptr || !cpu_has(isa)) {
    std::string avail;
    for (const std::string& a : available_isas()) avail += (avail.empty() ? "" : ", ") + a;
    throw InvalidArgument("instruction set '" + isa + "' is " +
                          (k == nullptr ? "not built into this mambalite"
                                        : "not supported by "
                                          "this CPU") +
                          "; available here: " + avail);
  }
  return k();
}

const KernelTable& select_kernels() {
  const char* env = std::getenv("MAMBALITE_ISA");
  if (env != nullptr && *env != '\0') return kernels_for(env);
  return kernels_for(available_isas().front());
}

bool uses_q8_activations(GgmlType type) {
  return type == GgmlType::Q8_0 || type == GgmlType::Q4_0 || type == GgmlType::Q6_K;
}

size_t activation_row_bytes(GgmlType type, int64_t cols) {
  if (!uses_q8_activations(type)) return static_cast<size_t>(cols) * sizeof(float);
  const size_t blocks = static_cast<size_t>(cols / kQK);
  const size_t extra = type == GgmlType::Q4_0   ? blocks / 8 * sizeof(ActQ4Group)
                       : type == GgmlType::Q6_K ? blocks * sizeof(ActQ6Offset)
                                                : 0;
  return blocks * sizeof(ActQ8) + extra;
}

namespace {

// The ActQ4Group copies of blocks a (nb) that follow them in a Q4_0 activation row.
void group_q4_0_activations(const ActQ8* a, int64_t nb, ActQ4Group* g) {
  constexpr int kOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  for (int64_t i = 0; i + 8 <= nb; i += 8, ++g) {
    for (int k = 0; k < 8; ++k) {
      g->d[k] = a[i + kOrder[k]].d;
      g->m8s[k] = -8.0f * a[i + kOrder[k]].s;
    }
    for (int p = 0; p < 4; ++p) {
      const ActQ8& even = a[i + 2 * p];
      const ActQ8& odd = a[i + 2 * p + 1];
      int8_t* q = g->qs + 64 * p;
      std::memcpy(q, even.qs, 16);
      std::memcpy(q + 16, odd.qs, 16);
      std::memcpy(q + 32, even.qs + 16, 16);
      std::memcpy(q + 48, odd.qs + 16, 16);
    }
  }
}

// The ActQ6Offset sums of blocks a (nb) that follow them in a Q6_K activation row.
void offsets_q6_k_activations(const ActQ8* a, int64_t nb, ActQ6Offset* o) {
  for (int64_t i = 0; i < nb; ++i) {
    for (int k = 0; k < kQK / 2; ++k) {
      o[i].s32[k] = static_cast<int16_t>(32 * (a[i].qs[2 * k] + a[i].qs[2 * k + 1]));
    }
  }
}

}  // namespace

const uint8_t* prepare_activations(const KernelTable& k, GgmlType type, const float* x, int64_t ldx,
                                   int64_t n, int64_t cols, uint8_t* out, size_t* stride) {
  if (!uses_q8_activations(type)) {
    *stride = static_cast<size_t>(ldx) * sizeof(float);
    return reinterpret_cast<const uint8_t*>(x);
  }
  *stride = activation_row_bytes(type, cols);
  const int64_t nb = cols / kQK;
  for (int64_t t = 0; t < n; ++t) {
    ActQ8* row = reinterpret_cast<ActQ8*>(out + t * *stride);
    k.quantize_act(x + t * ldx, cols, row);
    if (type == GgmlType::Q4_0) {
      group_q4_0_activations(row, nb, reinterpret_cast<ActQ4Group*>(row + nb));
    } else if (type == GgmlType::Q6_K) {
      offsets_q6_k_activations(row, nb, reinterpret_cast<ActQ6Offset*>(row + nb));
    }
  }
  return out;
}

void matmul(const KernelTable& k, const MatView& w, const uint8_t* act, size_t act_stride,
            int64_t n, float* y, int64_t ldy, int64_t r0, int64_t r1, float* scratch) {
  using Dot = float (*)(int64_t, const uint8_t*, const void*);
  using Dot4 = void (*)(int64_t, const uint8_t*, const uint8_t*, size_t, float*);
  using Tile = KernelTable::Tile;
  const int64_t cols = w.cols;
  Dot dot = nullptr;
  Dot4 dot4 = nullptr;
  Tile tile = nullptr, tile3 = nullptr;
  switch (w.type) {
    case GgmlType::F32:
      dot = reinterpret_cast<Dot>(k.dot_f32);
      dot4 = k.dot4_f32;
      tile = k.tile4x2_f32;
      tile3 = k.tile4x3_f32;
      break;
    case GgmlType::F16:
      dot = reinterpret_cast<Dot>(k.dot_f16);
      dot4 = k.dot4_f16;
      tile = k.tile4x2_f16;
      tile3 = k.tile4x3_f16;
      break;
    case GgmlType::BF16:
      dot = reinterpret_cast<Dot>(k.dot_bf16);
      dot4 = k.dot4_bf16;
      tile = k.tile4x2_bf16;
      tile3 = k.tile4x3_bf16;
      break;
    case GgmlType::Q8_0:
      dot = reinterpret_cast<Dot>(k.dot_q8_0);
      dot4 = k.dot4_q8_0;
      break;
    case GgmlType::Q4_0:
      dot = reinterpret_cast<Dot>(k.dot_q4_0);
      dot4 = k.dot4_q4_0;
      break;
    case GgmlType::Q6_K:  // no 4-token tile yet: single products
      dot = reinterpret_cast<Dot>(k.dot_q6_k);
      break;
    default:
      break;
  }
  int64_t r = r0;
  if (tile != nullptr && n >= 2) {  // 4 rows x 3 (or 2) tokens at a time, then the leftovers
    float out[12];
    for (; r + 4 <= r1; r += 4) {
      int64_t t = 0;
      for (; tile3 != nullptr && t + 3 <= n; t += 3) {
        tile3(cols, w.row(r), w.row_bytes, act + t * act_stride, act_stride, out);
        for (int i = 0; i < 4; ++i) {
          for (int j = 0; j < 3; ++j) y[(t + j) * ldy + r + i] = out[3 * i + j];
        }
      }
      for (; t + 2 <= n; t += 2) {
        tile(cols, w.row(r), w.row_bytes, act + t * act_stride, act_stride, out);
        for (int i = 0; i < 4; ++i) {
          y[t * ldy + r + i] = out[2 * i];
          y[(t + 1) * ldy + r + i] = out[2 * i + 1];
        }
      }
      if (t < n) {
        for (int i = 0; i < 4; ++i)
          y[t * ldy + r + i] = dot(cols, w.row(r + i), act + t * act_stride);
      }
    }
  }
  const uint8_t* dequantized = reinterpret_cast<const uint8_t*>(scratch);
  for (; r < r1; ++r) {
    const uint8_t* row = w.row(r);
    if (dot == nullptr) {  // other llama.cpp types: dequantize the row once, fp32 dot products
      dequantize_row(w.type, row, cols, scratch);
      row = dequantized;
    }
    const Dot d1 = dot != nullptr ? dot : reinterpret_cast<Dot>(k.dot_f32);
    const Dot4 d4 = dot != nullptr ? dot4 : k.dot4_f32;  // null: single products only
    int64_t t = 0;
    float out[4];
    for (; d4 != nullptr && t + 4 <= n; t += 4) {
      d4(cols, row, act + t * act_stride, act_stride, out);
      for (int i = 0; i < 4; ++i) y[(t + i) * ldy + r] = out[i];
    }
    for (; t < n; ++t) y[t * ldy + r] = d1(cols, row, act + t * act_stride);
  }
}

}  // namespace mambalite
