// Conv, ConvTranspose, ConvInteger and QLinearConv against the direct definition of convolution
// written here in double precision (N-D odometer over output and kernel coordinates), on random
// inputs with fixed seeds: 1-D/2-D/3-D, groups, depthwise, dilations, strides, asymmetric pads,
// auto_pad, and sizes around tile edges and primes. Integer ops are checked exactly.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "frugal/kernel.h"
#include "frugal/parallel.h"
#include "kernel_test_util.h"
#include "kernels/gemm.h"

using namespace frugal;
using namespace frugal::testing;

namespace {

// Node "cv" with inputs a, b, ... and the single output y.
NodeDef cv_node(const std::string& op, int opset, size_t n_in) {
  return make_node("cv", op, opset, letter_names(n_in), {"y"});
}

// Advances a multi-index over `dims`; false when it wraps around.
bool next_index(std::vector<int64_t>& idx, const std::vector<int64_t>& dims) {
  for (size_t d = idx.size(); d-- > 0;) {
    if (++idx[d] < dims[d]) return true;
    idx[d] = 0;
  }
  return false;
}

int64_t flat(const std::vector<int64_t>& idx, const std::vector<int64_t>& dims) {
  int64_t o = 0;
  for (size_t d = 0; d < idx.size(); ++d) o = o * dims[d] + idx[d];
  return o;
}

struct ConvCase {
  int64_t N, C, M, group;
  std::vector<int64_t> in, k, strides, dil, pads;  // pads: begins then ends
};

// Direct definition: y[n, m, o] = b[m] + sum_{c in group, k} x[n, c, o*s - pb + k*d] * w[m, c', k].
std::vector<double> ref_conv(const ConvCase& c, const std::vector<int64_t>& out, const std::vector<float>& x,
                             const std::vector<float>& w, const std::vector<float>* b) {
  const size_t nd = c.in.size();
  const int64_t Cg = c.C / c.group, Mg = c.M / c.group;
  int64_t osz = 1, isz = 1, kvol = 1;
  for (size_t i = 0; i < nd; ++i) {
    osz *= out[i];
    isz *= c.in[i];
    kvol *= c.k[i];
  }
  std::vector<double> y(static_cast<size_t>(c.N * c.M * osz), 0.0);
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t m = 0; m < c.M; ++m) {
      const int64_t g = m / Mg;
      std::vector<int64_t> o(nd, 0);
      do {
        double s = b ? (*b)[static_cast<size_t>(m)] : 0.0;
        for (int64_t ci = 0; ci < Cg; ++ci) {
          std::vector<int64_t> kk(nd, 0);
          do {
            std::vector<int64_t> ii(nd);
            bool inside = true;
            for (size_t d = 0; d < nd; ++d) {
              ii[d] = o[d] * c.strides[d] - c.pads[d] + kk[d] * c.dil[d];
              inside = inside && ii[d] >= 0 && ii[d] < c.in[d];
            }
            if (!inside) continue;
            const double xv = x[static_cast<size_t>((n * c.C + g * Cg + ci) * isz + flat(ii, c.in))];
            const double wv = w[static_cast<size_t>((m * Cg + ci) * kvol + flat(kk, c.k))];
            s += xv * wv;
          } while (next_index(kk, c.k));
        }
        y[static_cast<size_t>((n * c.M + m) * osz + flat(o, out))] = s;
      } while (next_index(o, out));
    }
  return y;
}

