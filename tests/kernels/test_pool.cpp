// MaxPool, AveragePool, LpPool and the global pools against hand-derived values and a plain window
// loop written here (padding, dilations, ceil_mode, count_include_pad, Indices in both storage orders,
// int8/uint8 inputs).
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "frugal/kernel.h"
#include "kernel_test_util.h"

using namespace frugal;
using namespace frugal::testing;

namespace {

// Node "pool" with the single input x and outputs p, q, ...
NodeDef pl_node(const std::string& op, int opset, size_t n_out = 1) {
  return make_node("pool", op, opset, {"x"}, letter_names(n_out, 'p'));
}

std::vector<Tensor> pl_run(const NodeDef& n, const Tensor& x) { return run(n, {x}); }

}  // namespace

TEST_CASE("MaxPool and AveragePool hand-derived 4x4", "[pool]") {
  // 1..16 in a 4x4 plane, 2x2 windows stride 2
  std::vector<float> x(16);
  for (int i = 0; i < 16; ++i) x[static_cast<size_t>(i)] = static_cast<float>(i + 1);
  Tensor X = Tensor::from_vector<float>({1, 1, 4, 4}, x);
  NodeDef mp = pl_node("MaxPool", 12, 2);
  set_ints(mp, "kernel_shape", {2, 2});
  set_ints(mp, "strides", {2, 2});
  auto r = pl_run(mp, X);
  REQUIRE(r[0].to_double_vector() == std::vector<double>{6, 8, 14, 16});
  REQUIRE(r[1].to_int64_vector() == std::vector<int64_t>{5, 7, 13, 15});
  set_int(mp, "storage_order", 1);  // column-major indices: h + w * H
  r = pl_run(mp, X);
  REQUIRE(r[1].to_int64_vector() == std::vector<int64_t>{5, 13, 7, 15});

  NodeDef ap = pl_node("AveragePool", 11);
  set_ints(ap, "kernel_shape", {2, 2});
  set_ints(ap, "strides", {2, 2});
  REQUIRE(pl_run(ap, X)[0].to_double_vector() == std::vector<double>{3.5, 5.5, 11.5, 13.5});
  // 3x3 window with pad 1 at the corner: excluded pads average 4 values, included ones divide by 9
  NodeDef ap2 = pl_node("AveragePool", 11);
  set_ints(ap2, "kernel_shape", {3, 3});
  set_ints(ap2, "strides", {3, 3});
  set_ints(ap2, "pads", {1, 1, 1, 1});
  auto a = pl_run(ap2, X)[0].to_double_vector();
  REQUIRE(a.size() == 4);
  REQUIRE(a[0] == Approx((1 + 2 + 5 + 6) / 4.0));
  set_int(ap2, "count_include_pad", 1);
  a = pl_run(ap2, X)[0].to_double_vector();
  REQUIRE(a[0] == Approx((1 + 2 + 5 + 6) / 9.0));
  REQUIRE(a[3] == Approx((11 + 12 + 15 + 16) / 9.0));
}

TEST_CASE("MaxPool random sweep with pads, dilations and ceil_mode", "[pool]") {
  uint32_t seed = 3;
  const int64_t H = 17, W = 13;
  for (int64_t k : {2, 3})
    for (int64_t s : {1, 2})
      for (int64_t d : {1, 2})
        for (int ceil = 0; ceil < 2; ++ceil) {
          const int64_t pads[4] = {1, 0, 0, 1};
          auto x = rand_floats(2 * 3 * H * W, seed++);
          NodeDef n = pl_node("MaxPool", 12, 2);
          set_ints(n, "kernel_shape", {k, k});
          set_ints(n, "strides", {s, s});
          set_ints(n, "dilations", {d, d});
          set_ints(n, "pads", {pads[0], pads[1], pads[2], pads[3]});
          set_int(n, "ceil_mode", ceil);
          auto r = pl_run(n, Tensor::from_vector<float>({2, 3, H, W}, x));
          auto osize = [&](int64_t in, int64_t pb, int64_t pe) {
            const int64_t span = in + pb + pe - ((k - 1) * d + 1);
            int64_t o = ceil ? (span + s - 1) / s + 1 : span / s + 1;
            if (ceil && (o - 1) * s >= in + pb) --o;
            return o;
          };
          const int64_t OH = osize(H, pads[0], pads[2]), OW = osize(W, pads[1], pads[3]);
          REQUIRE(r[0].shape() == Shape{2, 3, OH, OW});
          const float* y = r[0].data<float>();
          const int64_t* ind = r[1].data<int64_t>();
          for (int64_t p = 0; p < 6; ++p)
            for (int64_t oh = 0; oh < OH; ++oh)
              for (int64_t ow = 0; ow < OW; ++ow) {
                float best = -std::numeric_limits<float>::infinity();
                int64_t bi = -1;
                for (int64_t kh = 0; kh < k; ++kh)
                  for (int64_t kw = 0; kw < k; ++kw) {
                    const int64_t ih = oh * s - pads[0] + kh * d, iw = ow * s - pads[1] + kw * d;
                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                    const int64_t off = p * H * W + ih * W + iw;
                    if (x[static_cast<size_t>(off)] > best) {
                      best = x[static_cast<size_t>(off)];
                      bi = off;
                    }
                  }
                const int64_t o = (p * OH + oh) * OW + ow;
                INFO("k=" << k << " s=" << s << " d=" << d << " ceil=" << ceil << " out " << o);
                REQUIRE(y[o] == best);
                REQUIRE(ind[o] == bi);
              }
        }
}

