// Plan-time fusion in the Executor: Conv+BatchNormalization+Relu and MatMul+Add(+GELU) give the
// unfused results (hand-derived values, and the unfused plan on larger shapes); extra outputs and the
// tensors an observer names stay visible, and an observer that names nothing sees every original node.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>
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

// The MatMul [1,3,4] x [4,2] + bias + erf-GELU fixture, and its hand values in double.
const std::vector<float> kGeluW{0.5f, -1, 1, 0.25f, -0.5f, 2, 0, -1};
const std::vector<float> kGeluB{0.1f, -0.2f};
const std::vector<float> kGeluX{1, 2, -1, 0.5f, -3, 0, 1, 2, 0.25f, -0.75f, 1.5f, -2};

std::vector<std::pair<std::string, Tensor>> gelu_inits() {
  return {{"w", Tensor::from_vector<float>({4, 2}, kGeluW)},
          {"b", Tensor::from_vector<float>({2}, kGeluB)},
          {"inv_sqrt2", Tensor::scalar<float>(0.70710678f)},
          {"one", Tensor::scalar<float>(1.0f)},
          {"half", Tensor::scalar<float>(0.5f)}};
}

NamedTensors gelu_input() { return {{"x", Tensor::from_vector<float>({1, 3, 4}, kGeluX)}}; }

// h = x W + b (the bias Add's output) and gelu(h), row-major [3, 2].
struct GeluReference {
  std::vector<double> h, gelu;
};
GeluReference gelu_reference() {
  GeluReference ref{std::vector<double>(6), std::vector<double>(6)};
  for (size_t r = 0; r < 3; ++r)
    for (size_t j = 0; j < 2; ++j) {
      double v = kGeluB[j];
      for (size_t k = 0; k < 4; ++k) v += double(kGeluX[r * 4 + k]) * kGeluW[k * 2 + j];
      ref.h[r * 2 + j] = v;
      ref.gelu[r * 2 + j] = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    }
  return ref;
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
  auto model = parse_model(text, gelu_inits());
  auto ex = Executor::create(model);
  REQUIRE(ex.ok());
  CHECK((*ex)->fused_node_count() == 6);
  NamedTensors in = gelu_input();
  auto out = (*ex)->run(in);
  REQUIRE(out.ok());
  auto got = values(*out);
  REQUIRE(got.size() == 6);
  const GeluReference ref = gelu_reference();
  for (size_t i = 0; i < 6; ++i) CHECK(got[i] == Approx(ref.gelu[i]).margin(1e-5));
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

TEST_CASE("a fused Relu after a broadcast Add keeps NaN and covers integer sums", "[executor][fusion]") {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] a, float[3] b, int32[3] i, int32[3] j) => (float[2,3] y, int32[3] z) {
      t = Add(a, b)
      y = Relu(t)
      s = Sum(i, j)
      z = Relu(s)
    }
  )";
  auto ex = Executor::create(parse_model(text));
  REQUIRE(ex.ok());
  CHECK((*ex)->fused_node_count() == 2);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  NamedTensors in{{"a", Tensor::from_vector<float>({2, 3}, {1, -2, nan, -4, 5, 0.25f})},
                  {"b", Tensor::from_vector<float>({3}, {0.5f, 1, -1})},
                  {"i", Tensor::from_vector<int32_t>({3}, {3, -7, 2})},
                  {"j", Tensor::from_vector<int32_t>({3}, {-1, 4, -2})}};
  auto out = (*ex)->run(in);
  REQUIRE(out.ok());
  const std::vector<float> y = values(*out, 0);
  REQUIRE(y.size() == 6);
  CHECK(y[0] == 1.5f);
  CHECK(y[1] == 0.0f);
  CHECK(std::isnan(y[2]));  // Relu(NaN) stays NaN, as in onnxruntime
  CHECK(y[3] == 0.0f);
  CHECK(y[4] == 6.0f);
  CHECK(y[5] == 0.0f);
  auto z = (*out)[1].second.span<int32_t>();
  CHECK(std::vector<int32_t>(z.begin(), z.end()) == std::vector<int32_t>{2, 0, 0});
}

namespace {

// Records the values of the tensors it names, the way calibration does (outputs only, by name).
class WatchingObserver : public Observer {
 public:
  explicit WatchingObserver(std::set<std::string> names) : names_(std::move(names)) {}
  Status on_node(const NodeEvent& ev) override {
    ++events;
    for (size_t k = 0; k < ev.node.outputs.size() && k < ev.outputs.size(); ++k)
      if (names_.count(ev.node.outputs[k])) {
        auto s = ev.outputs[k].span<float>();
        seen[ev.node.outputs[k]].push_back({s.begin(), s.end()});
      }
    return OkStatus();
  }
  const std::set<std::string>* watched() const override { return &names_; }
  std::set<std::string> names_;
  std::map<std::string, std::vector<std::vector<float>>> seen;
  int events = 0;
};

const char* kMatMulGelu = R"(
  <ir_version: 8, opset_import: ["" : 17]>
  g (float[1,3,4] x) => (float[1,3,2] y) {
    m = MatMul(x, w)
    h = Add(m, b)
    s = Mul(h, inv_sqrt2)
    e = Erf(s)
    e1 = Add(e, one)
    hh = Mul(h, half)
    g1 = Mul(hh, e1)
    y = Relu(g1)
  }
)";

}  // namespace

