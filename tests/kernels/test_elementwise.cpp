// Elementwise kernels: arithmetic with every broadcast shape class, integer exactness, NaN rules,
// comparisons, logic, Where, Cast (bit-exact against the ONNX backend test data), Identity, Dropout.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <vector>

#include "frugal/kernel.h"
#include "frugal/model.h"
#include "kernel_test_util.h"

using namespace frugal;
using namespace frugal::testing;

namespace {

// Node "t" with inputs a, b, ... and outputs p, q, ...
NodeDef node(const std::string& op, int opset, size_t n_in, size_t n_out = 1) {
  return make_node("t", op, opset, letter_names(n_in), letter_names(n_out, 'p'));
}

Tensor tb(Shape s, std::vector<bool> v) {
  std::vector<uint8_t> b(v.begin(), v.end());
  return Tensor::from_bytes(DType::kBool, std::move(s), b.data());
}

}  // namespace

TEST_CASE("Add: same shape, scalar and trailing broadcasts", "[elementwise]") {
  auto n = node("Add", 14, 2);
  auto a = tv<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(vals<float>(run1(n, {a, tv<float>({2, 3}, {10, 20, 30, 40, 50, 60})})) ==
        std::vector<float>{11, 22, 33, 44, 55, 66});
  CHECK(vals<float>(run1(n, {a, Tensor::scalar<float>(0.5f)})) == std::vector<float>{1.5, 2.5, 3.5, 4.5, 5.5, 6.5});
  CHECK(vals<float>(run1(n, {Tensor::scalar<float>(1.f), a})) == std::vector<float>{2, 3, 4, 5, 6, 7});
  CHECK(vals<float>(run1(n, {a, tv<float>({3}, {100, 200, 300})})) ==
        std::vector<float>{101, 202, 303, 104, 205, 306});
  auto col = run1(n, {a, tv<float>({2, 1}, {100, 200})});
  CHECK(col.shape() == Shape{2, 3});
  CHECK(vals<float>(col) == std::vector<float>{101, 102, 103, 204, 205, 206});
}

TEST_CASE("Add: outer-product and channel broadcasts", "[elementwise]") {
  auto n = node("Add", 14, 2);
  auto r = run1(n, {tv<float>({3, 1}, {1, 2, 3}), tv<float>({1, 2}, {10, 20})});
  CHECK(r.shape() == Shape{3, 2});
  CHECK(vals<float>(r) == std::vector<float>{11, 21, 12, 22, 13, 23});
  // NCHW + [C,1,1]: a per-channel bias.
  const int64_t N = 2, C = 3, HW = 5;
  auto x = tv<float>({N, C, 1, HW}, iota_f(N * C * HW));
  auto bias = tv<float>({C, 1, 1}, {1000, 2000, 3000});
  auto y = run1(n, {x, bias});
  REQUIRE(y.shape() == Shape{N, C, 1, HW});
  auto yv = vals<float>(y);
  for (int64_t b = 0; b < N; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t k = (b * C + c) * HW + i;
        CHECK(yv[size_t(k)] == float(k) + 1000.f * float(c + 1));
      }
  // Broadcast of a middle axis: [2,1,3] + [2,4,1] -> [2,4,3].
  auto m = run1(n, {tv<float>({2, 1, 3}, {0, 1, 2, 3, 4, 5}), tv<float>({2, 4, 1}, {0, 10, 20, 30, 40, 50, 60, 70})});
  REQUIRE(m.shape() == Shape{2, 4, 3});
  auto mv = vals<float>(m);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 3; ++k) CHECK(mv[size_t((i * 4 + j) * 3 + k)] == float(i * 3 + k) + float((i * 4 + j) * 10));
}

