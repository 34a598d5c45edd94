// Activation kernels against closed-form values: pointwise activations, PRelu broadcasting, Clip in
// both opset forms, and Softmax/LogSoftmax/Hardmax in both axis conventions.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "frugal/kernel.h"
#include "kernel_test_util.h"

using namespace frugal;
using namespace frugal::testing;

namespace {

// Node "t" with inputs a, b, ... and the single output y.
NodeDef anode(const std::string& op, int opset, size_t n_in) {
  return make_node("t", op, opset, letter_names(n_in), {"y"});
}

const std::vector<float> kX = {-3.f, -1.f, -0.25f, 0.f, 0.5f, 2.f, 7.f};

void check_pointwise(const NodeDef& n, double (*ref)(double), double eps = 1e-6) {
  auto y = vals<float>(run1(n, {tf({7}, kX)}));
  for (size_t i = 0; i < kX.size(); ++i) {
    INFO(n.op_type << " x=" << kX[i]);
    CHECK(y[i] == Approx(ref(kX[i])).epsilon(eps).margin(1e-7));
  }
}

}  // namespace

TEST_CASE("Pointwise activations match their formulas", "[activation]") {
  check_pointwise(anode("Relu", 14, 1), [](double x) { return x > 0 ? x : 0; });
  check_pointwise(anode("Sigmoid", 13, 1), [](double x) { return 1 / (1 + std::exp(-x)); });
  check_pointwise(anode("Tanh", 13, 1), [](double x) { return std::tanh(x); });
  check_pointwise(anode("Erf", 13, 1), [](double x) { return std::erf(x); });
  check_pointwise(anode("Softsign", 22, 1), [](double x) { return x / (1 + std::fabs(x)); });
  check_pointwise(anode("Softplus", 22, 1), [](double x) { return std::log(1 + std::exp(x)); });
  check_pointwise(anode("HardSwish", 22, 1), [](double x) { return x * std::min(1.0, std::max(0.0, x / 6 + 0.5)); });
  check_pointwise(anode("Gelu", 20, 1), [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); });
  auto gt = anode("Gelu", 20, 1);
  set_str(gt, "approximate", "tanh");
  check_pointwise(gt, [](double x) {
    return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
  });
  auto lr = anode("LeakyRelu", 16, 1);
  check_pointwise(lr, [](double x) { return x >= 0 ? x : 0.01 * x; });
  set_float(lr, "alpha", 0.25f);
  check_pointwise(lr, [](double x) { return x >= 0 ? x : 0.25 * x; });
  auto elu = anode("Elu", 22, 1);
  set_float(elu, "alpha", 2.f);
  check_pointwise(elu, [](double x) { return x >= 0 ? x : 2 * (std::exp(x) - 1); });
  check_pointwise(anode("Selu", 22, 1), [](double x) {
    return x > 0 ? 1.0507009873554805 * x : 1.0507009873554805 * 1.6732632423543772 * (std::exp(x) - 1);
  });
  auto celu = anode("Celu", 12, 1);
  set_float(celu, "alpha", 2.f);
  check_pointwise(celu, [](double x) { return std::max(0.0, x) + std::min(0.0, 2 * (std::exp(x / 2) - 1)); });
  check_pointwise(anode("HardSigmoid", 22, 1), [](double x) { return std::max(0.0, std::min(1.0, 0.2 * x + 0.5)); });
}