TEST_CASE("MaxPool on int8 and uint8, 1-D and 3-D", "[pool]") {
  NodeDef n = pl_node("MaxPool", 12);
  set_ints(n, "kernel_shape", {3});
  set_ints(n, "pads", {1, 1});
  auto r = pl_run(n, Tensor::from_vector<int8_t>({1, 1, 5}, {-5, 3, -128, 127, -1}));
  REQUIRE(r[0].dtype() == DType::kInt8);
  REQUIRE(r[0].to_int64_vector() == std::vector<int64_t>{3, 3, 127, 127, 127});
  r = pl_run(n, Tensor::from_vector<uint8_t>({1, 1, 5}, {0, 200, 1, 2, 255}));
  REQUIRE(r[0].to_int64_vector() == std::vector<int64_t>{200, 200, 200, 255, 255});
  NodeDef n3 = pl_node("MaxPool", 12);
  set_ints(n3, "kernel_shape", {2, 2, 2});
  set_ints(n3, "strides", {2, 2, 2});
  std::vector<float> x(8);
  for (int i = 0; i < 8; ++i) x[static_cast<size_t>(i)] = static_cast<float>((i * 5) % 8);
  r = pl_run(n3, Tensor::from_vector<float>({1, 1, 2, 2, 2}, x));
  REQUIRE(r[0].shape() == Shape{1, 1, 1, 1, 1});
  REQUIRE(r[0].to_double_vector() == std::vector<double>{7});
}

TEST_CASE("AveragePool ceil_mode and dilations against a plain loop", "[pool]") {
  const int64_t H = 7, W = 8, k = 3, s = 2, d = 2;
  auto x = rand_floats(H * W, 50);
  for (int include = 0; include < 2; ++include) {
    NodeDef n = pl_node("AveragePool", 19);
    set_ints(n, "kernel_shape", {k, k});
    set_ints(n, "strides", {s, s});
    set_ints(n, "dilations", {d, d});
    set_ints(n, "pads", {1, 1, 1, 1});
    set_int(n, "ceil_mode", 1);
    set_int(n, "count_include_pad", include);
    auto y = pl_run(n, Tensor::from_vector<float>({1, 1, H, W}, x))[0];
    // extent 5: H: (7+2-5)/2 -> ceil 2 + 1 = 3; W: (8+2-5)=5 -> ceil(2.5)=3 + 1 = 4, last start 6 < 8+1 keeps it
    REQUIRE(y.shape() == Shape{1, 1, 3, 4});
    const float* yv = y.data<float>();
    for (int64_t oh = 0; oh < 3; ++oh)
      for (int64_t ow = 0; ow < 4; ++ow) {
        double sum = 0;
        int64_t valid = 0, in_padded = 0;
        for (int64_t kh = 0; kh < k; ++kh)
          for (int64_t kw = 0; kw < k; ++kw) {
            const int64_t ih = oh * s - 1 + kh * d, iw = ow * s - 1 + kw * d;
            const bool hp = ih >= -1 && ih < H + 1, wp = iw >= -1 && iw < W + 1;
            in_padded += hp && wp;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            sum += x[static_cast<size_t>(ih * W + iw)];
            ++valid;
          }
        const double want = sum / static_cast<double>(include ? in_padded : valid);
        REQUIRE(yv[oh * 4 + ow] == Approx(want).margin(1e-6));
      }
  }
}

TEST_CASE("Global pools and LpPool", "[pool]") {
  std::vector<float> x{1, -2, 3, -4, 5, 6, 7, 8};
  Tensor X = Tensor::from_vector<float>({1, 2, 2, 2}, x);
  auto ga = pl_run(pl_node("GlobalAveragePool", 1), X)[0];
  REQUIRE(ga.shape() == Shape{1, 2, 1, 1});
  REQUIRE(ga.to_double_vector() == std::vector<double>{-0.5, 6.5});
  auto gm = pl_run(pl_node("GlobalMaxPool", 1), X)[0];
  REQUIRE(gm.to_double_vector() == std::vector<double>{3, 8});
  NodeDef lp = pl_node("LpPool", 18);
  set_ints(lp, "kernel_shape", {2, 2});
  auto l = pl_run(lp, X)[0].to_double_vector();
  REQUIRE(l.size() == 2);
  REQUIRE(l[0] == Approx(std::sqrt(1 + 4 + 9 + 16.0)));
  REQUIRE(l[1] == Approx(std::sqrt(25 + 36 + 49 + 64.0)));
  // a 7x7 plane of 64 channels (the ResNet head)
  auto big = rand_floats(64 * 49, 9);
  auto gb = pl_run(pl_node("GlobalAveragePool", 1), Tensor::from_vector<float>({1, 64, 7, 7}, big))[0];
  for (int c = 0; c < 64; ++c) {
    double s = 0;
    for (int i = 0; i < 49; ++i) s += big[static_cast<size_t>(c * 49 + i)];
    REQUIRE(gb.data<float>()[c] == Approx(s / 49).margin(1e-6));
  }
}

