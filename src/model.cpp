#include "model.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "errors.h"
#include "format/binder.h"
#include "format/dequant.h"

namespace mambalite {
namespace {

int resolve_threads(int n_threads) {
  if (n_threads > 0) return std::min(n_threads, 256);
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(std::min(hw, 256u));
}

// "cuda" -> 0, "cuda:N" -> N; -1 for "cpu"; throws for anything else.
int parse_device(const std::string& device) {
  if (device == "cpu") return -1;
  if (device == "cuda") return 0;
  if (device.rfind("cuda:", 0) == 0 && device.size() > 5 && device.size() < 9 &&
      device.find_first_not_of("0123456789", 5) == std::string::npos) {
    return std::stoi(device.substr(5));
  }
  throw InvalidArgument("device must be \"cpu\", \"cuda\" or \"cuda:N\" (N a GPU number), got \"" +
                        device + "\"");
}

GgmlType parse_kv_type(const std::string& name) {
  if (name == "f16") return GgmlType::F16;
  if (name == "f32") return GgmlType::F32;
  if (name == "q8_0") return GgmlType::Q8_0;
  throw InvalidArgument("kv_type must be \"f16\", \"f32\" or \"q8_0\", got \"" + name + "\"");
}

// Positions beyond which a KV cache is refused as absurd (2^24: 16M tokens).
constexpr int64_t kMaxCtx = int64_t{1} << 24;

// Each file is opened after the options are checked, so a bad option is reported first.
const std::string& checked_path(const std::string& path, const LoadOptions& o) {
  parse_device(o.device);
  parse_kv_type(o.kv_type);
  if (o.n_ctx < 0 || o.n_ctx > kMaxCtx) {
    throw InvalidArgument("n_ctx must be from 1 to " + std::to_string(kMaxCtx) +
                          " positions (or 0 for the model's own context length), got " +
                          std::to_string(o.n_ctx));
  }
  return path;
}

}  // namespace

Model::Model(const std::string& path, const LoadOptions& o)
    : file_(checked_path(path, o),
            o.file_mode == FileMode::kAuto && o.device != "cpu" ? FileMode::kMap : o.file_mode),
      config_(ModelConfig::from_gguf(file_)),
      cx_(select_kernels(), resolve_threads(o.n_threads)) {
  if (config_.has_block(BlockKind::kAttention)) {
    kv_type_ = parse_kv_type(o.kv_type);
    const int64_t trained = config_.n_ctx_train > 0 ? config_.n_ctx_train : kMaxCtx;
    n_ctx_ = o.n_ctx > 0 ? o.n_ctx : std::min(trained, LoadOptions::kMaxDefaultCtx);
    if (kv_type_ == GgmlType::Q8_0 && config_.head_dim % kQK != 0) {
      throw InvalidArgument(
          "kv_type \"q8_0\" needs a head size that is a multiple of 32; this "
          "model's is " +
          std::to_string(config_.head_dim) + ". Use kv_type=\"f16\".");
    }
  }
  bind_blocks();
  const int64_t T = Compute::kBlock, D = config_.d_model;
  int64_t max_cols = D;
  size_t ws = 0;
  for (const std::unique_ptr<Block>& b : blocks_) {
    max_cols = std::max(max_cols, b->max_cols());
    ws = std::max(ws, b->workspace_floats(cx_.n_threads()));
  }
  cx_.reserve(max_cols);
  resid_.resize(T * D);
  hn_.resize(T * D);
  out_.resize(T * D);
  for (const BlockSpec& spec : config_.blocks) {
    if (spec.parallel) par_.resize(T * D);
  }
  ws_.resize(ws);
  const int ordinal = parse_device(o.device);
  if (ordinal >= 0) {
    if (!config_.pure_mamba()) {
      throw InvalidArgument("the CUDA backend runs pure Mamba models (mamba, mamba2) only; this '" +
                            config_.architecture +
                            "' model has attention or MLP layers. Load it "
                            "with device=\"cpu\".");
    }
    gpu_ = make_cuda_engine(*this, ordinal);
  }
}

Model::~Model() = default;

void Model::bind_blocks() {
  const ModelConfig& c = config_;
  const int64_t D = c.d_model, V = c.n_vocab;
  Binder b(file_);
  token_embd_ = b.matrix("token_embd.weight", V, D);
  output_ = c.tied_embeddings ? token_embd_ : b.matrix("output.weight", V, D);
  output_norm_ = b.floats("output_norm.weight", {D});
  int64_t ssm_slot = 0, kv_slot = 0;
  for (const BlockSpec& spec : c.blocks) {
    int64_t slot = -1;
    if (spec.kind == BlockKind::kMamba1 || spec.kind == BlockKind::kMamba2) slot = ssm_slot++;
    if (spec.kind == BlockKind::kAttention) slot = kv_slot++;
    // llama.cpp's falcon-h1 files name their FFN norm without the ".weight" suffix.
    const std::string norm = "blk." + std::to_string(spec.layer) + "." + spec.norm;
    norms_.push_back(
        b.floats(b.has(norm + ".weight") || !b.has(norm) ? norm + ".weight" : norm, {D}));
    blocks_.push_back(make_block(spec, c, b, slot));
  }
  b.throw_if_errors();
}

void Model::check_state(const State& state) const {
  const StateShape mine = state_shape();
  if (!(state.shape() == mine)) {
    throw InvalidArgument("this state belongs to a model of another shape (" +
                          state.shape().describe() + "), but this model is (" + mine.describe() +
                          "). Create states with this model's new_state().");
  }
}

State Model::state_from_bytes(std::string_view bytes) const {
  const StateShape mine = state_shape();
  return State::from_bytes(bytes, &mine);
}

void Model::check_ids(const int32_t* ids, int64_t n) const {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= config_.n_vocab) {
      throw InvalidArgument("token id " + std::to_string(ids[i]) + " at position " +
                            std::to_string(i) + " is out of range: this model's ids are 0 to " +
                            std::to_string(config_.n_vocab - 1));
    }
  }
}