TEST_CASE("Binary ops: sizes around 1, primes and the threaded path", "[elementwise]") {
  for (int64_t len : {1, 2, 7, 31, 16383, 16384, 16385, 100003}) {
    auto a = tv<float>({len}, iota_f(len, 1.f));
    auto b = tv<float>({len}, iota_f(len, 0.5f, 2.f));
    auto mul = vals<float>(run1(node("Mul", 14, 2), {a, b}));
    auto sub = vals<float>(run1(node("Sub", 14, 2), {a, Tensor::scalar<float>(3.f)}));
    for (int64_t i = 0; i < len; i += std::max<int64_t>(1, len / 97)) {
      CHECK(mul[size_t(i)] == float(i + 1) * (0.5f + 2.f * float(i)));
      CHECK(sub[size_t(i)] == float(i + 1) - 3.f);
    }
    CHECK(mul.back() == float(len) * (0.5f + 2.f * float(len - 1)));
  }
  // Large broadcast [rows, 257] * [257] spanning many thread chunks.
  const int64_t rows = 131, cols = 257;
  auto y = vals<float>(run1(node("Mul", 14, 2), {tv<float>({rows, cols}, iota_f(rows * cols)),
                                                  tv<float>({cols}, std::vector<float>(size_t(cols), 2.f))}));
  for (int64_t i = 0; i < rows * cols; i += 101) CHECK(y[size_t(i)] == 2.f * float(i));
}

TEST_CASE("Legacy broadcast attributes (opset < 7)", "[elementwise]") {
  auto n = node("Add", 6, 2);
  set_int(n, "broadcast", 1);
  set_int(n, "axis", 1);
  // B [3] aligned with axis 1 of A [2,3,2].
  auto a = tv<float>({2, 3, 2}, iota_f(12));
  auto y = vals<float>(run1(n, {a, tv<float>({3}, {100, 200, 300})}));
  for (int i = 0; i < 2; ++i)
    for (int c = 0; c < 3; ++c)
      for (int k = 0; k < 2; ++k) CHECK(y[size_t((i * 3 + c) * 2 + k)] == float((i * 3 + c) * 2 + k) + 100.f * float(c + 1));
  // Without axis: trailing alignment.
  auto m = node("Mul", 6, 2);
  set_int(m, "broadcast", 1);
  auto z = vals<float>(run1(m, {a, tv<float>({2}, {1, -1})}));
  for (int i = 0; i < 12; ++i) CHECK(z[size_t(i)] == (i % 2 ? -float(i) : float(i)));
}

TEST_CASE("Integer arithmetic is exact: Div truncates, Mod follows fmod", "[elementwise]") {
  auto d = vals<int32_t>(run1(node("Div", 14, 2), {tv<int32_t>({6}, {7, -7, 7, -7, 2147483647, 5}),
                                                  tv<int32_t>({6}, {2, 2, -2, -2, 2, 3})}));
  CHECK(d == std::vector<int32_t>{3, -3, -3, 3, 1073741823, 1});
  auto mod = node("Mod", 13, 2);
  auto m = vals<int32_t>(run1(mod, {tv<int32_t>({4}, {7, -7, 7, -7}), tv<int32_t>({4}, {3, 3, -3, -3})}));
  CHECK(m == std::vector<int32_t>{1, 2, -2, -1});  // sign of the divisor
  set_int(mod, "fmod", 1);
  auto f = vals<int32_t>(run1(mod, {tv<int32_t>({4}, {7, -7, 7, -7}), tv<int32_t>({4}, {3, 3, -3, -3})}));
  CHECK(f == std::vector<int32_t>{1, -1, 1, -1});  // sign of the dividend
  auto ff = vals<float>(run1(mod, {tv<float>({2}, {5.5f, -5.5f}), tv<float>({2}, {2.f, 2.f})}));
  CHECK(ff == std::vector<float>{1.5f, -1.5f});
  // int64 values beyond float precision stay exact; uint8 wraps.
  const int64_t big = (int64_t(1) << 53) + 1;
  CHECK(vals<int64_t>(run1(node("Add", 14, 2), {tv<int64_t>({1}, {big}), tv<int64_t>({1}, {2})})) ==
        std::vector<int64_t>{big + 2});
  CHECK(vals<uint8_t>(run1(node("Add", 14, 2), {tv<uint8_t>({2}, {250, 3}), tv<uint8_t>({2}, {10, 4})})) ==
        std::vector<uint8_t>{4, 7});
  CHECK(vals<int16_t>(run1(node("Mul", 14, 2), {tv<int16_t>({1}, {300}), tv<int16_t>({1}, {-7})})) ==
        std::vector<int16_t>{-2100});
}

