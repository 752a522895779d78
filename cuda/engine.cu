// The CUDA device engine: uploads a Model's weights once (F32/F16/BF16/Q8_0/Q4_0 in their compact
// form, other types as F16), keeps each state's values on the device (StateMirror), runs the
// one-token step as a captured CUDA graph and prefill in chunks of up to kChunk tokens.
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "format/dequant.h"
#include "kernels.cuh"
#include "layers/mamba1.h"
#include "layers/mamba2.h"
#include "model.h"
#include "runtime/device_engine.h"

namespace mambalite {
namespace cuda {
namespace {

constexpr int64_t kChunk = 1024;  // prefill tokens per pass (bounds the activation buffers)

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// A state's conv windows and SSM states in device memory, in the host layout.
class CudaStateMirror : public StateMirror {
 public:
  CudaStateMirror(int device, const StateShape& s) : device_(device) {
    conv_n_ = static_cast<size_t>(s.n_ssm_layers * (s.d_conv - 1) * s.conv_dim);
    ssm_n_ = static_cast<size_t>(s.n_ssm_layers * s.d_inner * s.d_state);
    conv_stride_ = (s.d_conv - 1) * s.conv_dim;
    ssm_stride_ = s.d_inner * s.d_state;
    ML_CUDA(cudaSetDevice(device_));
    ML_CUDA(cudaMalloc(&conv_, std::max<size_t>(conv_n_, 1) * sizeof(float)));
    const cudaError_t e = cudaMalloc(&ssm_, ssm_n_ * sizeof(float));
    if (e != cudaSuccess) {
      cudaFree(conv_);
      check(e, "cudaMalloc (state)");
    }
  }
  ~CudaStateMirror() override {
    cudaSetDevice(device_);
    cudaFree(conv_);
    cudaFree(ssm_);
  }
  int device() const override { return device_; }
  void upload(const float* conv, const float* ssm) override {
    ML_CUDA(cudaSetDevice(device_));
    if (conv_n_) ML_CUDA(cudaMemcpy(conv_, conv, conv_n_ * sizeof(float), cudaMemcpyHostToDevice));
    ML_CUDA(cudaMemcpy(ssm_, ssm, ssm_n_ * sizeof(float), cudaMemcpyHostToDevice));
  }
  void download(float* conv, float* ssm) const override {
    ML_CUDA(cudaSetDevice(device_));
    if (conv_n_) ML_CUDA(cudaMemcpy(conv, conv_, conv_n_ * sizeof(float), cudaMemcpyDeviceToHost));
    ML_CUDA(cudaMemcpy(ssm, ssm_, ssm_n_ * sizeof(float), cudaMemcpyDeviceToHost));
  }
  float* conv(int64_t l) { return conv_ + l * conv_stride_; }  // (K-1, conv_dim)
  float* ssm(int64_t l) { return ssm_ + l * ssm_stride_; }     // (E, N) or (H, P, N)

 private:
  int device_;
  float* conv_ = nullptr;
  float* ssm_ = nullptr;
  size_t conv_n_ = 0, ssm_n_ = 0;
  int64_t conv_stride_ = 0, ssm_stride_ = 0;
};

struct DevLayer {
  DevMat in_proj, x_proj, dt_proj, out_proj;
  const float *attn_norm = nullptr, *conv_w = nullptr, *conv_b = nullptr, *dt_b = nullptr;
  const float *A = nullptr, *D = nullptr, *ssm_norm = nullptr;
};

class CudaEngine : public DeviceEngine {
 public:
  CudaEngine(const Model& model, int ordinal);
  ~CudaEngine() override;
  std::string name() const override { return name_; }
  void eval(State& state, const int32_t* ids, int64_t n, LogitsMode mode, float* logits) override;

