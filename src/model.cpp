#include "model.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "format/dequant.h"
#include "errors.h"

namespace mambalite {
namespace {

int resolve_threads(int n_threads) {
  if (n_threads > 0) return std::min(n_threads, 256);
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(std::min(hw, 256u));
}

// Binds tensors by name, checking presence, shape and type, and collects every problem so that
// one error lists them all.
class Binder {
 public:
  explicit Binder(const GgufFile& f) : f_(f) {}

  // A weight matrix of `rows` x `cols` (ggml shape {cols, rows}), used in place.
  MatView matrix(const std::string& name, int64_t rows, int64_t cols) {
    MatView m;
    const GgufTensor* t = lookup(name, {cols, rows});
    if (t == nullptr) return m;
    if (!dequant_supported(t->type)) {
      errors_.push_back("tensor '" + name + "' is " + ggml_type_name(t->type) +
                        ", which mambalite cannot compute with (supported: F32, F16, BF16, Q8_0, "
                        "Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)");
      return m;
    }
    m.type = t->type;
    m.data = t->data;
    m.rows = rows;
    m.cols = cols;
    m.row_bytes = ggml_row_size(t->type, cols);
    return m;
  }

  // A small tensor converted to an owned fp32 copy, in the file's (ggml) element order.
  std::vector<float> floats(const std::string& name, std::vector<int64_t> ne) {
    const GgufTensor* t = lookup(name, ne);
    if (t == nullptr) return {};
    const int64_t n = t->n_elements();
    if (!dequant_supported(t->type) ||
        n % ggml_type_traits(static_cast<uint32_t>(t->type)).block_size) {
      errors_.push_back("tensor '" + name + "' is " + ggml_type_name(t->type) +
                        "; it must be F32 (or another type mambalite can read)");
      return {};
    }
    std::vector<float> out(static_cast<size_t>(n));
    dequantize_row(t->type, t->data, n, out.data());
    return out;
  }

  void throw_if_errors() const {
    if (errors_.empty()) return;
    std::string msg = "'" + f_.path() + "' is not a usable Mamba model (" +
                      std::to_string(errors_.size()) + " problem" +
                      (errors_.size() > 1 ? "s" : "") + "):";
    const size_t shown = std::min<size_t>(errors_.size(), 20);
    for (size_t i = 0; i < shown; ++i) msg += "\n  - " + errors_[i];
    if (errors_.size() > shown)
      msg += "\n  - ... and " + std::to_string(errors_.size() - shown) + " more";
    msg += "\nRe-export the checkpoint with `mambalite export`.";
    throw FormatError(msg);
  }

 private:
  const GgufTensor* lookup(const std::string& name, std::vector<int64_t> ne) {
    const GgufTensor* t = f_.find_tensor(name);
    if (t == nullptr) {
      errors_.push_back("missing tensor '" + name + "'");
      return nullptr;
    }
    ne.resize(4, 1);
    bool ok = true;
    for (int d = 0; d < 4; ++d) ok = ok && t->ne[d] == ne[d];
    if (!ok) {
      std::string want = "{";
      size_t nd = ne.size();
      while (nd > 1 && ne[nd - 1] == 1) --nd;
      for (size_t d = 0; d < nd; ++d) want += (d ? ", " : "") + std::to_string(ne[d]);
      errors_.push_back("tensor '" + name + "' has shape " + t->shape_string() + ", expected " +
                        want + "}");
      return nullptr;
    }
    return t;
  }

