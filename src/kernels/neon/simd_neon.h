// Small NEON helpers shared by the NEON kernel files (compiled with -march=armv8.2-a+dotprod).
#pragma once

#include <cstdint>
#include <cstring>

namespace mambalite {
namespace {

// One fp16 scale to fp32 by the hardware (fcvt), where fp16.h's portable version branches.
inline float half_to_float(uint16_t h) {
  __fp16 v;
  std::memcpy(&v, &h, sizeof v);
  return static_cast<float>(v);
}

}  // namespace
}  // namespace mambalite