// Runs Conv on random inputs and checks every value against ref_conv. relu: the executor's fused
// activation (the private _frugal_activation attribute), checked as max(0, ref). dbl: float64 tensors
// (the inputs are the same floats, widened).
void run_conv_case(const ConvCase& c, uint32_t seed, bool bias, bool relu = false, bool dbl = false) {
  const size_t nd = c.in.size();
  std::vector<int64_t> out(nd);
  for (size_t d = 0; d < nd; ++d)
    out[d] = (c.in[d] + c.pads[d] + c.pads[d + nd] - ((c.k[d] - 1) * c.dil[d] + 1)) / c.strides[d] + 1;
  Shape xs{c.N, c.C}, ws{c.M, c.C / c.group};
  for (size_t d = 0; d < nd; ++d) {
    xs.push_back(c.in[d]);
    ws.push_back(c.k[d]);
  }
  auto x = rand_floats(static_cast<size_t>(shape_numel(xs)), seed);
  auto w = rand_floats(static_cast<size_t>(shape_numel(ws)), seed + 1);
  auto b = rand_floats(static_cast<size_t>(c.M), seed + 2);
  NodeDef n = cv_node("Conv", 11, bias ? 3 : 2);
  set_ints(n, "strides", c.strides);
  set_ints(n, "dilations", c.dil);
  set_ints(n, "pads", c.pads);
  set_int(n, "group", c.group);
  if (relu) set_str(n, "_frugal_activation", "Relu");
  auto tensor = [&](const Shape& s, const std::vector<float>& v) {
    return dbl ? Tensor::from_vector<double>(s, std::vector<double>(v.begin(), v.end()))
               : Tensor::from_vector<float>(s, v);
  };
  std::vector<Tensor> ins = {tensor(xs, x), tensor(ws, w)};
  if (bias) ins.push_back(tensor({c.M}, b));
  Tensor y = run1(n, ins);
  Shape want_shape{c.N, c.M};
  for (auto v : out) want_shape.push_back(v);
  REQUIRE(y.shape() == want_shape);
  REQUIRE(y.dtype() == (dbl ? DType::kDouble : DType::kFloat));
  auto want = ref_conv(c, out, x, w, bias ? &b : nullptr);
  if (relu)
    for (auto& v : want) v = std::max(v, 0.0);
  const std::vector<double> got = y.to_double_vector();
  const double tol = dbl ? 1e-10 : 1e-4;
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("index " << i);
    REQUIRE(std::fabs(got[i] - want[i]) <= tol * (1.0 + std::fabs(want[i])));
  }
}

}  // namespace

TEST_CASE("Conv 2-D sweep: channels, kernels, strides, dilations, asymmetric pads", "[conv]") {
  uint32_t seed = 1;
  for (int64_t C : {1, 3, 17})
    for (int64_t M : {1, 7, 64})
      for (int64_t k : {1, 3})
        for (int64_t s : {1, 2}) {
          ConvCase c{2, C, M, 1, {9, 13}, {k, k + 1 - (k == 1)}, {s, 1}, {1, 1}, {1, 0, 0, 2}};
          if (k == 1 && s == 1) c.pads = {0, 0, 0, 0};  // the pure GEMM path
          INFO("C=" << C << " M=" << M << " k=" << k << " s=" << s);
          const auto this_seed = seed++;  // bias on every other case, decided before the call
          run_conv_case(c, this_seed, this_seed % 2 == 0);
        }
  // dilation with strides, kernel as wide as the padded input
  run_conv_case({1, 4, 5, 1, {11, 7}, {3, 2}, {2, 3}, {2, 3}, {2, 1, 1, 2}}, 77, true);
  run_conv_case({1, 2, 3, 1, {5, 5}, {5, 5}, {1, 1}, {1, 1}, {0, 0, 0, 0}}, 78, true);
  // one tile-wide output row count (65 x 64)
  run_conv_case({1, 8, 16, 1, {65, 64}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}}, 79, true);
}

TEST_CASE("Conv groups, depthwise and channel multipliers", "[conv]") {
  run_conv_case({2, 6, 9, 3, {7, 8}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}}, 5, true);
  run_conv_case({1, 8, 8, 8, {17, 17}, {3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}}, 6, true);  // depthwise s2
  run_conv_case({2, 7, 7, 7, {10, 9}, {5, 3}, {1, 2}, {2, 1}, {2, 0, 3, 1}}, 7, false);  // depthwise dil
  run_conv_case({1, 4, 12, 4, {6, 6}, {3, 3}, {1, 1}, {1, 1}, {0, 1, 2, 0}}, 8, true);   // multiplier 3
  run_conv_case({1, 4, 8, 2, {6, 6}, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}}, 9, true);    // grouped 1x1
}