  const GgufFile& f_;
  std::vector<std::string> errors_;
};

}  // namespace

// "cuda" -> 0, "cuda:N" -> N; -1 for "cpu"; throws for anything else.
static int parse_device(const std::string& device) {
  if (device == "cpu") return -1;
  if (device == "cuda") return 0;
  if (device.rfind("cuda:", 0) == 0 && device.size() > 5 && device.size() < 9 &&
      device.find_first_not_of("0123456789", 5) == std::string::npos) {
    return std::stoi(device.substr(5));
  }
  throw InvalidArgument("device must be \"cpu\", \"cuda\" or \"cuda:N\" (N a GPU number), got \"" +
                        device + "\"");
}

Model::Model(const std::string& path, int n_threads, const std::string& device)
    : Model(path, n_threads, parse_device(device)) {}

Model::Model(const std::string& path, int n_threads, int ordinal)
    : file_(path),
      config_(MambaConfig::from_gguf(file_)),
      k_(&select_kernels()),
      pool_(resolve_threads(n_threads)) {
  bind_weights();
  const MambaConfig& c = config_;
  const int64_t T = kBlock;
  resid_.resize(T * c.d_model);
  hn_.resize(T * c.d_model);
  xz_.resize(T * c.in_proj_rows());
  xc_.resize(T * c.conv_dim());
  if (!c.is_mamba2()) {
    dbc_.resize(T * (c.dt_rank + 2 * c.d_state));
    if (c.dt_b_c_rms) ones_.assign(std::max(c.dt_rank, c.d_state), 1.0f);
  }
  dt_.resize(T * (c.is_mamba2() ? c.n_head : c.d_inner));
  y_.resize(T * c.d_inner);
  out_.resize(T * c.d_model);
  const int64_t max_cols = std::max({c.d_model, c.d_inner, c.dt_rank});
  scratch_.resize(static_cast<size_t>(pool_.size()) * matmul_scratch_floats(max_cols));
  // The largest prepared activations: ActQ8 blocks plus a type's copies or sums of them.
  size_t act_row = 0;
  for (const GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q6_K}) {
    act_row = std::max(act_row, activation_row_bytes(type, max_cols + kQK));
  }
  act_.resize(static_cast<size_t>(T) * act_row);
  panel_.resize(panel_floats(max_cols, T));
  if (ordinal >= 0) gpu_ = make_cuda_engine(*this, ordinal);
}

Model::~Model() = default;

void Model::bind_weights() {
  const MambaConfig& c = config_;
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank;
  const int64_t H = c.n_head, G = c.n_group, CD = c.conv_dim(), V = c.n_vocab;
  const bool m2 = c.is_mamba2();
  Binder b(file_);
  token_embd_ = b.matrix("token_embd.weight", V, D);
  output_ = c.tied_embeddings ? token_embd_ : b.matrix("output.weight", V, D);
  output_norm_ = b.floats("output_norm.weight", {D});
  layers_.resize(static_cast<size_t>(c.n_layer));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights& w = layers_[static_cast<size_t>(l)];
    w.attn_norm = b.floats(p + "attn_norm.weight", {D});
    w.in_proj = b.matrix(p + "ssm_in.weight", c.in_proj_rows(), D);
    const std::vector<float> conv = b.floats(p + "ssm_conv1d.weight", {K, CD});  // (CD, K)
    if (!conv.empty()) {
      w.conv_w.resize(static_cast<size_t>(K * CD));
      for (int64_t e = 0; e < CD; ++e)
        for (int64_t k = 0; k < K; ++k) w.conv_w[k * CD + e] = conv[e * K + k];
    }
    w.conv_b = b.floats(p + "ssm_conv1d.bias", {CD});
    if (m2) {
      w.dt_b = b.floats(p + "ssm_dt.bias", {H});
      w.A = b.floats(p + "ssm_a", {1, H});
      w.D = b.floats(p + "ssm_d", {1, H});
      w.ssm_norm = b.floats(p + "ssm_norm.weight", {E / G, G});
    } else {
      w.x_proj = b.matrix(p + "ssm_x.weight", R + 2 * N, E);
      w.dt_proj = b.matrix(p + "ssm_dt.weight", E, R);
      w.dt_b = b.floats(p + "ssm_dt.bias", {E});
      w.A = b.floats(p + "ssm_a", {N, E});
      w.D = b.floats(p + "ssm_d", {E});
    }
    w.out_proj = b.matrix(p + "ssm_out.weight", D, E);
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

void Model::check_ids(const int32_t* ids, int64_t n) const {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= config_.n_vocab) {
      throw InvalidArgument("token id " + std::to_string(ids[i]) + " at position " +
                            std::to_string(i) + " is out of range: this model's ids are 0 to " +
                            std::to_string(config_.n_vocab - 1));
    }
  }
}

void Model::for_tokens(int64_t n, const std::function<void(int64_t t0, int64_t t1)>& fn) {
  if (n < kParallelTokens) {
    fn(0, n);
    return;
  }
  pool_.parallel_for(n, 1, [&](int, int64_t t0, int64_t t1) { fn(t0, t1); });
}

