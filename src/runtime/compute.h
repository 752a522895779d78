// What the layers compute with: the kernel table, the thread pool, and the shared buffers of the
// matrix products (quantized activations, GEMM panels, per-thread scratch), sized once at load
// for the widest product and the largest block of tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/kernels.h"
#include "runtime/thread_pool.h"

namespace mambalite {

class Compute {
 public:
  // Tokens per evaluation block: every workspace holds at most kBlock tokens.
  static constexpr int64_t kBlock = 128;
  // From this many tokens, per-token work runs across the pool (prefill); below it, in the
  // calling thread (decode pays no extra barrier).
  static constexpr int64_t kParallelTokens = 4;

  Compute(const KernelTable& k, int n_threads) : k_(&k), pool_(n_threads) {}

  // Sizes the shared buffers for products with up to max_cols input values.
  void reserve(int64_t max_cols);

  const KernelTable& k() const { return *k_; }
  ThreadPool& pool() { return pool_; }
  int n_threads() const { return pool_.size(); }

  // fn(t0, t1) over token ranges covering [0, n): across the pool for n >= kParallelTokens.
  void for_tokens(int64_t n, const std::function<void(int64_t t0, int64_t t1)>& fn);

  // Activations x (n, ldx) prepared for w's products.
  struct Acts {
    const uint8_t* rows;  // the form w's dot products read (quantized into act_ if needed)
    size_t stride;        // bytes between rows
    const float* panels;  // packed into panel_ for the GEMM, or null when it does not apply
  };
  Acts prepare(const MatView& w, const float* x, int64_t ldx, int64_t n);
  // Rows [r0, r1) of y (n, ldy) = act @ w^T, on pool thread `thread` (its scratch row).
  void matmul_rows(const MatView& w, const Acts& act, int64_t n, float* y, int64_t ldy, int64_t r0,
                   int64_t r1, int thread);
  // y (n, ldy) = x (n, ldx) @ w^T over the pool.
  void matmul(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy);

 private:
  const KernelTable* k_;
  ThreadPool pool_;
  std::vector<float> scratch_;  // (threads, matmul_scratch_floats(max cols)) per-thread buffers
  std::vector<uint8_t> act_;    // (T, max cols / 32) ActQ8 blocks: quantized activations
  std::vector<float> panel_;    // (max cols, T) activations packed for the GEMM
};

}  // namespace mambalite
