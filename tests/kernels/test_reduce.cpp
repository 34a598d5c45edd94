// Reduction kernels against hand-derived values (numpy semantics): axes as attribute and as input,
// negative / non-contiguous / empty axes, keepdims, noop_with_empty_axes, zero-size dims, int64 and
// bool data, a large threaded case, ArgMax/ArgMin tie rules and TopK ordering.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "frugal/kernel.h"
#include "frugal/parallel.h"
#include "kernel_test_util.h"

using namespace frugal;
using namespace frugal::testing;

namespace {

void check_close(const Tensor& t, const std::vector<double>& want, double tol = 1e-5) {
  const auto got = t.to_double_vector();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    if (std::isinf(want[i])) CHECK(got[i] == want[i]);
    else CHECK(got[i] == Approx(want[i]).margin(tol));
  }
}

// x[i,j,k] = i*12 + j*4 + k over [2,3,4]
Tensor x234() {
  std::vector<float> v(24);
  for (size_t i = 0; i < 24; ++i) v[i] = static_cast<float>(i);
  return tv<float>({2, 3, 4}, v);
}

}  // namespace

TEST_CASE("ReduceSum: axes input (13+) and attribute (11), keepdims, negative axes", "[reduce]") {
  auto x = x234();
  auto y = run1(xy_node("ReduceSum", 13, 2), {x, ti({-1})});
  CHECK(y.shape() == Shape{2, 3, 1});
  check_close(y, {6, 22, 38, 54, 70, 86});
  auto n11 = xy_node("ReduceSum", 11, 1);
  set_ints(n11, "axes", {1});
  set_int(n11, "keepdims", 0);
  auto y11 = run1(n11, {x});
  CHECK(y11.shape() == Shape{2, 4});
  check_close(y11, {12, 15, 18, 21, 48, 51, 54, 57});
  // Empty axes: reduce everything unless noop_with_empty_axes.
  auto all = run1(xy_node("ReduceSum", 13, 1), {x});
  CHECK(all.shape() == Shape{1, 1, 1});
  check_close(all, {276});
  auto noop = xy_node("ReduceSum", 13, 2);
  set_int(noop, "noop_with_empty_axes", 1);
  auto yn = run1(noop, {x, ti({})});
  CHECK(yn.shape() == Shape{2, 3, 4});
  check_close(yn, x.to_double_vector());
  // int64 stays exact and integral.
  auto yi = run1(xy_node("ReduceSum", 13, 2), {tv<int64_t>({2, 2}, {int64_t{1} << 40, 1, 2, 3}), ti({0})});
  CHECK(vals<int64_t>(yi) == std::vector<int64_t>{(int64_t{1} << 40) + 2, 4});
}

TEST_CASE("ReduceMean over non-contiguous axes and the other reductions", "[reduce]") {
  auto x = x234();
  auto m = xy_node("ReduceMean", 18, 2);
  set_int(m, "keepdims", 0);
  // mean over i and k for each j: j=0: (0+1+2+3+12+13+14+15)/8 = 7.5
  auto y = run1(m, {x, ti({0, 2})});
  CHECK(y.shape() == Shape{3});
  check_close(y, {7.5, 11.5, 15.5});
  auto m13 = xy_node("ReduceMean", 13, 1);
  set_ints(m13, "axes", {-2, 0});
  set_int(m13, "keepdims", 1);
  auto y13 = run1(m13, {x});
  CHECK(y13.shape() == Shape{1, 1, 4});
  check_close(y13, {10, 11, 12, 13});

  auto v = tv<float>({2, 2}, {1, -2, 3, -4});
  auto axis1 = ti({1});
  check_close(run1(xy_node("ReduceMax", 18, 2), {v, axis1}), {1, 3});
  check_close(run1(xy_node("ReduceMin", 18, 2), {v, axis1}), {-2, -4});
  check_close(run1(xy_node("ReduceProd", 18, 2), {v, axis1}), {-2, -12});
  check_close(run1(xy_node("ReduceL1", 18, 2), {v, axis1}), {3, 7});
  check_close(run1(xy_node("ReduceL2", 18, 2), {v, axis1}), {std::sqrt(5.0), 5});
  check_close(run1(xy_node("ReduceSumSquare", 18, 2), {v, axis1}), {5, 25});
  check_close(run1(xy_node("ReduceLogSum", 18, 2), {tv<float>({2}, {1, 2}), ti({0})}), {std::log(3.0)});
  // LogSumExp stays finite for large inputs: log(e^1000 + e^1000) = 1000 + log 2.
  check_close(run1(xy_node("ReduceLogSumExp", 18, 2), {tv<float>({2}, {1000, 1000}), ti({0})}), {1000 + std::log(2.0)},
              1e-3);
  // Opset 13 forms take axes as an attribute for everything but ReduceSum.
  auto mx13 = xy_node("ReduceMax", 13, 1);
  set_ints(mx13, "axes", {0});
  check_close(run1(mx13, {v}), {3, -2});
}

