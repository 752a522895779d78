// Every instruction-set kernel table built into this binary, against the scalar reference, over
// odd sizes. Runs natively and, for the NEON table, under qemu-aarch64 (tests/test_arm.py).
// Prints one line per failure, the ISAs tested, and "N passed, M failed".
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "format/fp16.h"
#include "format/quant_blocks.h"
#include "kernels/kernels.h"
#include "runtime/thread_pool.h"
#include "test_util.h"

using namespace mambalite;
using namespace mambalite_test;

#if defined(MAMBALITE_TEST_AVX512_EMULATED)
namespace mambalite {
const KernelTable& avx512_emulated_kernels();  // src/kernels/avx512 through SIMDe
}
#endif

namespace {

// A normal fp16 value of magnitude about 2^-6 .. 2^5 (random sign, exponent, mantissa).
uint16_t random_f16() {
  const uint32_t exp = 9 + g_rng() % 11;
  return static_cast<uint16_t>(((g_rng() & 1) << 15) | (exp << 10) | (g_rng() & 0x3FF));
}
// A small positive fp16 scale (about 0.004 .. 0.03).
uint16_t random_scale() { return static_cast<uint16_t>(0x1C00 + g_rng() % 0x0C00); }

std::vector<uint8_t> random_rows(GgmlType type, int64_t n, int rows) {
  std::vector<uint8_t> out;
  for (int r = 0; r < rows; ++r) {
    if (type == GgmlType::F32) {
      for (int64_t i = 0; i < n; ++i) {
        const float v = uniform();
        const uint8_t* p = reinterpret_cast<const uint8_t*>(&v);
        out.insert(out.end(), p, p + 4);
      }
    } else if (type == GgmlType::F16 || type == GgmlType::BF16) {
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h = random_f16();
        if (type == GgmlType::BF16) {
          const float v = uniform();
          uint32_t u;
          std::memcpy(&u, &v, 4);
          h = static_cast<uint16_t>(u >> 16);
        }
        out.push_back(static_cast<uint8_t>(h & 0xFF));
        out.push_back(static_cast<uint8_t>(h >> 8));
      }
    } else if (type == GgmlType::Q6_K) {  // ql, qh, int8 scales (any byte), then d
      for (int64_t b = 0; b < n / kQKK; ++b) {
        for (size_t j = 0; j + 2 < sizeof(BlockQ6_K); ++j) out.push_back(byte());
        const uint16_t d = random_scale();
        out.push_back(static_cast<uint8_t>(d & 0xFF));
        out.push_back(static_cast<uint8_t>(d >> 8));
      }
    } else if (type == GgmlType::Q4_K || type == GgmlType::Q5_K) {  // d, dmin, then any bytes
      const size_t block = type == GgmlType::Q4_K ? sizeof(BlockQ4_K) : sizeof(BlockQ5_K);
      for (int64_t b = 0; b < n / kQKK; ++b) {
        for (int s = 0; s < 2; ++s) {
          const uint16_t d = random_scale();
          out.push_back(static_cast<uint8_t>(d & 0xFF));
          out.push_back(static_cast<uint8_t>(d >> 8));
        }
        for (size_t j = 4; j < block; ++j) out.push_back(byte());
      }
    } else {
      const size_t block = type == GgmlType::Q8_0   ? sizeof(BlockQ8_0)
                           : type == GgmlType::Q5_0 ? sizeof(BlockQ5_0)
                           : type == GgmlType::Q4_1 ? sizeof(BlockQ4_1)
                           : type == GgmlType::Q5_1 ? sizeof(BlockQ5_1)
                                                    : sizeof(BlockQ4_0);
      for (int64_t b = 0; b < n / kQK; ++b) {
        const uint16_t d = random_scale();
        out.push_back(static_cast<uint8_t>(d & 0xFF));
        out.push_back(static_cast<uint8_t>(d >> 8));
        size_t j = 2;
        if (type == GgmlType::Q4_1 || type == GgmlType::Q5_1) {  // m, a scale too
          const uint16_t m = random_scale();
          out.push_back(static_cast<uint8_t>(m & 0xFF));
          out.push_back(static_cast<uint8_t>(m >> 8));
          j = 4;
        }
        for (; j < block; ++j) {
          uint8_t v = byte();
          if (type == GgmlType::Q8_0 && v == 0x80) v = 0x81;  // ggml never writes -128
          out.push_back(v);
        }
      }
    }
  }
  return out;
}