// Depthwise (one input channel per group): stride-1 square 3/5/7 windows run on a zero-padded copy of
// the plane in one flat pass; other windows 3, 5 and 7 wide take one pass per window row (or one for
// all rows of a 3 x 3 / 5 x 5 window) over the columns where every tap is inside and go tap by tap at
// the edges: strides 1, 2 and 3, dilation, asymmetric pads, windows wider than the interior, 1-D,
// 3-D and channel multipliers.
TEST_CASE("Depthwise Conv row passes and edges", "[conv]") {
  uint32_t seed = 400;
  // {N, C, M, group, in, k, strides, dil, pads}
  const std::vector<ConvCase> cases = {
      {1, 16, 16, 16, {28, 28}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},    // MobileNet 3x3 s1
      {2, 8, 8, 8, {29, 30}, {3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}},       // 3x3 s2, batch 2
      {1, 8, 8, 8, {19, 21}, {5, 5}, {1, 1}, {1, 1}, {2, 2, 2, 2}},       // 5x5 s1
      {1, 8, 8, 8, {19, 21}, {5, 5}, {2, 2}, {1, 1}, {1, 2, 2, 1}},       // 5x5 s2, asymmetric
      {1, 4, 4, 4, {15, 23}, {7, 7}, {1, 1}, {1, 1}, {3, 3, 3, 3}},       // 7x7
      {1, 4, 4, 4, {15, 23}, {3, 3}, {1, 1}, {2, 3}, {2, 3, 2, 3}},       // dilated
      {1, 4, 4, 4, {15, 23}, {3, 3}, {3, 3}, {1, 1}, {0, 0, 1, 2}},       // stride 3
      {1, 4, 4, 4, {6, 5}, {5, 5}, {1, 1}, {1, 1}, {2, 2, 2, 2}},         // window wider than the interior
      {1, 4, 4, 4, {9, 12}, {3, 3}, {1, 1}, {1, 2}, {0, 2, 1, 0}},       // asymmetric pads, dilated columns
      {1, 4, 8, 4, {7, 7}, {3, 5}, {1, 1}, {1, 1}, {1, 2, 1, 2}},         // 3 x 5 window (row passes)
      {1, 4, 12, 4, {17, 18}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},      // multiplier 3
      {1, 6, 6, 6, {40}, {5}, {1}, {1}, {2, 2}},                          // 1-D
      {1, 3, 3, 3, {5, 9, 11}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1, 1, 1, 1}},  // 3-D
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i);
    for (int variant = 0; variant < 3; ++variant) {
      INFO("variant " << variant);  // 0: plain, 1: bias + Relu, 2: bias, float64
      run_conv_case(cases[i], seed++, variant >= 1, variant == 1, variant == 2);
    }
  }
}

// Output sizes around multiples of the AVX-512 SGEMM's 48-column tile (7 x 7 = 49, 5 x 10 = 50, 97,
// 48, 52, 99), the shapes of resnet's last stages: im2col (small-plane copies) and pointwise
// convolutions, with groups, bias, fused Relu, batch > 1, channel counts that are not multiples of
// 16, and float64.
TEST_CASE("Conv with output sizes just past the GEMM tile width", "[conv]") {
  INFO("gemm " << frugal::kernels::gemm_isa());
  uint32_t seed = 200;
  // {N, C, M, group, in, k, strides, dil, pads}
  const std::vector<ConvCase> cases = {
      {1, 40, 36, 1, {7, 7}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},        // 49, 3x3 same padding
      {2, 24, 50, 1, {13, 13}, {3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}},      // 49, stride 2, batch 2
      {3, 33, 20, 1, {7, 7}, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}},        // 49, pointwise, batch 3
      {1, 48, 40, 1, {14, 14}, {1, 1}, {2, 2}, {1, 1}, {0, 0, 0, 0}},      // 49, 1x1 stride 2 (im2col)
      {2, 32, 48, 2, {7, 7}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},        // 49, 2 groups of 16 -> 24
      {1, 12, 18, 3, {7, 7}, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}},        // 49, grouped pointwise, Mg 6
      {1, 20, 17, 1, {5, 10}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},       // 50 (two columns)
      {1, 20, 29, 1, {97}, {3}, {1}, {1}, {1, 1}},                         // 1-D, 97 = 2 * 48 + 1
      {1, 17, 21, 1, {11, 9}, {3, 3}, {1, 1}, {2, 2}, {2, 2, 2, 2}},       // 99 = 2 * 48 + 3, dilation
      {1, 19, 23, 1, {8, 6}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},        // 48: no column left
      {1, 19, 23, 1, {13, 4}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},       // 52: four columns left
      {1, 16, 16, 1, {7, 7}, {3, 3}, {1, 1}, {1, 1}, {0, 0, 2, 2}},        // 49, pads only at the end
      {2, 3, 19, 1, {13, 14}, {7, 7}, {2, 2}, {1, 1}, {3, 3, 3, 3}},       // 49, stem-like 7x7 stride 2
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i);
    for (int variant = 0; variant < 3; ++variant) {
      INFO("variant " << variant);  // 0: plain, 1: bias + Relu, 2: bias, float64
      run_conv_case(cases[i], seed++, variant >= 1, variant == 1, variant == 2);
    }
  }
}

