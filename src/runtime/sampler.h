// Token sampling: repetition penalty, temperature, top-k, top-p, min-p, with a seeded,
// platform-independent RNG (xoshiro256**). Temperature 0 is greedy (ties go to the lowest id).
// Banned ids (vocabulary padding) are never returned.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace mambalite {

struct SamplerParams {
  double temperature = 0.8;
  int64_t top_k = 40;               // 0 disables
  double top_p = 0.95;              // 1 disables
  double min_p = 0.0;               // 0 disables
  double repetition_penalty = 1.0;  // 1 disables (CTRL-style, as in transformers)
  uint64_t seed = 0;

  // Throws InvalidArgument naming the bad parameter and its allowed range.
  void validate() const;
};

class Sampler {
 public:
  Sampler(const SamplerParams& params, int64_t n_vocab, const std::vector<int32_t>& banned_ids);

  // Records a token as seen (for the repetition penalty).
  void accept(int32_t id);
  // Picks the next id from logits (n_vocab).
  int32_t sample(const float* logits);

  const SamplerParams& params() const { return params_; }

 private:
  uint64_t next_u64();
  double next_uniform();  // in [0, 1)

  SamplerParams params_;
  int64_t n_vocab_;
  std::vector<uint8_t> banned_;  // (n_vocab)
  std::vector<uint8_t> seen_;    // (n_vocab)
  uint64_t rng_[4];
  std::vector<std::pair<float, int32_t>> cand_;  // scratch (n_vocab)
  std::vector<double> probs_;                    // scratch
};

}  // namespace mambalite