 private:
  void release();  // frees everything (the destructor, and a constructor that fails)
  void* alloc(size_t bytes);
  float* alloc_floats(int64_t n) { return static_cast<float*>(alloc(n * sizeof(float))); }
  const float* upload_floats(const std::vector<float>& v);
  DevMat upload_matrix(const MatView& m);
  void enqueue_step(CudaStateMirror& st, bool want_logits);
  void step(CudaStateMirror& st, int32_t id, float* logits);
  void prefill_chunk(CudaStateMirror& st, int64_t n);

  ModelConfig c_;
  bool mamba2_ = false;  // the blocks are Mamba-2 (else Mamba-1)
  StateShape model_state_shape_;
  int device_ = 0;
  LaunchCfg cfg_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  bool use_graphs_ = true;
  std::vector<void*> allocations_;
  std::vector<DevLayer> layers_;
  DevMat embd_, output_;
  const float* output_norm_ = nullptr;
  // One-token buffers (addresses captured in the graphs).
  int32_t* id_d_ = nullptr;
  int32_t* id_h_ = nullptr;  // pinned
  float *resid_ = nullptr, *xz_ = nullptr, *xc_ = nullptr, *dbc_ = nullptr, *y_ = nullptr;
  float* logits_d_ = nullptr;  // (V)
  float* logits_h_ = nullptr;  // (V) pinned
  // Prefill buffers, (kChunk, width).
  int32_t* p_ids_ = nullptr;
  float *p_resid_ = nullptr, *p_hn_ = nullptr, *p_xz_ = nullptr, *p_xc_ = nullptr;
  float *p_dbc_ = nullptr, *p_dt_ = nullptr, *p_y_ = nullptr;
  float* p_logits_ = nullptr;  // (kChunk, V), allocated on first use
  std::map<std::pair<const float*, bool>, cudaGraphExec_t> graphs_;
};

CudaEngine::CudaEngine(const Model& model, int ordinal)
    : c_(model.config()),
      mamba2_(model.config().has_block(BlockKind::kMamba2)),
      model_state_shape_(model.state_shape()),
      device_(ordinal) {
  const ModelConfig& c = c_;
  if (c.d_state > 256) {
    throw std::runtime_error("the CUDA backend supports d_state up to 256; this model has " +
                             std::to_string(c.d_state) + ". Use device='cpu'.");
  }
  if (mamba2_ && c.n_group > kMaxNormGroups) {
    throw std::runtime_error("the CUDA backend supports up to " + std::to_string(kMaxNormGroups) +
                             " groups; this model has " + std::to_string(c.n_group) +
                             ". Use device='cpu'.");
  }
  ML_CUDA(cudaSetDevice(device_));
  cudaDeviceProp prop{};
  ML_CUDA(cudaGetDeviceProperties(&prop, device_));
  cfg_.n_sm = prop.multiProcessorCount;
  const char* pdl = std::getenv("MAMBALITE_CUDA_PDL");
  cfg_.pdl = prop.major >= 9 && !(pdl != nullptr && std::strcmp(pdl, "0") == 0);
  name_ = "cuda:" + std::to_string(device_) + " (" + prop.name + ")";
  const char* g = std::getenv("MAMBALITE_CUDA_GRAPHS");
  use_graphs_ = !(g != nullptr && std::strcmp(g, "0") == 0);
  try {
    ML_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    embd_ = upload_matrix(model.token_embd());
    output_ = c.tied_embeddings ? embd_ : upload_matrix(model.output());
    output_norm_ = upload_floats(model.output_norm());
    for (size_t i = 0; i < model.blocks().size(); ++i) {
      DevLayer d;
      d.attn_norm = upload_floats(model.block_norms()[i]);
      if (const auto* m1 = dynamic_cast<const Mamba1Block*>(model.blocks()[i].get())) {
        const Mamba1Weights& w = m1->weights();
        d.in_proj = upload_matrix(w.in_proj);
        d.out_proj = upload_matrix(w.out_proj);
        d.x_proj = upload_matrix(w.x_proj);
        d.dt_proj = upload_matrix(w.dt_proj);
        d.conv_w = upload_floats(w.conv_w);
        d.conv_b = upload_floats(w.conv_b);
        d.dt_b = upload_floats(w.dt_b);
        d.A = upload_floats(w.A);
        d.D = upload_floats(w.D);
      } else if (const auto* m2 = dynamic_cast<const Mamba2Block*>(model.blocks()[i].get())) {
        const Mamba2Weights& w = m2->weights();
        d.in_proj = upload_matrix(w.in_proj);
        d.out_proj = upload_matrix(w.out_proj);
        d.conv_w = upload_floats(w.conv_w);
        d.conv_b = upload_floats(w.conv_b);
        d.dt_b = upload_floats(w.dt_b);
        d.A = upload_floats(w.A);
        d.D = upload_floats(w.D);
        if (w.ssm_norm.empty()) {
          throw std::runtime_error(
              "the CUDA backend runs Mamba-2 blocks with their gated norm (ssm_norm) only; "
              "this model has none. Use device='cpu'.");
        }
        d.ssm_norm = upload_floats(w.ssm_norm);
      } else {
        throw std::runtime_error("the CUDA backend runs Mamba blocks only; use device='cpu'");
      }
      layers_.push_back(d);
    }
    const int64_t D = c.d_model, E = c.d_inner, NR = c.in_proj_rows(), CD = c.conv_dim();
    const int64_t ldbc = mamba2_ ? 1 : c.dt_rank + 2 * c.d_state, V = c.n_vocab;
    id_d_ = static_cast<int32_t*>(alloc(sizeof(int32_t)));
    ML_CUDA(cudaMallocHost(&id_h_, sizeof(int32_t)));
    ML_CUDA(cudaMallocHost(&logits_h_, V * sizeof(float)));
    resid_ = alloc_floats(D);
    xz_ = alloc_floats(NR);
    xc_ = alloc_floats(CD);
    dbc_ = alloc_floats(ldbc);
    y_ = alloc_floats(E);
    logits_d_ = alloc_floats(V);
    p_ids_ = static_cast<int32_t*>(alloc(kChunk * sizeof(int32_t)));
    p_resid_ = alloc_floats(kChunk * D);
    p_hn_ = alloc_floats(kChunk * D);
    p_xz_ = alloc_floats(kChunk * NR);
    p_xc_ = alloc_floats(kChunk * CD);
    p_dbc_ = alloc_floats(kChunk * ldbc);
    p_dt_ = alloc_floats(kChunk * E);
    p_y_ = alloc_floats(kChunk * E);
  } catch (...) {
    release();
    throw;
  }
}

CudaEngine::~CudaEngine() { release(); }

void CudaEngine::release() {
  cudaSetDevice(device_);
  for (auto& kv : graphs_) cudaGraphExecDestroy(kv.second);
  graphs_.clear();
  for (void* p : allocations_) cudaFree(p);
  allocations_.clear();
  if (id_h_) cudaFreeHost(id_h_);
  if (logits_h_) cudaFreeHost(logits_h_);
  id_h_ = nullptr;
  logits_h_ = nullptr;
  if (stream_) cudaStreamDestroy(stream_);
  stream_ = nullptr;
}

void* CudaEngine::alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 16));
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw std::runtime_error("could not allocate " + std::to_string(bytes >> 20) + " MiB on " +
                             name_ + " (" + std::to_string(free_b >> 20) + " of " +
                             std::to_string(total_b >> 20) +
                             " MiB free): " + cudaGetErrorString(e) +
                             ". Free GPU memory, or use a smaller model or device='cpu'.");
  }
  allocations_.push_back(p);
  return p;
}

