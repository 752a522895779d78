// A Mamba-1, FalconMamba or Mamba-2 model loaded from a GGUF file: weights are used in place from
// the memory mapping (small per-channel tensors are converted to fp32 copies), and evaluation
// advances a State.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/device_engine.h"
#include "format/gguf.h"
#include "kernels/kernels.h"
#include "models/mamba_config.h"
#include "runtime/state.h"
#include "runtime/thread_pool.h"

namespace mambalite {

// One layer's weights. Mamba-1 shapes first; Mamba-2 differences in brackets (C = conv_dim).
struct LayerWeights {
  std::vector<float> attn_norm;  // (D)
  MatView in_proj;               // (2E, D): x then z  [(E + C + H, D): z, xBC, dt]
  std::vector<float> conv_w;     // (K, E), transposed from the file's (E, K)  [(K, C)]
  std::vector<float> conv_b;     // (E)  [(C)]
  MatView x_proj;                // (R + 2N, E): dt, B, C  [unused]
  MatView dt_proj;               // (E, R)  [unused]
  std::vector<float> dt_b;       // (E)  [(H)]
  std::vector<float> A;          // (E, N) = -exp(A_log)  [(H)]
  std::vector<float> D;          // (E)  [(H)]
  std::vector<float> ssm_norm;   // [(E): gated RMSNorm weight, normalised per group of E / G]
  MatView out_proj;              // (D, E)
};

enum class LogitsMode { kNone, kLast, kAll };

class Model {
 public:
  // Opens, validates and binds `path`; n_threads <= 0 picks the number of cores. device: "cpu",
  // or "cuda" / "cuda:N" to upload the weights to that GPU and evaluate there.
  Model(const std::string& path, int n_threads, const std::string& device = "cpu");
  ~Model();

  const MambaConfig& config() const { return config_; }
  const GgufFile& file() const { return file_; }
  StateShape state_shape() const { return StateShape::of(config_); }
  int n_threads() const { return pool_.size(); }
  const KernelTable& kernel_table() const { return *k_; }
  // "cpu", or the device engine's name ("cuda:0 (NVIDIA H100 80GB HBM3)").
  std::string device() const { return gpu_ ? gpu_->name() : "cpu"; }

  // The bound weights (used in place from the mapping), for device backends to upload.
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const MatView& token_embd() const { return token_embd_; }
  const MatView& output() const { return output_; }
  const std::vector<float>& output_norm() const { return output_norm_; }

  // Throws InvalidArgument when `state` belongs to a model of another shape.
  void check_state(const State& state) const;
  // Throws InvalidArgument when an id is outside [0, n_vocab).
  void check_ids(const int32_t* ids, int64_t n) const;

  // Advances `state` by ids (n >= 1). logits: (n, n_vocab) for kAll, (n_vocab) for kLast, unused
  // for kNone. Validates ids and state first: on error the state is unchanged.
  void eval(State& state, const int32_t* ids, int64_t n, LogitsMode mode, float* logits);

  // This machine's streaming read rate, bytes per second: the median of `repeats` passes of the
  // model's threads over a fresh buffer of n_bytes, with the widest loads of the CPU (the best
  // table's stream_sum, whatever MAMBALITE_ISA selects) and the decode kernels' prefetch: the
  // roofline that decode's GB/s is measured against.
  double read_bandwidth(size_t n_bytes, int repeats);

 private:
  // ordinal: the CUDA device, or -1 for the CPU (parsed from the device name first, so that a
  // bad name is reported before the file is opened).
  Model(const std::string& path, int n_threads, int ordinal);
  void bind_weights();
  void run_block(State& state, const int32_t* ids, int64_t n);
  // out_ (n, D) = mixer of layer l applied to hn_ (model_layers.cpp).
  void mamba1_layer(State& state, int64_t l, int64_t n);
  void mamba2_layer(State& state, int64_t l, int64_t n);
  void compute_logits(const float* resid, int64_t n, float* logits);
  // fn(t0, t1) over token ranges covering [0, n): across the pool for n >= kParallelTokens
  // (prefill), in the calling thread below that (decode pays no extra barrier).
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
  void parallel_matmul(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y,
                       int64_t ldy);

  GgufFile file_;
  MambaConfig config_;
  const KernelTable* k_;
  std::vector<LayerWeights> layers_;
  MatView token_embd_;              // (V, D)
  MatView output_;                  // (V, D), token_embd_ when tied
  std::vector<float> output_norm_;  // (D)

  // Workspace for a block of up to kBlock tokens (constant size, whatever the input length).
  static constexpr int64_t kBlock = 128;
  static constexpr int64_t kParallelTokens = 4;
  std::vector<float> resid_;    // (T, D) residual stream, fp32
  std::vector<float> hn_;       // (T, D) normalised input
  std::vector<float> xz_;       // (T, in_proj rows): x, z  [z, xBC, dt]
  std::vector<float> xc_;       // (T, conv_dim) conv + SiLU output
  std::vector<float> dbc_;      // (T, R + 2N)  [unused]
  std::vector<float> dt_;       // (T, E) softplus step  [(T, H)]
  std::vector<float> ones_;     // (max(R, N)) weight of FalconMamba's weightless norms
  std::vector<float> y_;        // (T, E)
  std::vector<float> out_;      // (T, D)
  std::vector<float> scratch_;  // (threads, matmul_scratch_floats(max cols)) per-thread buffers
  std::vector<uint8_t> act_;    // (T, max cols / 32) ActQ8 blocks: quantized activations
  std::vector<float> panel_;    // (max cols, T) activations packed for the GEMM

  ThreadPool pool_;
  std::unique_ptr<DeviceEngine> gpu_;  // set when the model runs on a GPU
  std::mutex mutex_;  // one evaluation at a time: the workspace and pool are shared
};

}  // namespace mambalite