// MaxPool without Indices and AveragePool take the per-plane path (whole-plane windows reduced as
// one run, 2-D windows combined row-wise first, then the column taps): checked against the plain
// window loop on geometries that reach each branch, with NaNs in the input for MaxPool (skipped, as
// the tap loop does).
TEST_CASE("MaxPool and AveragePool single-output path against a plain loop", "[pool]") {
  struct G {
    int64_t H, W, kh, kw, s, d, pt, pl, pb, pr;
    int ceil;
  };
  const G cases[] = {
      {7, 7, 7, 7, 1, 1, 0, 0, 0, 0, 0},      // whole plane: one run
      {7, 7, 7, 7, 1, 1, 1, 0, 0, 0, 0},      // whole rows, one padded row
      {6, 5, 6, 7, 1, 1, 0, 1, 0, 1, 0},      // one output, padded columns
      {112, 112, 3, 3, 2, 1, 1, 1, 1, 1, 0},  // resnet stem max pool
      {9, 13, 3, 3, 1, 1, 1, 1, 1, 1, 0},     // same padding, stride 1
      {9, 13, 3, 2, 3, 1, 0, 1, 2, 0, 1},     // stride 3, asymmetric pads, ceil
      {11, 10, 3, 3, 2, 2, 2, 1, 1, 2, 0},    // dilation 2
      {5, 40, 1, 4, 1, 1, 0, 0, 0, 0, 0},     // one window row
      {4, 9, 4, 9, 1, 1, 0, 0, 0, 0, 0},      // whole plane, not square
  };
  uint32_t seed = 900;
  for (const G& c : cases)
    for (const char* op : {"MaxPool", "AveragePool"})
      for (int include = 0; include < 2; ++include) {
        const bool is_max = std::string(op) == "MaxPool";
        if (is_max && include) continue;
        const int64_t planes = 3;
        auto x = rand_floats(static_cast<size_t>(planes * c.H * c.W), seed++);
        if (is_max)
          for (size_t i = 5; i < x.size(); i += 37) x[i] = std::numeric_limits<float>::quiet_NaN();
        NodeDef n = pl_node(op, 19);
        set_ints(n, "kernel_shape", {c.kh, c.kw});
        set_ints(n, "strides", {c.s, c.s});
        set_ints(n, "dilations", {c.d, c.d});
        set_ints(n, "pads", {c.pt, c.pl, c.pb, c.pr});
        set_int(n, "ceil_mode", c.ceil);
        if (!is_max) set_int(n, "count_include_pad", include);
        auto y = pl_run(n, Tensor::from_vector<float>({1, planes, c.H, c.W}, x))[0];
        auto osize = [&](int64_t in, int64_t k, int64_t pb, int64_t pe) {
          const int64_t span = in + pb + pe - ((k - 1) * c.d + 1);
          int64_t o = c.ceil ? (span + c.s - 1) / c.s + 1 : span / c.s + 1;
          if (c.ceil && (o - 1) * c.s >= in + pb) --o;
          return o;
        };
        const int64_t OH = osize(c.H, c.kh, c.pt, c.pb), OW = osize(c.W, c.kw, c.pl, c.pr);
        INFO(op << " H=" << c.H << " W=" << c.W << " k=" << c.kh << "x" << c.kw << " s=" << c.s << " d=" << c.d
                << " include_pad=" << include);
        REQUIRE(y.shape() == Shape{1, planes, OH, OW});
        const float* yv = y.data<float>();
        for (int64_t p = 0; p < planes; ++p)
          for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) {
              double best = -std::numeric_limits<double>::infinity(), sum = 0;
              int64_t valid = 0, in_padded = 0;
              for (int64_t a = 0; a < c.kh; ++a)
                for (int64_t b = 0; b < c.kw; ++b) {
                  const int64_t ih = oh * c.s - c.pt + a * c.d, iw = ow * c.s - c.pl + b * c.d;
                  in_padded += ih >= -c.pt && ih < c.H + c.pb && iw >= -c.pl && iw < c.W + c.pr;
                  if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                  const double v = x[static_cast<size_t>((p * c.H + ih) * c.W + iw)];
                  if (v > best) best = v;  // NaN never compares greater
                  sum += v;
                  ++valid;
                }
              const double got = yv[(p * OH + oh) * OW + ow];
              INFO("plane " << p << " out " << oh << "," << ow);
              if (is_max)
                REQUIRE(got == best);
              else
                REQUIRE(got == Approx(sum / static_cast<double>(include ? in_padded : valid)).margin(1e-6));
            }
      }
}