bool close(float a, float b, float mag) { return std::fabs(a - b) <= 1e-5f * mag + 1e-6f; }

void test_dots(const KernelTable& k, const KernelTable& ref) {
  const std::string isa = k.name;
  struct Case {
    GgmlType type;
    std::vector<int64_t> sizes;
  };
  const Case cases[] = {
      {GgmlType::F32, {1, 7, 33, 100, 257, 1024}},  {GgmlType::F16, {1, 7, 33, 100, 257, 1024}},
      {GgmlType::BF16, {1, 7, 33, 100, 257, 1024}}, {GgmlType::Q8_0, {32, 96, 544, 2048}},
      {GgmlType::Q4_0, {32, 96, 544, 2048}},        {GgmlType::Q6_K, {256, 768, 2048}},
      {GgmlType::Q4_K, {256, 768, 2048}},           {GgmlType::Q5_K, {256, 768, 2048}},
      {GgmlType::Q5_0, {32, 96, 544, 2048}},        {GgmlType::Q4_1, {32, 96, 544, 2048}},
      {GgmlType::Q5_1, {32, 96, 544, 2048}}};
  for (const Case& c : cases) {
    for (int64_t n : c.sizes) {
      const std::vector<uint8_t> w = random_rows(c.type, n, 1);
      std::vector<float> x(static_cast<size_t>(4 * n));
      for (float& v : x) v = uniform();
      const bool q = uses_q8_activations(c.type);
      std::vector<uint8_t> act(activation_row_bytes(c.type, n) * 4);
      size_t stride = 0;
      const uint8_t* a = prepare_activations(ref, c.type, x.data(), n, 4, n, act.data(), &stride);
      if (q) {  // the ISA's quantization must give the same blocks
        std::vector<uint8_t> mine(act.size());
        size_t s2 = 0;
        prepare_activations(k, c.type, x.data(), n, 4, n, mine.data(), &s2);
        check(std::memcmp(mine.data(), act.data(), act.size()) == 0,
              isa + " quantize_act n=" + std::to_string(n));
      }
      float got4[4];
      float mag = 0.0f;
      for (int64_t i = 0; i < n; ++i) mag += std::fabs(x[static_cast<size_t>(i)]);
      // A rough bound on sum |w x| from the largest weight each type can hold.
      mag *= c.type == GgmlType::Q6_K || c.type == GgmlType::Q5_K ? 128.0f
             : c.type == GgmlType::Q4_K                           ? 64.0f
             : q                                                  ? 4.0f
                                                                  : 32.0f;
      MatView view{c.type, w.data(), 1, n, w.size()};
      std::vector<float> y_ref(4), y(4), scratch(matmul_scratch_floats(n));
      matmul(ref, view, a, stride, 4, y_ref.data(), 1, 0, 1, scratch.data());  // via dot4
      for (int t = 0; t < 4; ++t) {
        if (k.of(c.type).dot == nullptr) {
          check(false, isa + " has no dot for type " + std::to_string(static_cast<int>(c.type)));
          continue;
        }
        const float single = k.of(c.type).dot(n, w.data(), a + t * stride);
        check(close(single, y_ref[t], mag),
              isa + " dot type " + std::to_string(static_cast<int>(c.type)) +
                  " n=" + std::to_string(n) + ": " + std::to_string(single) + " vs " +
                  std::to_string(y_ref[t]));
      }
      matmul(k, view, a, stride, 4, got4, 1, 0, 1, scratch.data());
      for (int t = 0; t < 4; ++t) {
        check(close(got4[t], y_ref[t], mag), isa + " dot4 type " +
                                                 std::to_string(static_cast<int>(c.type)) +
                                                 " n=" + std::to_string(n));
      }
    }
  }
}