TEST_CASE("Reductions over zero-size dims and bool/int data", "[reduce]") {
  auto e = tv<float>({2, 0}, {});
  auto axis1 = ti({1});
  auto s = run1(xy_node("ReduceSum", 13, 2), {e, axis1});
  CHECK(s.shape() == Shape{2, 1});
  check_close(s, {0, 0});
  check_close(run1(xy_node("ReduceProd", 18, 2), {e, axis1}), {1, 1});
  const double inf = std::numeric_limits<double>::infinity();
  check_close(run1(xy_node("ReduceMax", 18, 2), {e, axis1}), {-inf, -inf});
  check_close(run1(xy_node("ReduceMin", 18, 2), {e, axis1}), {inf, inf});
  // Reducing the non-empty axis of an empty tensor gives an empty result.
  CHECK(run1(xy_node("ReduceSum", 13, 2), {e, ti({0})}).shape() == Shape{1, 0});

  std::vector<uint8_t> b = {0, 1, 0, 0};
  auto xb = Tensor::from_bytes(DType::kBool, {2, 2}, b.data());
  auto yb = run1(xy_node("ReduceMax", 20, 2), {xb, axis1});
  CHECK(yb.dtype() == DType::kBool);
  CHECK(static_cast<const uint8_t*>(yb.raw())[0] == 1);
  CHECK(static_cast<const uint8_t*>(yb.raw())[1] == 0);
  auto yi = run1(xy_node("ReduceMin", 18, 2), {tv<int32_t>({3}, {4, -7, 2}), ti({0})});
  CHECK(vals<int32_t>(yi) == std::vector<int32_t>{-7});
  // Empty integer reductions give the limits of the element type (numpy's identities).
  auto ei = tv<int32_t>({0, 2}, {});
  CHECK(vals<int32_t>(run1(xy_node("ReduceMin", 18, 2), {ei, ti({0})})) ==
        std::vector<int32_t>{std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::max()});
  CHECK(vals<int32_t>(run1(xy_node("ReduceMax", 18, 2), {ei, ti({0})})) ==
        std::vector<int32_t>{std::numeric_limits<int32_t>::lowest(), std::numeric_limits<int32_t>::lowest()});
  // int32 products wrap like the narrow type: 65536 * 65536 = 2^32 -> 0; 65536 * 32768 = 2^31 -> INT32_MIN.
  CHECK(
      vals<int32_t>(run1(xy_node("ReduceProd", 18, 2), {tv<int32_t>({2, 2}, {65536, 65536, 65536, 32768}), ti({1})})) ==
      std::vector<int32_t>{0, std::numeric_limits<int32_t>::lowest()});
}

TEST_CASE("Large reductions use threads and match closed forms", "[reduce]") {
  set_num_threads(2);
  const int64_t rows = 300, cols = 1000;
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) v[static_cast<size_t>(i * cols + j)] = static_cast<float>(j % 7 + i);
  auto x = tv<float>({rows, cols}, v);
  // Row sums: sum_j (j % 7) + cols * i; over 1000 columns, sum(j%7) = 142*21 + (0+1+...+5) = 2982 + 15 = 2997
  auto y = run1(xy_node("ReduceSum", 13, 2), {x, ti({1})});
  std::vector<double> want(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) want[static_cast<size_t>(i)] = 2997.0 + static_cast<double>(cols * i);
  check_close(y, want, 1e-3);
  // Column means over axis 0: (j % 7) + mean(i) = (j % 7) + 149.5
  auto m = run1(xy_node("ReduceMean", 18, 2), {x, ti({0})});
  std::vector<double> wm(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) wm[static_cast<size_t>(j)] = static_cast<double>(j % 7) + 149.5;
  check_close(m, wm, 1e-3);
  set_num_threads(1);
}

TEST_CASE("ArgMax / ArgMin: ties, select_last_index, keepdims", "[reduce]") {
  auto x = tv<float>({2, 3}, {1, 5, 5, 2, 0, 2});
  auto a = xy_node("ArgMax", 13, 1);
  set_int(a, "axis", -1);
  auto y = run1(a, {x});
  CHECK(y.shape() == Shape{2, 1});
  CHECK(vals<int64_t>(y) == std::vector<int64_t>{1, 0});
  set_int(a, "select_last_index", 1);
  set_int(a, "keepdims", 0);
  auto yl = run1(a, {x});
  CHECK(yl.shape() == Shape{2});
  CHECK(vals<int64_t>(yl) == std::vector<int64_t>{2, 2});
  auto b = xy_node("ArgMin", 13, 1);
  CHECK(vals<int64_t>(run1(b, {x})) == std::vector<int64_t>{0, 1, 1});
  auto yi = run1(xy_node("ArgMax", 13, 1), {tv<int64_t>({3}, {-5, 9, 9})});
  CHECK(yi.shape() == Shape{1});
  CHECK(vals<int64_t>(yi) == std::vector<int64_t>{1});
}

TEST_CASE("TopK: largest, smallest, ties keep the lower index, attribute k", "[reduce]") {
  auto x = tv<float>({2, 4}, {3, 1, 3, 2, 0, -1, 7, -1});
  auto t = xy_node("TopK", 11, 2, 2);
  auto outs = run(t, {x, ti({2})});
  CHECK(outs[0].shape() == Shape{2, 2});
  CHECK(vals<float>(outs[0]) == std::vector<float>{3, 3, 7, 0});
  CHECK(vals<int64_t>(outs[1]) == std::vector<int64_t>{0, 2, 2, 0});
  set_int(t, "largest", 0);
  auto s = run(t, {x, ti({3})});
  CHECK(vals<float>(s[0]) == std::vector<float>{1, 2, 3, -1, -1, 0});
  CHECK(vals<int64_t>(s[1]) == std::vector<int64_t>{1, 3, 0, 1, 3, 0});
  // opset 1: k attribute, along axis 0, int64 data.
  auto t1 = xy_node("TopK", 1, 1, 2);
  set_int(t1, "k", 1);
  set_int(t1, "axis", 0);
  auto o1 = run(t1, {tv<int64_t>({2, 2}, {4, 9, 8, 9})});
  CHECK(vals<int64_t>(o1[0]) == std::vector<int64_t>{8, 9});
  CHECK(vals<int64_t>(o1[1]) == std::vector<int64_t>{1, 0});
  // k = 0 is valid and empty.
  CHECK(run(xy_node("TopK", 11, 2, 2), {x, ti({0})})[0].shape() == Shape{2, 0});
}
