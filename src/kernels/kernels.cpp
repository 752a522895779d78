#include "kernels/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

#include "errors.h"
#include "format/dequant.h"
#include "format/fp16.h"
#include "kernels/kquants_generic.h"

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
  return type == GgmlType::Q8_0 || type == GgmlType::Q4_0 || type == GgmlType::Q6_K ||
         type == GgmlType::Q4_K || type == GgmlType::Q5_K || type == GgmlType::Q5_0 ||
         type == GgmlType::Q4_1 || type == GgmlType::Q5_1;
}

size_t activation_row_bytes(GgmlType type, int64_t cols) {
  if (!uses_q8_activations(type)) return static_cast<size_t>(cols) * sizeof(float);
  const size_t blocks = static_cast<size_t>(cols / kQK);
  const size_t extra =
      type == GgmlType::Q4_0   ? blocks / 8 * (sizeof(ActQ4Group) + sizeof(ActQ4Quads))
      : type == GgmlType::Q8_0 ? blocks / 8 * sizeof(ActQ8Group)
      : type == GgmlType::Q6_K ? blocks * sizeof(ActQ6Offset) + blocks / 8 * sizeof(ActQ6Group)
      : type == GgmlType::Q4_K || type == GgmlType::Q5_K ? blocks / 8 * sizeof(ActKScales)
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

// The ActQ4Quads copies of blocks a (nb) that follow their ActQ4Group copies in a Q4_0 row.
void quads_q4_0_activations(const ActQ8* a, int64_t nb, ActQ4Quads* g) {
  for (int64_t i = 0; i + 8 <= nb; i += 8, ++g) {
    for (int k = 0; k < 8; ++k) g->d[k] = a[i + k].d;
    for (int h = 0; h < 2; ++h) {
      for (int k = 0; k < 4; ++k) {
        const int8_t* q = a[i + 4 * h + k].qs;
        std::memcpy(g->lo[h] + 16 * k, q, 16);
        std::memcpy(g->hi[h] + 16 * k, q + 16, 16);
      }
      for (int lane = 0; lane < 16; ++lane) {
        int sum = 0;
        for (int j = 0; j < 4; ++j) sum += g->lo[h][4 * lane + j] + g->hi[h][4 * lane + j];
        g->m8[h][lane] = -8 * sum;
      }
    }
  }
}

// The ActQ8Group copies of blocks a (nb) that follow them in a Q8_0 activation row.
void group_q8_0_activations(const ActQ8* a, int64_t nb, ActQ8Group* g) {
  for (int64_t i = 0; i + 8 <= nb; i += 8, ++g) {
    for (int k = 0; k < 8; ++k) {
      const ActQ8& b = a[i + k];
      g->d[k] = b.d;
      for (int lane = 0; lane < 8; ++lane) {
        const int8_t* q = b.qs + 4 * lane;
        g->m128[k][lane] = -128 * (q[0] + q[1] + q[2] + q[3]);
      }
      std::memcpy(g->qs + kQK * k, b.qs, kQK);
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

// The ActQ6Group copies of blocks a (nb, a multiple of 8) that follow their ActQ6Offset sums.
void groups_q6_k_activations(const ActQ8* a, int64_t nb, ActQ6Group* g) {
  for (int64_t i = 0; i + 8 <= nb; i += 8, ++g) {
    for (int k = 0; k < 8; ++k) std::memcpy(g->qs + kQK * k, a[i + k].qs, kQK);
    for (int r = 0; r < 4; ++r) {
      for (int lane = 0; lane < 16; ++lane) {
        const int8_t* q = g->qs + 64 * r + 4 * lane;
        g->m32[r][lane] = -32 * (q[0] + q[1] + q[2] + q[3]);
        g->d[r][lane] = a[i + 2 * r + lane / 8].d;
      }
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
      ActQ4Group* groups = reinterpret_cast<ActQ4Group*>(row + nb);
      group_q4_0_activations(row, nb, groups);
      quads_q4_0_activations(row, nb, reinterpret_cast<ActQ4Quads*>(groups + nb / 8));
    } else if (type == GgmlType::Q8_0) {
      group_q8_0_activations(row, nb, reinterpret_cast<ActQ8Group*>(row + nb));
    } else if (type == GgmlType::Q4_K || type == GgmlType::Q5_K) {
      ActKScales* g = reinterpret_cast<ActKScales*>(row + nb);
      for (int64_t i = 0; i < nb; ++i) {
        g[i / 8].d[i % 8] = row[i].d;
        g[i / 8].s[i % 8] = row[i].s;
      }
    } else if (type == GgmlType::Q6_K) {
      ActQ6Offset* offsets = reinterpret_cast<ActQ6Offset*>(row + nb);
      offsets_q6_k_activations(row, nb, offsets);
      groups_q6_k_activations(row, nb, reinterpret_cast<ActQ6Group*>(offsets + nb));
    }
  }
  return out;
}

namespace {

// How matmul's GEMM multiplies weights of a type: fp32 tiles on fp32 weights (read in place for
// F32, converted otherwise), or integer tiles on converted bytes (Q4_0 nibbles, int16 Q8_0
// values) or unsigned bytes with int32 sums (Q4_0 and Q8_0, where the table has them).
enum class GemmKind { kF32, kQ4_0, kQ8_0, kU8 };

// The types whose blocks of 32 are w = d * q + o with q unsigned (at most 31): K-quant
// sub-blocks and the legacy types llama-quantize mixes in. They take the integer GEMMs on their
// values q (the table's offset_to_u8 or offset_to_i16), with the offsets o added through the
// activations' block sums.
bool offset_type(GgmlType type) {
  return type == GgmlType::Q4_K || type == GgmlType::Q5_K || type == GgmlType::Q5_0 ||
         type == GgmlType::Q4_1 || type == GgmlType::Q5_1;
}

GemmKind gemm_kind(const KernelTable& k, GgmlType type) {
  if (type == GgmlType::Q6_K && k.gemm_blocks_u8 != nullptr) return GemmKind::kU8;  // in place
  if (type == GgmlType::Q4_0) return k.gemm_panel_u8 != nullptr ? GemmKind::kU8 : GemmKind::kQ4_0;
  if (type == GgmlType::Q8_0) {
    if (k.gemm_panel_u8 != nullptr && k.q8_0_to_u8 != nullptr) return GemmKind::kU8;
    if (k.gemm_panel_q8_0 != nullptr) return GemmKind::kQ8_0;
  }
  if (offset_type(type) && k.gemm_panel_u8 != nullptr && k.offset_to_u8 != nullptr) {
    return GemmKind::kU8;
  }
  if (offset_type(type) && k.gemm_panel_q8_0 != nullptr && k.offset_to_i16 != nullptr) {
    return GemmKind::kQ8_0;
  }
  return GemmKind::kF32;
}

constexpr int64_t kGemmRows = 6;     // weight rows per micro-tile (gemm_panel's m)
constexpr int64_t kGemmTokens = 32;  // tokens per packed activation panel
// Values of each row per pass: the pass's fp32 weights (6 KB) stay in L1 while the panels' slices
// (32 KB each at most) stream through. A multiple of 256, so that a pass starts on a
// block boundary of every type (K-quant super-blocks are 256 values).
constexpr int64_t kGemmDepth = 256;
// Panels (of up to 32 tokens) that share each converted pass of the weights, so that a weight
// row is converted and read from DRAM once per 128 tokens.
constexpr int64_t kGemmPanels = 4;
// How many passes ahead the weights are prefetched: with few tokens a pass's multiply-adds are too
// short to hide the fetch of the next one (2 against 1: +10% at batch 8; 4 and 8 no better).
constexpr int64_t kGemmPrefetchPasses = 2;

// Whether matmul of n tokens takes the table's products on the weight blocks in place
// (gemm_blocks_u8) rather than the 4 x 3 dot tiles below it or the GEMM's conversion pass above.
// Interleaved runs on 130m, batch decode: Q8_0 x1.07, x1.33, x1.27 at 2, 3, 4 tokens and x1.53,
// x1.31, x1.20 at 8, 16, 32; Q4_0 (whose nibbles cost more to unpack) x0.89, x0.96, x1.26 at 2,
// 3, 4 and x1.08, x0.98 at 16, 32; Q4_K_M (Q4_K and Q6_K) x0.79, x1.10, x1.42 at 2, 3, 4 (Q5_K_M
// x0.94 at 3) and x2.10, x2.04, x2.10 at 8, 16, 32. Prefill 512 (128 tokens a pass): 130m Q8_0
// x1.11, Q4_0 x1.01, Q4_K_M x1.21; 370m Q8_0 x1.12, Q4_K_M x1.30; mamba2-130m Q8_0 x1.11.
bool reads_in_place(const KernelTable& k, GgmlType type, int64_t n) {
  if (k.gemm_blocks_u8 == nullptr) return false;
  switch (type) {
    case GgmlType::Q8_0:
      return n >= 2;
    case GgmlType::Q4_0:
      return n >= 4 && n <= 16;
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return n >= 4;
    default:
      return false;
  }
}

// matmul through the table's GEMM: rows six at a time, each pass of kGemmDepth values converted
// once (to fp32, or to bytes or int16 for the integer tiles; F32 rows are read in place) and
// multiplied into up to kGemmPanels panels of 32 tokens, gemm_cols tokens per tile call.
void gemm(const KernelTable& k, const MatView& w, const uint8_t* act, size_t act_stride, int64_t n,
          float* y, int64_t ldy, int64_t r0, int64_t r1, float* scratch, const float* panels) {
  const int64_t K = w.cols;
  const GgmlTypeTraits traits = ggml_type_traits(static_cast<uint32_t>(w.type));
  float* wbuf = scratch + K * kGemmTokens;  // (kGemmRows, kGemmDepth) a pass's fp32 weights
  const GemmKind kind = gemm_kind(k, w.type);
  const int64_t W = k.gemm_cols;                       // tokens per tile call
  uint8_t* bytes = reinterpret_cast<uint8_t*>(wbuf);   // Q4_0, u8: (kGemmRows, kGemmDepth)
  int16_t* wide = reinterpret_cast<int16_t*>(wbuf);    // Q8_0: (kGemmRows, kGemmDepth) values
  float* wscales = wbuf + kGemmRows * kGemmDepth / 2;  // and (kGemmRows, kGemmDepth / 32) scales
  float c[kGemmPanels][kGemmRows * kGemmTokens];       // per panel, (32 / W) tile outputs (m, W)
  float part[kGemmRows * kGemmTokens];                 // (m, W) one pass's share of one of them
  const bool in_place = reads_in_place(k, w.type, n);
  if (in_place && panels != nullptr) {
    k.gemm_blocks_u8(w.type, K, w.row(r0), w.row_bytes, r1 - r0, panels, n, y + r0, ldy);
    return;
  }
  // Offset types: each block's offset o times the activation block's d * sum(q), summed over the
  // row after the products, from the row group's offsets (m, K / 32) and the tokens' block sums
  // gathered once (K / 32, n).
  const bool offsets = offset_type(w.type) && (kind == GemmKind::kQ8_0 || kind == GemmKind::kU8);
  const int64_t nbk = K / kQK;
  thread_local std::vector<float> row_offsets, block_sums;
  if (offsets) {
    row_offsets.resize(static_cast<size_t>(kGemmRows * nbk));
    block_sums.resize(static_cast<size_t>(n * nbk));
    for (int64_t t = 0; t < n; ++t) {
      const ActQ8* a = reinterpret_cast<const ActQ8*>(act + t * act_stride);
      for (int64_t b = 0; b < nbk; ++b) block_sums[b * n + t] = a[b].s;
    }
  }
  if (panels == nullptr) {  // pack one panel at a time into scratch
    for (int64_t t0 = 0; t0 < n; t0 += kGemmTokens) {
      const int64_t nt = std::min(kGemmTokens, n - t0);
      pack_panels(k, w.type, act + t0 * act_stride, act_stride, nt, K, scratch);
      if (in_place) {  // a short last panel too (Q6_K has no conversion pass)
        k.gemm_blocks_u8(w.type, K, w.row(r0), w.row_bytes, r1 - r0, scratch, nt, y + t0 * ldy + r0,
                         ldy);
      } else {
        gemm(k, w, act + t0 * act_stride, act_stride, nt, y + t0 * ldy, ldy, r0, r1, scratch,
             scratch);
      }
    }
    return;
  }
  // Up to kGemmPanels panels share each converted pass of the weights.
  const int64_t passes_per_group = (K + kGemmDepth - 1) / kGemmDepth;
  for (int64_t g0 = 0; g0 < n; g0 += kGemmPanels * kGemmTokens) {
    const int64_t np = std::min(kGemmPanels, (n - g0 + kGemmTokens - 1) / kGemmTokens);
    for (int64_t r = r0; r < r1; r += kGemmRows) {
      const int m = static_cast<int>(std::min(kGemmRows, r1 - r));
      for (int64_t k0 = 0; k0 < K; k0 += kGemmDepth) {
        const int64_t kn = std::min(kGemmDepth, K - k0);
        // Converted weight rows come from DRAM: each pass prefetches the bytes of the pass
        // kGemmPrefetchPasses later (in this row group or the next), so that the fetch overlaps
        // the multiply-adds; F32 rows are left to the hardware prefetcher. Written out here: in a
        // helper lambda GCC 12 dropped the prefetches (docs/kernels.md).
        const int64_t ahead = k0 / kGemmDepth + kGemmPrefetchPasses;
        const int64_t next_r = r + ahead / passes_per_group * kGemmRows;
        const int64_t next_k = ahead % passes_per_group * kGemmDepth;
        const int64_t next_bytes =
            w.type == GgmlType::F32
                ? 0
                : std::min(kGemmDepth, K - next_k) / traits.block_size * traits.type_size;
        for (int64_t i = next_r; i < std::min(next_r + kGemmRows, r1); ++i) {
          const uint8_t* src = w.row(i) + next_k / traits.block_size * traits.type_size;
          for (int64_t b = 0; b < next_bytes; b += 64) __builtin_prefetch(src + b);
        }
        const float* wp = wbuf;  // (m, kn) with row stride ldw
        int64_t ldw = kGemmDepth;
        const size_t block_offset = static_cast<size_t>(k0 / traits.block_size) * traits.type_size;
        if (kind == GemmKind::kQ4_0 || (kind == GemmKind::kU8 && w.type == GgmlType::Q4_0)) {
          for (int i = 0; i < m; ++i) {
            k.q4_0_to_nibbles(w.row(r + i) + block_offset, kn, bytes + i * kGemmDepth,
                              wscales + i * (kGemmDepth / kQK));
          }
        } else if (kind == GemmKind::kU8 && offsets) {
          for (int i = 0; i < m; ++i) {
            k.offset_to_u8(w.type, w.row(r + i) + block_offset, kn, bytes + i * kGemmDepth,
                           wscales + i * (kGemmDepth / kQK),
                           row_offsets.data() + i * nbk + k0 / kQK);
          }
        } else if (kind == GemmKind::kU8) {
          for (int i = 0; i < m; ++i) {
            k.q8_0_to_u8(w.row(r + i) + block_offset, kn, bytes + i * kGemmDepth,
                         wscales + i * (kGemmDepth / kQK));
          }
        } else if (offsets) {
          for (int i = 0; i < m; ++i) {
            k.offset_to_i16(w.type, w.row(r + i) + block_offset, kn, wide + i * kGemmDepth,
                            wscales + i * (kGemmDepth / kQK),
                            row_offsets.data() + i * nbk + k0 / kQK);
          }
        } else if (kind == GemmKind::kQ8_0) {
          for (int i = 0; i < m; ++i) {
            k.q8_0_to_i16(w.row(r + i) + block_offset, kn, wide + i * kGemmDepth,
                          wscales + i * (kGemmDepth / kQK));
          }
        } else if (w.type == GgmlType::F32) {
          wp = reinterpret_cast<const float*>(w.row(r)) + k0;
          ldw = static_cast<int64_t>(w.row_bytes / sizeof(float));
        } else {
          for (int i = 0; i < m; ++i) {
            const uint8_t* src = w.row(r + i) + block_offset;
            float* dst = wbuf + i * kGemmDepth;
            if (!k.row_to_f32(w.type, src, kn, dst)) dequantize_row(w.type, src, kn, dst);
          }
        }
        for (int64_t pi = 0; pi < np; ++pi) {
          const int64_t t0 = g0 + pi * kGemmTokens;
          const int64_t ldp = (std::min(kGemmTokens, n - t0) + 7) / 8 * 8;
          const float* panel = panels + (t0 / kGemmTokens) * K * kGemmTokens;  // (K, ldp)
          // Integer panels: quads or int16 pairs of depth (K * ldp of them), then per-block words
          const uint8_t* quads = reinterpret_cast<const uint8_t*>(panel);
          const int16_t* pairs = reinterpret_cast<const int16_t*>(panel);
          const float* block_words =
              reinterpret_cast<const float*>(quads + K * ldp * (kind == GemmKind::kQ8_0 ? 2 : 1));
          for (int64_t h = 0; W * h < ldp; ++h) {  // tokens [W h, W h + 8 v) of the panel
            const int v = static_cast<int>(std::min(W / 8, ldp / 8 - h * (W / 8)));
            float* out = k0 == 0 ? c[pi] + h * kGemmRows * W : part;
            const int64_t bw = k0 / kQK * (kind == GemmKind::kQ8_0 ? 1 : 2) * ldp + W * h;
            switch (kind) {
              case GemmKind::kU8:
                k.gemm_panel_u8(kn, bytes, kGemmDepth, wscales, kGemmDepth / kQK,
                                quads + k0 * ldp + 4 * W * h, block_words + bw, ldp, m, v, out);
                break;
              case GemmKind::kQ4_0:
                k.gemm_panel_q4_0(kn, bytes, kGemmDepth, wscales, kGemmDepth / kQK,
                                  quads + k0 * ldp + 4 * W * h, block_words + bw, ldp, m, v, out);
                break;
              case GemmKind::kQ8_0:
                k.gemm_panel_q8_0(kn, wide, kGemmDepth, wscales, kGemmDepth / kQK,
                                  pairs + k0 * ldp + 2 * W * h, block_words + bw, ldp, m, v, out);
                break;
              case GemmKind::kF32:
                k.gemm_panel(kn, wp, ldw, panel + k0 * ldp + W * h, ldp, m, v, out);
                break;
            }
            if (k0 > 0) {  // the tile's rows hold 8 v tokens each
              float* acc = c[pi] + h * kGemmRows * W;
              for (int i = 0; i < m; ++i) {
                for (int j = 0; j < 8 * v; ++j) acc[W * i + j] += part[W * i + j];
              }
            }
          }
        }
      }
      // Offset types: the chunk's corrections (m, tokens) first, over contiguous tokens
      // (vectorised), then added as the tile outputs are written.
      const int64_t nt = std::min(n, g0 + np * kGemmTokens) - g0;
      float corr[kGemmRows][kGemmPanels * kGemmTokens];
      if (offsets) {
        for (int i = 0; i < m; ++i) {
          std::fill(corr[i], corr[i] + nt, 0.0f);
          const float* oi = row_offsets.data() + i * nbk;
          for (int64_t b = 0; b < nbk; ++b) {
            const float o = oi[b];
            const float* sb = block_sums.data() + b * n + g0;
            for (int64_t t = 0; t < nt; ++t) corr[i][t] += o * sb[t];
          }
        }
      }
      for (int64_t t = g0; t < g0 + nt; ++t) {
        const int64_t tt = (t - g0) % kGemmTokens;  // the token in its panel
        const float* ct = c[(t - g0) / kGemmTokens] + tt / W * kGemmRows * W;
        for (int i = 0; i < m; ++i) {
          y[t * ldy + r + i] = ct[W * i + tt % W] + (offsets ? corr[i][t - g0] : 0.0f);
        }
      }
    }
  }
}

}  // namespace

bool uses_gemm(const KernelTable& k, GgmlType type, int64_t n) {
  if (reads_in_place(k, type, n)) return true;
  switch (type) {
    case GgmlType::F16:   // rows converted by row_to_f32 (F16C), 256 values per pass shared by
    case GgmlType::BF16:  // up to 128 tokens: faster than the tiles that convert as they multiply
      return k.gemm_panel != nullptr && k.row_to_f32 != nullptr && n >= kGemmMinTokens;
    case GgmlType::Q6_K:
      return false;
    case GgmlType::Q4_0:  // on int8 products, faster than fp32 multiply-adds
      return (k.gemm_panel_q4_0 != nullptr || k.gemm_panel_u8 != nullptr) && n >= kGemmMinTokens;
    default:
      return k.gemm_panel != nullptr && n >= kGemmMinTokens;
  }
}

size_t panel_floats(int64_t cols, int64_t n) {
  return static_cast<size_t>((n + kGemmTokens - 1) / kGemmTokens * cols * kGemmTokens);
}

void pack_panels(const KernelTable& k, GgmlType type, const uint8_t* act, size_t stride, int64_t n,
                 int64_t cols, float* panels) {
  for (int64_t t0 = 0; t0 < n; t0 += kGemmTokens) {
    const int64_t nt = std::min(kGemmTokens, n - t0);
    float* panel = panels + (t0 / kGemmTokens) * cols * kGemmTokens;
    const int64_t ldp = (nt + 7) / 8 * 8;
    const GemmKind kind = gemm_kind(k, type);
    if (kind == GemmKind::kU8) {
      // The weights' offset taken off each block's sum: Q4_0's 8, Q8_0's 128 (its values
      // flipped to unsigned); the offset types' offsets come through the block sums instead.
      const int offset = type == GgmlType::Q4_0 ? 8 : type == GgmlType::Q8_0 ? 128 : 0;
      k.pack_panel_u8(act + t0 * stride, stride, nt, cols, reinterpret_cast<uint8_t*>(panel), ldp,
                      offset);
    } else if (kind == GemmKind::kQ4_0) {
      k.pack_panel_q4_0(act + t0 * stride, stride, nt, cols, reinterpret_cast<uint8_t*>(panel),
                        ldp);
    } else if (kind == GemmKind::kQ8_0) {
      k.pack_panel_q8_0(act + t0 * stride, stride, nt, cols, reinterpret_cast<int16_t*>(panel),
                        ldp);
    } else {
      k.pack_panel(uses_q8_activations(type), act + t0 * stride, stride, nt, cols, panel, ldp);
    }
  }
}

int KernelTable::type_slot(GgmlType t) {
  switch (t) {
    case GgmlType::F32:
      return 0;
    case GgmlType::F16:
      return 1;
    case GgmlType::BF16:
      return 2;
    case GgmlType::Q8_0:
      return 3;
    case GgmlType::Q4_0:
      return 4;
    case GgmlType::Q6_K:
      return 5;
    case GgmlType::Q4_K:
      return 6;
    case GgmlType::Q5_K:
      return 7;
    case GgmlType::Q5_0:
      return 8;
    case GgmlType::Q4_1:
      return 9;
    case GgmlType::Q5_1:
      return 10;
    default:
      return -1;
  }
}

const TypeKernels& KernelTable::of(GgmlType t) const {
  static const TypeKernels none;
  const int slot = type_slot(t);
  return slot < 0 ? none : types[slot];
}

TypeKernels& KernelTable::of(GgmlType t) {
  const int slot = type_slot(t);
  if (slot < 0) throw InvalidArgument(std::string("no kernel slot for type ") + ggml_type_name(t));
  return types[slot];
}

size_t matmul_scratch_floats(int64_t cols) {
  return static_cast<size_t>(cols * kGemmTokens + kGemmRows * kGemmDepth);
}

void axpy_f16(const KernelTable& k, int64_t n, float a, const uint16_t* v, float* y) {
  if (k.axpy_f16 != nullptr) {
    k.axpy_f16(n, a, v, y);
    return;
  }
  for (int64_t i = 0; i < n; ++i) y[i] += a * fp16_to_fp32_fast(v[i]);
}

void attend_f16(const KernelTable& k, int64_t g, int64_t nj, int64_t hd, const uint16_t* keys,
                const uint16_t* values, int64_t stride, const float* q, float scale, float* acc,
                float* ml, float* scratch) {
  if (k.attend_f16 != nullptr) {
    k.attend_f16(g, nj, hd, keys, values, stride, q, scale, acc, ml, scratch);
    return;
  }
  float* s = scratch;  // (nj) one head's scores
  for (int64_t u = 0; u < g; ++u) {
    const float* qu = q + u * hd;
    float* au = acc + u * hd;
    float tile_max = -INFINITY;
    for (int64_t j = 0; j < nj; ++j) {
      const uint16_t* r = keys + j * stride;
      float sum = 0.0f;
      for (int64_t i = 0; i < hd; ++i) sum += qu[i] * fp16_to_fp32_fast(r[i]);
      s[j] = scale * sum;
      tile_max = std::max(tile_max, s[j]);
    }
    const float m_new = std::max(ml[2 * u], tile_max);
    const float c = std::exp(ml[2 * u] - m_new);  // 0 on the first tile (m = -inf)
    for (int64_t i = 0; i < hd; ++i) au[i] *= c;
    float tile_sum = 0.0f;
    for (int64_t j = 0; j < nj; ++j) {
      const float p = std::exp(s[j] - m_new);
      tile_sum += p;
      axpy_f16(k, hd, p, values + j * stride, au);
    }
    ml[2 * u] = m_new;
    ml[2 * u + 1] = c * ml[2 * u + 1] + tile_sum;
  }
}

uint64_t stream_sum(const KernelTable& k, const uint64_t* p, int64_t n) {
  if (k.stream_sum != nullptr) return k.stream_sum(p, n);
  uint64_t a = 0, b = 0;
  for (int64_t i = 0; i < n; i += 8) {
    __builtin_prefetch(p + i + 512);  // 4 KB ahead
    a += p[i] + p[i + 2] + p[i + 4] + p[i + 6];
    b += p[i + 1] + p[i + 3] + p[i + 5] + p[i + 7];
  }
  return a + b;
}

void matmul(const KernelTable& k, const MatView& w, const uint8_t* act, size_t act_stride,
            int64_t n, float* y, int64_t ldy, int64_t r0, int64_t r1, float* scratch,
            const float* panels) {
  if (uses_gemm(k, w.type, n)) {
    gemm(k, w, act, act_stride, n, y, ldy, r0, r1, scratch, panels);
    return;
  }
  const TypeKernels& tk = k.of(w.type);  // all null for types without products of their own
  const int64_t cols = w.cols;
  const TypeKernels::Dot dot = tk.dot;
  const TypeKernels::Dot4 dot4 = tk.dot4;
  const TypeKernels::Tile tile = tk.tile4x2, tile3 = tk.tile4x3;
  const TypeKernels::Matvec matvec = tk.matvec;  // decode's rows in one call
  if (n == 1 && matvec != nullptr) {
    matvec(cols, w.row(r0), w.row_bytes, r1 - r0, act, y + r0);
    return;
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
    const TypeKernels& f32 = k.of(GgmlType::F32);
    const TypeKernels::Dot d1 = dot != nullptr ? dot : f32.dot;
    const TypeKernels::Dot4 d4 = dot != nullptr ? dot4 : f32.dot4;  // null: single products only
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
