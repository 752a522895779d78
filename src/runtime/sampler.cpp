#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "errors.h"

namespace mambalite {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Higher logit first; equal logits in ascending id order, so results never depend on the sort.
inline bool before(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

void require(bool ok, const std::string& msg) {
  if (!ok) throw InvalidArgument(msg);
}

}  // namespace

void SamplerParams::validate() const {
  require(std::isfinite(temperature) && temperature >= 0.0 && temperature <= 1000.0,
          "temperature must be between 0 (greedy) and 1000, got " + std::to_string(temperature));
  require(top_k >= 0, "top_k must be >= 0 (0 disables it), got " + std::to_string(top_k));
  require(std::isfinite(top_p) && top_p > 0.0 && top_p <= 1.0,
          "top_p must be in (0, 1] (1 disables it), got " + std::to_string(top_p));
  require(std::isfinite(min_p) && min_p >= 0.0 && min_p <= 1.0,
          "min_p must be in [0, 1] (0 disables it), got " + std::to_string(min_p));
  require(
      std::isfinite(repetition_penalty) && repetition_penalty > 0.0 && repetition_penalty <= 100.0,
      "repetition_penalty must be in (0, 100] (1 disables it), got " +
          std::to_string(repetition_penalty));
  require(std::isfinite(presence_penalty) && std::fabs(presence_penalty) <= 2.0,
          "presence_penalty must be between -2 and 2, got " + std::to_string(presence_penalty));
  require(std::isfinite(frequency_penalty) && std::fabs(frequency_penalty) <= 2.0,
          "frequency_penalty must be between -2 and 2, got " + std::to_string(frequency_penalty));
  for (const auto& b : logit_bias) {
    require(std::isfinite(b.second) && std::fabs(b.second) <= 100.0f,
            "logit_bias values must be between -100 and 100, got " + std::to_string(b.second) +
                " for token " + std::to_string(b.first));
  }
  require(n_logprobs >= -1 && n_logprobs <= 20,
          "top_logprobs must be between 0 and 20, got " + std::to_string(n_logprobs));
}

Sampler::Sampler(const SamplerParams& params, int64_t n_vocab,
                 const std::vector<int32_t>& banned_ids)
    : params_(params),
      n_vocab_(n_vocab),
      banned_(static_cast<size_t>(n_vocab), 0),
      seen_(static_cast<size_t>(n_vocab), 0) {
  params_.validate();
  if (n_vocab <= 0) throw InvalidArgument("the sampler needs a vocabulary of at least one id");
  for (int32_t id : banned_ids) {
    if (id >= 0 && id < n_vocab) banned_[static_cast<size_t>(id)] = 1;
  }
  if (std::count(banned_.begin(), banned_.end(), 1) == n_vocab) {
    throw InvalidArgument("every token id is banned from sampling");
  }
  if (params.presence_penalty != 0.0 || params.frequency_penalty != 0.0) {
    counts_.assign(static_cast<size_t>(n_vocab), 0);
  }
  if (!params.logit_bias.empty()) {
    bias_.assign(static_cast<size_t>(n_vocab), 0.0f);
    for (const auto& b : params.logit_bias) {
      if (b.first < 0 || b.first >= n_vocab) {
        throw InvalidArgument("logit_bias names token " + std::to_string(b.first) +
                              ", out of range 0 to " + std::to_string(n_vocab - 1));
      }
      bias_[static_cast<size_t>(b.first)] += b.second;
    }
  }
  uint64_t x = params.seed;
  for (uint64_t& r : rng_) r = splitmix64(x);
  cand_.reserve(static_cast<size_t>(n_vocab));
  probs_.reserve(static_cast<size_t>(n_vocab));
}

void Sampler::accept(int32_t id, bool generated) {
  if (id < 0 || id >= n_vocab_) {
    throw InvalidArgument("token id " + std::to_string(id) + " is out of range 0 to " +
                          std::to_string(n_vocab_ - 1));
  }
  seen_[static_cast<size_t>(id)] = 1;
  if (generated && !counts_.empty()) ++counts_[static_cast<size_t>(id)];
}

void Sampler::set_allowed(const std::vector<uint32_t>& bits) {
  if (bits.empty()) {
    allowed_.clear();
    return;
  }
  const size_t words = static_cast<size_t>((n_vocab_ + 31) / 32);
  if (bits.size() != words) {
    throw InvalidArgument("the allowed-token mask must have " + std::to_string(words) +
                          " 32-bit words for " + std::to_string(n_vocab_) + " ids, got " +
                          std::to_string(bits.size()));
  }
  allowed_ = bits;
}

void Sampler::record_logprobs(const float* logits, int32_t pick) {
  // log p_i = x_i - max - log(sum exp(x_j - max)), in double over the sampleable ids.
  double mx = -INFINITY;
  for (int64_t i = 0; i < n_vocab_; ++i) {
    if (!banned_[static_cast<size_t>(i)]) mx = std::max(mx, static_cast<double>(logits[i]));
  }
  double total = 0.0;
  for (int64_t i = 0; i < n_vocab_; ++i) {
    if (!banned_[static_cast<size_t>(i)]) total += std::exp(static_cast<double>(logits[i]) - mx);
  }
  const double lse = mx + std::log(total);
  last_logprob_ = static_cast<double>(logits[pick]) - lse;
  last_top_.clear();
  const size_t k = static_cast<size_t>(params_.n_logprobs);
  if (k == 0) return;
  std::vector<std::pair<float, int32_t>>& c = cand_;  // the pick is made: reuse the scratch
  c.clear();
  for (int64_t i = 0; i < n_vocab_; ++i) {
    if (!banned_[static_cast<size_t>(i)]) c.emplace_back(logits[i], static_cast<int32_t>(i));
  }
  const size_t n = std::min(k, c.size());
  std::partial_sort(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(n), c.end(), before);
  for (size_t i = 0; i < n; ++i) last_top_.emplace_back(c[i].second, c[i].first - lse);
}

uint64_t Sampler::next_u64() {
  const uint64_t result = rotl(rng_[1] * 5, 7) * 9;
  const uint64_t t = rng_[1] << 17;
  rng_[2] ^= rng_[0];
  rng_[3] ^= rng_[1];
  rng_[1] ^= rng_[2];
  rng_[0] ^= rng_[3];
  rng_[2] ^= t;
  rng_[3] = rotl(rng_[3], 45);
  return result;
}

double Sampler::next_uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

int32_t Sampler::sample(const float* logits) {
  const int32_t pick = pick_from(logits);
  if (params_.n_logprobs >= 0) record_logprobs(logits, pick);
  return pick;
}

int32_t Sampler::pick_from(const float* logits) {
  const SamplerParams& p = params_;
  cand_.clear();
  const bool penalize = p.repetition_penalty != 1.0;
  const float rp = static_cast<float>(p.repetition_penalty);
  const float pp = static_cast<float>(p.presence_penalty);
  const float fp = static_cast<float>(p.frequency_penalty);
  const bool masked = !allowed_.empty();
  for (int64_t i = 0; i < n_vocab_; ++i) {
    const size_t u = static_cast<size_t>(i);
    if (banned_[u]) continue;
    if (masked && !((allowed_[u >> 5] >> (u & 31)) & 1u)) continue;
    float v = logits[i];
    if (std::isnan(v)) throw std::runtime_error("the model produced a NaN logit");
    if (!bias_.empty()) v += bias_[u];
    if (penalize && seen_[u]) v = v > 0.0f ? v / rp : v * rp;
    if (!counts_.empty() && counts_[u] > 0) v -= fp * static_cast<float>(counts_[u]) + pp;
    cand_.emplace_back(v, static_cast<int32_t>(i));
  }
  if (cand_.empty()) {
    throw std::runtime_error(
        "no token is allowed at this step: the constraint's mask excludes every sampleable id");
  }

  if (p.temperature == 0.0) {
    return std::min_element(cand_.begin(), cand_.end(), before)->second;
  }
  const float inv_t = static_cast<float>(1.0 / p.temperature);
  for (auto& c : cand_) c.first *= inv_t;

  size_t n = cand_.size();
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < n) {
    n = static_cast<size_t>(p.top_k);
    std::partial_sort(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(n), cand_.end(),
                      before);
  } else if (p.top_p < 1.0 || p.min_p > 0.0) {
    std::sort(cand_.begin(), cand_.end(), before);
  } else {
    // Plain sampling needs no order, only the maximum for a stable softmax.
    std::iter_swap(cand_.begin(), std::min_element(cand_.begin(), cand_.end(), before));
  }

  const double max_logit = cand_[0].first;
  probs_.resize(n);
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) total += probs_[i] = std::exp(cand_[i].first - max_logit);

  if (p.top_p < 1.0) {  // smallest prefix whose mass reaches top_p (candidates are sorted)
    double cum = 0.0;
    size_t keep = n;
    for (size_t i = 0; i < n; ++i) {
      cum += probs_[i] / total;
      if (cum >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
  }
  if (p.min_p > 0.0) {  // probs_[0] is the largest
    const double floor = p.min_p * probs_[0];
    size_t keep = 1;
    while (keep < n && probs_[keep] >= floor) ++keep;
    n = keep;
  }
  double mass = 0.0;
  for (size_t i = 0; i < n; ++i) mass += probs_[i];
  const double r = next_uniform() * mass;
  double cum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    cum += probs_[i];
    if (r < cum) return cand_[i].second;
  }
  return cand_[n - 1].second;
}

}  // namespace mambalite