// Small output planes with many output channels (osz < 64, M >= 128, K >= 64) are computed as
// y^T = col^T w^T, vectorised along the channels, then transposed back with the bias and Relu:
// pointwise and im2col inputs, batch 2, channel counts that are not multiples of 16.
TEST_CASE("Conv computed transposed on small planes with many channels", "[conv]") {
  uint32_t seed = 250;
  const std::vector<ConvCase> cases = {
      {1, 64, 130, 1, {7, 7}, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}},   // 49 x 130, pointwise, K 64
      {2, 16, 144, 1, {7, 7}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},   // K 144, batch 2
      {1, 72, 129, 1, {5, 9}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},   // 45 positions
      {1, 32, 136, 1, {13, 13}, {3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}}, // 49, stride 2
      {1, 100, 200, 1, {1, 63}, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}}, // 63 positions
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i);
    for (int variant = 0; variant < 2; ++variant) {
      INFO("variant " << variant);  // 0: plain, 1: bias + Relu
      run_conv_case(cases[i], seed++, variant == 1, variant == 1);
    }
  }
}

// The im2col fast path (1-D and 2-D windows): one contiguous copy per tap when output rows are as
// wide as input rows, else row by row, stride 2 and 3 gathers; dilated, asymmetric and wide pads,
// kernels wider than the input (whole rows of padding).
TEST_CASE("Conv im2col geometries", "[conv]") {
  uint32_t seed = 300;
  const std::vector<ConvCase> cases = {
      {1, 5, 7, 1, {9, 11}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},         // same: one copy per tap
      {1, 5, 7, 1, {9, 11}, {3, 5}, {1, 1}, {2, 1}, {2, 0, 2, 4}},         // same width, asymmetric pads
      {1, 4, 6, 1, {9, 11}, {3, 3}, {1, 1}, {1, 3}, {0, 3, 0, 3}},         // same width, dilated columns
      {2, 3, 5, 1, {10, 12}, {3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}},        // stride 2
      {1, 3, 5, 1, {10, 12}, {3, 4}, {3, 3}, {1, 1}, {2, 0, 1, 3}},        // stride 3
      {1, 3, 4, 1, {6, 5}, {3, 3}, {1, 2}, {2, 1}, {4, 0, 4, 3}},          // rows of pure padding
      {1, 2, 3, 1, {3, 4}, {5, 7}, {1, 1}, {1, 1}, {2, 3, 2, 3}},          // kernel wider than the input
      {1, 6, 9, 3, {8, 7}, {2, 3}, {1, 2}, {1, 1}, {0, 1, 1, 1}},          // groups, stride 1 x 2
      {2, 3, 4, 1, {31}, {5}, {2}, {1}, {2, 2}},                           // 1-D stride 2
      {1, 3, 4, 1, {1, 13}, {1, 3}, {1, 1}, {1, 1}, {0, 1, 0, 1}},         // one input row
      {1, 2, 3, 1, {12, 11}, {9, 9}, {1, 2}, {1, 1}, {4, 4, 4, 4}},        // 81 taps: no tap table
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i);
    run_conv_case(cases[i], seed++, i % 2 == 0, i % 3 == 0);
    run_conv_case(cases[i], seed++, true, false, true);
  }
}