// Whether a and b, two sums of the blocks of a Q8_0 or Q4_0 row against ActQ8 row x, differ by
// no more than fp32 rounding of the blocks' terms can (1e-5 of the sum of their magnitudes; the
// SIMDe build differs by up to 5e-6 on one block): every integer kernel's block sums are exact,
// so one unit off in one block (d_w * d_x, about 1e-4 here, against a bound of 5e-6 at 16
// blocks) fails.
bool close_blocks(const KernelTable& ref, GgmlType type, const uint8_t* w, const uint8_t* x,
                  int64_t n, float a, float b) {
  const ActQ8* xb = reinterpret_cast<const ActQ8*>(x);
  const size_t block = type == GgmlType::Q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
  float mag = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float term = type == GgmlType::Q8_0
                           ? ref.of(GgmlType::Q8_0).dot(kQK, w + i * block, xb + i)
                           : ref.of(GgmlType::Q4_0).dot(kQK, w + i * block, xb + i);
    mag += std::fabs(term);
    if (type == GgmlType::Q4_0) {  // and the nibbles' offset, -8 * d_w * s_x, taken out of the
      uint16_t dw;                 // block's sum: a kernel may subtract it from the whole row's
      std::memcpy(&dw, w + i * block, 2);
      mag += 8.0f * std::fabs(fp16_to_fp32(dw) * xb[i].s);
    }
  }
  return std::fabs(a - b) <= 1e-5f * mag + 1e-7f;
}

// Whole matrices through matmul, against the scalar table's single dot products: 13 rows split
// as [0, 2) and [2, 13), so row ranges start off the 4-row tile grid and the GEMM's 6-row tiles
// end short; 1 token (decode's matrix-vector products, the matvec products where a table has them;
// 288 values: a group of 8 blocks and a tail block), 5 tokens (4 x 3 and 4 x 2 tiles plus a
// leftover token; or, with 3 and 5, the in-place products of small batches where a table has
// them), and 8, 13, 32, 37 and 141 (the GEMM, where a table has it: one or two 8-token vectors, a
// full 32-token panel, a second panel of 5, and a second group of panels after the four that share
// a converted pass).
void test_matmul_tiles(const KernelTable& k, const KernelTable& ref) {
  const std::string isa = k.name;
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0,
                        GgmlType::Q4_0, GgmlType::Q6_K, GgmlType::Q4_K, GgmlType::Q5_K}) {
    const bool super = type == GgmlType::Q6_K || type == GgmlType::Q4_K || type == GgmlType::Q5_K;
    const bool blocks = type == GgmlType::Q8_0 || type == GgmlType::Q4_0;
    for (int64_t n : {1, 7, 32, 64, 96, 100, 160, 256, 288, 300, 512}) {
      if (blocks && n % 32 != 0) continue;  // odd lengths exercise the float tiles' tails
      if (super && n % 256 != 0) continue;
      for (int tokens : {1, 3, 5, 8, 13, 32, 37, 141}) {
        const int rows = 13;
        const std::vector<uint8_t> w = random_rows(type, n, rows);
        std::vector<float> x(static_cast<size_t>(tokens * n));
        for (float& v : x) v = uniform();
        std::vector<uint8_t> act(activation_row_bytes(type, n) * tokens);
        size_t stride = 0;
        const uint8_t* a =
            prepare_activations(ref, type, x.data(), n, tokens, n, act.data(), &stride);
        MatView view{type, w.data(), rows, n, w.size() / rows};
        std::vector<float> y_ref(rows * tokens), y(rows * tokens, 0.0f),
            scratch(matmul_scratch_floats(n));
        for (int r = 0; r < rows; ++r) {  // one row and one token at a time: single products
          for (int t = 0; t < tokens; ++t) {
            matmul(ref, view, a + t * stride, stride, 1, y_ref.data() + t * rows, rows, r, r + 1,
                   scratch.data());
          }
        }
        if (uses_gemm(k, type, tokens)) {  // once with panels packed by the caller, as the model
          std::vector<float> panels(panel_floats(n, tokens));
          pack_panels(k, type, a, stride, tokens, n, panels.data());
          matmul(k, view, a, stride, tokens, y.data(), rows, 0, 2, scratch.data(), panels.data());
          matmul(k, view, a, stride, tokens, y.data(), rows, 2, 9, scratch.data(), panels.data());
          // and rows [9, 13) with matmul packing them into scratch itself
          matmul(k, view, a, stride, tokens, y.data(), rows, 9, rows, scratch.data());
        } else {
          matmul(k, view, a, stride, tokens, y.data(), rows, 0, 2, scratch.data());
          matmul(k, view, a, stride, tokens, y.data(), rows, 2, rows, scratch.data());
        }
        bool ok = true;
        for (int t = 0; t < tokens; ++t) {
          float mag = 0.0f;  // sum |x_t|: the products' scale (|w| <= 1 or one quantization step)
          for (int64_t i = 0; i < n; ++i) mag += std::fabs(x[t * n + i]);
          for (int r = 0; r < rows; ++r) {
            if (blocks) {  // exact int32 block sums: only the fp32 sum of the blocks' terms may
                           // differ, far below one unit of a block's sum (d_w * d_x)
              ok = ok && close_blocks(ref, type, view.row(r), a + t * stride, n, y[t * rows + r],
                                      y_ref[t * rows + r]);
            } else {
              ok = ok && close(y[t * rows + r], y_ref[t * rows + r], mag * 8.0f);
            }
          }
        }
        check(ok, isa + " matmul type " + std::to_string(static_cast<int>(type)) +
                      " n=" + std::to_string(n) + " tokens=" + std::to_string(tokens));
      }
    }
  }
}

