// Token sampling: logit bias, repetition/presence/frequency penalties, an allowed-token mask
// (constrained output), temperature, top-k, top-p, min-p, with a seeded, platform-independent
// RNG (xoshiro256**). Temperature 0 is greedy (ties go to the lowest id). Banned ids (vocabulary
// padding) are never returned. Optionally records the log-probabilities of each pick.
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
  // OpenAI's penalties, over the generated tokens only (as vLLM counts them): the logit of a
  // token generated c times drops by frequency_penalty * c + presence_penalty * (c > 0).
  double presence_penalty = 0.0;                      // [-2, 2]
  double frequency_penalty = 0.0;                     // [-2, 2]
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logits, in [-100, 100]
  int64_t n_logprobs = -1;  // -1: none; k >= 0: the pick's log-probability and the top k
  uint64_t seed = 0;

  // Throws InvalidArgument naming the bad parameter and its allowed range.
  void validate() const;
};

class Sampler {
 public:
  Sampler(const SamplerParams& params, int64_t n_vocab, const std::vector<int32_t>& banned_ids);

  // Records a token as seen (for the repetition penalty); `generated` ones also count for the
  // presence and frequency penalties.
  void accept(int32_t id, bool generated = false);
  // Limits the next picks to the ids whose bit is set in `bits` ((n_vocab + 31) / 32 words, bit
  // i % 32 of word i / 32); an empty vector lifts the limit.
  void set_allowed(const std::vector<uint32_t>& bits);
  // Picks the next id from logits (n_vocab).
  int32_t sample(const float* logits);

  // With n_logprobs >= 0: log-softmax of the last sample's logits (the model's distribution,
  // before bias, penalties, mask and temperature) at the pick, and the top n_logprobs ids.
  double last_logprob() const { return last_logprob_; }
  const std::vector<std::pair<int32_t, double>>& last_top() const { return last_top_; }

  const SamplerParams& params() const { return params_; }

 private:
  int32_t pick_from(const float* logits);
  void record_logprobs(const float* logits, int32_t pick);
  uint64_t next_u64();
  double next_uniform();  // in [0, 1)

  SamplerParams params_;
  int64_t n_vocab_;
  std::vector<uint8_t> banned_;    // (n_vocab)
  std::vector<uint8_t> seen_;      // (n_vocab)
  std::vector<int32_t> counts_;    // (n_vocab) generated occurrences; empty without penalties
  std::vector<float> bias_;        // (n_vocab); empty without logit_bias
  std::vector<uint32_t> allowed_;  // ((n_vocab + 31) / 32) bits; empty: all allowed
  double last_logprob_ = 0.0;
  std::vector<std::pair<int32_t, double>> last_top_;
  uint64_t rng_[4];
  std::vector<std::pair<float, int32_t>> cand_;  // scratch (n_vocab)
  std::vector<double> probs_;                    // scratch
};

}  // namespace mambalite
