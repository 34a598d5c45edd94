// Plan-time fusion in the Executor: Conv+BatchNormalization+Relu and MatMul+Add(+GELU) give the
// unfused results (hand-derived values, and the unfused plan on larger shapes); observers and extra
// outputs switch fusion off so every original node's output is still seen.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "frugal/executor.h"
#include "test_util.h"

using namespace frugal;
using frugal::testing::parse_model;

namespace {

const char* kConvBnRelu = R"(
  <ir_version: 8, opset_import: ["" : 17]>
  g (float[1,1,2,2] x) => (float[1,2,2,2] y) {
    c = Conv(x, w, b)
    n = BatchNormalization<epsilon = 1.0>(c, scale, bias, mean, var)
    y = Relu(n)
  }
)";

std::vector<std::pair<std::string, Tensor>> conv_bn_inits() {
  return {{"w", Tensor::from_vector<float>({2, 1, 1, 1}, {2, -1})},
          {"b", Tensor::from_vector<float>({2}, {0.5f, 0})},
          {"scale", Tensor::from_vector<float>({2}, {1, 2})},
          {"bias", Tensor::from_vector<float>({2}, {0, 1})},
          {"mean", Tensor::from_vector<float>({2}, {1, 0})},
          {"var", Tensor::from_vector<float>({2}, {3, 0})}};
}

class CountingObserver : public Observer {
 public:
  Status on_node(const NodeEvent&) override {
    ++nodes;
    return OkStatus();
  }
  int nodes = 0;
};

std::vector<float> values(const NamedTensors& out, size_t i = 0) {
  auto s = out[i].second.span<float>();
  return {s.begin(), s.end()};
}

Tensor ramp(Shape shape, float scale, float offset) {
  const int64_t n = shape_numel(shape);
  std::vector<float> v(static_cast<size_t>(n));
  // Deterministic values of both signs (so Relu clips some and GELU sees both tails).
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = std::sin(0.37f * static_cast<float>(i) + offset) * scale;
  return Tensor::from_vector<float>(std::move(shape), v);
}

}  // namespace

TEST_CASE("Conv+BatchNormalization+Relu fuses and matches hand values", "[executor][fusion]") {
  auto model = parse_model(kConvBnRelu, conv_bn_inits());
  auto ex = Executor::create(model);
  REQUIRE(ex.ok());
  CHECK((*ex)->fused_node_count() == 2);
  NamedTensors in{{"x", Tensor::from_vector<float>({1, 1, 2, 2}, {1, -2, 3, -4})}};
  auto out = (*ex)->run(in);
  REQUIRE(out.ok());
  // Channel 0: conv 2x + 0.5, BN (c - 1) * 1/sqrt(3 + 1); channel 1: conv -x, BN c * 2/sqrt(0 + 1) + 1.
  const std::vector<float> expect{0.75f, 0, 2.75f, 0, 0, 5, 0, 9};
  auto got = values(*out);
  REQUIRE(got.size() == expect.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(expect[i]).margin(1e-6));

  SECTION("unfused plan (fuse = false) gives the same values") {
    ExecOptions o;
    o.fuse = false;
    auto plain = Executor::create(model, o);
    REQUIRE(plain.ok());
    CHECK((*plain)->fused_node_count() == 0);
    auto o2 = (*plain)->run(in);
    REQUIRE(o2.ok());
    auto v = values(*o2);
    for (size_t i = 0; i < v.size(); ++i) CHECK(v[i] == Approx(expect[i]).margin(1e-6));
  }
  SECTION("an observer sees all three original nodes") {
    CountingObserver obs;
    auto o2 = (*ex)->run(in, &obs);
    REQUIRE(o2.ok());
    CHECK(obs.nodes == 3);
    auto v = values(*o2);
    for (size_t i = 0; i < v.size(); ++i) CHECK(v[i] == Approx(expect[i]).margin(1e-6));
  }
  SECTION("extra outputs of fused-away tensors are still produced") {
    auto o2 = (*ex)->run_with_extra(in, {"c", "n"});
    REQUIRE(o2.ok());
    REQUIRE(o2->size() == 3);
    const std::vector<float> c{2.5f, -3.5f, 6.5f, -7.5f, -1, 2, -3, 4};
    const std::vector<float> n{0.75f, -2.25f, 2.75f, -4.25f, -1, 5, -5, 9};
    auto vc = values(*o2, 1), vn = values(*o2, 2);
    for (size_t i = 0; i < c.size(); ++i) {
      CHECK(vc[i] == Approx(c[i]).margin(1e-6));
      CHECK(vn[i] == Approx(n[i]).margin(1e-6));
    }
  }
}

TEST_CASE("a graph output or a second reader between Conv and BatchNormalization blocks fusion", "[executor][fusion]") {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,1,2,2] x) => (float[1,2,2,2] y, float[1,2,2,2] c) {
      c = Conv(x, w, b)
      n = BatchNormalization<epsilon = 1.0>(c, scale, bias, mean, var)
      y = Relu(n)
    }
  )";
  auto ex = Executor::create(parse_model(text, conv_bn_inits()));
  REQUIRE(ex.ok());
  CHECK((*ex)->fused_node_count() == 0);  // c is a graph output: BN (and so Relu) cannot fold into the Conv
}