TEST_CASE("Pow with mixed base and exponent types", "[elementwise]") {
  auto n = node("Pow", 15, 2);
  CHECK(vals<int32_t>(run1(n, {tv<int32_t>({3}, {1, 2, 3}), tv<int32_t>({3}, {4, 5, 6})})) ==
        std::vector<int32_t>{1, 32, 729});
  CHECK(vals<int64_t>(run1(n, {tv<int64_t>({2}, {3, -2}), tv<int64_t>({2}, {39, 3})})) ==
        std::vector<int64_t>{4052555153018976267LL, -8});
  CHECK(vals<float>(run1(n, {tv<float>({3}, {1, 2, 3}), tv<int64_t>({3}, {4, 5, 6})})) ==
        std::vector<float>{1, 32, 729});
  CHECK(vals<int32_t>(run1(n, {tv<int32_t>({2}, {4, 9}), tv<float>({1}, {0.5f})})) == std::vector<int32_t>{2, 3});
  // float base with a float16 exponent stays float; a float16 base stays float16.
  Tensor he = Tensor::uninitialized(DType::kFloat16, {1});
  he.mut<uint16_t>()[0] = float_to_half(3.f);
  CHECK(vals<float>(run1(n, {tv<float>({2}, {2, -1}), he})) == std::vector<float>{8, -1});
  Tensor hb = Tensor::uninitialized(DType::kFloat16, {1});
  hb.mut<uint16_t>()[0] = float_to_half(1.5f);
  auto hp = run1(n, {hb, tv<float>({1}, {2.f})});
  REQUIRE(hp.dtype() == DType::kFloat16);
  CHECK(half_to_float(hp.data<uint16_t>()[0]) == 2.25f);
  auto sq = vals<float>(run1(n, {tv<float>({3}, {-3, 0.5f, 2}), Tensor::scalar<float>(2.f)}));
  CHECK(sq == std::vector<float>{9, 0.25f, 4});
  auto g = vals<float>(run1(n, {tv<float>({2}, {2, 4}), tv<float>({2}, {-1, 1.5f})}));
  CHECK(g[0] == Approx(0.5));
  CHECK(g[1] == Approx(8.0));
}

TEST_CASE("Unary math", "[elementwise]") {
  auto x = tv<float>({6}, {-2.5f, -0.5f, 0.5f, 1.5f, 2.5f, 0.f});
  CHECK(vals<float>(run1(node("Round", 22, 1), {x})) == std::vector<float>{-2, -0.f, 0, 2, 2, 0});
  CHECK(vals<float>(run1(node("Floor", 13, 1), {x})) == std::vector<float>{-3, -1, 0, 1, 2, 0});
  CHECK(vals<float>(run1(node("Ceil", 13, 1), {x})) == std::vector<float>{-2, -0.f, 1, 2, 3, 0});
  CHECK(vals<float>(run1(node("Sign", 13, 1), {x})) == std::vector<float>{-1, -1, 1, 1, 1, 0});
  CHECK(vals<float>(run1(node("Neg", 13, 1), {x})) == std::vector<float>{2.5f, 0.5f, -0.5f, -1.5f, -2.5f, -0.f});
  CHECK(vals<float>(run1(node("Abs", 13, 1), {x})) == std::vector<float>{2.5f, 0.5f, 0.5f, 1.5f, 2.5f, 0});
  CHECK(vals<float>(run1(node("Reciprocal", 13, 1), {tv<float>({2}, {4, -0.5f})})) == std::vector<float>{0.25f, -2});
  CHECK(vals<float>(run1(node("Sqrt", 13, 1), {tv<float>({2}, {9, 2.25f})})) == std::vector<float>{3, 1.5f});
  auto e = vals<double>(run1(node("Exp", 13, 1), {tv<double>({2}, {0, 1})}));
  CHECK(e[1] == Approx(2.718281828459045).epsilon(1e-15));
  auto l = vals<float>(run1(node("Log", 13, 1), {tv<float>({3}, {1, 0, -1})}));
  CHECK(l[0] == 0.f);
  CHECK(std::isinf(l[1]));
  CHECK(std::isnan(l[2]));
  CHECK(vals<int8_t>(run1(node("Abs", 13, 1), {tv<int8_t>({3}, {-5, 5, -128})})) == std::vector<int8_t>{5, 5, -128});
  CHECK(vals<int32_t>(run1(node("Sign", 13, 1), {tv<int32_t>({3}, {-9, 0, 4})})) == std::vector<int32_t>{-1, 0, 1});
  // float16 computes in float32 and converts back: sqrt(4) = 2 exactly.
  Tensor h = Tensor::uninitialized(DType::kFloat16, {2});
  h.mut<uint16_t>()[0] = float_to_half(4.f);
  h.mut<uint16_t>()[1] = float_to_half(0.25f);
  auto hs = run1(node("Sqrt", 13, 1), {h});
  REQUIRE(hs.dtype() == DType::kFloat16);
  CHECK(half_to_float(hs.data<uint16_t>()[0]) == 2.f);
  CHECK(half_to_float(hs.data<uint16_t>()[1]) == 0.5f);
}

