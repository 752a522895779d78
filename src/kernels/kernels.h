// Compute kernels behind a table of function pointers: each instruction set provides its own
// table, chosen at run time from the CPU's features (or MAMBALITE_ISA), and the model code stays
// the same. The scalar table is the portable reference that every other table is tested against.
//
// Conventions: a weight matrix is `rows` rows of `cols` contiguous values (ggml order: ne0 =
// cols, ne1 = rows). Activations are fp32 rows; for Q8_0/Q4_0/Q6_K weights they are first
// quantized to int8 blocks (ActQ8) and the dot products accumulate in int32, as ggml does.
// Functions that take a range [begin, end) process only that slice, so callers can split work
// across threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "format/ggml_types.h"
#include "format/quant_blocks.h"

namespace mambalite {

// A 2-D weight matrix stored in a GGUF file (not owned).
struct MatView {
  GgmlType type = GgmlType::F32;
  const uint8_t* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t row_bytes = 0;

  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
};

// The products of one weight type, as ggml's type_traits_cpu: what matmul looks up for a
// matrix. x is an fp32 row, or ActQ8 blocks for the types that take int8 activations
// (uses_q8_activations); strides are in bytes. A null entry means the table has no such kernel.
struct TypeKernels {
  // dot(n, w, x): one weight row (n values) . one activation row.
  using Dot = float (*)(int64_t n, const uint8_t* w, const void* x);
  // dot4(n, w, x, stride, out): out[i] = w . x_i for the activation rows x + i * stride, i < 4;
  // each weight block is decoded once for all four (prefill).
  using Dot4 = void (*)(int64_t n, const uint8_t* w, const uint8_t* x, size_t stride, float* out);
  // tile(n, w, row_bytes, x, stride, out): four weight rows (w + r * row_bytes) times T activation
  // rows: out[T * r + t] = dot(w_r, x_t).
  using Tile = void (*)(int64_t n, const uint8_t* w, size_t row_bytes, const uint8_t* x,
                        size_t stride, float* out);
  // matvec(n, w, row_bytes, rows, x, y): decode's product of `rows` rows with one activation row
  // in one call, y[r] = dot(w + r * row_bytes, x).
  using Matvec = void (*)(int64_t n, const uint8_t* w, size_t row_bytes, int64_t rows,
                          const void* x, float* y);

  Dot dot = nullptr;
  Dot4 dot4 = nullptr;
  // T = 2, and T = 3 (twelve accumulators per weight load; without it matmul uses T = 2 alone):
  // each activation vector is loaded once for the four rows.
  Tile tile4x2 = nullptr, tile4x3 = nullptr;
  Matvec matvec = nullptr;  // null: the row product row by row
};

// A kernel file's typed row product as a TypeKernels::Dot (inlined: each instantiation is that
// file's own, compiled with its instruction-set flags).
template <typename X, float (*F)(int64_t, const uint8_t*, const X*)>
float dot_as(int64_t n, const uint8_t* w, const void* x) {
  return F(n, w, static_cast<const X*>(x));
}

struct KernelTable {
  using Tile = TypeKernels::Tile;
  using Matvec = TypeKernels::Matvec;

  const char* name = nullptr;

  // The weight types with products of their own: F32, F16, BF16, Q8_0, Q4_0, Q6_K, Q4_K, Q5_K,
  // Q5_0, Q4_1, Q5_1 (llama-quantize's K-quant mixes use them for rows that are not whole
  // super-blocks).
  // Other types are dequantized a row at a time and take the F32 products.
  static constexpr int kTypeSlots = 11;
  static int type_slot(GgmlType t);  // -1 for the other types
  TypeKernels types[kTypeSlots];
  const TypeKernels& of(GgmlType t) const;  // all null for the other types
  TypeKernels& of(GgmlType t);              // t must have a slot

  // out (n / 32 blocks) = x (n) quantized: d = max|x| / 127, q = round-half-even(x / d).
  void (*quantize_act)(const float* x, int64_t n, ActQ8* out) = nullptr;

