// The recurrent state of one sequence: per layer the conv window and the SSM state, in fp32.
// Its size depends only on the model's shape, never on the number of tokens seen.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mamba_config.h"

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

class State {
 public:
  explicit State(const StateShape& shape);

  const StateShape& shape() const { return shape_; }
  int64_t n_tokens() const { return n_tokens_; }
  void add_tokens(int64_t n) { n_tokens_ += n; }

  float* conv(int64_t layer) { return conv_.data() + layer * conv_stride(); }  // (K-1, conv_dim)
  float* ssm(int64_t layer) { return ssm_.data() + layer * ssm_stride(); }     // (E, N)
  size_t n_bytes() const { return (conv_.size() + ssm_.size()) * sizeof(float); }

  // Versioned little-endian serialisation; from_bytes validates everything.
  std::string to_bytes() const;
  static State from_bytes(std::string_view bytes);

 private:
  int64_t conv_stride() const { return (shape_.d_conv - 1) * shape_.conv_dim; }
  int64_t ssm_stride() const { return shape_.d_inner * shape_.d_state; }

  StateShape shape_;
  int64_t n_tokens_ = 0;
  std::vector<float> conv_;  // (n_layer, K-1, conv_dim)
  std::vector<float> ssm_;   // (n_layer, E, N); Mamba-2: (n_layer, H, P, N)
};

}  // namespace mambalite
