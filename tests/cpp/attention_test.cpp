// The C++ kernel test's attention part: a table's axpy_f16 and attend_f16 (or the portable loops
// when it has none) against double references.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "format/fp16.h"
#include "kernels/kernels.h"
#include "test_util.h"

using namespace mambalite;

namespace mambalite_test {
namespace {

bool close(float a, float b, float mag) { return std::fabs(a - b) <= 1e-5f * mag + 1e-6f; }

}  // namespace

void test_attention(const KernelTable& k) {
  const std::string isa = k.name;
  {  // axpy_f16 (the p.V of an F16 KV cache) at head sizes with and without vector tails
    for (const int64_t n : {1, 7, 15, 16, 64, 100, 128}) {
      std::vector<uint16_t> v(n);
      std::vector<float> y(n), want(n);
      for (int64_t i = 0; i < n; ++i) {
        v[i] = fp32_to_fp16(uniform());
        y[i] = want[i] = uniform();
      }
      const float a = 0.37f;
      for (int64_t i = 0; i < n; ++i) want[i] += a * fp16_to_fp32(v[i]);
      axpy_f16(k, n, a, v.data(), y.data());
      bool ok = true;
      for (int64_t i = 0; i < n; ++i) ok = ok && close(y[i], want[i], 1.0f);
      check(ok, isa + " axpy_f16 n=" + std::to_string(n));
    }
  }
  {  // attend_f16: one tile of online-softmax attention for g query heads sharing a kv head
    // (row stride > hd), from a fresh running state (m = -inf) and from a running one.
    for (const int64_t g : {1, 3}) {
      for (const int64_t hd : {15, 16, 64, 100, 128, 200}) {
        for (const int64_t nj : {1, 3, 7, 8, 9, 64}) {
          for (const bool fresh : {true, false}) {
            const int64_t stride = hd + 9;
            std::vector<uint16_t> kr(nj * stride), vr(nj * stride);
            std::vector<float> q(g * hd), acc(g * hd), ml(2 * g), scratch(nj * (hd + g) + g);
            for (uint16_t& v : kr) v = fp32_to_fp16(4.0f * uniform());
            for (uint16_t& v : vr) v = fp32_to_fp16(uniform());
            for (float& v : q) v = uniform();
            for (float& v : acc) v = fresh ? 0.0f : uniform();
            for (int64_t u = 0; u < g; ++u) {
              ml[2 * u] = fresh ? -INFINITY : 0.5f * uniform();
              ml[2 * u + 1] = fresh ? 0.0f : 1.0f + uniform();
            }
            const std::vector<float> acc0 = acc, ml0 = ml;
            attend_f16(k, g, nj, hd, kr.data(), vr.data(), stride, q.data(), 0.3f, acc.data(),
                       ml.data(), scratch.data());
            bool ok = true;
            for (int64_t u = 0; u < g; ++u) {
              // A score's fp32 rounding (a sum of hd terms: about 1.2e-7 sqrt(hd) of sum |q k|)
              // moves its weight e^s by as much relative, on top of exp's own 2e-6.
              std::vector<double> sc(nj);
              double mx = ml0[2 * u], s_err = 0.0;
              for (int64_t j = 0; j < nj; ++j) {
                double d = 0.0, mag = 0.0;
                for (int64_t i = 0; i < hd; ++i) {
                  const double t =
                      static_cast<double>(q[u * hd + i]) * fp16_to_fp32(kr[j * stride + i]);
                  d += t;
                  mag += std::fabs(t);
                }
                sc[j] = 0.3 * d;
                s_err = std::max(s_err, 1.2e-7 * std::sqrt(static_cast<double>(hd)) * 0.3 * mag);
                mx = std::max(mx, sc[j]);
              }
              const double rel = 2e-6 + s_err;
              const double c = std::exp(ml0[2 * u] - mx);
              double l = c * ml0[2 * u + 1];
              for (int64_t j = 0; j < nj; ++j) l += std::exp(sc[j] - mx);
              ok = ok && std::fabs(ml[2 * u] - mx) <= 1e-6 * std::fabs(mx) + s_err &&
                   std::fabs(ml[2 * u + 1] - l) <= rel * l;
              for (int64_t i = 0; i < hd; ++i) {
                double sum = c * acc0[u * hd + i], mag = std::fabs(sum);
                for (int64_t j = 0; j < nj; ++j) {
                  const double p = std::exp(sc[j] - mx) * fp16_to_fp32(vr[j * stride + i]);
                  sum += p;
                  mag += std::fabs(p);
                }
                ok = ok && std::fabs(acc[u * hd + i] - sum) <= rel * mag + 1e-30;
              }
            }
            check(ok, isa + " attend_f16 g=" + std::to_string(g) + " hd=" + std::to_string(hd) +
                          " nj=" + std::to_string(nj) + (fresh ? " fresh" : " running"));
          }
        }
      }
    }
  }
}

}  // namespace mambalite_test