  // out (n) = x (n) * rsqrt(mean(x^2) + eps) * weight (n).
  void (*rms_norm)(const float* x, const float* weight, int64_t n, float eps, float* out) = nullptr;

  // out (n) = softplus(x (n) + bias (n)) as PyTorch computes it (identity above 20); out may be x.
  void (*softplus_bias)(int64_t n, const float* x, const float* bias, float* out) = nullptr;

  // Causal depthwise conv + SiLU over n tokens, channels [c0, c1) of E, and the window update.
  // window: (K-1, E) the previous K-1 inputs, oldest first (updated in place to the last K-1);
  // x: (n, ldx) new inputs; w: (K, E) with row K-1 multiplying the newest input; bias: (E);
  // out: (n, E).
  void (*conv_silu)(int64_t n, int64_t K, int64_t E, float* window, const float* x, int64_t ldx,
                    const float* w, const float* bias, float* out, int64_t c0,
                    int64_t c1) = nullptr;

  // Mamba-1 selective scan over n tokens for channels [c0, c1) of E, state s: (E, N), fp32.
  // x, dt: (n, E); A: (E, N); B, C: (n, ldbc) (N values each); D: (E); z: (n, ldz);
  // y: (n, E) = (s @ C + D * x) * silu(z).
  void (*selective_scan)(int64_t n, int64_t E, int64_t N, const float* x, const float* dt,
                         const float* A, const float* B, const float* C, int64_t ldbc,
                         const float* D, const float* z, int64_t ldz, float* s, float* y,
                         int64_t c0, int64_t c1) = nullptr;

  // Mamba-2 scan of one head over n tokens, state s: (P, N), fp32. x: (n, ldx) the head's P
  // values; dt, dA: (n) its step softplus(dt_raw + dt_bias) and exp(dt * A); B, C: (n, ldbc) its
  // group's N values; z: (n, ldz) P gate values; y: (n, ldy) = (s @ C + Dh * x) * silu(z).
  void (*head_scan)(int64_t n, int64_t P, int64_t N, const float* x, int64_t ldx, const float* dt,
                    const float* dA, const float* B, const float* C, int64_t ldbc, float Dh,
                    const float* z, int64_t ldz, float* s, float* y, int64_t ldy) = nullptr;

  // The entries below are optional: null in tables without them (the initialisers default them).
  //
  // Prefill GEMM over fp32 values, which matmul uses for n >= kGemmMinTokens tokens when the
  // table has it (null otherwise) for F32, Q8_0 and the types without direct products
  // (uses_gemm). Q8_0 rows (when the table has no gemm_panel_q8_0) meet the same int8
  // activations as in the dot products, dequantized: each product is exact, and only the fp32
  // summation order differs.
  //
  // pack_panel: p (K, ldp) = the n activation rows at act (stride bytes) transposed, p[k * ldp +
  // t] = x_t[k], zero for n <= t < ldp (ldp a multiple of 8); q8: the rows are ActQ8 blocks.
  void (*pack_panel)(bool q8, const uint8_t* act, size_t stride, int64_t n, int64_t K, float* p,
                     int64_t ldp) = nullptr;
  // out (n) = a row of Q8_0, F16 or BF16 values as fp32 (exact; for F16/BF16 n a multiple of
  // 8); false for other types (matmul then uses dequantize_row).
  bool (*row_to_f32)(GgmlType type, const uint8_t* row, int64_t n, float* out) = nullptr;
  // c (m, gemm_cols; row stride gemm_cols) = w (m rows of K floats, row stride ldw) @ p (K, ldp)
  // columns [0, 8 * v), for 1 <= m <= 6 and 1 <= v <= gemm_cols / 8: columns past 8 * v are
  // left untouched or hold values nobody reads.
  void (*gemm_panel)(int64_t K, const float* w, int64_t ldw, const float* p, int64_t ldp, int m,
                     int v, float* c) = nullptr;

