// src/kernels/avx512/*.cpp compiled through SIMDe's portable AVX-512, for
// the kernel test only. A separate file because CMake applies a source file's compile options
// (-mavx512f ...) in every target that lists it, and this build must not use the real instructions.
#define MAMBALITE_AVX512_EMULATED
#include "kernels/avx512/gemm_avx512.cpp"
#include "kernels/avx512/gemm_blocks_avx512.cpp"
#include "kernels/avx512/kernels_avx512.cpp"