const float* CudaEngine::upload_floats(const std::vector<float>& v) {
  if (v.empty()) return nullptr;
  float* d = alloc_floats(static_cast<int64_t>(v.size()));
  ML_CUDA(cudaMemcpy(d, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
  return d;
}

DevMat CudaEngine::upload_matrix(const MatView& m) {
  DevMat d;
  d.rows = m.rows;
  d.cols = m.cols;
  d.ld = round_up(m.cols, 32);
  const int64_t rows = m.rows, cols = m.cols, ld = d.ld;
  std::vector<uint8_t> q;
  std::vector<__half> scales;
  switch (m.type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16: {
      d.type = m.type == GgmlType::F32   ? WType::F32
               : m.type == GgmlType::F16 ? WType::F16
                                         : WType::BF16;
      const size_t es = m.type == GgmlType::F32 ? 4 : 2;
      q.assign(static_cast<size_t>(rows * ld) * es, 0);
      for (int64_t r = 0; r < rows; ++r) std::memcpy(&q[r * ld * es], m.row(r), cols * es);
      break;
    }
    case GgmlType::Q8_0:
    case GgmlType::Q4_0: {
      const bool q8 = m.type == GgmlType::Q8_0;
      d.type = q8 ? WType::Q8_0 : WType::Q4_0;
      const int64_t nb = cols / 32, qb = q8 ? 32 : 16;  // blocks per row, quant bytes per block
      q.resize(static_cast<size_t>(rows * nb * qb));
      scales.resize(static_cast<size_t>(rows * nb));
      for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* src = m.row(r);
        for (int64_t b = 0; b < nb; ++b) {
          const uint8_t* blk = src + b * (2 + qb);
          __half_raw h;
          std::memcpy(&h.x, blk, 2);
          scales[r * nb + b] = __half(h);
          std::memcpy(&q[(r * nb + b) * qb], blk + 2, qb);
        }
      }
      break;
    }
    default: {  // K-quants and the rest: F16 (their values times f16 scales, rounded once)
      d.type = WType::F16;
      std::vector<float> row(static_cast<size_t>(cols));
      q.assign(static_cast<size_t>(rows * ld) * 2, 0);
      __half* h = reinterpret_cast<__half*>(q.data());
      for (int64_t r = 0; r < rows; ++r) {
        dequantize_row(m.type, m.row(r), cols, row.data());
        for (int64_t i = 0; i < cols; ++i) h[r * ld + i] = __float2half_rn(row[i]);
      }
    }
  }
  void* qd = alloc(q.size());
  ML_CUDA(cudaMemcpy(qd, q.data(), q.size(), cudaMemcpyHostToDevice));
  d.q = qd;
  if (!scales.empty()) {
    void* sd = alloc(scales.size() * sizeof(__half));
    ML_CUDA(cudaMemcpy(sd, scales.data(), scales.size() * sizeof(__half), cudaMemcpyHostToDevice));
    d.d = static_cast<const __half*>(sd);
  }
  return d;
}

void CudaEngine::enqueue_step(CudaStateMirror& st, bool want_logits) {
  const ModelConfig& c = c_;
  const int64_t E = c.d_inner, N = c.d_state, K = c.d_conv, CD = c.conv_dim();
  cudaStream_t s = stream_;
  ML_CUDA(cudaMemcpyAsync(id_d_, id_h_, sizeof(int32_t), cudaMemcpyHostToDevice, s));
  embed(embd_, id_d_, 1, resid_, s);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const DevLayer& w = layers_[static_cast<size_t>(l)];
    // in_proj, and the conv of its x (Mamba-2: xBC) rows in the same kernel.
    const ConvEpi conv{mamba2_ ? E : 0,
                       mamba2_ ? CD : E,
                       static_cast<int>(K),
                       st.conv(l),
                       w.conv_w,
                       w.conv_b,
                       xc_};
    matvec(w.in_proj, {resid_, w.attn_norm, 1, c.norm_eps}, xz_, false, cfg_, s, conv);
    if (!mamba2_) {
      matvec(w.x_proj, {xc_, nullptr, 1, 0.0f}, dbc_, false, cfg_, s);
      scan1_step({w.dt_proj, dbc_, xc_, xz_ + E, w.dt_b, w.A, w.D, st.ssm(l), y_, E, N, c.dt_rank,
                  c.dt_b_c_rms, c.mixer_eps},
                 cfg_, s);
      matvec(w.out_proj, {y_, nullptr, 1, 0.0f}, resid_, true, cfg_, s);
    } else {
      scan2_step({xc_, xz_, xz_ + E + CD, w.dt_b, w.A, w.D, st.ssm(l), y_, c.n_head,
                  c.head_dim_ssm(), N, c.n_group},
                 s);
      matvec(w.out_proj, {y_, w.ssm_norm, static_cast<int>(c.n_group), c.norm_eps}, resid_, true,
             cfg_, s);
    }
  }
  if (want_logits) {
    matvec(output_, {resid_, output_norm_, 1, c.norm_eps}, logits_d_, false, cfg_, s);
    ML_CUDA(cudaMemcpyAsync(logits_h_, logits_d_, c.n_vocab * sizeof(float), cudaMemcpyDeviceToHost,
                            s));
  }
}

