// Normalisation kernels against hand-derived values and plain double-precision loops written here:
// LayerNormalization (axis, Mean/InvStdDev outputs, float16, BERT-sized rows), RMSNormalization,
// BatchNormalization (inference and training_mode running statistics), InstanceNormalization,
// GroupNormalization (opset 18 per-group and opset 21 per-channel affine) and LpNormalization.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <vector>

#include "frugal/kernel.h"
#include "kernel_test_util.h"

using namespace frugal;
using namespace frugal::testing;

namespace {

NodeDef nnode(const std::string& op, int opset, size_t n_in, size_t n_out = 1) {
  return xy_node(op, opset, n_in, n_out, "n");
}

// Deterministic values in [-2, 2) with an offset, from a small LCG.
std::vector<float> seq_values(size_t n, uint32_t seed, float offset = 0) {
  std::vector<float> v(n);
  for (auto& x : v) {
    seed = seed * 1664525u + 1013904223u;
    x = offset + static_cast<float>((seed >> 8) % 4000) / 1000.0f - 2.0f;
  }
  return v;
}

void check_close(const std::vector<float>& got, const std::vector<double>& want, double tol = 1e-5) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == Approx(want[i]).margin(tol).epsilon(tol));
  }
}

}  // namespace

TEST_CASE("LayerNormalization hand values", "[norm]") {
  auto n = nnode("LayerNormalization", 17, 3);
  set_float(n, "epsilon", 0.0f);
  // Row [1,2,3]: mean 2, var 2/3 -> (x-2)*sqrt(3/2); scale [1,2,1], bias [0,0,1].
  const auto y = run(n, {tf({1, 3}, {1, 2, 3}), tf({3}, {1, 2, 1}), tf({3}, {0, 0, 1})})[0];
  const double k = std::sqrt(1.5);
  check_close(fvals(y), {-k, 0, k + 1});
}

TEST_CASE("LayerNormalization axis and Mean/InvStdDev against a loop", "[norm]") {
  for (int64_t axis : {0, 1, 2, -1}) {
    auto n = nnode("LayerNormalization", 17, 3, 3);
    set_int(n, "axis", axis);
    const Shape s = {2, 3, 5};
    const int64_t a = axis < 0 ? axis + 3 : axis;
    int64_t rows = 1, len = 1;
    for (int64_t d = 0; d < 3; ++d) (d < a ? rows : len) *= s[static_cast<size_t>(d)];
    const auto x = seq_values(30, 7, 3.0f);
    const auto sc = seq_values(static_cast<size_t>(len), 11), bi = seq_values(static_cast<size_t>(len), 13);
    Shape ns(s.begin() + a, s.end());
    const auto out = run(n, {tf(s, x), tf(ns, sc), tf(ns, bi)});
    std::vector<double> want, means, invs;
    for (int64_t r = 0; r < rows; ++r) {
      double m = 0, v = 0;
      for (int64_t j = 0; j < len; ++j) m += x[static_cast<size_t>(r * len + j)];
      m /= static_cast<double>(len);
      for (int64_t j = 0; j < len; ++j) v += std::pow(x[static_cast<size_t>(r * len + j)] - m, 2);
      v /= static_cast<double>(len);
      const double inv = 1.0 / std::sqrt(v + 1e-5);
      means.push_back(m);
      invs.push_back(inv);
      for (int64_t j = 0; j < len; ++j)
        want.push_back((x[static_cast<size_t>(r * len + j)] - m) * inv * sc[static_cast<size_t>(j)] +
                       bi[static_cast<size_t>(j)]);
    }
    INFO("axis " << axis);
    check_close(fvals(out[0]), want, 1e-4);
    check_close(fvals(out[1]), means, 1e-5);
    check_close(fvals(out[2]), invs, 1e-4);
    Shape stat = s;
    for (size_t d = static_cast<size_t>(a); d < 3; ++d) stat[d] = 1;
    CHECK(out[1].shape() == stat);
  }
}

TEST_CASE("LayerNormalization float16 computes in float32", "[norm]") {
  auto n = nnode("LayerNormalization", 17, 2);
  std::vector<uint16_t> xh, sh;
  for (float v : {1.f, 2.f, 3.f, 4.f}) xh.push_back(float_to_half(v));
  for (float v : {1.f, 1.f, 1.f, 1.f}) sh.push_back(float_to_half(v));
  const Tensor x = Tensor::from_bytes(DType::kFloat16, {4}, xh.data());
  const Tensor s = Tensor::from_bytes(DType::kFloat16, {4}, sh.data());
  const auto y = run(n, {x, s})[0];
  REQUIRE(y.dtype() == DType::kFloat16);
  // mean 2.5, var 1.25
  const double inv = 1.0 / std::sqrt(1.25 + 1e-5);
  for (int i = 0; i < 4; ++i) CHECK(half_to_float(y.data<uint16_t>()[i]) == Approx((i + 1 - 2.5) * inv).margin(2e-3));
}

