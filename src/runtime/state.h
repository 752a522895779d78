// The recurrent state of one sequence: per layer the conv window and the SSM state, in fp32.
// Its size depends only on the model's shape, never on the number of tokens seen.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "models/mamba_config.h"

namespace mambalite {

// What a state must agree with to be used by a model.
struct StateShape {
  std::string architecture;
  int64_t n_layer = 0;
  int64_t d_inner = 0;
  int64_t d_state = 0;
  int64_t d_conv = 0;
  int64_t conv_dim = 0;  // channels of the conv window: E (Mamba-1) or E + 2GN (Mamba-2)

  static StateShape of(const MambaConfig& c);
  bool operator==(const StateShape& o) const;
  std::string describe() const;  // "mamba, 24 layers, d_inner 1536, d_state 16, d_conv 4, ..."
};

// A copy of a state's values in another memory (a GPU's), made and kept by the backend that
// evaluates the state there. The state's host vectors and its mirror are synchronised lazily.
class StateMirror {
 public:
  virtual ~StateMirror() = default;
  // Which memory this copy lives in (for the CUDA backend, the device ordinal).
  virtual int device() const = 0;
  // The whole state, host -> mirror and mirror -> host: conv (n_layer, K-1, conv_dim) and ssm
  // (n_layer, E, N), in the host layout.
  virtual void upload(const float* conv, const float* ssm) = 0;
  virtual void download(float* conv, float* ssm) const = 0;
};

class State {
 public:
  explicit State(const StateShape& shape);
  // Copies take the current values (downloaded from a mirror if it holds them), never the mirror.
  State(const State& o);
  State& operator=(const State& o);
  State(State&&) noexcept = default;
  State& operator=(State&&) noexcept = default;

  const StateShape& shape() const { return shape_; }
  int64_t n_tokens() const { return n_tokens_; }
  void add_tokens(int64_t n) { n_tokens_ += n; }

  // Host values of a layer, for the CPU engine: call use_host() first.
  float* conv(int64_t layer) { return conv_.data() + layer * conv_stride(); }  // (K-1, conv_dim)
  float* ssm(int64_t layer) { return ssm_.data() + layer * ssm_stride(); }     // (E, N)
  size_t n_bytes() const { return (conv_.size() + ssm_.size()) * sizeof(float); }

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

  // Versioned little-endian serialisation; from_bytes validates everything.
  std::string to_bytes() const;
  static State from_bytes(std::string_view bytes);

 private:
  int64_t conv_stride() const { return (shape_.d_conv - 1) * shape_.conv_dim; }
  int64_t ssm_stride() const { return shape_.d_inner * shape_.d_state; }

  void sync_host() const;  // downloads from the mirror when the host values are stale

  StateShape shape_;
  int64_t n_tokens_ = 0;
  mutable std::vector<float> conv_;  // (n_layer, K-1, conv_dim)
  mutable std::vector<float> ssm_;   // (n_layer, E, N); Mamba-2: (n_layer, H, P, N)
  std::unique_ptr<StateMirror> mirror_;
  mutable bool host_valid_ = true;  // false: the mirror holds newer values
  bool mirror_valid_ = false;       // false: the host holds newer values (or there is no mirror)
};

}  // namespace mambalite
