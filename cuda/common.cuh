// Shared pieces of the CUDA backend: error checks, the device-side weight matrix, and the warp
// dot product of one weight row with fp32 activations held in shared memory.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace mambalite {
namespace cuda {

// Throws std::runtime_error (RuntimeError in Python) naming the failed call and CUDA's reason.
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e) +
                             " (" + cudaGetErrorName(e) + ")");
  }
}
#define ML_CUDA(call) ::mambalite::cuda::check((call), #call)

// Weight types kept in their compact form on the device; others are converted to F16 at upload.
enum class WType : int { F32 = 0, F16 = 1, BF16 = 2, Q8_0 = 3, Q4_0 = 4 };

// A weight matrix on the device, repacked from ggml's blocks so that every 16-byte chunk is
// aligned: rows of `ld` values (cols rounded up to 32, zero padded). Q8_0: q = int8 (rows, ld),
// d = f16 scales (rows, ld / 32). Q4_0: q = bytes (rows, ld / 2), 16 per block in ggml's nibble
// order (low nibble = value j, high nibble = value j + 16), d as for Q8_0.
struct DevMat {
  WType type = WType::F32;
  int64_t rows = 0, cols = 0, ld = 0;
  const void* q = nullptr;
  const __half* d = nullptr;
};

// Values per 16-byte chunk.
template <WType T>
__host__ __device__ constexpr int chunk_values() {
  return T == WType::F32                         ? 4
         : (T == WType::F16 || T == WType::BF16) ? 8
         : T == WType::Q8_0                      ? 16
                                                 : 32;
}

// Bytes of one row on the device: ld / (values per chunk) chunks of 16 bytes.
__host__ __device__ inline int64_t row_bytes(const DevMat& m) {
  const int v = m.type == WType::F32                              ? chunk_values<WType::F32>()
                : (m.type == WType::F16 || m.type == WType::BF16) ? chunk_values<WType::F16>()
                : m.type == WType::Q8_0                           ? chunk_values<WType::Q8_0>()
                                                                  : chunk_values<WType::Q4_0>();
  return m.ld / v * 16;
}

__device__ __forceinline__ float dot4(float4 a, const float* x) {
  return a.x * x[0] + a.y * x[1] + a.z * x[2] + a.w * x[3];
}

// Byte offset of chunk c of row r, and the 16 bytes there.
template <WType T>
__device__ __forceinline__ int64_t chunk_index(const DevMat& m, int64_t r, int64_t c) {
  return r * (m.ld / chunk_values<T>()) + c;
}
template <WType T>
__device__ __forceinline__ uint4 load_chunk(const DevMat& m, int64_t r, int64_t c) {
  return reinterpret_cast<const uint4*>(m.q)[chunk_index<T>(m, r, c)];
}
// The block scale of chunk c of row r (1 for unquantized types).
template <WType T>
__device__ __forceinline__ float chunk_scale(const DevMat& m, int64_t r, int64_t c) {
  if constexpr (T == WType::Q8_0) return __half2float(m.d[(r * m.ld >> 5) + (c >> 1)]);
  if constexpr (T == WType::Q4_0) return __half2float(m.d[(r * m.ld >> 5) + c]);
  return 1.0f;
}

// Dot product of a loaded chunk (raw, with its block scale) with x (its activations, in shared
// memory).
template <WType T>
__device__ __forceinline__ float chunk_dot(uint4 raw, float scale, const float* x) {
  if constexpr (T == WType::F32) {
    return dot4(*reinterpret_cast<const float4*>(&raw), x);
  } else if constexpr (T == WType::F16) {
    const __half2* h = reinterpret_cast<const __half2*>(&raw);
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __half22float2(h[i]);
      s += f.x * x[2 * i] + f.y * x[2 * i + 1];
    }
    return s;
  } else if constexpr (T == WType::BF16) {
    const uint32_t* u = reinterpret_cast<const uint32_t*>(&raw);
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      s += __uint_as_float(u[i] << 16) * x[2 * i] +
           __uint_as_float(u[i] & 0xffff0000u) * x[2 * i + 1];
    }
    return s;
  } else if constexpr (T == WType::Q8_0) {
    const int8_t* q = reinterpret_cast<const int8_t*>(&raw);
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 16; ++i) s += static_cast<float>(q[i]) * x[i];
    return s * scale;
  } else {  // Q4_0
    const uint8_t* q = reinterpret_cast<const uint8_t*>(&raw);
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      s += static_cast<float>(static_cast<int>(q[i] & 15) - 8) * x[i] +
           static_cast<float>(static_cast<int>(q[i] >> 4) - 8) * x[16 + i];
    }
    return s * scale;
  }
}

