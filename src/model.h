// A model loaded from a GGUF file: its architecture's plan of blocks (models/), each block's
// weights bound in place from the memory mapping (layers/), and the evaluation that advances a
// State through them. Model keeps loading and orchestration only.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "kernels/kernels.h"
#include "layers/block.h"
#include "models/config.h"
#include "runtime/compute.h"
#include "runtime/device_engine.h"
#include "runtime/state.h"

namespace mambalite {

enum class LogitsMode { kNone, kLast, kAll };

struct LoadOptions {
  int n_threads = 0;            // <= 0: the number of cores
  std::string device = "cpu";   // "cpu", or "cuda" / "cuda:N"
  int64_t n_ctx = 0;            // KV positions per state; 0: the model's, capped at kMaxDefaultCtx
  std::string kv_type = "f16";  // "f16", "f32" or "q8_0"
  // The weights mapped or read into (huge-page) memory; kAuto maps for the GPU, which copies them.
  FileMode file_mode = FileMode::kAuto;
  static constexpr int64_t kMaxDefaultCtx = 8192;
};

class Model {
 public:
  // Opens, validates and binds `path`.
  Model(const std::string& path, const LoadOptions& options);
  ~Model();

  const ModelConfig& config() const { return config_; }
  const GgufFile& file() const { return file_; }
  StateShape state_shape() const { return StateShape::of(config_, n_ctx_, kv_type_); }
  int64_t n_ctx() const { return n_ctx_; }
  int n_threads() const { return cx_.n_threads(); }
  const KernelTable& kernel_table() const { return cx_.k(); }
  // "cpu", or the device engine's name ("cuda:0 (NVIDIA H100 80GB HBM3)").
  std::string device() const { return gpu_ ? gpu_->name() : "cpu"; }

  // The blocks in evaluation order, with their pre-norm weights (D), for device backends.
  const std::vector<std::unique_ptr<Block>>& blocks() const { return blocks_; }
  const std::vector<std::vector<float>>& block_norms() const { return norms_; }
  const MatView& token_embd() const { return token_embd_; }
  const MatView& output() const { return output_; }
  const std::vector<float>& output_norm() const { return output_norm_; }

  // Throws InvalidArgument when `state` belongs to a model of another shape.
  void check_state(const State& state) const;
  // Throws InvalidArgument when an id is outside [0, n_vocab).
  void check_ids(const int32_t* ids, int64_t n) const;
  // A saved state (State::to_bytes) restored for this model (its n_ctx).
  State state_from_bytes(std::string_view bytes) const;

  // Advances `state` by ids (n >= 1). logits: (n, n_vocab) for kAll, (n_vocab) for kLast, unused
  // for kNone. Validates ids, state and KV capacity first: on error the state is unchanged.
  void eval(State& state, const int32_t* ids, int64_t n, LogitsMode mode, float* logits);

  // A ragged batch: advances each states[i] by its ids[i] (lengths and positions may differ) in
  // passes whose matrix products run over the rows of all its sequences at once, so that N
  // sequences cost about one read of the weights per pass; the recurrences and attention run
  // per sequence, and no padding enters any state. logits: (N, n_vocab), each sequence's last
  // position. Validates every input first: on error no state has changed.
  void eval_batch(const std::vector<State*>& states, const std::vector<std::vector<int32_t>>& ids,
                  float* logits);

  // This machine's streaming read rate, bytes per second: the median of `repeats` passes of the
  // model's threads over a fresh buffer of n_bytes, with the widest loads of the CPU (the best
  // table's stream_sum, whatever MAMBALITE_ISA selects) and the decode kernels' prefetch: the
  // roofline that decode's GB/s is measured against.
  double read_bandwidth(size_t n_bytes, int repeats);

 private:
  void bind_blocks();
  void run_block(const Seqs& seqs, const int32_t* ids, int64_t n);
  // Throws InvalidArgument when n more tokens would overflow the state's KV cache.
  void check_capacity(const State& state, int64_t n) const;
  void compute_logits(const float* resid, int64_t n, float* logits);

  GgufFile file_;
  ModelConfig config_;
  Compute cx_;
  int64_t n_ctx_ = 0;
  GgmlType kv_type_ = GgmlType::F16;
  std::vector<std::unique_ptr<Block>> blocks_;
  std::vector<std::vector<float>> norms_;  // (D) each block's pre-norm
  MatView token_embd_;                     // (V, D)
  MatView output_;                         // (V, D), token_embd_ when tied
  std::vector<float> output_norm_;         // (D)

  // Workspace for a block of up to Compute::kBlock tokens (constant size, whatever the input).
  std::vector<float> resid_;  // (T, D) residual stream, fp32
  std::vector<float> hn_;     // (T, D) normalised input
  std::vector<float> out_;    // (T, D) a block's output
  std::vector<float> par_;    // (T, D) a parallel block's output (BlockSpec::parallel)
  std::vector<float> ws_;     // the largest block workspace

  std::unique_ptr<DeviceEngine> gpu_;  // set when the model runs on a GPU
  std::mutex mutex_;  // one evaluation at a time: the workspace and pool are shared
};

}  // namespace mambalite
