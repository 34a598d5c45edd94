// Shape and data-movement kernels against hand-derived values (numpy semantics): negative axes,
// opset-dependent attribute/input forms, zero-size dims, int64/bool/float16 data, the no-copy
// guarantee of Reshape-like ops, and transposes large enough to take the tiled, threaded path.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "frugal/kernel.h"
#include "frugal/parallel.h"
#include "kernel_test_util.h"

using namespace frugal;
using namespace frugal::testing;

namespace {

Tensor tb(Shape s, std::vector<int> v) {
  std::vector<uint8_t> b(v.begin(), v.end());
  return Tensor::from_bytes(DType::kBool, std::move(s), b.data());
}

}  // namespace

TEST_CASE("Transpose: default and explicit perms, dtypes", "[shape]") {
  auto x = tv<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  auto y = run1(xy_node("Transpose", 13, 1), {x});
  CHECK(y.shape() == Shape{3, 2});
  CHECK(fvals(y) == std::vector<float>{1, 4, 2, 5, 3, 6});

  // [2,3,2] with perm (1,2,0): y[j,k,i] = x[i,j,k]
  auto n = xy_node("Transpose", 13, 1);
  set_ints(n, "perm", {1, 2, 0});
  auto xi = tv<int64_t>({2, 3, 2}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  auto yi = run1(n, {xi});
  CHECK(yi.shape() == Shape{3, 2, 2});
  CHECK(vals<int64_t>(yi) == std::vector<int64_t>{0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11});

  // bool and float16 are moved bit-exactly.
  auto yb = run1(xy_node("Transpose", 13, 1), {tb({2, 2}, {1, 0, 0, 1})});
  CHECK(yb.dtype() == DType::kBool);
  CHECK(vals<uint8_t>(Tensor::from_bytes(DType::kUInt8, {4}, yb.raw())) == std::vector<uint8_t>{1, 0, 0, 1});
  std::vector<uint16_t> h = {float_to_half(1.5f), float_to_half(-2.f), float_to_half(3.f), float_to_half(0.25f)};
  auto xh = Tensor::from_bytes(DType::kFloat16, {2, 2}, h.data());
  auto yh = run1(xy_node("Transpose", 13, 1), {xh});
  CHECK(yh.dtype() == DType::kFloat16);
  const auto* yp = static_cast<const uint16_t*>(yh.raw());
  CHECK(half_to_float(yp[1]) == 3.f);
  CHECK(half_to_float(yp[2]) == -2.f);
}

TEST_CASE("Transpose: large tiled and threaded copies match the index formula", "[shape]") {
  set_num_threads(2);
  for (auto dims : {Shape{67, 131}, Shape{3, 37, 41}, Shape{2, 64, 12, 64}}) {
    const int64_t r = static_cast<int64_t>(dims.size());
    std::vector<int64_t> perm;
    if (r == 2) perm = {1, 0};
    if (r == 3) perm = {2, 0, 1};
    if (r == 4) perm = {0, 2, 1, 3};  // the BERT head split
    const int64_t n = shape_numel(dims);
    auto x = tv<float>(dims, iota_f(n));
    auto nd = xy_node("Transpose", 13, 1);
    set_ints(nd, "perm", perm);
    auto y = run1(nd, {x});
    // Independent check: for every output index, the input's flat index through the permutation.
    Shape os;
    for (auto p : perm) os.push_back(dims[static_cast<size_t>(p)]);
    REQUIRE(y.shape() == os);
    std::vector<int64_t> in_st(static_cast<size_t>(r), 1);
    for (int64_t d = r - 2; d >= 0; --d) in_st[static_cast<size_t>(d)] = in_st[static_cast<size_t>(d + 1)] * dims[static_cast<size_t>(d + 1)];
    std::vector<int64_t> idx(static_cast<size_t>(r), 0);
    int64_t bad = 0;
    const float* yp = y.data<float>();
    for (int64_t i = 0; i < n; ++i) {
      int64_t rem = i, src = 0;
      for (int64_t d = r - 1; d >= 0; --d) {
        const int64_t c = rem % os[static_cast<size_t>(d)];
        rem /= os[static_cast<size_t>(d)];
        src += c * in_st[static_cast<size_t>(perm[static_cast<size_t>(d)])];
      }
      bad += yp[i] != static_cast<float>(src);
    }
    CHECK(bad == 0);
  }
  set_num_threads(1);
}

TEST_CASE("Reshape: 0, -1, allowzero, and no copy", "[shape]") {
  auto x = tv<float>({2, 3, 4}, iota_f(24));
  auto y = run1(xy_node("Reshape", 14, 2), {x, ti({0, -1})});
  CHECK(y.shape() == Shape{2, 12});
  CHECK(y.raw() == x.raw());  // a view, not a copy
  auto y2 = run1(xy_node("Reshape", 14, 2), {x, ti({-1, 2, 2})});
  CHECK(y2.shape() == Shape{6, 2, 2});
  // allowzero=1: a 0 in shape is a real zero dim (only valid for empty tensors).
  auto e = tv<float>({0, 3}, {});
  auto n = xy_node("Reshape", 14, 2);
  set_int(n, "allowzero", 1);
  CHECK(run1(n, {e, ti({3, 0})}).shape() == Shape{3, 0});
  // Without allowzero, 0 copies the input dim.
  CHECK(run1(xy_node("Reshape", 14, 2), {e, ti({0, 3})}).shape() == Shape{0, 3});
  CHECK_FALSE(try_run(xy_node("Reshape", 14, 2), {x, ti({5, -1})}).ok());
}

TEST_CASE("Flatten, Squeeze, Unsqueeze across opsets", "[shape]") {
  auto x = tv<float>({2, 3, 4}, iota_f(24));
  auto f = xy_node("Flatten", 13, 1);
  set_int(f, "axis", -1);
  CHECK(run1(f, {x}).shape() == Shape{6, 4});
  set_int(f, "axis", 0);
  CHECK(run1(f, {x}).shape() == Shape{1, 24});

  auto s = tv<int64_t>({1, 3, 1}, {7, 8, 9});
  CHECK(run1(xy_node("Squeeze", 13, 1), {s}).shape() == Shape{3});
  CHECK(run1(xy_node("Squeeze", 13, 2), {s, ti({-1})}).shape() == Shape{1, 3});
  auto sq11 = xy_node("Squeeze", 11, 1);
  set_ints(sq11, "axes", {0});
  auto ys = run1(sq11, {s});
  CHECK(ys.shape() == Shape{3, 1});
  CHECK(vals<int64_t>(ys) == std::vector<int64_t>{7, 8, 9});
  CHECK_FALSE(try_run(xy_node("Squeeze", 13, 2), {s, ti({1})}).ok());

  CHECK(run1(xy_node("Unsqueeze", 13, 2), {s, ti({0, -1})}).shape() == Shape{1, 1, 3, 1, 1});
  auto u11 = xy_node("Unsqueeze", 11, 1);
  set_ints(u11, "axes", {3, 1});
  CHECK(run1(u11, {tv<float>({2, 3}, iota_f(6))}).shape() == Shape{2, 1, 3, 1});
}

TEST_CASE("Concat and Split", "[shape]") {
  auto a = tv<float>({2, 2}, {1, 2, 3, 4});
  auto b = tv<float>({2, 1}, {5, 6});
  auto e = tv<float>({2, 0}, {});
  auto c = xy_node("Concat", 13, 3);
  set_int(c, "axis", -1);
  auto y = run1(c, {a, e, b});
  CHECK(y.shape() == Shape{2, 3});
  CHECK(fvals(y) == std::vector<float>{1, 2, 5, 3, 4, 6});
  auto c0 = xy_node("Concat", 13, 2);
  set_int(c0, "axis", 0);
  auto yb = run1(c0, {tb({1, 2}, {1, 0}), tb({1, 2}, {0, 1})});
  CHECK(yb.shape() == Shape{2, 2});
  CHECK(std::memcmp(yb.raw(), std::vector<uint8_t>{1, 0, 0, 1}.data(), 4) == 0);

  auto x = tv<int64_t>({5}, {1, 2, 3, 4, 5});
  auto s = xy_node("Split", 13, 2, 2);
  auto outs = run(s, {x, ti({2, 3})});
  CHECK(vals<int64_t>(outs[0]) == std::vector<int64_t>{1, 2});
  CHECK(vals<int64_t>(outs[1]) == std::vector<int64_t>{3, 4, 5});
  // opset 18 num_outputs with an uneven split: ceil(5/3) = 2 -> 2, 2, 1.
  auto s18 = xy_node("Split", 18, 1, 3);
  set_int(s18, "num_outputs", 3);
  auto o18 = run(s18, {x});
  CHECK(vals<int64_t>(o18[0]) == std::vector<int64_t>{1, 2});
  CHECK(vals<int64_t>(o18[2]) == std::vector<int64_t>{5});
  // opset 11 split attribute along axis 1.
  auto s11 = xy_node("Split", 11, 1, 2);
  set_int(s11, "axis", 1);
  set_ints(s11, "split", {1, 2});
  auto x23 = tv<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  auto o11 = run(s11, {x23});
  CHECK(fvals(o11[0]) == std::vector<float>{1, 4});
  CHECK(fvals(o11[1]) == std::vector<float>{2, 3, 5, 6});
  CHECK(o11[1].shape() == Shape{2, 2});
  // Splitting the leading axis hands out views of the input.
  auto s0 = xy_node("Split", 13, 1, 2);
  auto o0 = run(s0, {x23});
  CHECK(fvals(o0[1]) == std::vector<float>{4, 5, 6});
  CHECK(o0[1].raw() == static_cast<const void*>(x23.data<float>() + 3));
}

TEST_CASE("Slice: negative steps, clamping, attribute form", "[shape]") {
  auto x = tv<float>({2, 5}, iota_f(10));
  // x[:, ::-2] -> columns 4, 2, 0
  auto y = run1(xy_node("Slice", 13, 5), {x, ti({-1}), ti({INT64_MIN}), ti({1}), ti({-2})});
  CHECK(y.shape() == Shape{2, 3});
  CHECK(fvals(y) == std::vector<float>{4, 2, 0, 9, 7, 5});
  // Out-of-range ends clamp: x[1:100, 1:3]
  auto y2 = run1(xy_node("Slice", 13, 3), {x, ti({1, 1}), ti({100, 3})});
  CHECK(y2.shape() == Shape{1, 2});
  CHECK(fvals(y2) == std::vector<float>{6, 7});
  // Empty result: start beyond end.
  CHECK(run1(xy_node("Slice", 13, 4), {x, ti({3}), ti({1}), ti({1})}).shape() == Shape{2, 0});
  // A slice along the leading axis is one contiguous run: served as a view, no copy.
  auto lead = run1(xy_node("Slice", 13, 3), {x, ti({1}), ti({2})});
  CHECK(fvals(lead) == std::vector<float>{5, 6, 7, 8, 9});
  CHECK(lead.raw() == static_cast<const void*>(x.data<float>() + 5));
  // Opset 9 attributes.
  auto s9 = xy_node("Slice", 9, 1);
  set_ints(s9, "starts", {-2});
  set_ints(s9, "ends", {1000});
  set_ints(s9, "axes", {1});
  CHECK(fvals(run1(s9, {x})) == std::vector<float>{3, 4, 8, 9});
}

TEST_CASE("Gather and GatherElements", "[shape]") {
  auto x = tv<int64_t>({3, 2}, {1, 2, 3, 4, 5, 6});
  auto y = run1(xy_node("Gather", 13, 2), {x, tv<int64_t>({2, 2}, {0, -1, 1, 0})});
  CHECK(y.shape() == Shape{2, 2, 2});
  CHECK(vals<int64_t>(y) == std::vector<int64_t>{1, 2, 5, 6, 3, 4, 1, 2});
  auto g1 = xy_node("Gather", 13, 2);
  set_int(g1, "axis", 1);
  auto y1 = run1(g1, {x, Tensor::scalar<int32_t>(1)});
  CHECK(y1.shape() == Shape{3});
  CHECK(vals<int64_t>(y1) == std::vector<int64_t>{2, 4, 6});
  CHECK_FALSE(try_run(xy_node("Gather", 13, 2), {x, ti({3})}).ok());

  auto ge = xy_node("GatherElements", 13, 2);
  set_int(ge, "axis", 1);
  auto z = run1(ge, {tv<float>({2, 2}, {1, 2, 3, 4}), tv<int64_t>({2, 2}, {0, 0, 1, -2})});
  CHECK(fvals(z) == std::vector<float>{1, 1, 4, 3});
}

TEST_CASE("Expand and Tile", "[shape]") {
  auto x = tv<float>({3, 1}, {1, 2, 3});
  auto y = run1(xy_node("Expand", 13, 2), {x, ti({2, 1, 2})});
  CHECK(y.shape() == Shape{2, 3, 2});
  CHECK(fvals(y) == std::vector<float>{1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3});
  auto t = run1(xy_node("Tile", 13, 2), {tv<int32_t>({2, 2}, {1, 2, 3, 4}), ti({1, 2})});
  CHECK(t.shape() == Shape{2, 4});
  CHECK(vals<int32_t>(t) == std::vector<int32_t>{1, 2, 1, 2, 3, 4, 3, 4});
  CHECK(run1(xy_node("Tile", 13, 2), {tv<int32_t>({2, 2}, {1, 2, 3, 4}), ti({0, 3})}).shape() == Shape{0, 6});
}

TEST_CASE("Pad: every mode, negative pads, attribute form", "[shape]") {
  auto x = tv<float>({1, 3}, {1, 2, 3});
  auto p = xy_node("Pad", 13, 3);
  auto y = run1(p, {x, ti({0, 2, 0, 1}), Tensor::scalar<float>(9)});
  CHECK(fvals(y) == std::vector<float>{9, 9, 1, 2, 3, 9});
  set_str(p, "mode", "reflect");
  CHECK(fvals(run1(p, {x, ti({0, 2, 0, 2})})) == std::vector<float>{3, 2, 1, 2, 3, 2, 1});
  set_str(p, "mode", "edge");
  CHECK(fvals(run1(p, {x, ti({0, 2, 0, 1})})) == std::vector<float>{1, 1, 1, 2, 3, 3});
  auto w = xy_node("Pad", 19, 2);
  set_str(w, "mode", "wrap");
  CHECK(fvals(run1(w, {x, ti({0, 2, 0, 1})})) == std::vector<float>{2, 3, 1, 2, 3, 1});
  // Negative pads crop.
  CHECK(fvals(run1(xy_node("Pad", 13, 2), {x, ti({0, -1, 0, 1})})) == std::vector<float>{2, 3, 0});
  // Opset 18 axes input: pad only axis 0 (rows) of a [1,3] int64 tensor.
  auto xi = tv<int64_t>({1, 3}, {1, 2, 3});
  auto ya = run1(xy_node("Pad", 18, 4), {xi, ti({1, 0}), Tensor::scalar<int64_t>(-1), ti({-2})});
  CHECK(ya.shape() == Shape{2, 3});
  CHECK(vals<int64_t>(ya) == std::vector<int64_t>{-1, -1, -1, 1, 2, 3});
  // Opset 2 attributes.
  auto p2 = xy_node("Pad", 2, 1);
  set_ints(p2, "pads", {1, 0, 0, 0});
  set_float(p2, "value", 0.5f);
  CHECK(fvals(run1(p2, {x})) == std::vector<float>{0.5f, 0.5f, 0.5f, 1, 2, 3});
}

TEST_CASE("Shape, Size, ConstantOfShape, Constant, Range", "[shape]") {
  auto x = tv<float>({2, 0, 4}, {});
  CHECK(vals<int64_t>(run1(xy_node("Shape", 13, 1), {x})) == std::vector<int64_t>{2, 0, 4});
  auto s15 = xy_node("Shape", 15, 1);
  set_int(s15, "start", -2);
  CHECK(vals<int64_t>(run1(s15, {x})) == std::vector<int64_t>{0, 4});
  set_int(s15, "end", -5);  // clamps to 0: empty
  CHECK(run1(s15, {x}).shape() == Shape{0});
  auto sz = run1(xy_node("Size", 13, 1), {tv<float>({2, 3}, iota_f(6))});
  CHECK(sz.shape() == Shape{});
  CHECK(vals<int64_t>(sz) == std::vector<int64_t>{6});

  auto cs = xy_node("ConstantOfShape", 9, 1);
  CHECK(fvals(run1(cs, {ti({2})})) == std::vector<float>{0, 0});
  set_tensor(cs, "value", tv<int64_t>({1}, {7}));
  auto c = run1(cs, {ti({2, 1})});
  CHECK(c.shape() == Shape{2, 1});
  CHECK(vals<int64_t>(c) == std::vector<int64_t>{7, 7});

  auto k = xy_node("Constant", 13, 0);
  set_ints(k, "value_ints", {3, 4});
  CHECK(vals<int64_t>(run1(k, {})) == std::vector<int64_t>{3, 4});
  auto kf = xy_node("Constant", 13, 0);
  set_float(kf, "value_float", 2.5f);
  auto ykf = run1(kf, {});
  CHECK(ykf.shape() == Shape{});
  CHECK(fvals(ykf) == std::vector<float>{2.5f});
  auto kt = xy_node("Constant", 13, 0);
  set_tensor(kt, "value", tv<float>({2}, {1, 2}));
  CHECK(fvals(run1(kt, {})) == std::vector<float>{1, 2});

  auto r = run1(xy_node("Range", 11, 3),
                {Tensor::scalar<int64_t>(10), Tensor::scalar<int64_t>(1), Tensor::scalar<int64_t>(-4)});
  CHECK(vals<int64_t>(r) == std::vector<int64_t>{10, 6, 2});
  auto rf =
      run1(xy_node("Range", 11, 3), {Tensor::scalar<float>(0), Tensor::scalar<float>(1), Tensor::scalar<float>(0.25f)});
  CHECK(fvals(rf) == std::vector<float>{0, 0.25f, 0.5f, 0.75f});
  CHECK(run1(xy_node("Range", 11, 3),
             {Tensor::scalar<int32_t>(5), Tensor::scalar<int32_t>(1), Tensor::scalar<int32_t>(1)})
            .shape() == Shape{0});
}

TEST_CASE("DepthToSpace (DCR, CRD) and SpaceToDepth", "[shape]") {
  // x: [1, 4, 1, 2], channel c holds values 10c, 10c+1.
  auto x = tv<float>({1, 4, 1, 2}, {0, 1, 10, 11, 20, 21, 30, 31});
  auto d = xy_node("DepthToSpace", 13, 1);
  set_int(d, "blocksize", 2);
  // DCR: y[0,0,2h+i,2w+j] = x[0,(i*2+j),h,w]
  auto y = run1(d, {x});
  CHECK(y.shape() == Shape{1, 1, 2, 4});
  CHECK(fvals(y) == std::vector<float>{0, 10, 1, 11, 20, 30, 21, 31});
  set_str(d, "mode", "CRD");  // with one output channel CRD and DCR index the same way
  CHECK(fvals(run1(d, {x})) == std::vector<float>{0, 10, 1, 11, 20, 30, 21, 31});
  // CRD with 2 output channels: y[c, i, j] = x[c*4 + i*2 + j]
  auto x8 = tv<float>({1, 8, 1, 1}, iota_f(8));
  CHECK(fvals(run1(d, {x8})) == std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7});
  set_str(d, "mode", "DCR");  // DCR: y[c, i, j] = x[(i*2+j)*2 + c]
  CHECK(fvals(run1(d, {x8})) == std::vector<float>{0, 2, 4, 6, 1, 3, 5, 7});

  auto s = xy_node("SpaceToDepth", 13, 1);
  set_int(s, "blocksize", 2);
  auto z = run1(s, {y});
  CHECK(z.shape() == Shape{1, 4, 1, 2});
  CHECK(fvals(z) == fvals(x));  // inverse of DCR DepthToSpace
}

