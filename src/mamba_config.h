// Hyper-parameters of a Mamba model, read from GGUF metadata (llama.cpp's keys, DESIGN.md §3).
#pragma once

#include <cstdint>
#include <string>

#include "gguf.h"

namespace mambalite {

struct MambaConfig {
  std::string architecture;  // "mamba"
  int64_t d_model = 0;       // D
  int64_t n_layer = 0;
  int64_t d_inner = 0;  // E
  int64_t d_state = 0;  // N
  int64_t d_conv = 0;   // K
  int64_t dt_rank = 0;  // R
  int64_t n_vocab = 0;  // rows of token_embd (padding ids included)
  float norm_eps = 1e-5f;
  bool tied_embeddings = true;

  // Reads and validates the hyper-parameters; throws FormatError with a clear message.
  static MambaConfig from_gguf(const GgufFile& file);
};

}  // namespace mambalite