void test_elementwise(const KernelTable& k, const KernelTable& ref) {
  const std::string isa = k.name;
  {  // the bandwidth probe's sum: exact, over 1 to 67 lines (odd counts: AVX-512's last line)
    std::vector<uint64_t> words(8 * 68);
    uint64_t* p = words.data();
    p += (8 - (reinterpret_cast<uintptr_t>(p) / 8) % 8) % 8;  // to a 64-byte line
    for (int64_t i = 0; i < 8 * 67; ++i) p[i] = static_cast<uint64_t>(g_rng()) << 20 | (i & 7);
    for (int64_t lines = 1; lines <= 67; ++lines) {
      uint64_t expect = 0;
      for (int64_t i = 0; i < 8 * lines; ++i) expect += p[i];
      check(stream_sum(k, p, 8 * lines) == expect,
            isa + " stream_sum over " + std::to_string(lines) + " lines");
    }
  }
  // Mamba-1 scan: 3 tokens, and 9 (AVX-512's 16-channel form: channels [5, 37) of E = 40 in two
  // vectors, then three more).
  for (int64_t N : {16, 8, 12, 32}) {
    for (const auto& [E, n] : {std::pair<int64_t, int64_t>{13, 3}, {40, 3}, {40, 9}}) {
      std::vector<float> x(n * E), dt(n * E), A(E * N), B(n * N), C(n * N), D(E), z(n * E),
          s0(E * N);
      for (float& v : x) v = uniform();
      for (float& v : dt) v = std::fabs(uniform()) * 2;
      for (float& v : A) v = -std::exp(2 * uniform()) * 10;
      for (float& v : B) v = uniform();
      for (float& v : C) v = uniform();
      for (float& v : D) v = uniform();
      for (float& v : z) v = uniform();
      for (float& v : s0) v = uniform();
      std::vector<float> s1 = s0, s2 = s0, y1(n * E), y2(n * E);
      ref.selective_scan(n, E, N, x.data(), dt.data(), A.data(), B.data(), C.data(), N, D.data(),
                         z.data(), E, s1.data(), y1.data(), 0, E);
      for (const auto& [c0, c1] : {std::pair<int64_t, int64_t>{0, 5}, {5, E}}) {  // two threads
        k.selective_scan(n, E, N, x.data(), dt.data(), A.data(), B.data(), C.data(), N, D.data(),
                         z.data(), E, s2.data(), y2.data(), c0, c1);
      }
      bool ok = true;
      for (size_t i = 0; i < y1.size(); ++i)
        ok = ok && close(y1[i], y2[i], 1 + std::fabs(y1[i]) * N);
      for (size_t i = 0; i < s1.size(); ++i) ok = ok && close(s1[i], s2[i], 1 + std::fabs(s1[i]));
      check(ok, isa + " selective_scan N=" + std::to_string(N) + " E=" + std::to_string(E) +
                    " n=" + std::to_string(n));
    }
  }
  // Mamba-2 head scan: x, z and y strided inside wider rows, as in the model.
  // P = 9: two groups of four channels and an odd one; P = 6: four, then a pair (N % 8 == 0);
  // P = 20: AVX-512's 16-wide gate and its tail.
  // n = 37: the prefill form's runs (at most 16 tokens), ended early by decays, with tokens whose
  // own decay is too strong for a run (1e-13, 0 and a denormal).
  for (int64_t N : {1, 7, 16, 20, 128, 131}) {
    for (int64_t P : {6, 9, 20}) {
      for (int64_t n : {1, 2, 5, 37}) {
        const int64_t ldx = P + 14, ldbc = N + 3, ldz = P + 8, ldy = P + 4;  // 23, 17, 13 at P = 9
        std::vector<float> x(n * ldx), dt(n), dA(n), B(n * ldbc), C(n * ldbc), z(n * ldz);
        std::vector<float> s0(P * N);
        for (float& v : x) v = uniform();
        for (float& v : B) v = uniform();
        for (float& v : C) v = uniform();
        for (float& v : z) v = uniform();
        for (float& v : s0) v = uniform();
        for (int64_t t = 0; t < n; ++t) {
          dt[t] = 0.5f + 0.5f * uniform();
          dA[t] = std::exp(-dt[t] * (1.5f + uniform()));
        }
        if (n == 37) {
          dA[3] = 1e-13f;
          dA[11] = 0.0f;
          for (int64_t t = 20; t < 30; ++t) dA[t] = 0.05f;  // 0.05^10 ends a run at token 29
          dA[36] = 1e-39f;
        }
        std::vector<float> s1 = s0, s2 = s0, y1(n * ldy, 7.0f), y2(n * ldy, 7.0f);
        ref.head_scan(n, P, N, x.data(), ldx, dt.data(), dA.data(), B.data(), C.data(), ldbc, 0.7f,
                      z.data(), ldz, s1.data(), y1.data(), ldy);
        k.head_scan(n, P, N, x.data(), ldx, dt.data(), dA.data(), B.data(), C.data(), ldbc, 0.7f,
                    z.data(), ldz, s2.data(), y2.data(), ldy);
        bool ok = true;
        for (size_t i = 0; i < y1.size(); ++i)
          ok = ok && close(y1[i], y2[i], 1 + std::fabs(y1[i]) * N);
        for (size_t i = 0; i < s1.size(); ++i) ok = ok && close(s1[i], s2[i], 1 + std::fabs(s1[i]));
        check(ok, isa + " head_scan N=" + std::to_string(N) + " P=" + std::to_string(P) +
                      " n=" + std::to_string(n));
      }
    }
  }
  for (int64_t K : {2, 4, 5}) {
    const int64_t E = 21, n = 3;
    std::vector<float> win(static_cast<size_t>((K - 1) * E)), x(n * E), w(K * E), b(E);
    for (float& v : win) v = uniform();
    for (float& v : x) v = uniform();
    for (float& v : w) v = uniform();
    for (float& v : b) v = uniform();
    std::vector<float> w1 = win, w2 = win, o1(n * E), o2(n * E);
    ref.conv_silu(n, K, E, w1.data(), x.data(), E, w.data(), b.data(), o1.data(), 0, E);
    k.conv_silu(n, K, E, w2.data(), x.data(), E, w.data(), b.data(), o2.data(), 0, E);
    bool ok = w1 == w2;
    for (size_t i = 0; i < o1.size(); ++i) ok = ok && close(o1[i], o2[i], 1 + K);
    check(ok, isa + " conv_silu K=" + std::to_string(K));
  }
  {  // softplus against double precision: about 3 ulp, everywhere from -100 to 30 (in place)
    const int64_t n = 2003;
    std::vector<float> v(n), bias(n), out(n);
    for (int64_t i = 0; i < n; ++i) {
      v[i] = -100.0f + 130.0f * static_cast<float>(i) / static_cast<float>(n - 1);
      bias[i] = 0.25f * uniform();
    }
    v[7] = 20.0f - bias[7];  // around the threshold
    v[8] = std::nextafter(20.0f, 30.0f) - bias[8];
    out = v;
    k.softplus_bias(n, out.data(), bias.data(), out.data());
    bool ok = true;
    for (int64_t i = 0; i < n; ++i) {
      const double s = static_cast<double>(v[i] + bias[i]);
      const double want = s > 20.0 ? s : std::log1p(std::exp(s));
      ok = ok && std::fabs(out[i] - want) <= 3.6e-7 * want + 1e-30;
    }
    check(ok, isa + " softplus_bias");
  }
  std::vector<float> x(101), w(101), o1(101), o2(101);
  for (float& v : x) v = uniform();
  for (float& v : w) v = uniform();
  ref.rms_norm(x.data(), w.data(), 101, 1e-5f, o1.data());
  k.rms_norm(x.data(), w.data(), 101, 1e-5f, o2.data());
  bool ok = true;
  for (size_t i = 0; i < o1.size(); ++i) ok = ok && close(o1[i], o2[i], 1.0f);
  check(ok, isa + " rms_norm");
}

}  // namespace

