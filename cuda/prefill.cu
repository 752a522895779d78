// Kernels of prefill (a block of tokens at once): row-wise RMSNorm, a tiled fp32 GEMM that
// dequantizes weight tiles in shared memory, the causal conv over a sequence, and the selective
// scans of Mamba-1 and Mamba-2 with the state held in registers (only the final state is stored).
#include "kernels.cuh"

namespace mambalite {
namespace cuda {
namespace {

// ---- RMSNorm of rows, one block per row; in place when x == out.
__global__ void rms_norm_rows_kernel(const float* x, int64_t ldx, int64_t cols, int groups,
                                     const float* w, float eps, float* out, int64_t ld_out) {
  __shared__ float part[32];
  const float* row = x + blockIdx.x * ldx;
  float* orow = out + blockIdx.x * ld_out;
  const int64_t gsize = cols / groups;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (int g = 0; g < groups; ++g) {
    const float* v = row + g * gsize;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < gsize; i += blockDim.x) ss += v[i] * v[i];
    ss = warp_sum(ss);
    if (lane == 0) part[warp] = ss;
    __syncthreads();
    float tot = 0.0f;
    for (int i = 0; i < warps; ++i) tot += part[i];
    const float scale = 1.0f / sqrtf(tot / static_cast<float>(gsize) + eps);
    __syncthreads();  // everyone has read part[] and v before anything is written
    for (int64_t i = threadIdx.x; i < gsize; i += blockDim.x) {
      orow[g * gsize + i] = v[i] * scale * (w ? w[g * gsize + i] : 1.0f);
    }
    __syncthreads();
  }
}

// ---- GEMM: Y (n, rows) = X (n, cols) @ W^T. Tile of 64 weight rows x 64 tokens, k-steps of
// 32, 256 threads each owning 4 x 4 outputs.
constexpr int kBM = 64, kBN = 64, kBK = 32;

template <WType T>
__global__ void __launch_bounds__(256)
    gemm_kernel(DevMat w, const float* X, int64_t ldx, int64_t n, float* Y, int64_t ldy, int add) {
  __shared__ __align__(16) float Ws[kBK][kBM + 4];
  __shared__ __align__(16) float Xs[kBK][kBN + 4];
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kBN;
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < w.cols; k0 += kBK) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int e = tid + i * 256, rr = e >> 5, kk = e & 31;
      const int64_t r = r0 + rr, k = k0 + kk;
      Ws[kk][rr] = (r < w.rows && k < w.cols) ? mat_elem<T>(w, r, k) : 0.0f;
      const int64_t t = t0 + rr;
      Xs[kk][rr] = (t < n && k < w.cols) ? X[t * ldx + k] : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kBK; ++kk) {
      const float4 a = *reinterpret_cast<const float4*>(&Ws[kk][tx * 4]);
      const float4 b = *reinterpret_cast<const float4*>(&Xs[kk][ty * 4]);
      const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t t = t0 + ty * 4 + j;
    if (t >= n) continue;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t r = r0 + tx * 4 + i;
      if (r < w.rows) Y[t * ldy + r] = add ? Y[t * ldy + r] + acc[i][j] : acc[i][j];
    }
  }
}

// ---- causal conv over a sequence: one thread per channel.
__global__ void conv_seq_kernel(int64_t n, int K, int64_t C, float* window, const float* x,
                                int64_t ldx, const float* w, const float* b, float* out) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int km1 = K - 1;
  auto in = [&](int64_t j) { return j < km1 ? window[j * C + c] : x[(j - km1) * ldx + c]; };
  for (int64_t t = 0; t < n; ++t) {
    float acc = b[c];
    for (int k = 0; k < K; ++k) acc += w[k * C + c] * in(t + k);
    out[t * C + c] = silu(acc);
  }
  for (int j = 0; j < km1; ++j) window[j * C + c] = in(n + j);  // reads rows > j: safe
}

// ---- Mamba-1 scan: one warp per channel, NPL state values per lane (N <= 32 * NPL).
template <int NPL>
__global__ void __launch_bounds__(256) scan1_seq_kernel(Scan1Seq a) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * 8 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (e >= a.E) return;
  float s[NPL], A[NPL];
#pragma unroll
  for (int j = 0; j < NPL; ++j) {
    const int64_t k = lane + 32 * j;
    s[j] = k < a.N ? a.s[e * a.N + k] : 0.0f;
    A[j] = k < a.N ? a.A[e * a.N + k] : 0.0f;
  }
  const float dt_b = a.dt_b[e], Dv = a.D[e];
  for (int64_t t = 0; t < a.n; ++t) {
    const float dt = softplus(a.dt[t * a.E + e] + dt_b);
    const float xv = a.x[t * a.E + e];
    const float dx = dt * xv;
    const float* B = a.B + t * a.ldbc;
    const float* C = a.C + t * a.ldbc;
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < NPL; ++j) {
      const int64_t k = lane + 32 * j;
      if (k < a.N) {
        s[j] = s[j] * expf(dt * A[j]) + dx * B[k];
        acc += s[j] * C[k];
      }
    }
    acc = warp_sum(acc);
    if (lane == 0) a.y[t * a.E + e] = (acc + Dv * xv) * silu(a.z[t * a.ldz + e]);
  }