  // Prefill GEMM of Q4_0 weights on int8 products, the same as the dot products' up to the fp32
  // summation order; used like gemm_panel (null in tables without it).
  //
  // pack_panel_q4_0: the n ActQ8 rows at act (stride bytes) as a panel of ldp tokens (a multiple
  // of 8; zero past n): bytes [0, K * ldp) hold the values in quads of depth, quad j of token t
  // at (j * ldp + t) * 4 (x_t[4j .. 4j + 4)); then floats (K / 32, 2, ldp): per block, each
  // token's d, then -8 * its s (ActQ8).
  void (*pack_panel_q4_0)(const uint8_t* act, size_t stride, int64_t n, int64_t K, uint8_t* p,
                          int64_t ldp) = nullptr;
  // q (n) = a Q4_0 row's unsigned nibbles in value order (x = (q - 8) * d), d (n / 32) its
  // scales as fp32.
  void (*q4_0_to_nibbles)(const uint8_t* row, int64_t n, uint8_t* q, float* d) = nullptr;
  // c (m, 16; row stride 16) = K values (a multiple of 32) of m rows (nibbles w, row stride ldw;
  // scales dw, row stride ldd) @ a panel's tokens [0, 8 * v) from its quad pq and block scales
  // ps (both at the first value of the K), for 1 <= m <= 6 and v in {1, 2}.
  void (*gemm_panel_q4_0)(int64_t K, const uint8_t* w, int64_t ldw, const float* dw, int64_t ldd,
                          const uint8_t* pq, const float* ps, int64_t ldp, int m, int v,
                          float* c) = nullptr;

  // Prefill GEMM of Q8_0 weights on int16 products (exact int32 block sums, as in the dot
  // products), used like gemm_panel_q4_0 in place of the fp32 GEMM when the table has it.
  //
  // pack_panel_q8_0: the n ActQ8 rows at act as a panel of ldp tokens (a multiple of 8; zero past
  // n): int16 values [0, K * ldp) in pairs of depth, pair j of token t at (j * ldp + t) * 2
  // (x_t[2j], x_t[2j + 1]); then floats (K / 32, ldp): each block's d per token.
  void (*pack_panel_q8_0)(const uint8_t* act, size_t stride, int64_t n, int64_t K, int16_t* p,
                          int64_t ldp) = nullptr;
  // q (n) = a Q8_0 row's values as int16, d (n / 32) its scales as fp32.
  void (*q8_0_to_i16)(const uint8_t* row, int64_t n, int16_t* q, float* d) = nullptr;
  // Rows of the types with w = d * q + o per block (Q4_K, Q5_K, Q5_0, Q4_1, Q5_1) for the same
  // GEMM: q as int16, d and o per block (kquants_generic.h's to_offset, compiled per ISA).
  void (*offset_to_i16)(GgmlType type, const uint8_t* row, int64_t n, int16_t* q, float* d,
                        float* o) = nullptr;
  // As gemm_panel_q4_0, for the int16 values w (row stride ldw) and a panel's pairs pa.
  void (*gemm_panel_q8_0)(int64_t K, const int16_t* w, int64_t ldw, const float* dw, int64_t ldd,
                          const int16_t* pa, const float* ps, int64_t ldp, int m, int v,
                          float* c) = nullptr;

