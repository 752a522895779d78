// Kernels of the one-token step: matrix-vector products per weight type (warps per row, 16-byte
// loads, the activation vector and its RMSNorm in shared memory; the conv update in in_proj's
// epilogue), and the fused selective-scan steps of Mamba-1 and Mamba-2.
#include <algorithm>

#include "kernels.cuh"

namespace mambalite {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Sum of v over the block (every thread gets it); red: kWarps floats of shared memory.
__device__ float block_sum(float v, float* red) {
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float t = 0.0f;
#pragma unroll
  for (int i = 0; i < kWarps; ++i) t += red[i];
  __syncthreads();
  return t;
}

// xs (ld) = vec(in) zero padded; block-wide, ends with a barrier.
__device__ void load_vec(const VecIn& in, int64_t cols, int64_t ld, float* xs) {
  __shared__ float red[kWarps];
  for (int64_t i = threadIdx.x; i < ld; i += blockDim.x) xs[i] = i < cols ? in.x[i] : 0.0f;
  if (in.norm_w == nullptr) {
    __syncthreads();
    return;
  }
  const int64_t gsize = cols / in.groups;
  for (int g = 0; g < in.groups; ++g) {  // each thread squares the values it loaded itself
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      if (i / gsize == g) ss += xs[i] * xs[i];
    }
    const float scale = 1.0f / sqrtf(block_sum(ss, red) / static_cast<float>(gsize) + in.eps);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      if (i / gsize == g) xs[i] = xs[i] * scale * in.norm_w[i];
    }
  }
  __syncthreads();
}

// Warps of a block take rows in groups of `split`: the split warps of a row share its chunks and
// add their sums in shared memory (short, few rows: all SMs still get work).
// One channel of the causal conv, for the token whose input value is xv: out[c] =
// silu(conv([window; xv]) + b), and the window (K-1, C) shifts by one.
__device__ __forceinline__ void conv_channel(const ConvEpi& e, int64_t c, float xv) {
  const int64_t C = e.C;
  float acc = e.b[c];
  for (int k = 0; k < e.K - 1; ++k) acc += e.w[k * C + c] * e.window[k * C + c];
  acc += e.w[(e.K - 1) * C + c] * xv;
  e.out[c] = silu(acc);
  for (int k = 0; k + 1 < e.K - 1; ++k) e.window[k * C + c] = e.window[(k + 1) * C + c];
  if (e.K > 1) e.window[(e.K - 2) * C + c] = xv;
}

template <WType T>
__global__ void __launch_bounds__(kThreads)
    matvec_kernel(DevMat w, VecIn in, float* y, int add, int split, int prefetch, ConvEpi conv) {
  extern __shared__ float xs[];  // (w.ld)
  __shared__ float part[kWarps];
  pdl_trigger();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int rows_per_block = kWarps / split, slot = warp / split, sub = warp % split;
  if (prefetch) {  // while the previous kernel finishes: this warp's first row into L2
    const int64_t r = static_cast<int64_t>(blockIdx.x) * rows_per_block + slot;
    if (r < w.rows) {
      const int64_t rb = row_bytes(w);
      const char* row = static_cast<const char*>(w.q) + r * rb;
      for (int64_t off = (sub * 32 + lane) * 128; off < rb; off += 32 * split * 128) {
        prefetch_l2(row + off);
      }
    }
  }
  pdl_wait();
  load_vec(in, w.cols, w.ld, xs);
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * rows_per_block; base < w.rows;
       base += static_cast<int64_t>(gridDim.x) * rows_per_block) {
    const int64_t r = base + slot;
    float acc = 0.0f;
    if (r < w.rows) acc = row_dot_part<T>(w, r, xs, sub * 32 + lane, 32 * split);
    acc = warp_sum(acc);
    if (split > 1) {
      if (lane == 0) part[warp] = acc;
      __syncthreads();
      acc = 0.0f;
      for (int i = 0; i < split; ++i) acc += part[slot * split + i];
      __syncthreads();
    }
    if (sub == 0 && lane == 0 && r < w.rows) {
      const float v = add ? y[r] + acc : acc;
      y[r] = v;
      if (r >= conv.row0 && r < conv.row0 + conv.C) conv_channel(conv, r - conv.row0, v);
    }
  }
}

template <WType T>
__global__ void embed_kernel(DevMat e, const int32_t* ids, float* out) {
  pdl_trigger();
  pdl_wait();
  const int64_t row = ids[blockIdx.x];
  float* o = out + blockIdx.x * e.cols;
  for (int64_t c = threadIdx.x; c < e.cols; c += blockDim.x) o[c] = mat_elem<T>(e, row, c);
}

// Weightless RMSNorm of v (n) in shared memory by one warp.
__device__ void warp_rms(float* v, int64_t n, float eps) {
  const int lane = threadIdx.x & 31;
  float ss = 0.0f;
  for (int64_t i = lane; i < n; i += 32) ss += v[i] * v[i];
  ss = warp_sum(ss);
  const float scale = 1.0f / sqrtf(ss / static_cast<float>(n) + eps);
  __syncwarp();
  for (int64_t i = lane; i < n; i += 32) v[i] *= scale;
}

