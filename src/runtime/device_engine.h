// The interface between the host engine and a device backend (the CUDA backend in cuda/). This
// header has no CUDA in it: src/ never includes CUDA headers, and a build without the backend
// links src/runtime/no_cuda.cpp instead, whose factory explains how to get one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/state.h"

namespace mambalite {

class Model;
enum class LogitsMode;

class DeviceEngine {
 public:
  virtual ~DeviceEngine() = default;
  // "cuda:0 (NVIDIA H100 80GB HBM3)"
  virtual std::string name() const = 0;
  // Same contract as Model::eval (ids and state already validated; state.add_tokens is the
  // caller's): advances `state` on the device and writes the requested logits to host memory.
  virtual void eval(State& state, const int32_t* ids, int64_t n, LogitsMode mode,
                    float* logits) = 0;
};

// Whether this build has the CUDA backend.
bool cuda_built();
// Number of usable CUDA devices (0 without the backend, a driver or a GPU).
int cuda_device_count();
// Uploads `model`'s weights to CUDA device `ordinal`; throws std::runtime_error with the reason
// (no backend in this build, no driver, no such device, out of device memory).
std::unique_ptr<DeviceEngine> make_cuda_engine(const Model& model, int ordinal);

}  // namespace mambalite
