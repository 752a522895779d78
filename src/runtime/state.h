// The state of one sequence, a list of per-block caches: for each Mamba block its conv window and
// SSM state (fp32, a size fixed by the model's shape), for each attention block a KV cache of
// n_ctx positions allocated once (F16 by default, F32 or Q8_0 on request), so memory does not
// change while generating.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "format/ggml_types.h"
#include "models/config.h"
#include "runtime/huge_pages.h"
#include "runtime/zeroed_buffer.h"

namespace mambalite {

// What a state must agree with to be used by a model.
struct StateShape {
  std::string architecture;
  int64_t n_ssm_layers = 0;  // Mamba blocks, each with a conv window and an SSM state
  int64_t d_inner = 0;
  int64_t d_state = 0;
  int64_t d_conv = 0;
  int64_t conv_dim = 0;            // channels of the conv window: E (Mamba-1) or E + 2GN (Mamba-2)
  std::vector<int64_t> kv_widths;  // per attention block: n_head_kv * head_dim
  int64_t n_ctx = 0;               // KV positions (0 without attention blocks)
  GgmlType kv_type = GgmlType::F16;

  // n_ctx and kv_type apply only to models with attention blocks.
  static StateShape of(const ModelConfig& c, int64_t n_ctx, GgmlType kv_type);
  bool operator==(const StateShape& o) const;
  // Equal apart from n_ctx (a saved state restores into a model loaded with another n_ctx).
  bool same_layout(const StateShape& o) const;
  std::string describe() const;  // "mamba, 24 Mamba layers, d_inner 1536, ..."
  size_t kv_row_bytes(size_t slot) const;
  size_t ssm_bytes() const;           // conv windows and SSM states
  size_t kv_bytes_per_token() const;  // K and V of every attention block, one position
};

// A copy of a state's values in another memory (a GPU's), made and kept by the backend that
// evaluates the state there. The state's host vectors and its mirror are synchronised lazily.
class StateMirror {
 public:
  virtual ~StateMirror() = default;
  // Which memory this copy lives in (for the CUDA backend, the device ordinal).
  virtual int device() const = 0;
  // The whole state, host -> mirror and mirror -> host: conv (n_ssm_layers, K-1, conv_dim) and
  // ssm (n_ssm_layers, E, N), in the host layout.
  virtual void upload(const float* conv, const float* ssm) = 0;
  virtual void download(float* conv, float* ssm) const = 0;
};

class State {
 public:
  // populate_kv false: the KV caches take memory as they fill (a state restored from untrusted
  // bytes without its model; zeroed_buffer.h).
  explicit State(const StateShape& shape, bool populate_kv = true);
  // Copies take the current values (downloaded from a mirror if it holds them), never the mirror.
  State(const State& o);
  State& operator=(const State& o);
  State(State&&) noexcept = default;
  State& operator=(State&&) noexcept = default;

  const StateShape& shape() const { return shape_; }
  int64_t n_tokens() const { return n_tokens_; }
  void add_tokens(int64_t n) { n_tokens_ += n; }

  // Host values of Mamba block `slot`, for the CPU engine: call use_host() first.
  float* conv(int64_t slot) { return conv_.data() + slot * conv_stride(); }  // (K-1, conv_dim)
  float* ssm(int64_t slot) { return ssm_.data() + slot * ssm_stride(); }     // (E, N)
  // Attention block `slot`'s cache: K and V rows (n_ctx, kv_row_bytes) in kv_type.
  uint8_t* keys(size_t slot) { return kv_[slot].data(); }
  uint8_t* values(size_t slot) { return kv_[slot].data() + kv_half_bytes(slot); }
  size_t n_bytes() const;
  size_t ssm_bytes() const { return (conv_.size() + ssm_.size()) * sizeof(float); }
  size_t kv_bytes() const;  // reserved for n_ctx positions (memory is committed as they fill)

  // The CPU engine is about to read and change the host values: brings them up to date from the
  // mirror if it holds newer ones, and marks the mirror stale.
  void use_host();
  // A device backend is about to evaluate on `device`: returns the mirror there, up to date, or
  // nullptr when there is none yet (the backend then calls set_mirror, which uploads). Afterwards
  // the backend calls mirror_changed(): the host values are stale until the next use_host().
  StateMirror* use_mirror(int device);
  void set_mirror(std::unique_ptr<StateMirror> mirror);
  void mirror_changed() { host_valid_ = false; }
  bool on_device() const { return mirror_ != nullptr; }

  // Versioned little-endian serialisation (format 3: the KV caches' used positions only);
  // from_bytes validates everything and reads formats 1 to 3. With `want`, the bytes must fit
  // that shape (n_ctx may differ when the tokens fit) and the state gets want's n_ctx.
  std::string to_bytes() const;
  static State from_bytes(std::string_view bytes, const StateShape* want = nullptr);

 private:
  int64_t conv_stride() const { return (shape_.d_conv - 1) * shape_.conv_dim; }
  int64_t ssm_stride() const { return shape_.d_inner * shape_.d_state; }
  size_t kv_half_bytes(size_t slot) const {
    return shape_.kv_row_bytes(slot) * static_cast<size_t>(shape_.n_ctx);
  }

  void sync_host() const;  // downloads from the mirror when the host values are stale

  StateShape shape_;
  int64_t n_tokens_ = 0;
  mutable std::vector<float> conv_;  // (n_ssm_layers, K-1, conv_dim)
  // (n_ssm_layers, E, N); Mamba-2: (n_ssm_layers, H, P, N)
  mutable std::vector<float, HugePageAllocator<float>> ssm_;
  std::vector<ZeroedBuffer> kv_;  // per attention block: K (n_ctx rows), then V
  std::unique_ptr<StateMirror> mirror_;
  mutable bool host_valid_ = true;  // false: the mirror holds newer values
  bool mirror_valid_ = false;       // false: the host holds newer values (or there is no mirror)
};

}  // namespace mambalite