// Element (r, c) of a matrix, dequantized (embedding rows, GEMM tiles).
template <WType T>
__device__ __forceinline__ float mat_elem(const DevMat& m, int64_t r, int64_t c) {
  if constexpr (T == WType::F32) {
    return reinterpret_cast<const float*>(m.q)[r * m.ld + c];
  } else if constexpr (T == WType::F16) {
    return __half2float(reinterpret_cast<const __half*>(m.q)[r * m.ld + c]);
  } else if constexpr (T == WType::BF16) {
    return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(m.q)[r * m.ld + c]);
  } else if constexpr (T == WType::Q8_0) {
    return static_cast<float>(reinterpret_cast<const int8_t*>(m.q)[r * m.ld + c]) *
           __half2float(m.d[(r * m.ld + c) >> 5]);
  } else {
    const int64_t blk = (r * m.ld + c) >> 5;
    const int j = static_cast<int>(c & 31);
    const uint8_t b = reinterpret_cast<const uint8_t*>(m.q)[blk * 16 + (j & 15)];
    return static_cast<float>(static_cast<int>(j < 16 ? (b & 15) : (b >> 4)) - 8) *
           __half2float(m.d[blk]);
  }
}

// This thread's part of the dot product of row r with x (m.ld values in shared memory, zero
// padded): chunks first, first + stride, ... Loads kU chunks before using any, so that each
// thread keeps kU 16-byte loads in flight.
constexpr int kU = 4;
template <WType T>
__device__ __forceinline__ float row_dot_part(const DevMat& m, int64_t r, const float* x,
                                              int64_t first, int64_t stride) {
  constexpr int V = chunk_values<T>();
  const int64_t n_chunks = m.ld / V;
  float acc = 0.0f;
  for (int64_t c0 = first; c0 < n_chunks; c0 += stride * kU) {
    uint4 buf[kU];
    float sc[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int64_t c = c0 + u * stride;
      if (c < n_chunks) {
        buf[u] = load_chunk<T>(m, r, c);
        sc[u] = chunk_scale<T>(m, r, c);
      }
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int64_t c = c0 + u * stride;
      if (c < n_chunks) acc += chunk_dot<T>(buf[u], sc[u], x + c * V);
    }
  }
  return acc;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Programmatic dependent launch (Hopper, sm_90+; no-ops before): a kernel lets the next one in
// the stream start early (trigger), and waits for the previous one's results before reading them
// (wait). What a kernel does between its start and wait (prefetching its weights into L2)
// overlaps the previous kernel's tail.
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void prefetch_l2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

// Launches kernel k, allowing it to start before the previous kernel in the stream ends when
// pdl is set (the kernel must call pdl_wait before it reads that kernel's output).
template <typename... Params, typename... Args>
void launch(void (*k)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl,
            Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  ML_CUDA(cudaLaunchKernelEx(&cfg, k, std::forward<Args>(args)...));
}

// Dot product of row r with x, summed over the warp.
template <WType T>
__device__ __forceinline__ float warp_row_dot(const DevMat& m, int64_t r, const float* x) {
  return warp_sum(row_dot_part<T>(m, r, x, threadIdx.x & 31, 32));
}

__device__ __forceinline__ float silu(float v) { return v / (1.0f + expf(-v)); }
__device__ __forceinline__ float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

// Calls f(std::integral_constant<WType, T>{}) with the matrix's type T as a constant.
template <typename F>
void dispatch(WType t, F&& f) {
  switch (t) {
    case WType::F32:
      f(std::integral_constant<WType, WType::F32>{});
      break;
    case WType::F16:
      f(std::integral_constant<WType, WType::F16>{});
      break;
    case WType::BF16:
      f(std::integral_constant<WType, WType::BF16>{});
      break;
    case WType::Q8_0:
      f(std::integral_constant<WType, WType::Q8_0>{});
      break;
    case WType::Q4_0:
      f(std::integral_constant<WType, WType::Q4_0>{});
      break;
  }
}

}  // namespace cuda
}  // namespace mambalite