TEST_CASE("fused 3x3 Conv+BN+Relu matches the unfused plan", "[executor][fusion]") {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,5,9,7] x) => (float[2,6,5,4] y) {
      c = Conv<pads = [1, 1, 1, 1], strides = [2, 2]>(x, w)
      n = BatchNormalization<epsilon = 0.001>(c, scale, bias, mean, var)
      y = Relu(n)
    }
  )";
  auto model = parse_model(text, {{"w", ramp({6, 5, 3, 3}, 0.3f, 0.1f)},
                                  {"scale", ramp({6}, 1.5f, 0.7f)},
                                  {"bias", ramp({6}, 0.5f, 1.3f)},
                                  {"mean", ramp({6}, 0.2f, 2.1f)},
                                  {"var", Tensor::from_vector<float>({6}, {0.5f, 1, 2, 0.1f, 3, 0.7f})}});
  auto fused = Executor::create(model);
  ExecOptions o;
  o.fuse = false;
  auto plain = Executor::create(model, o);
  REQUIRE(fused.ok());
  REQUIRE(plain.ok());
  CHECK((*fused)->fused_node_count() == 2);
  NamedTensors in{{"x", ramp({2, 5, 9, 7}, 2.0f, 0.0f)}};
  auto a = (*fused)->run(in);
  auto b = (*plain)->run(in);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  auto va = values(*a), vb = values(*b);
  REQUIRE(va.size() == vb.size());
  int zeros = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    CHECK(va[i] == Approx(vb[i]).margin(1e-5).epsilon(1e-5));
    zeros += vb[i] == 0.0f;
  }
  CHECK(zeros > 0);  // the Relu really clipped something
}

TEST_CASE("MatMul+Add+erf GELU fuses and matches hand values", "[executor][fusion]") {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,3,4] x) => (float[1,3,2] y) {
      m = MatMul(x, w)
      h = Add(m, b)
      s = Mul(h, inv_sqrt2)
      e = Erf(s)
      e1 = Add(e, one)
      hh = Mul(h, half)
      y = Mul(hh, e1)
    }
  )";
  const std::vector<float> W{0.5f, -1, 1, 0.25f, -0.5f, 2, 0, -1};
  const std::vector<float> B{0.1f, -0.2f};
  auto model = parse_model(text, {{"w", Tensor::from_vector<float>({4, 2}, W)},
                                  {"b", Tensor::from_vector<float>({2}, B)},
                                  {"inv_sqrt2", Tensor::scalar<float>(0.70710678f)},
                                  {"one", Tensor::scalar<float>(1.0f)},
                                  {"half", Tensor::scalar<float>(0.5f)}});
  auto ex = Executor::create(model);
  REQUIRE(ex.ok());
  CHECK((*ex)->fused_node_count() == 6);
  const std::vector<float> X{1, 2, -1, 0.5f, -3, 0, 1, 2, 0.25f, -0.75f, 1.5f, -2};
  NamedTensors in{{"x", Tensor::from_vector<float>({1, 3, 4}, X)}};
  auto out = (*ex)->run(in);
  REQUIRE(out.ok());
  auto got = values(*out);
  REQUIRE(got.size() == 6);
  for (int r = 0; r < 3; ++r)
    for (int j = 0; j < 2; ++j) {
      double h = B[static_cast<size_t>(j)];
      for (int k = 0; k < 4; ++k) h += double(X[static_cast<size_t>(r * 4 + k)]) * W[static_cast<size_t>(k * 2 + j)];
      const double expect = 0.5 * h * (1.0 + std::erf(h / std::sqrt(2.0)));
      CHECK(got[static_cast<size_t>(r * 2 + j)] == Approx(expect).margin(1e-5));
    }
  CountingObserver obs;
  auto o2 = (*ex)->run(in, &obs);
  REQUIRE(o2.ok());
  CHECK(obs.nodes == 7);
}

TEST_CASE("MatMul+Add with a bias that is a graph input is not fused", "[executor][fusion]") {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3,4] x, float[2] b) => (float[3,2] y) {
      m = MatMul(x, w)
      y = Add(m, b)
    }
  )";
  auto ex = Executor::create(parse_model(text, {{"w", ramp({4, 2}, 1.0f, 0.0f)}}));
  REQUIRE(ex.ok());
  CHECK((*ex)->fused_node_count() == 0);
}

TEST_CASE("Sum and Add followed by Relu fuse and match hand values", "[executor][fusion]") {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4] a, float[4] b, float[4] c) => (float[4] y, float[4] z) {
      s = Sum(a, b, c)
      y = Relu(s)
      t = Add(a, b)
      z = Relu(t)
    }
  )";
  auto model = parse_model(text);
  auto ex = Executor::create(model);
  REQUIRE(ex.ok());
  CHECK((*ex)->fused_node_count() == 2);
  NamedTensors in{{"a", Tensor::from_vector<float>({4}, {1, -2, 3, -4})},
                  {"b", Tensor::from_vector<float>({4}, {0.5f, 1, -5, 2})},
                  {"c", Tensor::from_vector<float>({4}, {0, 0.5f, 1, 3})}};
  auto out = (*ex)->run(in);
  REQUIRE(out.ok());
  CHECK(values(*out, 0) == std::vector<float>{1.5f, 0, 0, 1});
  CHECK(values(*out, 1) == std::vector<float>{1.5f, 0, 0, 0});
}