TEST_CASE("Activations: extremes, NaN and integer Relu", "[activation]") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  auto s = vals<float>(run1(anode("Sigmoid", 13, 1), {tf({4}, {-1000.f, 1000.f, -inf, nan})}));
  CHECK(s[0] == 0.f);
  CHECK(s[1] == 1.f);
  CHECK(s[2] == 0.f);
  CHECK(std::isnan(s[3]));
  auto sp = vals<float>(run1(anode("Softplus", 22, 1), {tf({2}, {100.f, -20.f})}));
  CHECK(sp[0] == Approx(100.f));
  CHECK(sp[1] == Approx(std::exp(-20.0)).epsilon(1e-5));
  // Relu keeps NaN, as onnxruntime's Relu does (checked there) and as frugal's fused Relus do.
  auto rf = vals<float>(run1(anode("Relu", 14, 1), {tf({4}, {nan, -inf, inf, -2.f})}));
  CHECK(std::isnan(rf[0]));
  CHECK(rf[1] == 0.f);
  CHECK(rf[2] == inf);
  CHECK(rf[3] == 0.f);
  auto r = vals<int32_t>(run1(anode("Relu", 14, 1), {Tensor::from_vector<int32_t>({3}, {-5, 0, 9})}));
  CHECK(r == std::vector<int32_t>{0, 0, 9});
  // Threaded path: 50021 elements.
  const int64_t n = 50021;
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = float(i % 200) / 20.f - 5.f;
  auto t = vals<float>(run1(anode("Tanh", 13, 1), {tf({n}, x)}));
  for (int64_t i = 0; i < n; i += 97) CHECK(t[size_t(i)] == Approx(std::tanh(double(x[size_t(i)]))).margin(1e-7));
}

TEST_CASE("float32 exp/erf/tanh/sigmoid stay within 2e-7 of double references", "[activation]") {
  // A dense sweep plus extremes; the float paths use vectorised approximations, so check them hard.
  std::vector<float> x;
  for (int i = -200000; i <= 200000; ++i) x.push_back(float(i) * 5e-5f);  // [-10, 10]
  for (float v : {-100.f, -88.f, -87.f, 50.f, 88.f, 88.5f, 1e-30f, -1e-30f, 3.9f, 3.95f, 0.8999f, 0.9f, 0.625f})
    x.push_back(v);
  const int64_t n = static_cast<int64_t>(x.size());
  auto check = [&](const char* op, int opset, double (*ref)(double)) {
    auto y = vals<float>(run1(anode(op, opset, 1), {tf({n}, x)}));
    double worst = 0;
    float at = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double r = ref(double(x[i]));
      if (std::isinf(r)) {
        CHECK(y[i] == float(r));
        continue;
      }
      const double err = std::fabs(double(y[i]) - r) / std::max(std::fabs(r), 1e-30);
      const double abs_err = std::fabs(double(y[i]) - r);
      const double e = std::min(err, abs_err / 1e-7 * 2e-7);  // relative, or absolute below 1e-7
      if (e > worst) {
        worst = e;
        at = x[i];
      }
    }
    INFO(op << " worst relative error " << worst << " at x=" << at);
    CHECK(worst < 2.5e-7);
  };
  check("Erf", 13, [](double v) { return std::erf(v); });
  check("Tanh", 13, [](double v) { return std::tanh(v); });
  check("Sigmoid", 13, [](double v) { return 1 / (1 + std::exp(-v)); });
  check("Exp", 13, [](double v) { return std::exp(v); });
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const char* op : {"Erf", "Tanh", "Sigmoid", "Exp"}) {
    auto y = vals<float>(run1(anode(op, 13, 1), {tf({3}, {nan, inf, -inf})}));
    INFO(op);
    CHECK(std::isnan(y[0]));
    CHECK(y[1] == (std::string(op) == "Exp" ? inf : 1.f));
    CHECK(y[2] == (std::string(op) == "Exp" || std::string(op) == "Sigmoid" ? 0.f : -1.f));
  }
}

TEST_CASE("PRelu broadcasts the slope", "[activation]") {
  auto n = anode("PRelu", 16, 2);
  auto x = tf({2, 3, 2}, {-1, 1, -2, 2, -3, 3, -4, 4, -5, 5, -6, 6});
  // Slope [3,1]: one per channel of a [N,C,W] input.
  auto y = vals<float>(run1(n, {x, tf({3, 1}, {0.1f, 0.2f, 0.3f})}));
  const std::vector<double> want{-0.1, 1, -0.4, 2, -0.9, 3, -0.4, 4, -1.0, 5, -1.8, 6};
  for (size_t i = 0; i < want.size(); ++i) CHECK(y[i] == Approx(want[i]));
  // Scalar slope.
  auto z = vals<float>(run1(n, {tf({3}, {-2, 0, 2}), tf({1}, {0.5f})}));
  CHECK(z == std::vector<float>{-1, 0, 2});
  // Old [C] slope on NCHW maps to the channel axis.
  auto w =
      vals<float>(run1(anode("PRelu", 6, 2), {tf({1, 2, 1, 3}, {-1, -1, -1, -1, -1, -1}), tf({2}, {0.5f, 0.25f})}));
  CHECK(w == std::vector<float>{-0.5f, -0.5f, -0.5f, -0.25f, -0.25f, -0.25f});
}