TEST_CASE("LayerNormalization BERT-sized rows are stable and quick", "[norm]") {
  const int64_t rows = 128, len = 768;
  auto x = seq_values(static_cast<size_t>(rows * len), 3, 1000.0f);  // large offset: naive E[x^2]-E[x]^2 fails
  const auto sc = seq_values(static_cast<size_t>(len), 5), bi = seq_values(static_cast<size_t>(len), 9);
  auto n = nnode("LayerNormalization", 17, 3);
  const auto t0 = std::chrono::steady_clock::now();
  const auto y = run(n, {tf({1, rows, len}, x), tf({len}, sc), tf({len}, bi)})[0];
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::vector<double> want;
  for (int64_t r = 0; r < rows; ++r) {
    double m = 0, v = 0;
    for (int64_t j = 0; j < len; ++j) m += x[static_cast<size_t>(r * len + j)];
    m /= len;
    for (int64_t j = 0; j < len; ++j) v += std::pow(x[static_cast<size_t>(r * len + j)] - m, 2);
    v /= len;
    for (int64_t j = 0; j < len; ++j)
      want.push_back((x[static_cast<size_t>(r * len + j)] - m) / std::sqrt(v + 1e-5) * sc[static_cast<size_t>(j)] +
                     bi[static_cast<size_t>(j)]);
  }
  // x carries ~1e-4 absolute rounding at 1000, which the normalised output inherits (/ std ~1.15).
  check_close(fvals(y), want, 2e-4);
  INFO("LayerNorm 128x768: " << ms << " ms");
  CHECK(ms < 200.0);  // generous: catches accidental quadratic work, not a benchmark
}

TEST_CASE("RMSNormalization against a loop", "[norm]") {
  auto n = nnode("RMSNormalization", 23, 2);
  const auto x = seq_values(12, 21);
  const auto sc = seq_values(4, 22);
  const auto y = run(n, {tf({3, 4}, x), tf({4}, sc)})[0];
  std::vector<double> want;
  for (int r = 0; r < 3; ++r) {
    double ms = 0;
    for (int j = 0; j < 4; ++j) ms += x[static_cast<size_t>(r * 4 + j)] * x[static_cast<size_t>(r * 4 + j)];
    ms /= 4;
    for (int j = 0; j < 4; ++j)
      want.push_back(x[static_cast<size_t>(r * 4 + j)] / std::sqrt(ms + 1e-5) * sc[static_cast<size_t>(j)]);
  }
  check_close(fvals(y), want);
}

TEST_CASE("BatchNormalization inference", "[norm]") {
  auto n = nnode("BatchNormalization", 15, 5);
  set_float(n, "epsilon", 0.0f);
  // N=1, C=2, 2 elements per channel. ch0: (x-1)/2*3+1 ; ch1: (x+1)/1*0.5-2
  const auto y = run(
      n, {tf({1, 2, 2}, {1, 5, -1, 3}), tf({2}, {3, 0.5f}), tf({2}, {1, -2}), tf({2}, {1, -1}), tf({2}, {4, 1})})[0];
  check_close(fvals(y), {1, 7, -2, 0});
}

TEST_CASE("BatchNormalization training_mode outputs running statistics", "[norm]") {
  auto n = nnode("BatchNormalization", 15, 5, 3);
  set_int(n, "training_mode", 1);
  set_float(n, "momentum", 0.8f);
  const std::vector<float> x = {1, 2, 3, 4, 10, 20, 30, 40};  // [2,2,2]
  const auto out = run(n, {tf({2, 2, 2}, x), tf({2}, {1, 2}), tf({2}, {0, 1}), tf({2}, {0.5f, 1}), tf({2}, {2, 3})});
  // ch0 {1,2,10,20}: mean 8.25, var (7.25²+6.25²+1.75²+11.75²)/4 = 58.1875;
  // ch1 {3,4,30,40}: mean 19.25, var (16.25²+15.25²+10.75²+20.75²)/4 = 260.6875
  const double m0 = 8.25, v0 = 58.1875, m1 = 19.25, v1 = 260.6875;
  std::vector<double> want;
  for (int i = 0; i < 2; ++i)
    for (int c = 0; c < 2; ++c)
      for (int j = 0; j < 2; ++j) {
        const double xv = x[static_cast<size_t>((i * 2 + c) * 2 + j)];
        want.push_back(c == 0 ? (xv - m0) / std::sqrt(v0 + 1e-5) * 1 + 0 : (xv - m1) / std::sqrt(v1 + 1e-5) * 2 + 1);
      }
  check_close(fvals(out[0]), want, 1e-5);
  check_close(fvals(out[1]), {0.5 * 0.8 + m0 * 0.2, 1 * 0.8 + m1 * 0.2});
  check_close(fvals(out[2]), {2 * 0.8 + v0 * 0.2, 3 * 0.8 + v1 * 0.2}, 1e-5);
}