void CudaEngine::step(CudaStateMirror& st, int32_t id, float* logits) {
  const bool want = logits != nullptr;
  *id_h_ = id;
  if (!use_graphs_) {
    enqueue_step(st, want);
  } else {
    auto key = std::make_pair(static_cast<const float*>(st.ssm(0)), want);
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      if (graphs_.size() >= 16) {  // states come and go: keep the cache bounded
        for (auto& kv : graphs_) cudaGraphExecDestroy(kv.second);
        graphs_.clear();
      }
      cudaGraph_t graph = nullptr;
      ML_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
      try {
        enqueue_step(st, want);
      } catch (...) {
        cudaStreamEndCapture(stream_, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
      }
      ML_CUDA(cudaStreamEndCapture(stream_, &graph));
      cudaGraphExec_t exec = nullptr;
      const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      check(e, "cudaGraphInstantiate");
      it = graphs_.emplace(key, exec).first;
    }
    ML_CUDA(cudaGraphLaunch(it->second, stream_));
  }
  ML_CUDA(cudaStreamSynchronize(stream_));
  if (want) std::memcpy(logits, logits_h_, c_.n_vocab * sizeof(float));
}

// Tokens in p_ids_ (n <= kChunk) through every layer; p_resid_ holds the last layer's output.
void CudaEngine::prefill_chunk(CudaStateMirror& st, int64_t n) {
  const ModelConfig& c = c_;
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank;
  const int64_t CD = c.conv_dim(), NR = c.in_proj_rows(), ldbc = R + 2 * N;
  cudaStream_t s = stream_;
  embed(embd_, p_ids_, n, p_resid_, s);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const DevLayer& w = layers_[static_cast<size_t>(l)];
    rms_norm_rows(p_resid_, D, n, D, 1, w.attn_norm, c.norm_eps, p_hn_, D, s);
    gemm(w.in_proj, p_hn_, D, n, p_xz_, NR, false, s);  // xz: (n, NR)
    if (!mamba2_) {
      conv_seq(n, K, E, st.conv(l), p_xz_, NR, w.conv_w, w.conv_b, p_xc_, s);
      gemm(w.x_proj, p_xc_, E, n, p_dbc_, ldbc, false, s);  // dbc: (n, R + 2N)
      if (c.dt_b_c_rms) {
        rms_norm_rows(p_dbc_, ldbc, n, R, 1, nullptr, c.mixer_eps, p_dbc_, ldbc, s);
        rms_norm_rows(p_dbc_ + R, ldbc, n, N, 1, nullptr, c.mixer_eps, p_dbc_ + R, ldbc, s);
        rms_norm_rows(p_dbc_ + R + N, ldbc, n, N, 1, nullptr, c.mixer_eps, p_dbc_ + R + N, ldbc, s);
      }
      gemm(w.dt_proj, p_dbc_, ldbc, n, p_dt_, E, false, s);  // dt: (n, E) before softplus
      scan1_seq({n, E, N, p_xc_, p_dt_, p_dbc_ + R, p_dbc_ + R + N, ldbc, p_xz_ + E, NR, w.dt_b,
                 w.A, w.D, st.ssm(l), p_y_},
                s);
    } else {
      conv_seq(n, K, CD, st.conv(l), p_xz_ + E, NR, w.conv_w, w.conv_b, p_xc_, s);
      scan2_seq({n, c.n_head, c.head_dim_ssm(), N, c.n_group, p_xc_, p_xz_, NR, w.dt_b, w.A, w.D,
                 st.ssm(l), p_y_},
                s);
      rms_norm_rows(p_y_, E, n, E, static_cast<int>(c.n_group), w.ssm_norm, c.norm_eps, p_y_, E, s);
    }
    gemm(w.out_proj, p_y_, E, n, p_resid_, D, true, s);  // resid += out
  }
}