template <WType T>
__global__ void __launch_bounds__(kThreads) scan1_step_kernel(Scan1Step a) {
  extern __shared__ float sm[];  // dt (dt_proj.ld, zero padded), B (N), C (N)
  pdl_trigger();
  pdl_wait();
  float* dtv = sm;
  float* B = sm + a.dt_proj.ld;
  float* C = B + a.N;
  for (int64_t i = threadIdx.x; i < a.dt_proj.ld; i += blockDim.x) {
    dtv[i] = i < a.R ? a.dbc[i] : 0.0f;
  }
  for (int64_t i = threadIdx.x; i < a.N; i += blockDim.x) {
    B[i] = a.dbc[a.R + i];
    C[i] = a.dbc[a.R + a.N + i];
  }
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (a.rms) {
    if (warp == 0) warp_rms(dtv, a.R, a.eps);
    if (warp == 1) warp_rms(B, a.N, a.eps);
    if (warp == 2) warp_rms(C, a.N, a.eps);
    __syncthreads();
  }
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kWarps + warp; e < a.E;
       e += static_cast<int64_t>(gridDim.x) * kWarps) {
    const float dt = softplus(warp_row_dot<T>(a.dt_proj, e, dtv) + a.dt_b[e]);
    const float xv = a.x[e];
    const float dx = dt * xv;
    float* s = a.s + e * a.N;
    const float* A = a.A + e * a.N;
    float acc = 0.0f;
    for (int64_t k = lane; k < a.N; k += 32) {
      const float v = s[k] * expf(dt * A[k]) + dx * B[k];
      s[k] = v;
      acc += v * C[k];
    }
    acc = warp_sum(acc);
    if (lane == 0) a.y[e] = (acc + a.D[e] * xv) * silu(a.z[e]);
  }
}

// Grid (H, ceil(P / kWarps)): one warp per state row p of head h, lanes over the state.
__global__ void __launch_bounds__(kThreads) scan2_step_kernel(Scan2Step a) {
  pdl_trigger();
  pdl_wait();
  const int64_t h = blockIdx.x;
  const int64_t p = static_cast<int64_t>(blockIdx.y) * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (p >= a.P) return;
  const int64_t E = a.H * a.P, g = h / (a.H / a.G);
  const float dt = softplus(a.dt_raw[h] + a.dt_b[h]);
  const float dA = expf(dt * a.A[h]);
  const float* B = a.xbc + E + g * a.N;
  const float* C = a.xbc + E + (a.G + g) * a.N;
  const float xv = a.xbc[h * a.P + p];
  const float dx = dt * xv;
  float* s = a.s + (h * a.P + p) * a.N;
  float acc = 0.0f;
  for (int64_t k = lane; k < a.N; k += 32) {
    const float v = s[k] * dA + dx * B[k];
    s[k] = v;
    acc += v * C[k];
  }
  acc = warp_sum(acc);
  if (lane == 0) a.y[h * a.P + p] = (acc + a.D[h] * xv) * silu(a.z[h * a.P + p]);
}

int blocks_for(int64_t rows, int n_sm) {
  const int64_t want = (rows + kWarps - 1) / kWarps;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(want, int64_t{n_sm} * 8)));
}

// Allows more than 48 KB of dynamic shared memory where a kernel needs it.
template <typename Kernel>
void allow_smem(Kernel k, size_t bytes) {
  if (bytes > 48 * 1024) {
    ML_CUDA(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(bytes)));
  }
}

}  // namespace

void matvec(const DevMat& w, const VecIn& in, float* y, bool add, const LaunchCfg& cfg,
            cudaStream_t stream, const ConvEpi& conv) {
  const size_t smem = static_cast<size_t>(w.ld) * sizeof(float);
  // Enough blocks for two per SM where the matrix has the rows; else split rows across warps.
  int split = 1;
  while (split < kWarps && (w.rows * split + kWarps - 1) / kWarps < 2 * cfg.n_sm) split *= 2;
  const int64_t per_block = kWarps / split;
  const int64_t blocks =
      std::max<int64_t>(1, std::min<int64_t>((w.rows + per_block - 1) / per_block, 8 * cfg.n_sm));
  // Prefetching pays for small matrices; a large one would be streamed twice (evicted first).
  const int64_t bytes = w.rows * row_bytes(w);
  const int prefetch = bytes <= (int64_t{8} << 20) ? 1 : 0;
  dispatch(w.type, [&](auto t) {
    constexpr WType T = decltype(t)::value;
    allow_smem(matvec_kernel<T>, smem);
    launch(matvec_kernel<T>, dim3(static_cast<unsigned>(blocks)), dim3(kThreads), smem, stream,
           cfg.pdl, w, in, y, add ? 1 : 0, split, prefetch, conv);
  });
}

void embed(const DevMat& e, const int32_t* ids, int64_t n, float* out, cudaStream_t stream) {
  dispatch(e.type, [&](auto t) {
    constexpr WType T = decltype(t)::value;
    embed_kernel<T><<<static_cast<unsigned>(n), 256, 0, stream>>>(e, ids, out);
  });
  ML_CUDA(cudaGetLastError());
}

void scan1_step(const Scan1Step& a, const LaunchCfg& cfg, cudaStream_t stream) {
  const size_t smem = static_cast<size_t>(a.dt_proj.ld + 2 * a.N) * sizeof(float);
  dispatch(a.dt_proj.type, [&](auto t) {
    constexpr WType T = decltype(t)::value;
    allow_smem(scan1_step_kernel<T>, smem);
    launch(scan1_step_kernel<T>, dim3(static_cast<unsigned>(blocks_for(a.E, cfg.n_sm))),
           dim3(kThreads), smem, stream, cfg.pdl, a);
  });
}

void scan2_step(const Scan2Step& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(a.H), static_cast<unsigned>((a.P + kWarps - 1) / kWarps));
  scan2_step_kernel<<<grid, kThreads, 0, stream>>>(a);
  ML_CUDA(cudaGetLastError());
}

}  // namespace cuda
}  // namespace mambalite