// The engine's cpuid/xgetbv feature detection against the compiler runtime's (GCC's libgcc also
// checks that the OS saves the ymm/zmm state).
void test_detection() {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__)
  __builtin_cpu_init();
  const std::vector<std::string> isas = available_isas();
  const auto has = [&](const char* isa) {
    return std::find(isas.begin(), isas.end(), isa) != isas.end();
  };
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  check(has("avx2") == avx2, "avx2 detection agrees with __builtin_cpu_supports");
#if defined(MAMBALITE_TEST_AVX512_EMULATED)  // built with AVX-512 support
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512vnni");
  check(has("avx512") == avx512, "avx512 detection agrees with __builtin_cpu_supports");
#endif
#endif
}

// ThreadPool::parallel_for covers [0, total) exactly once, in chunks aligned to `align`, and
// threads that finish early take work from a slow one.
void test_parallel_for() {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    for (int64_t total : {0, 1, 5, 16, 17, 100, 1000, 4097}) {
      for (int64_t align : {1, 16}) {
        std::vector<std::atomic<int>> seen(static_cast<size_t>(total));
        for (auto& v : seen) v.store(0);
        std::atomic<bool> aligned{true};
        pool.parallel_for(total, align, [&](int, int64_t b, int64_t e) {
          if (b % align != 0 || (e % align != 0 && e != total) || b >= e) aligned.store(false);
          for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)].fetch_add(1);
        });
        bool once = true;
        for (auto& v : seen) once = once && v.load() == 1;
        check(once && aligned.load(), "parallel_for threads=" + std::to_string(threads) +
                                          " total=" + std::to_string(total) +
                                          " align=" + std::to_string(align));
      }
    }
    if (threads == 1) continue;
    // Thread 0 sleeps in each of its chunks: the others must take some of its share (units
    // [0, 64 / threads)), and the result must still cover everything once.
    std::vector<int> owner(64, -1);
    pool.parallel_for(64, 1, [&](int t, int64_t b, int64_t e) {
      if (t == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      for (int64_t i = b; i < e; ++i) owner[static_cast<size_t>(i)] = t;
    });
    bool stolen = false, covered = true;
    for (int64_t i = 0; i < 64; ++i) {
      covered = covered && owner[static_cast<size_t>(i)] >= 0;
      if (i < 64 / threads && owner[static_cast<size_t>(i)] != 0) stolen = true;
    }
    check(covered && stolen, "parallel_for rebalances, threads=" + std::to_string(threads));
  }
}

int main() {
  test_detection();
  test_parallel_for();
  const KernelTable& ref = kernels_for("scalar");
  std::string tested;
  for (const std::string& isa : available_isas()) {
    const KernelTable& k = kernels_for(isa);
    tested += (tested.empty() ? "" : ",") + isa;
    test_dots(k, ref);
    test_elementwise(k, ref);
    test_attention(k);
    test_matmul_tiles(k, ref);
  }
  std::printf("tested: %s\n", tested.c_str());
#if defined(MAMBALITE_TEST_AVX512_EMULATED)
  // The AVX-512 kernels under emulation (the table's other entries are AVX2's, so it needs AVX2).
  const std::vector<std::string> isas = available_isas();
  if (std::find(isas.begin(), isas.end(), "avx2") != isas.end()) {
    const KernelTable& k = avx512_emulated_kernels();
    test_dots(k, ref);
    test_elementwise(k, ref);
    test_attention(k);
    test_matmul_tiles(k, ref);
    std::printf("emulated: avx512\n");
  }
#endif
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