TEST_CASE("Variadic Min/Max/Sum/Mean broadcast and propagate NaN", "[elementwise]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto a = tv<float>({3}, {1, nan, 5});
  auto b = tv<float>({2, 1}, {2, 4});
  auto mx = run1(node("Max", 13, 2), {a, b});
  REQUIRE(mx.shape() == Shape{2, 3});
  auto v = vals<float>(mx);
  CHECK(v[0] == 2);
  CHECK(std::isnan(v[1]));
  CHECK(v[2] == 5);
  CHECK(v[3] == 4);
  CHECK(std::isnan(v[4]));
  auto mn = vals<float>(run1(node("Min", 13, 2), {tv<float>({2}, {1, 3}), tv<float>({2}, {nan, 2})}));
  CHECK(std::isnan(mn[0]));
  CHECK(mn[1] == 2);
  auto s = vals<float>(run1(node("Sum", 13, 3), {tv<float>({2}, {1, 2}), Tensor::scalar<float>(10.f),
                                                  tv<float>({2, 1}, {100, 200})}));
  CHECK(s == std::vector<float>{111, 112, 211, 212});
  auto m = vals<float>(run1(node("Mean", 13, 3), {tv<float>({2}, {3, 0}), tv<float>({2}, {0, 6}), tv<float>({2}, {3, 3})}));
  CHECK(m == std::vector<float>{2, 3});
  CHECK(vals<float>(run1(node("Sum", 13, 1), {tv<float>({2}, {7, 8})})) == std::vector<float>{7, 8});
  CHECK(vals<int64_t>(run1(node("Max", 13, 2), {tv<int64_t>({2}, {-5, 9}), tv<int64_t>({1}, {0})})) ==
        std::vector<int64_t>{0, 9});
}