TEST_CASE("an observer that names its tensors keeps fusion around them and sees each once", "[executor][fusion]") {
  auto model = parse_model(kMatMulGelu, gelu_inits());
  NamedTensors in = gelu_input();
  // h and the GELU output g1, computed by hand in double.
  const GeluReference ref = gelu_reference();
  const std::vector<double>& h = ref.h;
  const std::vector<double>& g1 = ref.gelu;
  ExecOptions unfused_opts;
  unfused_opts.fuse = false;
  auto unfused = Executor::create(model, unfused_opts);
  auto ex = Executor::create(model);
  REQUIRE(unfused.ok());
  REQUIRE(ex.ok());

  SECTION("watching the GELU output: MatMul+Add+GELU run as one step, values equal the unfused run's bits") {
    WatchingObserver fused_obs({"g1"}), plain_obs({"g1"});
    REQUIRE((*ex)->run(in, &fused_obs).ok());
    REQUIRE((*unfused)->run(in, &plain_obs).ok());
    CHECK(fused_obs.events == 2);  // the fused step and the Relu
    CHECK(plain_obs.events == 8);
    REQUIRE(fused_obs.seen["g1"].size() == 1);
    CHECK(fused_obs.seen["g1"][0] == plain_obs.seen["g1"][0]);
    for (size_t i = 0; i < 6; ++i) CHECK(fused_obs.seen["g1"][0][i] == Approx(g1[i]).margin(1e-5));
  }
  SECTION("watching the bias Add output stops the GELU fusion there; the Relu still fuses nowhere") {
    WatchingObserver obs({"h", "g1"});
    REQUIRE((*ex)->run(in, &obs).ok());
    // MatMul+Add is one step; the five GELU nodes and the Relu run as they are.
    CHECK(obs.events == 7);
    REQUIRE(obs.seen["h"].size() == 1);
    REQUIRE(obs.seen["g1"].size() == 1);
    for (size_t i = 0; i < 6; ++i) {
      CHECK(obs.seen["h"][0][i] == Approx(h[i]).margin(1e-5));
      CHECK(obs.seen["g1"][0][i] == Approx(g1[i]).margin(1e-5));
    }
  }
  SECTION("a plain run after an observed one still fuses everything it can, with the same outputs") {
    WatchingObserver obs({"h"});
    auto a = (*ex)->run(in, &obs);
    auto b = (*ex)->run(in);
    auto c = (*unfused)->run(in);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    REQUIRE(c.ok());
    CHECK((*ex)->fused_node_count() == 6);
    CHECK(values(*a) == values(*c));
    CHECK(values(*b) == values(*c));
  }
}

TEST_CASE("observe runs only the nodes the watched tensors depend on", "[executor][fusion]") {
  auto model = parse_model(kMatMulGelu, gelu_inits());
  NamedTensors in = gelu_input();
  const GeluReference ref = gelu_reference();
  auto ex = Executor::create(model);
  REQUIRE(ex.ok());

  SECTION("watching the bias Add output: the MatMul+Add step alone runs (no GELU, no Relu)") {
    WatchingObserver obs({"h"});
    REQUIRE((*ex)->observe(in, obs).ok());
    CHECK(obs.events == 1);
    REQUIRE(obs.seen["h"].size() == 1);
    for (size_t i = 0; i < 6; ++i) CHECK(obs.seen["h"][0][i] == Approx(ref.h[i]).margin(1e-5));
  }
  SECTION("watching the GELU output: the fused step runs, the Relu after it does not") {
    WatchingObserver obs({"g1"});
    REQUIRE((*ex)->observe(in, obs).ok());
    CHECK(obs.events == 1);
    REQUIRE(obs.seen["g1"].size() == 1);
    for (size_t i = 0; i < 6; ++i) CHECK(obs.seen["g1"][0][i] == Approx(ref.gelu[i]).margin(1e-5));
  }
  SECTION("unfused, watching the Erf output: MatMul, Add, Mul and Erf run, the four nodes after them do not") {
    ExecOptions unfused_opts;
    unfused_opts.fuse = false;
    auto plain = Executor::create(model, unfused_opts);
    REQUIRE(plain.ok());
    WatchingObserver obs({"e"});
    REQUIRE((*plain)->observe(in, obs).ok());
    CHECK(obs.events == 4);
    REQUIRE(obs.seen["e"].size() == 1);
    for (size_t i = 0; i < 6; ++i)
      CHECK(obs.seen["e"][0][i] == Approx(std::erf(ref.h[i] / std::sqrt(2.0))).margin(1e-5));
  }
  SECTION("an observer that names nothing sees the whole run") {
    CountingObserver all;
    REQUIRE((*ex)->observe(in, all).ok());
    CHECK(all.nodes == 8);
  }
}