#pragma unroll
  for (int j = 0; j < NPL; ++j) {
    const int64_t k = lane + 32 * j;
    if (k < a.N) a.s[e * a.N + k] = s[j];
  }
}

// ---- Mamba-2 scan: grid (H, ceil(P / 8)), one warp per state row (h, p).
template <int NPL>
__global__ void __launch_bounds__(256) scan2_seq_kernel(Scan2Seq a) {
  const int64_t h = blockIdx.x;
  const int64_t p = static_cast<int64_t>(blockIdx.y) * 8 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (p >= a.P) return;
  const int64_t E = a.H * a.P, CD = E + 2 * a.G * a.N, g = h / (a.H / a.G);
  float* sp = a.s + (h * a.P + p) * a.N;
  float s[NPL];
#pragma unroll
  for (int j = 0; j < NPL; ++j) {
    const int64_t k = lane + 32 * j;
    s[j] = k < a.N ? sp[k] : 0.0f;
  }
  const float Ah = a.A[h], dt_b = a.dt_b[h], Dh = a.D[h];
  for (int64_t t = 0; t < a.n; ++t) {
    const float* zrow = a.zxbcdt + t * a.nr;
    const float dt = softplus(zrow[E + CD + h] + dt_b);
    const float dA = expf(dt * Ah);
    const float* row = a.xbc + t * CD;
    const float xv = row[h * a.P + p];
    const float dx = dt * xv;
    const float* B = row + E + g * a.N;
    const float* C = row + E + (a.G + g) * a.N;
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < NPL; ++j) {
      const int64_t k = lane + 32 * j;
      if (k < a.N) {
        s[j] = s[j] * dA + dx * B[k];
        acc += s[j] * C[k];
      }
    }
    acc = warp_sum(acc);
    if (lane == 0) a.y[t * E + h * a.P + p] = (acc + Dh * xv) * silu(zrow[h * a.P + p]);
  }
#pragma unroll
  for (int j = 0; j < NPL; ++j) {
    const int64_t k = lane + 32 * j;
    if (k < a.N) sp[k] = s[j];
  }
}

// Calls f(std::integral_constant<int, NPL>{}) for the smallest NPL in {1, 2, 4, 8} that holds N.
template <typename F>
void per_lane(int64_t N, F&& f) {
  if (N <= 32) {
    f(std::integral_constant<int, 1>{});
  } else if (N <= 64) {
    f(std::integral_constant<int, 2>{});
  } else if (N <= 128) {
    f(std::integral_constant<int, 4>{});
  } else {
    f(std::integral_constant<int, 8>{});
  }
}

}  // namespace

void rms_norm_rows(const float* x, int64_t ldx, int64_t n, int64_t cols, int groups, const float* w,
                   float eps, float* out, int64_t ld_out, cudaStream_t stream) {
  rms_norm_rows_kernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(x, ldx, cols, groups, w, eps,
                                                                     out, ld_out);
  ML_CUDA(cudaGetLastError());
}

void gemm(const DevMat& w, const float* X, int64_t ldx, int64_t n, float* Y, int64_t ldy, bool add,
          cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((w.rows + kBM - 1) / kBM),
                  static_cast<unsigned>((n + kBN - 1) / kBN));
  dispatch(w.type, [&](auto t) {
    constexpr WType T = decltype(t)::value;
    gemm_kernel<T><<<grid, 256, 0, stream>>>(w, X, ldx, n, Y, ldy, add ? 1 : 0);
  });
  ML_CUDA(cudaGetLastError());
}

void conv_seq(int64_t n, int64_t K, int64_t C, float* window, const float* x, int64_t ldx,
              const float* w, const float* b, float* out, cudaStream_t stream) {
  conv_seq_kernel<<<static_cast<unsigned>((C + 127) / 128), 128, 0, stream>>>(
      n, static_cast<int>(K), C, window, x, ldx, w, b, out);
  ML_CUDA(cudaGetLastError());
}

void scan1_seq(const Scan1Seq& a, cudaStream_t stream) {
  per_lane(a.N, [&](auto npl) {
    scan1_seq_kernel<decltype(npl)::value>
        <<<static_cast<unsigned>((a.E + 7) / 8), 256, 0, stream>>>(a);
  });
  ML_CUDA(cudaGetLastError());
}

void scan2_seq(const Scan2Seq& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(a.H), static_cast<unsigned>((a.P + 7) / 8));
  per_lane(a.N,
           [&](auto npl) { scan2_seq_kernel<decltype(npl)::value><<<grid, 256, 0, stream>>>(a); });
  ML_CUDA(cudaGetLastError());
}

}  // namespace cuda
}  // namespace mambalite