TEST_CASE("Comparison, logic and Where", "[elementwise]") {
  auto a = tv<int32_t>({4}, {1, 2, 3, 4});
  auto b = tv<int32_t>({1}, {3});
  CHECK(vals<bool>(run1(node("Equal", 19, 2), {a, b})) == std::vector<bool>{false, false, true, false});
  CHECK(vals<bool>(run1(node("Less", 13, 2), {a, b})) == std::vector<bool>{true, true, false, false});
  CHECK(vals<bool>(run1(node("LessOrEqual", 16, 2), {a, b})) == std::vector<bool>{true, true, true, false});
  CHECK(vals<bool>(run1(node("Greater", 13, 2), {a, b})) == std::vector<bool>{false, false, false, true});
  CHECK(vals<bool>(run1(node("GreaterOrEqual", 16, 2), {a, b})) == std::vector<bool>{false, false, true, true});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(vals<bool>(run1(node("Equal", 19, 2), {tv<float>({2}, {nan, 1}), tv<float>({2}, {nan, 1})})) ==
        std::vector<bool>{false, true});
  auto p = tb({2, 2}, {true, true, false, false});
  auto q = tb({2}, {true, false});
  CHECK(vals<bool>(run1(node("And", 7, 2), {p, q})) == std::vector<bool>{true, false, false, false});
  CHECK(vals<bool>(run1(node("Or", 7, 2), {p, q})) == std::vector<bool>{true, true, true, false});
  CHECK(vals<bool>(run1(node("Xor", 7, 2), {p, q})) == std::vector<bool>{false, true, true, false});
  CHECK(vals<bool>(run1(node("Not", 1, 1), {q})) == std::vector<bool>{false, true});
  auto w = run1(node("Where", 16, 3), {tb({2, 1}, {true, false}), tv<float>({3}, {1, 2, 3}), Tensor::scalar<float>(-1.f)});
  REQUIRE(w.shape() == Shape{2, 3});
  CHECK(vals<float>(w) == std::vector<float>{1, 2, 3, -1, -1, -1});
  {
    // cond [2,1,3], X [4,1], Y [2,4,3]: out[i,j,k] = cond[i,k] ? X[j] : Y[i,j,k].
    std::vector<bool> cv{true, false, true, false, false, true};
    auto out = run1(node("Where", 16, 3), {tb({2, 1, 3}, cv), tv<float>({4, 1}, {10, 20, 30, 40}),
                                           tv<float>({2, 4, 3}, iota_f(24))});
    REQUIRE(out.shape() == Shape{2, 4, 3});
    auto ov = vals<float>(out);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 4; ++j)
        for (int k = 0; k < 3; ++k)
          CHECK(ov[size_t((i * 4 + j) * 3 + k)] == (cv[size_t(i * 3 + k)] ? float(10 * (j + 1)) : float((i * 4 + j) * 3 + k)));
  }
  const int64_t n = 40009;
  std::vector<bool> c(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) c[size_t(i)] = i % 3 == 0;
  std::vector<uint8_t> cb(c.begin(), c.end());
  Tensor ct = Tensor::from_bytes(DType::kBool, {n}, cb.data());
  auto wl = vals<int64_t>(run1(node("Where", 16, 3), {ct, tv<int64_t>({n}, std::vector<int64_t>(size_t(n), 7)),
                                                      tv<int64_t>({n}, std::vector<int64_t>(size_t(n), -7))}));
  for (int64_t i = 0; i < n; i += 13) CHECK(wl[size_t(i)] == (i % 3 == 0 ? 7 : -7));
}

TEST_CASE("Cast between standard types, float16 and packed int4", "[elementwise]") {
  auto n = node("Cast", 19, 1);
  set_int(n, "to", static_cast<int64_t>(DType::kInt32));
  CHECK(vals<int32_t>(run1(n, {tv<float>({4}, {1.9f, -1.9f, 0.f, 100000.5f})})) ==
        std::vector<int32_t>{1, -1, 0, 100000});
  set_int(n, "to", static_cast<int64_t>(DType::kBool));
  CHECK(vals<bool>(run1(n, {tv<float>({3}, {0.f, -0.1f, 2.f})})) == std::vector<bool>{false, true, true});
  set_int(n, "to", static_cast<int64_t>(DType::kFloat16));
  auto h = run1(n, {tv<double>({3}, {1.0, 65504.0, 1.0 / 3.0})});
  REQUIRE(h.dtype() == DType::kFloat16);
  CHECK(h.data<uint16_t>()[0] == 0x3C00);
  CHECK(h.data<uint16_t>()[1] == 0x7BFF);
  CHECK(h.data<uint16_t>()[2] == 0x3555);
  set_int(n, "to", static_cast<int64_t>(DType::kInt4));
  auto q = run1(n, {tv<float>({3}, {-8.f, 7.f, 9.f})});
  REQUIRE(q.dtype() == DType::kInt4);
  const auto* qb = static_cast<const uint8_t*>(q.raw());
  CHECK(qb[0] == 0x78);         // -8 -> 0x8 (low nibble), 7 -> 0x7
  CHECK((qb[1] & 0xF) == 0x9);  // 9 wraps to -7
  set_int(n, "to", static_cast<int64_t>(DType::kFloat8E4M3FN));
  auto f8 = run1(n, {tv<float>({5}, {1.f, 448.f, 1000.f, -0.5f, std::numeric_limits<float>::quiet_NaN()})});
  const auto* fb = static_cast<const uint8_t*>(f8.raw());
  CHECK(fb[0] == 0x38);
  CHECK(fb[1] == 0x7E);
  CHECK(fb[2] == 0x7E);  // saturates
  CHECK(fb[3] == 0xB0);
  CHECK(fb[4] == 0x7F);
  auto like = node("CastLike", 15, 2);
  auto cl = run1(like, {tv<int64_t>({2}, {3, -4}), tv<double>({1}, {0})});
  CHECK(vals<double>(cl) == std::vector<double>{3, -4});
}

