// Activation kernels against closed-form values: pointwise activations, PRelu broadcasting, Clip in
// both opset forms, and Softmax/LogSoftmax/Hardmax in both axis conventions.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "frugal/kernel.h"

using namespace frugal;

namespace {

NodeDef anode(const std::string& op, int opset, size_t n_in) {
  NodeDef n;
  n.name = "t";
  n.op_type = op;
  n.opset = opset;
  for (size_t i = 0; i < n_in; ++i) n.inputs.push_back("x" + std::to_string(i));
  n.outputs = {"y"};
  return n;
}

void set_f(NodeDef& n, const std::string& k, float v) {
  Attribute a;
  a.kind = Attribute::Kind::kFloat;
  a.f = v;
  n.attrs[k] = a;
}
void set_i(NodeDef& n, const std::string& k, int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  n.attrs[k] = a;
}
void set_s(NodeDef& n, const std::string& k, const std::string& v) {
  Attribute a;
  a.kind = Attribute::Kind::kString;
  a.s = v;
  n.attrs[k] = a;
}

Tensor arun(const NodeDef& n, const std::vector<Tensor>& ins) {
  std::vector<const Tensor*> p;
  for (const auto& t : ins) p.push_back(t.defined() ? &t : nullptr);
  auto r = run_node(n, p, cpu_registry());
  INFO((r.ok() ? std::string() : r.status().to_string()));
  REQUIRE(r.ok());
  return (*r)[0];
}

template <typename T>
std::vector<T> avals(const Tensor& t) {
  REQUIRE(t.dtype() == DTypeOf<T>::value);
  return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
}

Tensor tf(Shape s, std::vector<float> v) { return Tensor::from_vector<float>(std::move(s), v); }

const std::vector<float> kX = {-3.f, -1.f, -0.25f, 0.f, 0.5f, 2.f, 7.f};

void check_pointwise(const NodeDef& n, double (*ref)(double), double eps = 1e-6) {
  auto y = avals<float>(arun(n, {tf({7}, kX)}));
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
  set_s(gt, "approximate", "tanh");
  check_pointwise(gt, [](double x) {
    return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
  });
  auto lr = anode("LeakyRelu", 16, 1);
  check_pointwise(lr, [](double x) { return x >= 0 ? x : 0.01 * x; });
  set_f(lr, "alpha", 0.25f);
  check_pointwise(lr, [](double x) { return x >= 0 ? x : 0.25 * x; });
  auto elu = anode("Elu", 22, 1);
  set_f(elu, "alpha", 2.f);
  check_pointwise(elu, [](double x) { return x >= 0 ? x : 2 * (std::exp(x) - 1); });
  check_pointwise(anode("Selu", 22, 1), [](double x) {
    return x > 0 ? 1.0507009873554805 * x : 1.0507009873554805 * 1.6732632423543772 * (std::exp(x) - 1);
  });
  auto celu = anode("Celu", 12, 1);
  set_f(celu, "alpha", 2.f);
  check_pointwise(celu, [](double x) { return std::max(0.0, x) + std::min(0.0, 2 * (std::exp(x / 2) - 1)); });
  check_pointwise(anode("HardSigmoid", 22, 1), [](double x) { return std::max(0.0, std::min(1.0, 0.2 * x + 0.5)); });
}

TEST_CASE("Activations: extremes, NaN and integer Relu", "[activation]") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  auto s = avals<float>(arun(anode("Sigmoid", 13, 1), {tf({4}, {-1000.f, 1000.f, -inf, nan})}));
  CHECK(s[0] == 0.f);
  CHECK(s[1] == 1.f);
  CHECK(s[2] == 0.f);
  CHECK(std::isnan(s[3]));
  auto sp = avals<float>(arun(anode("Softplus", 22, 1), {tf({2}, {100.f, -20.f})}));
  CHECK(sp[0] == Approx(100.f));
  CHECK(sp[1] == Approx(std::exp(-20.0)).epsilon(1e-5));
  auto r = avals<int32_t>(arun(anode("Relu", 14, 1), {Tensor::from_vector<int32_t>({3}, {-5, 0, 9})}));
  CHECK(r == std::vector<int32_t>{0, 0, 9});
  // Threaded path: 50021 elements.
  const int64_t n = 50021;
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = float(i % 200) / 20.f - 5.f;
  auto t = avals<float>(arun(anode("Tanh", 13, 1), {tf({n}, x)}));
  for (int64_t i = 0; i < n; i += 97) CHECK(t[size_t(i)] == Approx(std::tanh(double(x[size_t(i)]))).margin(1e-7));
}

TEST_CASE("PRelu broadcasts the slope", "[activation]") {
  auto n = anode("PRelu", 16, 2);
  auto x = tf({2, 3, 2}, {-1, 1, -2, 2, -3, 3, -4, 4, -5, 5, -6, 6});
  // Slope [3,1]: one per channel of a [N,C,W] input.
  auto y = avals<float>(arun(n, {x, tf({3, 1}, {0.1f, 0.2f, 0.3f})}));
  const std::vector<double> want{-0.1, 1, -0.4, 2, -0.9, 3, -0.4, 4, -1.0, 5, -1.8, 6};
  for (size_t i = 0; i < want.size(); ++i) CHECK(y[i] == Approx(want[i]));
  // Scalar slope.
  auto z = avals<float>(arun(n, {tf({3}, {-2, 0, 2}), tf({1}, {0.5f})}));
  CHECK(z == std::vector<float>{-1, 0, 2});
  // Old [C] slope on NCHW maps to the channel axis.
  auto w = avals<float>(arun(anode("PRelu", 6, 2), {tf({1, 2, 1, 3}, {-1, -1, -1, -1, -1, -1}), tf({2}, {0.5f, 0.25f})}));
  CHECK(w == std::vector<float>{-0.5f, -0.5f, -0.5f, -0.25f, -0.25f, -0.25f});
}

