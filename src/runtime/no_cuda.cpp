// The device-backend factory of a build without the CUDA backend (CMake found no CUDA toolkit,
// or MAMBALITE_CUDA=OFF).
#include <stdexcept>

#include "runtime/device_engine.h"

namespace mambalite {

bool cuda_built() { return false; }

int cuda_device_count() { return 0; }

std::unique_ptr<DeviceEngine> make_cuda_engine(const Model&, int) {
  throw std::runtime_error(
      "device='cuda' needs mambalite's CUDA backend, and this installation was built without it "
      "(no CUDA toolkit was found at build time). Install a CUDA toolkit (nvcc) and reinstall "
      "with `MAMBALITE_CUDA=ON pip install .`, or use device='cpu'.");
}

}  // namespace mambalite