void Model::run_block(const Seqs& seqs, const int32_t* ids, int64_t n) {
  const ModelConfig& c = config_;
  const int64_t D = c.d_model;
  for (int64_t t = 0; t < n; ++t) {
    float* r = resid_.data() + t * D;
    dequantize_row(token_embd_.type, token_embd_.row(ids[t]), D, r);
    if (c.embedding_scale != 1.0f) {
      for (int64_t i = 0; i < D; ++i) r[i] *= c.embedding_scale;
    }
  }
  // Each block's residual add is fused with the next block's norm (the stream stays fp32).
  const float rs = c.residual_scale;
  auto add_residual = [&](int64_t i0, int64_t i1) {
    if (rs == 1.0f) {
      for (int64_t i = i0; i < i1; ++i) resid_[i] += out_[i];
    } else {
      for (int64_t i = i0; i < i1; ++i) resid_[i] += rs * out_[i];
    }
  };
  for (size_t b = 0; b < blocks_.size(); ++b) {
    if (c.blocks[b].parallel) {  // same input as the block before it; outputs summed
      blocks_[b]->forward(cx_, seqs, hn_.data(), par_.data(), n, ws_.data());
      for (int64_t i = 0; i < n * D; ++i) out_[i] += par_[i];
      continue;
    }
    const float* norm = norms_[b].data();
    cx_.for_tokens(n, [&](int64_t t0, int64_t t1) {
      if (b > 0) add_residual(t0 * D, t1 * D);
      for (int64_t t = t0; t < t1; ++t) {
        cx_.k().rms_norm(resid_.data() + t * D, norm, D, c.norm_eps, hn_.data() + t * D);
      }
    });
    blocks_[b]->forward(cx_, seqs, hn_.data(), out_.data(), n, ws_.data());
  }
  add_residual(0, n * D);  // the last block's
}

void Model::compute_logits(const float* resid, int64_t n, float* logits) {
  const int64_t D = config_.d_model, V = config_.n_vocab;
  for (int64_t t = 0; t < n; ++t) {
    cx_.k().rms_norm(resid + t * D, output_norm_.data(), D, config_.norm_eps, hn_.data() + t * D);
  }
  cx_.matmul(output_, hn_.data(), D, n, logits, V);
  if (config_.logit_scale != 1.0f) {
    for (int64_t i = 0; i < n * V; ++i) logits[i] /= config_.logit_scale;
  }
}

void Model::check_capacity(const State& state, int64_t n) const {
  if (n_ctx_ > 0 && state.n_tokens() + n > n_ctx_) {
    throw InvalidArgument("the KV cache is full: the state holds " +
                          std::to_string(state.n_tokens()) + " tokens and " + std::to_string(n) +
                          " more would pass this model's n_ctx of " + std::to_string(n_ctx_) +
                          " positions. Load the model with a larger n_ctx (mambalite.load(path, "
                          "n_ctx=...), --ctx-size) or start a new state.");
  }
}

void Model::eval(State& state, const int32_t* ids, int64_t n, LogitsMode mode, float* logits) {
  if (n <= 0) throw InvalidArgument("no tokens to evaluate: give at least one token id");
  check_state(state);
  check_ids(ids, n);
  check_capacity(state, n);
  std::lock_guard<std::mutex> lock(mutex_);
  if (gpu_) {
    gpu_->eval(state, ids, n, mode, logits);
    state.add_tokens(n);
    return;
  }
  state.use_host();
  const int64_t D = config_.d_model, V = config_.n_vocab, T = Compute::kBlock;
  for (int64_t b = 0; b < n; b += T) {
    const int64_t m = std::min(T, n - b);
    run_block({{&state, 0, m}}, ids + b, m);
    state.add_tokens(m);  // the next block's attention starts after these positions
    if (mode == LogitsMode::kAll) {
      compute_logits(resid_.data(), m, logits + b * V);
    } else if (mode == LogitsMode::kLast && b + m == n) {
      compute_logits(resid_.data() + (m - 1) * D, 1, logits);
    }
  }
}

