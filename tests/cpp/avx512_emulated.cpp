// src/kernels_avx512.cpp and src/gemm_avx512.cpp compiled through SIMDe's portable AVX-512, for
// the kernel test only. A separate file because CMake applies a source file's compile options (-mavx512f ...) in every
// target that lists it, and this build must not use the real instructions.
#define MAMBALITE_AVX512_EMULATED
#include "gemm_avx512.cpp"
#include "kernels_avx512.cpp"