  // Prefill GEMM of Q4_0 and Q8_0 weights as unsigned bytes (Q4_0's nibbles; Q8_0's values + 128)
  // times the signed int8 activations, summed in int32 (AVX-512 VNNI's vpdpbusd), exactly: each
  // block's sum starts from the panel's correction -offset * sum(x) (offset 8 or 128), so the
  // fold d_w * d_x * sum sees the same integers as the dot products. Used in place of the
  // entries above when the table has gemm_panel_u8 (and, for Q8_0, q8_0_to_u8).
  //
  // pack_panel_u8: the n ActQ8 rows at act as a panel of ldp tokens (a multiple of 8; zero past
  // n): bytes [0, K * ldp) hold the values in quads of depth as pack_panel_q4_0's (for ldp 8 the
  // table may use octets instead: groups of 8 values side by side, so that depth k of every token
  // still lies in bytes [k * ldp, (k + 8) * ldp)), then per block (K / 32, 2, ldp) 32-bit words:
  // each token's d (float), then -offset * sum(x) (int32) of its int8 values.
  void (*pack_panel_u8)(const uint8_t* act, size_t stride, int64_t n, int64_t K, uint8_t* p,
                        int64_t ldp, int offset) = nullptr;
  // q (n) = a Q8_0 row's values + 128 as bytes, d (n / 32) its scales as fp32.
  void (*q8_0_to_u8)(const uint8_t* row, int64_t n, uint8_t* q, float* d) = nullptr;
  // As offset_to_i16, with q as bytes for this GEMM (panels packed with offset 0: the blocks'
  // offsets are added through the activations' block sums, as in the int16 GEMM).
  void (*offset_to_u8)(GgmlType type, const uint8_t* row, int64_t n, uint8_t* q, float* d,
                       float* o) = nullptr;
  // As gemm_panel_q4_0, for unsigned weight bytes w and a panel of pack_panel_u8 (quads pq,
  // block words ps), 1 <= v <= gemm_cols / 8.
  void (*gemm_panel_u8)(int64_t K, const uint8_t* w, int64_t ldw, const float* dw, int64_t ldd,
                        const uint8_t* pq, const float* ps, int64_t ldp, int m, int v,
                        float* c) = nullptr;

  // gemm_panel_u8's products on weight blocks read in place, without its conversion pass: y (n
  // tokens, row stride ldy) columns [0, rows) = rows of Q8_0, Q4_0, Q4_K, Q5_K or Q6_K (`type`)
  // at w (row stride ldw bytes) @ the n tokens' panels as pack_panels packs them (the K-quants'
  // with offset 0); matmul decides when (reads_in_place). Null in tables without it.
  void (*gemm_blocks_u8)(GgmlType type, int64_t K, const uint8_t* w, size_t ldw, int64_t rows,
                         const float* panels, int64_t n, float* y, int64_t ldy) = nullptr;

  // Tokens per call of the GEMM tiles above (the columns of their output c): 16, two vectors of
  // 8 floats (AVX2), or 32, two of 16 (AVX-512).
  int gemm_cols = 16;

  // Sum of the 64-bit words p[0, n) (p 64-byte aligned, n a multiple of 8) with the ISA's widest
  // loads and a 4 KB-ahead prefetch: the probe of the machine's read bandwidth
  // (Model::read_bandwidth), the roofline of decode. Null: stream_sum's portable loop.
  uint64_t (*stream_sum)(const uint64_t* p, int64_t n) = nullptr;