void CudaEngine::eval(State& state, const int32_t* ids, int64_t n, LogitsMode mode, float* logits) {
  ML_CUDA(cudaSetDevice(device_));
  StateMirror* m = state.use_mirror(device_);
  if (m == nullptr) {
    state.set_mirror(std::make_unique<CudaStateMirror>(device_, model_state_shape_));
    m = state.use_mirror(device_);
  }
  auto& st = static_cast<CudaStateMirror&>(*m);
  state.mirror_changed();  // from here on the device holds the newest values
  const int64_t D = c_.d_model, V = c_.n_vocab;
  if (n == 1) {
    step(st, ids[0], mode == LogitsMode::kNone ? nullptr : logits);
    return;
  }
  cudaStream_t s = stream_;
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t m_tok = std::min(kChunk, n - b);
    ML_CUDA(cudaMemcpyAsync(p_ids_, ids + b, m_tok * sizeof(int32_t), cudaMemcpyHostToDevice, s));
    prefill_chunk(st, m_tok);
    if (mode == LogitsMode::kAll) {
      if (p_logits_ == nullptr) p_logits_ = alloc_floats(kChunk * V);
      rms_norm_rows(p_resid_, D, m_tok, D, 1, output_norm_, c_.norm_eps, p_hn_, D, s);
      gemm(output_, p_hn_, D, m_tok, p_logits_, V, false, s);
      ML_CUDA(cudaMemcpyAsync(logits + b * V, p_logits_, m_tok * V * sizeof(float),
                              cudaMemcpyDeviceToHost, s));
    } else if (mode == LogitsMode::kLast && b + m_tok == n) {
      matvec(output_, {p_resid_ + (m_tok - 1) * D, output_norm_, 1, c_.norm_eps}, logits_d_, false,
             cfg_, s);
      ML_CUDA(cudaMemcpyAsync(logits_h_, logits_d_, V * sizeof(float), cudaMemcpyDeviceToHost, s));
    }
  }
  ML_CUDA(cudaStreamSynchronize(s));
  if (mode == LogitsMode::kLast) std::memcpy(logits, logits_h_, V * sizeof(float));
}

}  // namespace
}  // namespace cuda

bool cuda_built() { return true; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::unique_ptr<DeviceEngine> make_cuda_engine(const Model& model, int ordinal) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("device='cuda' needs an NVIDIA GPU and its driver, and "
                                         "CUDA found none usable: ") +
                             cudaGetErrorString(e) + ". Use device='cpu'.");
  }
  if (ordinal >= n) {
    throw std::runtime_error("there is no CUDA device " + std::to_string(ordinal) +
                             ": this machine has " + std::to_string(n) +
                             " (numbered from 0). Use device='cuda:0' or device='cpu'.");
  }
  return std::make_unique<cuda::CudaEngine>(model, ordinal);
}

}  // namespace mambalite