// On one thread, a planar convolution whose im2col matrix would exceed ~768 KB is built and multiplied
// in bands of output rows (the last band shorter): stride 1 and 2, padding, dilation, groups, batch 2.
TEST_CASE("Conv im2col in bands of output rows", "[conv]") {
  const int saved = frugal::num_threads();
  frugal::set_num_threads(1);
  uint32_t seed = 400;
  const std::vector<ConvCase> cases = {
      {1, 16, 8, 1, {64, 64}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},      // K 144: bands of 10 rows, last 4
      {2, 3, 8, 1, {115, 117}, {7, 7}, {2, 2}, {1, 1}, {3, 3, 3, 3}},     // the stem's geometry, batch 2
      {1, 24, 6, 2, {50, 61}, {3, 3}, {1, 1}, {2, 2}, {2, 1, 2, 3}},      // groups, dilation, asymmetric pads
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i);
    run_conv_case(cases[i], seed++, true, i != 1);
  }
  frugal::set_num_threads(saved);
}

TEST_CASE("Conv 1-D and 3-D", "[conv]") {
  run_conv_case({2, 3, 5, 1, {17}, {3}, {2}, {1}, {1, 2}}, 10, true);
  run_conv_case({1, 4, 4, 4, {64}, {5}, {1}, {3}, {4, 4}}, 11, true);
  run_conv_case({1, 2, 3, 1, {5, 6, 7}, {3, 2, 3}, {1, 2, 1}, {1, 1, 2}, {1, 0, 1, 0, 1, 2}}, 12, true);
  run_conv_case({2, 4, 6, 2, {4, 5, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0, 0, 0, 0}}, 13, false);
}

TEST_CASE("Conv auto_pad and inferred kernel_shape", "[conv]") {
  // 1 x 1 x 5 x 5 ones, 3x3 ones kernel: SAME_UPPER with stride 2 -> 3x3 output, total pad 2 -> (1,1)
  std::vector<float> x(25, 1.0f), w(9, 1.0f);
  NodeDef n = cv_node("Conv", 11, 2);
  set_str(n, "auto_pad", "SAME_UPPER");
  set_ints(n, "strides", {2, 2});
  set_ints(n, "kernel_shape", {3, 3});
  Tensor y = run1(n, {Tensor::from_vector<float>({1, 1, 5, 5}, x), Tensor::from_vector<float>({1, 1, 3, 3}, w)});
  REQUIRE(y.shape() == Shape{1, 1, 3, 3});
  REQUIRE(y.to_double_vector() == std::vector<double>{4, 6, 4, 6, 9, 6, 4, 6, 4});
  // 4-wide input, k=2, stride 1: SAME needs 1 pad: UPPER puts it at the end, LOWER at the start
  std::vector<float> x4{1, 2, 3, 4};
  std::vector<float> w2{1, 10};
  for (const char* mode : {"SAME_UPPER", "SAME_LOWER", "VALID"}) {
    NodeDef m = cv_node("Conv", 1, 2);
    set_str(m, "auto_pad", mode);
    Tensor r = run1(m, {Tensor::from_vector<float>({1, 1, 4}, x4), Tensor::from_vector<float>({1, 1, 2}, w2)});
    if (std::string(mode) == "SAME_UPPER") REQUIRE(r.to_double_vector() == std::vector<double>{21, 32, 43, 4});
    if (std::string(mode) == "SAME_LOWER") REQUIRE(r.to_double_vector() == std::vector<double>{10, 21, 32, 43});
    if (std::string(mode) == "VALID") REQUIRE(r.to_double_vector() == std::vector<double>{21, 32, 43});
  }
}