  // Attention over an F16 KV cache: y (n) += a * v (n), the p.V accumulation of one cache row
  // (q.K is dot_f16). Null: axpy_f16's portable loop.
  void (*axpy_f16)(int64_t n, float a, const uint16_t* v, float* y) = nullptr;
  // One tile of attention over an F16 KV cache for the g query heads that share a kv head: nj
  // positions, row j's hd values at k + j * stride and v + j * stride (stride in values). For
  // each head u, with scores s_j = scale * (q_u . k_j) and its running max and sum ml_u = {m, l}:
  //   m' = max(m, max_j s_j), c = e^(m - m'),
  //   acc_u = c acc_u + sum_j e^(s_j - m') v_j,  ml_u = {m', c l + sum_j e^(s_j - m')}.
  // q, acc (g, hd); ml (g, 2); scratch: nj * (hd + g) + g floats. The tile's K and V rows are
  // converted once for all g heads (decode at long context is this loop). Null: the portable
  // attend_f16 below.
  void (*attend_f16)(int64_t g, int64_t nj, int64_t hd, const uint16_t* k, const uint16_t* v,
                     int64_t stride, const float* q, float scale, float* acc, float* ml,
                     float* scratch) = nullptr;
};

// A table's matvec from its row product: the rows one after another with the product inlined
// (flatten), without matmul's per-row dispatch (docs/kernels.md). Dot is a kernel file's internal
// function, so every instantiation is that file's own, compiled with its instruction-set flags.
template <typename X, float (*Dot)(int64_t, const uint8_t*, const X*)>
__attribute__((flatten)) void matvec_rows(int64_t n, const uint8_t* w, size_t row_bytes,
                                          int64_t rows, const void* x, float* y) {
  const X* v = static_cast<const X*>(x);
  for (int64_t r = 0; r < rows; ++r) y[r] = Dot(n, w + r * row_bytes, v);
}

// k.stream_sum(p, n), or a portable loop when the table has none.
uint64_t stream_sum(const KernelTable& k, const uint64_t* p, int64_t n);

// k.axpy_f16(n, a, v, y), or a portable loop when the table has none.
void axpy_f16(const KernelTable& k, int64_t n, float a, const uint16_t* v, float* y);
// k.attend_f16(...), or a portable loop (std::exp, axpy_f16) when the table has none.
void attend_f16(const KernelTable& k, int64_t g, int64_t nj, int64_t hd, const uint16_t* keys,
                const uint16_t* values, int64_t stride, const float* q, float scale, float* acc,
                float* ml, float* scratch);

// The instruction sets built into this binary that the CPU supports, best first ("scalar" last).
std::vector<std::string> available_isas();

// The table for `isa` ("scalar", "avx2", ...); throws InvalidArgument when it is unknown, not
// built, or not supported by this CPU.
const KernelTable& kernels_for(const std::string& isa);

// The best table for this CPU, or the one named by the MAMBALITE_ISA environment variable.
const KernelTable& select_kernels();

// Whether activations for weights of `type` are int8 blocks (true) or fp32 rows (false).
bool uses_q8_activations(GgmlType type);

// Bytes of one prepared activation row of `cols` values for weights of `type`.
size_t activation_row_bytes(GgmlType type, int64_t cols);

// Prepares n activation rows x (n, ldx) for weights of `type`: quantizes them into `out` (rows of
// activation_row_bytes) and returns out, or returns x itself (row stride ldx floats) when the
// type reads fp32. *stride receives the row stride in bytes. A row is cols / 32 ActQ8 blocks,
// followed for Q4_0 by an ActQ4Group per full 8 blocks and then an ActQ4Quads per full 8 blocks,
// for Q8_0 by an ActQ8Group per full 8 blocks, and for Q6_K by an ActQ6Offset per block and then
// an ActQ6Group per 8 blocks (quant_blocks.h), which kernels may read instead of recomputing them
// for every weight row.
const uint8_t* prepare_activations(const KernelTable& k, GgmlType type, const float* x, int64_t ldx,
                                   int64_t n, int64_t cols, uint8_t* out, size_t* stride);

// Tokens from which matmul uses a table's prefill GEMM.
constexpr int64_t kGemmMinTokens = 8;

// Whether matmul of n tokens with weights of `type` runs on k's GEMM (and so reads packed panels).
bool uses_gemm(const KernelTable& k, GgmlType type, int64_t n);

// Floats of the packed panels of n tokens of `cols` values (one (cols, 32) panel per 32 tokens;
// Q4_0 and u8 panels use 40 of its 128 bytes per value, Q8_0's int16 panels 68).
size_t panel_floats(int64_t cols, int64_t n);

// panels = n prepared activation rows (act, stride bytes) packed for the GEMM, 32 tokens a panel.
void pack_panels(const KernelTable& k, GgmlType type, const uint8_t* act, size_t stride, int64_t n,
                 int64_t cols, float* panels);

// Floats of per-thread scratch that matmul needs for rows of `cols` values.
size_t matmul_scratch_floats(int64_t cols);

// y[t * ldy + r] = dot(w row r, activation row t) for t in [0, n), r in [r0, r1).
// scratch: matmul_scratch_floats(w.cols) floats private to the calling thread (rows of types
// without a direct dot product are dequantized into it, and the GEMM converts weights there).
// panels: the activations packed by pack_panels, or null to have matmul pack them into scratch
// (callers that split rows across threads pack once and share them).
void matmul(const KernelTable& k, const MatView& w, const uint8_t* act, size_t act_stride,
            int64_t n, float* y, int64_t ldy, int64_t r0, int64_t r1, float* scratch,
            const float* panels = nullptr);

}  // namespace mambalite
