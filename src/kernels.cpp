#include "kernels.h"

#include <cmath>

namespace mambalite {

const KernelTable& kernels() {
  // Only the portable table exists in this version; per-ISA tables plug in here.
  return scalar_kernels();
}

float softplus(float v) { return v > 20.0f ? v : std::log1p(std::exp(v)); }

}  // namespace mambalite