TEST_CASE("ConvTranspose against the scatter definition", "[conv]") {
  struct TC {
    int64_t C, Mg, group;
    std::vector<int64_t> in, k, s, d, pads, out_pad;
  };
  const TC cases[] = {
      {3, 2, 1, {4, 5}, {3, 3}, {2, 2}, {1, 1}, {0, 0, 0, 0}, {0, 0}},
      {4, 3, 2, {5, 3}, {3, 2}, {2, 3}, {2, 1}, {1, 0, 2, 1}, {1, 2}},
      {2, 1, 1, {7}, {4}, {3}, {1}, {1, 2}, {0}},
      {2, 2, 2, {3, 2, 4}, {2, 3, 2}, {1, 2, 2}, {1, 1, 2}, {0, 1, 0, 1, 0, 1}, {0, 1, 0}},
  };
  uint32_t seed = 40;
  for (const TC& t : cases) {
    const size_t nd = t.in.size();
    const int64_t N = 2, C = t.C, M = t.Mg * t.group, Cg = C / t.group;
    Shape xs{N, C}, ws{C, t.Mg};
    std::vector<int64_t> out(nd);
    for (size_t d = 0; d < nd; ++d) {
      xs.push_back(t.in[d]);
      ws.push_back(t.k[d]);
      out[d] = t.s[d] * (t.in[d] - 1) + t.out_pad[d] + (t.k[d] - 1) * t.d[d] + 1 - t.pads[d] - t.pads[d + nd];
    }
    auto x = rand_floats(static_cast<size_t>(shape_numel(xs)), seed++);
    auto w = rand_floats(static_cast<size_t>(shape_numel(ws)), seed++);
    auto b = rand_floats(static_cast<size_t>(M), seed++);
    NodeDef n = cv_node("ConvTranspose", 11, 3);
    set_ints(n, "strides", t.s);
    set_ints(n, "dilations", t.d);
    set_ints(n, "pads", t.pads);
    set_ints(n, "output_padding", t.out_pad);
    set_int(n, "group", t.group);
    Tensor y = run1(
        n, {Tensor::from_vector<float>(xs, x), Tensor::from_vector<float>(ws, w), Tensor::from_vector<float>({M}, b)});
    Shape want_shape{N, M};
    int64_t osz = 1, isz = 1, kvol = 1;
    for (size_t d = 0; d < nd; ++d) {
      want_shape.push_back(out[d]);
      osz *= out[d];
      isz *= t.in[d];
      kvol *= t.k[d];
    }
    REQUIRE(y.shape() == want_shape);
    std::vector<double> want(static_cast<size_t>(N * M * osz));
    for (int64_t nn = 0; nn < N; ++nn)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t i = 0; i < osz; ++i) want[static_cast<size_t>((nn * M + m) * osz + i)] = b[static_cast<size_t>(m)];
    for (int64_t nn = 0; nn < N; ++nn)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t g = c / Cg;
        std::vector<int64_t> ii(nd, 0);
        do {
          std::vector<int64_t> kk(nd, 0);
          do {
            std::vector<int64_t> o(nd);
            bool inside = true;
            for (size_t d = 0; d < nd; ++d) {
              o[d] = ii[d] * t.s[d] - t.pads[d] + kk[d] * t.d[d];
              inside = inside && o[d] >= 0 && o[d] < out[d];
            }
            if (!inside) continue;
            const double xv = x[static_cast<size_t>((nn * C + c) * isz + flat(ii, t.in))];
            for (int64_t mg = 0; mg < t.Mg; ++mg) {
              const double wv = w[static_cast<size_t>((c * t.Mg + mg) * kvol + flat(kk, t.k))];
              want[static_cast<size_t>((nn * M + g * t.Mg + mg) * osz + flat(o, out))] += xv * wv;
            }
          } while (next_index(kk, t.k));
        } while (next_index(ii, t.in));
      }
    const float* yv = y.data<float>();
    for (size_t i = 0; i < want.size(); ++i) {
      INFO("case with " << nd << " dims, index " << i);
      REQUIRE(std::fabs(yv[i] - want[i]) <= 1e-4 * (1.0 + std::fabs(want[i])));
    }
  }
}