TEST_CASE("Clip: attributes before 11, optional inputs after, integer types", "[activation]") {
  auto old = anode("Clip", 6, 1);
  set_f(old, "min", -1.f);
  set_f(old, "max", 1.f);
  CHECK(avals<float>(arun(old, {tf({4}, {-5, -0.5f, 0.5f, 5})})) == std::vector<float>{-1, -0.5f, 0.5f, 1});
  auto n = anode("Clip", 13, 3);
  CHECK(avals<float>(arun(n, {tf({3}, {-5, 0, 5}), Tensor::scalar<float>(-2.f), Tensor()})) ==
        std::vector<float>{-2, 0, 5});
  CHECK(avals<float>(arun(n, {tf({3}, {-5, 0, 5}), Tensor(), Tensor::scalar<float>(1.f)})) ==
        std::vector<float>{-5, 0, 1});
  // min > max: everything becomes max.
  CHECK(avals<float>(arun(n, {tf({3}, {-5, 0, 5}), Tensor::scalar<float>(2.f), Tensor::scalar<float>(1.f)})) ==
        std::vector<float>{1, 1, 1});
  auto nan = avals<float>(arun(n, {tf({1}, {std::numeric_limits<float>::quiet_NaN()}), Tensor::scalar<float>(0.f),
                                   Tensor::scalar<float>(1.f)}));
  CHECK(std::isnan(nan[0]));
  auto i8 = avals<int8_t>(arun(n, {Tensor::from_vector<int8_t>({3}, {-128, 5, 127}), Tensor::scalar<int8_t>(-10),
                                   Tensor::scalar<int8_t>(10)}));
  CHECK(i8 == std::vector<int8_t>{-10, 5, 10});
}

TEST_CASE("Softmax family: last axis, middle axis, opset<13 flattening", "[activation]") {
  auto sm = anode("Softmax", 13, 1);
  auto y = avals<float>(arun(sm, {tf({2, 3}, {1, 2, 3, 1000, 1000, 1000})}));
  const double e1 = std::exp(-2.0), e2 = std::exp(-1.0), s = e1 + e2 + 1;
  CHECK(y[0] == Approx(e1 / s));
  CHECK(y[1] == Approx(e2 / s));
  CHECK(y[2] == Approx(1 / s));
  for (int i = 3; i < 6; ++i) CHECK(y[size_t(i)] == Approx(1.0 / 3));  // large values stay finite
  // axis 0 of [2,2]: columns normalise.
  set_i(sm, "axis", 0);
  auto c = avals<float>(arun(sm, {tf({2, 2}, {0, 1, 0, 3})}));
  CHECK(c[0] == Approx(0.5));
  CHECK(c[2] == Approx(0.5));
  CHECK(c[1] == Approx(1 / (1 + std::exp(2.0))));
  CHECK(c[3] == Approx(1 / (1 + std::exp(-2.0))));
  // Opset 11, axis 1 on [2,2,2]: each batch's 4 values form one row.
  auto old = anode("Softmax", 11, 1);
  auto o = avals<float>(arun(old, {tf({2, 2, 2}, {0, 0, 0, 0, 1, 2, 3, 4})}));
  for (int i = 0; i < 4; ++i) CHECK(o[size_t(i)] == Approx(0.25));
  double z = 0;
  for (int i = 1; i <= 4; ++i) z += std::exp(double(i));
  for (int i = 0; i < 4; ++i) CHECK(o[size_t(4 + i)] == Approx(std::exp(double(i + 1)) / z));
  // LogSoftmax = x - max - log(sum exp(x - max)).
  auto ls = avals<float>(arun(anode("LogSoftmax", 13, 1), {tf({3}, {1, 2, 3})}));
  CHECK(ls[0] == Approx(1 - 3 - std::log(s)));
  CHECK(ls[2] == Approx(-std::log(s)));
  // Hardmax: first maximum wins.
  auto hm = avals<float>(arun(anode("Hardmax", 13, 1), {tf({2, 3}, {1, 3, 3, -1, -2, -5})}));
  CHECK(hm == std::vector<float>{0, 1, 0, 1, 0, 0});
  auto hm0 = anode("Hardmax", 13, 1);
  set_i(hm0, "axis", 0);
  CHECK(avals<float>(arun(hm0, {tf({2, 3}, {1, 3, 3, 2, -2, 5})})) == std::vector<float>{0, 1, 0, 1, 0, 1});
}

TEST_CASE("Softmax rows across threads and odd sizes", "[activation]") {
  for (int64_t cols : {1, 2, 13, 1031}) {
    const int64_t rows = 97;
    std::vector<float> x(size_t(rows * cols));
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i * 7919 % 101) - 50) / 10.f;
    auto y = avals<float>(arun(anode("Softmax", 13, 1), {tf({rows, cols}, x)}));
    for (int64_t r = 0; r < rows; r += 7) {
      double mx = -1e30, sum = 0;
      for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, double(x[size_t(r * cols + j)]));
      for (int64_t j = 0; j < cols; ++j) sum += std::exp(double(x[size_t(r * cols + j)]) - mx);
      for (int64_t j = 0; j < cols; j += 5)
        CHECK(y[size_t(r * cols + j)] == Approx(std::exp(double(x[size_t(r * cols + j)]) - mx) / sum).epsilon(1e-5));
    }
  }
}