TEST_CASE("InstanceNormalization and GroupNormalization against a loop", "[norm]") {
  const int64_t N = 2, C = 4, S = 3;
  const auto x = seq_values(static_cast<size_t>(N * C * S), 31, 2.0f);
  const auto sc = seq_values(static_cast<size_t>(C), 32), bi = seq_values(static_cast<size_t>(C), 33);
  // groups: C (instance norm), 2 (group norm, per-channel affine), 2 with opset-18 per-group affine.
  auto ref = [&](int64_t groups, bool per_group_affine) {
    std::vector<double> want(x.size());
    const int64_t cpg = C / groups, len = cpg * S;
    for (int64_t i = 0; i < N; ++i)
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t base = (i * C + g * cpg) * S;
        double m = 0, v = 0;
        for (int64_t k = 0; k < len; ++k) m += x[static_cast<size_t>(base + k)];
        m /= static_cast<double>(len);
        for (int64_t k = 0; k < len; ++k) v += std::pow(x[static_cast<size_t>(base + k)] - m, 2);
        v /= static_cast<double>(len);
        for (int64_t k = 0; k < len; ++k) {
          const size_t ch = static_cast<size_t>(per_group_affine ? g : g * cpg + k / S);
          want[static_cast<size_t>(base + k)] = (x[static_cast<size_t>(base + k)] - m) / std::sqrt(v + 1e-5) * sc[ch] + bi[ch];
        }
      }
    return want;
  };
  auto in = nnode("InstanceNormalization", 6, 3);
  check_close(fvals(run(in, {tf({N, C, S}, x), tf({C}, sc), tf({C}, bi)})[0]), ref(C, false), 1e-4);
  auto g21 = nnode("GroupNormalization", 21, 3);
  set_int(g21, "num_groups", 2);
  check_close(fvals(run(g21, {tf({N, C, S}, x), tf({C}, sc), tf({C}, bi)})[0]), ref(2, false), 1e-4);
  auto g18 = nnode("GroupNormalization", 18, 3);
  set_int(g18, "num_groups", 2);
  const std::vector<float> sg(sc.begin(), sc.begin() + 2), bg(bi.begin(), bi.begin() + 2);
  check_close(fvals(run(g18, {tf({N, C, S}, x), tf({2}, sg), tf({2}, bg)})[0]), ref(2, true), 1e-4);
}

TEST_CASE("LpNormalization p=1 and p=2, zero vectors stay zero", "[norm]") {
  auto n = nnode("LpNormalization", 1, 1);
  set_int(n, "axis", 1);
  const auto y2 = run(n, {tf({2, 2}, {3, 4, 0, 0})})[0];
  check_close(fvals(y2), {0.6, 0.8, 0, 0});
  set_int(n, "p", 1);
  set_int(n, "axis", 0);
  const auto y1 = run(n, {tf({2, 2}, {1, -2, 3, 2})})[0];
  check_close(fvals(y1), {0.25, -0.5, 0.75, 0.5});
}

TEST_CASE("LRN normalises across a window of channels", "[norm]") {
  // x: [1, 3, 1, 1] = {1, 2, 3}; size 3, alpha 3 (alpha/size = 1), beta 1, bias 1:
  // y_c = x_c / (1 + sum of squares over channels c-1..c+1).
  frugal::NodeDef n;
  n.op_type = "LRN";
  n.opset = 13;
  n.name = "lrn";
  n.inputs = {"x"};
  n.outputs = {"y"};
  n.attrs["size"].i = 3;
  n.attrs["alpha"].f = 3.0f;
  n.attrs["beta"].f = 1.0f;
  n.attrs["bias"].f = 1.0f;
  auto x = frugal::Tensor::from_vector<float>({1, 3, 1, 1}, {1, 2, 3});
  auto out = frugal::run_node(n, {&x}, frugal::cpu_registry());
  REQUIRE(out.ok());
  const float* y = (*out)[0].data<float>();
  CHECK(y[0] == Approx(1.0 / (1 + 1 + 4)));
  CHECK(y[1] == Approx(2.0 / (1 + 1 + 4 + 9)));
  CHECK(y[2] == Approx(3.0 / (1 + 4 + 9)));
}
