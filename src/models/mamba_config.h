// Hyper-parameters of a Mamba model, read from GGUF metadata (llama.cpp's keys, DESIGN.md §3).
#pragma once

#include <cstdint>
#include <string>

#include "format/gguf.h"

namespace mambalite {

struct MambaConfig {
  std::string architecture;  // "mamba" (Mamba-1, FalconMamba) or "mamba2"
  int64_t d_model = 0;       // D
  int64_t n_layer = 0;
  int64_t d_inner = 0;  // E
  int64_t d_state = 0;  // N
  int64_t d_conv = 0;   // K
  int64_t dt_rank = 0;  // R (Mamba-1 only)
  int64_t n_head = 0;   // H (Mamba-2 only; head_dim P = E / H)
  int64_t n_group = 1;  // G (Mamba-2 only): B and C are shared by H / G heads
  int64_t n_vocab = 0;  // rows of token_embd (padding ids included)
  float norm_eps = 1e-5f;
  // FalconMamba: weightless RMSNorms on dt (before dt_proj), B and C, with eps mixer_eps.
  bool dt_b_c_rms = false;
  float mixer_eps = 1e-6f;
  bool tied_embeddings = true;

  bool is_mamba2() const { return architecture == "mamba2"; }
  int64_t head_dim() const { return n_head > 0 ? d_inner / n_head : 0; }
  // Channels of the causal conv: x for Mamba-1, x, B and C for Mamba-2.
  int64_t conv_dim() const { return is_mamba2() ? d_inner + 2 * n_group * d_state : d_inner; }
  // Rows of ssm_in: x and z for Mamba-1; z, xBC and dt for Mamba-2.
  int64_t in_proj_rows() const { return is_mamba2() ? d_inner + conv_dim() + n_head : 2 * d_inner; }

  // Reads and validates the hyper-parameters; throws FormatError with a clear message.
  static MambaConfig from_gguf(const GgufFile& file);
};

}  // namespace mambalite