TEST_CASE("NonZero", "[shape]") {
  auto y = run1(xy_node("NonZero", 13, 1), {tv<float>({2, 2}, {1, 0, -0.f, 3})});
  CHECK(y.shape() == Shape{2, 2});
  CHECK(vals<int64_t>(y) == std::vector<int64_t>{0, 1, 0, 1});
  auto yb = run1(xy_node("NonZero", 13, 1), {tb({3}, {0, 1, 1})});
  CHECK(vals<int64_t>(yb) == std::vector<int64_t>{1, 2});
}

TEST_CASE("Resize and Upsample", "[shape]") {
  auto x = tv<float>({1, 1, 2, 2}, {1, 2, 3, 4});
  // nearest, asymmetric x2: plain repetition.
  auto n = xy_node("Resize", 19, 3);
  set_str(n, "coordinate_transformation_mode", "asymmetric");
  set_str(n, "nearest_mode", "floor");
  auto y = run1(n, {x, Tensor(), tv<float>({4}, {1, 1, 2, 2})});
  CHECK(y.shape() == Shape{1, 1, 4, 4});
  CHECK(fvals(y) == std::vector<float>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  // linear, align_corners, sizes [1,1,1,3] on axis 3 only via axes: row 0 -> 1, 1.5, 2
  auto l = xy_node("Resize", 19, 4);
  set_str(l, "mode", "linear");
  set_str(l, "coordinate_transformation_mode", "align_corners");
  set_ints(l, "axes", {3});
  auto yl = run1(l, {x, Tensor(), Tensor(), ti({3})});
  CHECK(yl.shape() == Shape{1, 1, 2, 3});
  CHECK(fvals(yl) == std::vector<float>{1, 1.5f, 2, 3, 3.5f, 4});
  // linear, half_pixel x2 on a 1-D row [0, 4]: coordinates -0.25, 0.25, 0.75, 1.25 -> 0, 1, 3, 4
  auto h = xy_node("Resize", 13, 3);
  set_str(h, "mode", "linear");
  CHECK(fvals(run1(h, {tv<float>({2}, {0, 4}), Tensor(), tv<float>({1}, {2})})) == std::vector<float>{0, 1, 3, 4});
  // Upsample-9 nearest with integer scales; int64 data moves exactly.
  auto u = xy_node("Upsample", 9, 2);
  auto yu = run1(u, {tv<int64_t>({1, 2}, {5, 6}), tv<float>({2}, {2, 2})});
  CHECK(yu.shape() == Shape{2, 4});
  CHECK(vals<int64_t>(yu) == std::vector<int64_t>{5, 5, 6, 6, 5, 5, 6, 6});
}

TEST_CASE("Concat reads scalars beside 1-D inputs as 1-element vectors", "[shape]") {
  // BertForQuestionAnswering (PyTorch 1.4 export) concatenates int64 scalars 2 and 4 with [1]-shaped
  // shape pieces; onnxruntime produced its reference outputs that way.
  frugal::NodeDef n;
  n.op_type = "Concat";
  n.opset = 11;
  n.name = "concat";
  n.inputs = {"a", "b", "c"};
  n.outputs = {"y"};
  n.attrs["axis"].i = 0;
  auto a = frugal::Tensor::from_vector<int64_t>({1}, {1});
  auto b = frugal::Tensor::scalar<int64_t>(2);
  auto c = frugal::Tensor::scalar<int64_t>(4);
  auto out = frugal::run_node(n, {&a, &b, &c}, frugal::cpu_registry());
  REQUIRE(out.ok());
  CHECK((*out)[0].shape() == frugal::Shape{3});
  CHECK((*out)[0].to_int64_vector() == std::vector<int64_t>{1, 2, 4});
}