void Model::eval_batch(const std::vector<State*>& states,
                       const std::vector<std::vector<int32_t>>& ids, float* logits) {
  const size_t N = states.size();
  if (N == 0) throw InvalidArgument("an empty batch: give at least one state and its token ids");
  if (ids.size() != N) {
    throw InvalidArgument("a batch of " + std::to_string(N) + " states needs " + std::to_string(N) +
                          " lists of token ids, got " + std::to_string(ids.size()));
  }
  for (size_t i = 0; i < N; ++i) {
    const std::string which = "sequence " + std::to_string(i) + " of the batch";
    if (states[i] == nullptr) throw InvalidArgument(which + " has no state");
    if (ids[i].empty()) {
      throw InvalidArgument(which + " has no tokens: give each state at least one token id");
    }
    for (size_t j = 0; j < i; ++j) {
      if (states[j] == states[i]) {
        throw InvalidArgument(which + " has the state of sequence " + std::to_string(j) +
                              ": each sequence needs its own State (copy it with copy())");
      }
    }
    check_state(*states[i]);
    check_ids(ids[i].data(), static_cast<int64_t>(ids[i].size()));
    check_capacity(*states[i], static_cast<int64_t>(ids[i].size()));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t V = config_.n_vocab, D = config_.d_model, T = Compute::kBlock;
  if (gpu_) {  // the device engine steps one sequence at a time
    for (size_t i = 0; i < N; ++i) {
      const int64_t n = static_cast<int64_t>(ids[i].size());
      gpu_->eval(*states[i], ids[i].data(), n, LogitsMode::kLast, logits + i * V);
      states[i]->add_tokens(n);
    }
    return;
  }
  for (State* s : states) s->use_host();
  // Passes of up to T rows: the sequences in order, a long one continued in the next pass. The
  // sequences that end in a pass are consecutive, so their logits rows are too.
  std::vector<int64_t> done(N, 0);
  int32_t pass_ids[Compute::kBlock];
  for (size_t first = 0; first < N;) {
    Seqs seqs;
    int64_t rows = 0;
    for (size_t j = first; j < N && rows < T; ++j) {
      const int64_t take = std::min(T - rows, static_cast<int64_t>(ids[j].size()) - done[j]);
      std::copy(ids[j].begin() + done[j], ids[j].begin() + done[j] + take, pass_ids + rows);
      seqs.push_back({states[j], rows, take});
      rows += take;
    }
    run_block(seqs, pass_ids, rows);
    size_t ended = 0, first_ended = N;
    for (size_t q = 0; q < seqs.size(); ++q) {
      const size_t j = first + q;
      seqs[q].state->add_tokens(seqs[q].n);
      done[j] += seqs[q].n;
      if (done[j] == static_cast<int64_t>(ids[j].size())) {
        if (first_ended == N) first_ended = j;
        const float* last = resid_.data() + (seqs[q].row0 + seqs[q].n - 1) * D;
        std::copy(last, last + D, out_.data() + ended * D);  // out_ is free after the pass
        ++ended;
      }
    }
    if (ended > 0)
      compute_logits(out_.data(), static_cast<int64_t>(ended), logits + first_ended * V);
    first += ended;
  }
}

double Model::read_bandwidth(size_t n_bytes, int repeats) {
  constexpr int64_t kLine = 8;  // 64-bit words per cache line
  const int64_t lines = static_cast<int64_t>(n_bytes / 64);
  if (lines < 64 || repeats < 1) {
    throw InvalidArgument("read_bandwidth needs at least 4096 bytes and one repeat, got " +
                          std::to_string(n_bytes) + " bytes and " + std::to_string(repeats));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  // The machine's rate: the widest loads the CPU has, whichever table the model uses.
  const KernelTable& best = kernels_for(available_isas().front());
  std::vector<uint64_t> buf(static_cast<size_t>((lines + 1) * kLine), 1);  // written: paged in
  const uint64_t* p = buf.data();
  p += (kLine - (reinterpret_cast<uintptr_t>(p) / 8) % kLine) % kLine;  // to a 64-byte line
  std::vector<uint64_t> sums(static_cast<size_t>(cx_.n_threads()), 0);
  std::vector<double> rates;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    cx_.pool().parallel_for(lines, 64, [&](int i, int64_t l0, int64_t l1) {
      sums[static_cast<size_t>(i)] += stream_sum(best, p + l0 * kLine, (l1 - l0) * kLine);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(static_cast<double>(lines * 64) / s);
  }
  // Every word is 1, so the sums are known: checking them keeps the reads from being elided.
  uint64_t total = 0;
  for (const uint64_t v : sums) total += v;
  if (total != static_cast<uint64_t>(lines * kLine * repeats)) {
    throw std::logic_error("read_bandwidth: the stream read the wrong words");
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

}  // namespace mambalite