// Every Cast/CastLike node test in the ONNX data: our output bytes must equal the stored ones, which
// also covers the float8/float4/int2 types whose values compare_tensors cannot read.
TEST_CASE("Cast matches the ONNX backend test data bit for bit", "[elementwise]") {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(FRUGAL_SOURCE_DIR) / "../shared/testdata/onnx-onnx/onnx/backend/test/data/node";
  if (!fs::is_directory(root)) {
    WARN("ONNX test data not found; skipped");
    return;
  }
  int checked = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("test_cast", 0) != 0 || name.find("_expanded") != std::string::npos) continue;
    auto model = Model::load(e.path() / "model.onnx");
    if (!model.ok()) continue;
    const fs::path set = e.path() / "test_data_set_0";
    auto in = read_tensor_pb(set / "input_0.pb");
    auto out = read_tensor_pb(set / "output_0.pb");
    if (!in.ok() || !out.ok()) continue;  // string tensors
    const bool like = name.rfind("test_castlike", 0) == 0;
    NodeDef n = node(like ? "CastLike" : "Cast", 25, like ? 2 : 1);
    set_int(n, "to", static_cast<int64_t>(out->second.dtype()));
    set_int(n, "saturate", name.find("no_saturate") != std::string::npos ? 0 : 1);
    std::vector<Tensor> ins{in->second};
    if (like) ins.push_back(Tensor::zeros(out->second.dtype(), {1}));
    std::vector<const Tensor*> p;
    for (auto& t : ins) p.push_back(&t);
    auto r = run_node(n, p, cpu_registry());
    INFO(name);
    REQUIRE(r.ok());
    const Tensor& got = (*r)[0];
    REQUIRE(got.dtype() == out->second.dtype());
    REQUIRE(got.nbytes() == out->second.nbytes());
    const auto* g = static_cast<const uint8_t*>(got.raw());
    const auto* x = static_cast<const uint8_t*>(out->second.raw());
    // NaN payloads may differ for float16/float32; compare those as values.
    if (got.dtype() == DType::kFloat || got.dtype() == DType::kFloat16 || got.dtype() == DType::kDouble ||
        got.dtype() == DType::kBFloat16) {
      auto cmp = compare_tensors(got, out->second, 1e-6, 0);
      CHECK(cmp.ok());
    } else {
      int64_t bad = -1;
      for (size_t i = 0; i < got.nbytes(); ++i)
        if (g[i] != x[i]) {
          bad = int64_t(i);
          break;
        }
      INFO("first differing byte " << bad);
      CHECK(bad == -1);
    }
    ++checked;
  }
  CHECK(checked > 50);
}

TEST_CASE("Identity and inference Dropout", "[elementwise]") {
  auto x = tv<float>({2, 2}, {1, 2, 3, 4});
  CHECK(vals<float>(run1(node("Identity", 16, 1), {x})) == std::vector<float>{1, 2, 3, 4});
  auto d = node("Dropout", 13, 1, 2);
  auto outs = run(d, {x});
  CHECK(vals<float>(outs[0]) == std::vector<float>{1, 2, 3, 4});
  CHECK(vals<bool>(outs[1]) == std::vector<bool>{true, true, true, true});
  // training_mode with ratio 0 is still the identity.
  auto z = run(node("Dropout", 13, 3, 2), {x, Tensor::scalar<float>(0.f), Tensor::scalar<bool>(true)});
  CHECK(vals<float>(z[0]) == std::vector<float>{1, 2, 3, 4});
}