TEST_CASE("Clip: attributes before 11, optional inputs after, integer types", "[activation]") {
  auto old = anode("Clip", 6, 1);
  set_float(old, "min", -1.f);
  set_float(old, "max", 1.f);
  CHECK(vals<float>(run1(old, {tf({4}, {-5, -0.5f, 0.5f, 5})})) == std::vector<float>{-1, -0.5f, 0.5f, 1});
  auto n = anode("Clip", 13, 3);
  CHECK(vals<float>(run1(n, {tf({3}, {-5, 0, 5}), Tensor::scalar<float>(-2.f), Tensor()})) ==
        std::vector<float>{-2, 0, 5});
  CHECK(vals<float>(run1(n, {tf({3}, {-5, 0, 5}), Tensor(), Tensor::scalar<float>(1.f)})) ==
        std::vector<float>{-5, 0, 1});
  // min > max: everything becomes max.
  CHECK(vals<float>(run1(n, {tf({3}, {-5, 0, 5}), Tensor::scalar<float>(2.f), Tensor::scalar<float>(1.f)})) ==
        std::vector<float>{1, 1, 1});
  auto nan = vals<float>(run1(
      n, {tf({1}, {std::numeric_limits<float>::quiet_NaN()}), Tensor::scalar<float>(0.f), Tensor::scalar<float>(1.f)}));
  CHECK(std::isnan(nan[0]));
  auto i8 = vals<int8_t>(run1(
      n, {Tensor::from_vector<int8_t>({3}, {-128, 5, 127}), Tensor::scalar<int8_t>(-10), Tensor::scalar<int8_t>(10)}));
  CHECK(i8 == std::vector<int8_t>{-10, 5, 10});
}

TEST_CASE("Softmax family: last axis, middle axis, opset<13 flattening", "[activation]") {
  auto sm = anode("Softmax", 13, 1);
  auto y = vals<float>(run1(sm, {tf({2, 3}, {1, 2, 3, 1000, 1000, 1000})}));
  const double e1 = std::exp(-2.0), e2 = std::exp(-1.0), s = e1 + e2 + 1;
  CHECK(y[0] == Approx(e1 / s));
  CHECK(y[1] == Approx(e2 / s));
  CHECK(y[2] == Approx(1 / s));
  for (int i = 3; i < 6; ++i) CHECK(y[size_t(i)] == Approx(1.0 / 3));  // large values stay finite
  // axis 0 of [2,2]: columns normalise.
  set_int(sm, "axis", 0);
  auto c = vals<float>(run1(sm, {tf({2, 2}, {0, 1, 0, 3})}));
  CHECK(c[0] == Approx(0.5));
  CHECK(c[2] == Approx(0.5));
  CHECK(c[1] == Approx(1 / (1 + std::exp(2.0))));
  CHECK(c[3] == Approx(1 / (1 + std::exp(-2.0))));
  // Opset 11, axis 1 on [2,2,2]: each batch's 4 values form one row.
  auto old = anode("Softmax", 11, 1);
  auto o = vals<float>(run1(old, {tf({2, 2, 2}, {0, 0, 0, 0, 1, 2, 3, 4})}));
  for (int i = 0; i < 4; ++i) CHECK(o[size_t(i)] == Approx(0.25));
  double z = 0;
  for (int i = 1; i <= 4; ++i) z += std::exp(double(i));
  for (int i = 0; i < 4; ++i) CHECK(o[size_t(4 + i)] == Approx(std::exp(double(i + 1)) / z));
  // LogSoftmax = x - max - log(sum exp(x - max)).
  auto ls = vals<float>(run1(anode("LogSoftmax", 13, 1), {tf({3}, {1, 2, 3})}));
  CHECK(ls[0] == Approx(1 - 3 - std::log(s)));
  CHECK(ls[2] == Approx(-std::log(s)));
  // Hardmax: first maximum wins.
  auto hm = vals<float>(run1(anode("Hardmax", 13, 1), {tf({2, 3}, {1, 3, 3, -1, -2, -5})}));
  CHECK(hm == std::vector<float>{0, 1, 0, 1, 0, 0});
  auto hm0 = anode("Hardmax", 13, 1);
  set_int(hm0, "axis", 0);
  CHECK(vals<float>(run1(hm0, {tf({2, 3}, {1, 3, 3, 2, -2, 5})})) == std::vector<float>{0, 1, 0, 1, 0, 1});
}