Model::Acts Model::prepare(const MatView& w, const float* x, int64_t ldx, int64_t n) {
  Acts a{nullptr, 0, nullptr};
  if (!uses_q8_activations(w.type)) {
    a.rows = prepare_activations(*k_, w.type, x, ldx, n, w.cols, act_.data(), &a.stride);
  } else {
    a.rows = act_.data();
    a.stride = activation_row_bytes(w.type, w.cols);
    for_tokens(n, [&](int64_t t0, int64_t t1) {
      size_t s = 0;
      prepare_activations(*k_, w.type, x + t0 * ldx, ldx, t1 - t0, w.cols,
                          act_.data() + static_cast<size_t>(t0) * a.stride, &s);
    });
  }
  if (uses_gemm(*k_, w.type, n)) {  // packed once here, shared by the threads' row ranges
    pack_panels(*k_, w.type, a.rows, a.stride, n, w.cols, panel_.data());
    a.panels = panel_.data();
  }
  return a;
}

void Model::matmul_rows(const MatView& w, const Acts& act, int64_t n, float* y, int64_t ldy,
                        int64_t r0, int64_t r1, int thread) {
  if (r0 >= r1) return;
  const size_t per_thread = scratch_.size() / static_cast<size_t>(pool_.size());
  matmul(*k_, w, act.rows, act.stride, n, y, ldy, r0, r1,
         scratch_.data() + static_cast<size_t>(thread) * per_thread, act.panels);
}

void Model::parallel_matmul(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y,
                            int64_t ldy) {
  const Acts act = prepare(w, x, ldx, n);
  pool_.parallel_for(w.rows, 16, [&](int i, int64_t r0, int64_t r1) {
    matmul_rows(w, act, n, y, ldy, r0, r1, i);
  });
}

void Model::run_block(State& state, const int32_t* ids, int64_t n) {
  const int64_t D = config_.d_model;
  for (int64_t t = 0; t < n; ++t) {
    dequantize_row(token_embd_.type, token_embd_.row(ids[t]), D, resid_.data() + t * D);
  }
  for (int64_t l = 0; l < config_.n_layer; ++l) {
    const LayerWeights& w = layers_[static_cast<size_t>(l)];
    for_tokens(n, [&](int64_t t0, int64_t t1) {
      if (l > 0) {  // the previous layer's residual add (the residual stream stays fp32)
        for (int64_t i = t0 * D; i < t1 * D; ++i) resid_[i] += out_[i];
      }
      for (int64_t t = t0; t < t1; ++t) {
        k_->rms_norm(resid_.data() + t * D, w.attn_norm.data(), D, config_.norm_eps,
                     hn_.data() + t * D);
      }
    });
    if (config_.is_mamba2()) {
      mamba2_layer(state, l, n);
    } else {
      mamba1_layer(state, l, n);
    }
  }
  for (int64_t i = 0; i < n * D; ++i) resid_[i] += out_[i];  // the last layer's residual add
}

void Model::compute_logits(const float* resid, int64_t n, float* logits) {
  const int64_t D = config_.d_model;
  for (int64_t t = 0; t < n; ++t) {
    k_->rms_norm(resid + t * D, output_norm_.data(), D, config_.norm_eps, hn_.data() + t * D);
  }
  parallel_matmul(output_, hn_.data(), D, n, logits, config_.n_vocab);
}

void Model::eval(State& state, const int32_t* ids, int64_t n, LogitsMode mode, float* logits) {
  if (n <= 0) throw InvalidArgument("no tokens to evaluate: give at least one token id");
  check_state(state);
  check_ids(ids, n);
  std::lock_guard<std::mutex> lock(mutex_);
  if (gpu_) {
    gpu_->eval(state, ids, n, mode, logits);
    state.add_tokens(n);
    return;
  }
  state.use_host();
  const int64_t D = config_.d_model, V = config_.n_vocab;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    run_block(state, ids + b, m);
    if (mode == LogitsMode::kAll) {
      compute_logits(resid_.data(), m, logits + b * V);
    } else if (mode == LogitsMode::kLast && b + m == n) {
      compute_logits(resid_.data() + (m - 1) * D, 1, logits);
    }
  }
  state.add_tokens(n);
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
  std::vector<uint64_t> sums(static_cast<size_t>(pool_.size()), 0);
  std::vector<double> rates;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool_.parallel_for(lines, 64, [&](int i, int64_t l0, int64_t l1) {
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