TEST_CASE("ConvInteger and QLinearConv are exact", "[conv]") {
  const int64_t N = 1, C = 5, M = 6, H = 7, W = 9;
  std::mt19937 rng(99);
  std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127);
  std::vector<uint8_t> x(static_cast<size_t>(N * C * H * W));
  std::vector<int8_t> w(static_cast<size_t>(M * C * 9));
  for (auto& v : x) v = static_cast<uint8_t>(u8(rng));
  for (auto& v : w) v = static_cast<int8_t>(s8(rng));
  std::vector<int8_t> wzp(static_cast<size_t>(M));
  for (auto& v : wzp) v = static_cast<int8_t>(s8(rng) / 8);
  const int32_t xzp = 131;
  const int64_t OH = (H + 1 + 0 - 3) / 2 + 1, OW = (W + 2 + 1 - 3) / 1 + 1;
  // reference int64 accumulators for pads (1, 2, 0, 1), strides (2, 1); padding contributes 0
  std::vector<int64_t> acc(static_cast<size_t>(M * OH * OW), 0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        int64_t s = 0;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t kh = 0; kh < 3; ++kh)
            for (int64_t kw = 0; kw < 3; ++kw) {
              const int64_t ih = oh * 2 - 1 + kh, iw = ow - 2 + kw;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              s += (x[static_cast<size_t>((c * H + ih) * W + iw)] - xzp) *
                   (w[static_cast<size_t>(((m * C + c) * 3 + kh) * 3 + kw)] - wzp[static_cast<size_t>(m)]);
            }
        acc[static_cast<size_t>((m * OH + oh) * OW + ow)] = s;
      }
  auto attrs = [](NodeDef& n) {
    set_ints(n, "pads", {1, 2, 0, 1});
    set_ints(n, "strides", {2, 1});
  };
  NodeDef ci = cv_node("ConvInteger", 10, 4);
  attrs(ci);
  Tensor y = run1(ci, {Tensor::from_vector<uint8_t>({N, C, H, W}, x), Tensor::from_vector<int8_t>({M, C, 3, 3}, w),
                       Tensor::scalar<uint8_t>(static_cast<uint8_t>(xzp)), Tensor::from_vector<int8_t>({M}, wzp)});
  REQUIRE(y.dtype() == DType::kInt32);
  REQUIRE(y.shape() == Shape{N, M, OH, OW});
  REQUIRE(y.to_int64_vector() == acc);

  // QLinearConv: per-channel weight scales, int32 bias, uint8 output with saturation
  std::vector<float> ws(static_cast<size_t>(M));
  std::vector<int32_t> bias(static_cast<size_t>(M));
  for (int64_t m = 0; m < M; ++m) {
    ws[static_cast<size_t>(m)] = 0.001f * static_cast<float>(m + 1);
    bias[static_cast<size_t>(m)] = static_cast<int32_t>(m * 1000 - 2500);
  }
  const float xs = 0.05f, ys = 0.05f;
  const int32_t yzp = 100;
  NodeDef q = cv_node("QLinearConv", 10, 9);
  attrs(q);
  Tensor yq =
      run1(q, {Tensor::from_vector<uint8_t>({N, C, H, W}, x), Tensor::scalar<float>(xs),
               Tensor::scalar<uint8_t>(static_cast<uint8_t>(xzp)), Tensor::from_vector<int8_t>({M, C, 3, 3}, w),
               Tensor::from_vector<float>({M}, ws), Tensor::from_vector<int8_t>({M}, wzp), Tensor::scalar<float>(ys),
               Tensor::scalar<uint8_t>(static_cast<uint8_t>(yzp)), Tensor::from_vector<int32_t>({M}, bias)});
  REQUIRE(yq.dtype() == DType::kUInt8);
  const uint8_t* qv = yq.data<uint8_t>();
  int clipped = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t i = 0; i < OH * OW; ++i) {
      const int64_t a = acc[static_cast<size_t>(m * OH * OW + i)] + bias[static_cast<size_t>(m)];
      const float mult = xs * ws[static_cast<size_t>(m)] / ys;
      long v = std::lrint(static_cast<float>(a) * mult) + yzp;
      v = std::min(255L, std::max(0L, v));
      clipped += (v == 0 || v == 255);
      REQUIRE(qv[m * OH * OW + i] == v);
    }
  CHECK(clipped > 0);
}