TEST_CASE("Softmax rows across threads and odd sizes", "[activation]") {
  for (int64_t cols : {1, 2, 13, 1031}) {
    const int64_t rows = 97;
    std::vector<float> x(size_t(rows * cols));
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i * 7919 % 101) - 50) / 10.f;
    auto y = vals<float>(run1(anode("Softmax", 13, 1), {tf({rows, cols}, x)}));
    for (int64_t r = 0; r < rows; r += 7) {
      double mx = -1e30, sum = 0;
      for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, double(x[size_t(r * cols + j)]));
      for (int64_t j = 0; j < cols; ++j) sum += std::exp(double(x[size_t(r * cols + j)]) - mx);
      for (int64_t j = 0; j < cols; j += 5)
        CHECK(y[size_t(r * cols + j)] == Approx(std::exp(double(x[size_t(r * cols + j)]) - mx) / sum).epsilon(1e-5));
    }
  }
}

// Hidden timing case (run with "[.bench]"): prints microseconds per call for shapes from ResNet-50
// and BERT-base, for comparison with tests/bench figures. Asserts nothing about speed.
TEST_CASE("Activation and elementwise timings", "[.bench]") {
  struct Case {
    const char* op;
    int opset;
    Shape a, b;
  };
  const Case cases[] = {
      {"Add", 14, {1, 64, 56, 56}, {1, 64, 56, 56}}, {"Add", 14, {1, 64, 56, 56}, {64, 1, 1}},
      {"Mul", 14, {1, 128, 3072}, {}},               {"Add", 14, {1, 128, 768}, {768}},
      {"Relu", 14, {1, 64, 56, 56}, {}},             {"Erf", 13, {1, 128, 3072}, {}},
      {"Sigmoid", 13, {1, 128, 3072}, {}},           {"Tanh", 13, {1, 128, 3072}, {}},
      {"Softmax", 13, {1, 12, 128, 128}, {}},        {"Gelu", 20, {1, 128, 3072}, {}},
      {"Add", 14, {1, 64, 56, 56}, {1, 64, 56, 56}},
  };
  for (const auto& c : cases) {
    std::vector<float> av(size_t(shape_numel(c.a)));
    for (size_t i = 0; i < av.size(); ++i) av[i] = float(int(i * 7919 % 2001) - 1000) / 300.f;
    Tensor a = tf(c.a, av);
    const bool binary = std::string(c.op) == "Add" || std::string(c.op) == "Mul";
    Tensor b = binary ? Tensor::from_vector<float>(c.b, std::vector<float>(size_t(shape_numel(c.b)), 0.5f)) : Tensor();
    NodeDef n = anode(c.op, c.opset, binary ? 2 : 1);
    std::vector<const Tensor*> p{&a};
    if (binary) p.push_back(&b);
    auto kernel = cpu_registry().find("", c.op, c.opset, Backend::kCpu)->create(n);
    REQUIRE(kernel.ok());
    std::vector<Tensor> outs(1);
    KernelContext ctx(p, &outs, 0);
    for (int w = 0; w < 3; ++w) REQUIRE((*kernel)->compute(ctx).ok());
    const int iters = 30;
    const auto t0 = std::chrono::steady_clock::now();
    for (int it = 0; it < iters; ++it) REQUIRE((*kernel)->compute(ctx).ok());
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / iters;
    std::printf("%-8s %-20s %-12s %10.1f us\n", c.op, shape_str(c.a).c_str(), shape_str(c.b).c_str(), us);
  }
}
