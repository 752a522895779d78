// What the C++ kernel test's files share: the pass/fail count and the random inputs.
#pragma once

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>

#include "kernels/kernels.h"

namespace mambalite_test {

inline int g_passed = 0, g_failed = 0;
inline std::mt19937 g_rng(1234);

inline void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAILED: %s\n", what.c_str());
  }
}

inline float uniform() { return std::uniform_real_distribution<float>(-1.0f, 1.0f)(g_rng); }
inline uint8_t byte() { return static_cast<uint8_t>(g_rng() & 0xFF); }

// The attention kernels (attention_test.cpp): axpy_f16 and attend_f16 against double references.
void test_attention(const mambalite::KernelTable& k);

}  // namespace mambalite_test
