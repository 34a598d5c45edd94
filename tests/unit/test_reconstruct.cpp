// SparseGPT solver and XᵀX observer: checked against a least-squares optimum computed here by the
// normal equations (own Gauss-Jordan, no library), and against hand-counted Hessian diagonals.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "frugal/reconstruct.h"

using namespace frugal;

namespace {

// Solves A x = b (n x n, row-major) by Gauss-Jordan with partial pivoting.
std::vector<double> solve(std::vector<double> A, std::vector<double> b, int n) {
  for (int c = 0; c < n; ++c) {
    int p = c;
    for (int r = c + 1; r < n; ++r)
      if (std::fabs(A[r * n + c]) > std::fabs(A[p * n + c])) p = r;
    for (int k = 0; k < n; ++k) std::swap(A[c * n + k], A[p * n + k]);
    std::swap(b[c], b[p]);
    for (int r = 0; r < n; ++r) {
      if (r == c) continue;
      const double f = A[r * n + c] / A[c * n + c];
      for (int k = 0; k < n; ++k) A[r * n + k] -= f * A[c * n + k];
      b[r] -= f * b[c];
    }
  }
  for (int r = 0; r < n; ++r) b[r] /= A[r * n + r];
  return b;
}

struct Problem {
  int rows, cols, samples;
  std::vector<float> x, w;
  std::vector<double> h;
};

Problem make_problem(int rows, int cols, int samples, unsigned seed) {
  Problem p{rows, cols, samples, {}, {}, {}};
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  p.x.resize(samples * cols);
  // Correlated inputs so the update has something to compensate with.
  for (int s = 0; s < samples; ++s) {
    float common = nd(rng);
    for (int c = 0; c < cols; ++c) p.x[s * cols + c] = nd(rng) + 0.8f * common;
  }
  p.w.resize(rows * cols);
  for (auto& v : p.w) v = nd(rng);
  p.h.assign(cols * cols, 0.0);
  for (int s = 0; s < samples; ++s)
    for (int i = 0; i < cols; ++i)
      for (int j = 0; j < cols; ++j) p.h[i * cols + j] += double(p.x[s * cols + i]) * p.x[s * cols + j];
  return p;
}

// ||X (a - b)^T||^2 computed directly from the samples.
double output_sq_error(const Problem& p, const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0;
  for (int s = 0; s < p.samples; ++s)
    for (int r = 0; r < p.rows; ++r) {
      double d = 0;
      for (int c = 0; c < p.cols; ++c) d += double(p.x[s * p.cols + c]) * (double(a[r * p.cols + c]) - b[r * p.cols + c]);
      e += d * d;
    }
  return e;
}

}  // namespace

TEST_CASE("accumulate_xtx matches the sum of outer products", "[reconstruct]") {
  Problem p = make_problem(1, 5, 37, 3);
  std::vector<double> h(25, 0.0);
  accumulate_xtx(p.x.data(), 20, 5, h);
  accumulate_xtx(p.x.data() + 20 * 5, 17, 5, h);  // streaming in two blocks
  for (int i = 0; i < 25; ++i) CHECK(h[i] == Approx(p.h[i]).epsilon(1e-9));
  std::vector<double> d(25, 0.0);
  accumulate_xtx(p.x.data(), 37, 5, d, /*full=*/false);
  for (int i = 0; i < 5; ++i) CHECK(d[i * 5 + i] == Approx(p.h[i * 5 + i]).epsilon(1e-9));
  CHECK(d[1] == 0.0);
}

TEST_CASE("sparsegpt equals the least-squares optimum when the pruned columns come first", "[reconstruct]") {
  // Columns 0 and 1 carry tiny weights, so the solver (one block, no damping) prunes exactly them;
  // with every pruned column before every kept one, OBS updates give the exact optimum of
  // min ||X W^T - X_K W_K^T||, i.e. W_K = (H_KK)^-1 H_K: W^T by the normal equations.
  Problem p = make_problem(3, 6, 200, 7);
  for (int r = 0; r < 3; ++r) p.w[r * 6 + 0] *= 1e-3f, p.w[r * 6 + 1] *= 1e-3f;
  std::vector<float> w = p.w;
  SparseGptOptions o;
  o.damp = 0;
  o.block_size = 6;
  o.prune_count = 6;
  std::vector<uint8_t> mask;
  REQUIRE(sparsegpt_prune(w, 3, 6, p.h, o, &mask).ok());
  for (int r = 0; r < 3; ++r) {
    CHECK(mask[r * 6 + 0] == 1);
    CHECK(mask[r * 6 + 1] == 1);
    CHECK(w[r * 6 + 0] == 0.0f);
    CHECK(w[r * 6 + 1] == 0.0f);
    // Normal equations over kept columns K = {2..5}: H_KK w_K = sum_j H_Kj w_j.
    std::vector<double> A(16), b(4);
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 4; ++j) A[i * 4 + j] = p.h[(i + 2) * 6 + (j + 2)];
      double s = 0;
      for (int j = 0; j < 6; ++j) s += p.h[(i + 2) * 6 + j] * p.w[r * 6 + j];
      b[i] = s;
    }
    auto opt = solve(A, b, 4);
    for (int i = 0; i < 4; ++i) CHECK(w[r * 6 + 2 + i] == Approx(opt[i]).margin(1e-4));
  }
}

TEST_CASE("sparsegpt prunes the exact count and beats plain masking on output error", "[reconstruct]") {
  Problem p = make_problem(8, 24, 300, 11);
  std::vector<float> w = p.w;
  SparseGptOptions o;
  o.damp = 0.01;
  o.block_size = 8;  // three blocks: the per-block quota must still add up exactly
  o.prune_count = 8 * 24 / 2 + 1;
  std::vector<uint8_t> mask;
  REQUIRE(sparsegpt_prune(w, 8, 24, p.h, o, &mask).ok());
  int zeros = 0, marked = 0;
  for (size_t i = 0; i < w.size(); ++i) zeros += w[i] == 0.0f, marked += mask[i];
  CHECK(marked == o.prune_count);
  CHECK(zeros == o.prune_count);
  // Same mask without the update: zero the weights, keep the rest.
  std::vector<float> masked = p.w;
  for (size_t i = 0; i < masked.size(); ++i)
    if (mask[i]) masked[i] = 0;
  const double e_rec = output_sq_error(p, p.w, w), e_mask = output_sq_error(p, p.w, masked);
  CHECK(e_rec < e_mask);
  // relative_output_error is the same quantity through H.
  double den = 0;
  for (int s = 0; s < p.samples; ++s)
    for (int r = 0; r < p.rows; ++r) {
      double y = 0;
      for (int c = 0; c < p.cols; ++c) y += double(p.x[s * p.cols + c]) * p.w[r * p.cols + c];
      den += y * y;
    }
  CHECK(relative_output_error(p.w, w, 8, 24, p.h) == Approx(e_rec / den).epsilon(1e-6));
}

TEST_CASE("sparsegpt N:M keeps N of every M in each row", "[reconstruct]") {
  Problem p = make_problem(5, 18, 100, 5);  // 18 = 4 groups of 4 + a short group of 2
  std::vector<float> w = p.w;
  SparseGptOptions o;
  o.nm_n = 2;
  o.nm_m = 4;
  o.block_size = 6;  // rounded up to 8 internally so groups never straddle blocks
  std::vector<uint8_t> mask;
  REQUIRE(sparsegpt_prune(w, 5, 18, p.h, o, &mask).ok());
  for (int r = 0; r < 5; ++r)
    for (int c0 = 0; c0 < 18; c0 += 4) {
      int nz = 0, g = std::min(4, 18 - c0);
      for (int c = c0; c < c0 + g; ++c) nz += w[r * 18 + c] != 0.0f;
      CHECK(nz <= 2);
      CHECK(nz == std::min(2, g));
    }
}

TEST_CASE("HessianObserver: Conv im2col diagonal counts valid window positions", "[reconstruct]") {
  // All-ones 1x1x3x3 input, 3x3 kernel, pad 1: kernel position (ki,kj) sees the input at 9 output
  // positions, of which (3 - |ki-1|) x (3 - |kj-1|) fall inside: 4 at corners, 6 at edges, 9 centre.
  HessianLayer L;
  L.node_index = 0;
  L.op_type = "Conv";
  L.cols = 9;
  L.kh = L.kw = 3;
  L.pt = L.pl = L.pb = L.pr = 1;
  HessianObserver obs;
  obs.add_layer(L);
  Tensor x = Tensor::from_vector<float>({1, 1, 3, 3}, std::vector<float>(9, 1.0f));
  const Tensor* ins[] = {&x};
  NodeDef nd;
  nd.name = "c";
  nd.op_type = "Conv";
  NodeEvent ev{0, nd, std::span<const Tensor* const>(ins, 1), {}};
  REQUIRE(obs.on_node(ev).ok());
  auto d = obs.column_sq_norms(0);
  const double expect[9] = {4, 6, 4, 6, 9, 6, 4, 6, 4};
  for (int i = 0; i < 9; ++i) CHECK(d[i] == expect[i]);
  CHECK(obs.rows_seen(0) == 9);
  // Off-diagonal: corner (0,0) and centre (1,1) are both inside at 4 output positions.
  CHECK(obs.hessian(0)[0 * 9 + 4] == 4);
}

TEST_CASE("HessianObserver: MatMul rows and Gemm transA", "[reconstruct]") {
  HessianObserver obs;
  HessianLayer a;
  a.node_index = 1;
  a.op_type = "MatMul";
  a.cols = 2;
  HessianLayer b = a;
  b.node_index = 2;
  b.op_type = "Gemm";
  b.trans_a = true;
  obs.add_layer(a);
  obs.add_layer(b);
  // X = [[1,2],[3,4],[5,6]] as [1,3,2] for MatMul and its transpose [2,3] for Gemm transA.
  Tensor x = Tensor::from_vector<float>({1, 3, 2}, {1, 2, 3, 4, 5, 6});
  Tensor xt = Tensor::from_vector<float>({2, 3}, {1, 3, 5, 2, 4, 6});
  NodeDef nd;
  const Tensor* i1[] = {&x};
  const Tensor* i2[] = {&xt};
  REQUIRE(obs.on_node(NodeEvent{1, nd, std::span<const Tensor* const>(i1, 1), {}}).ok());
  REQUIRE(obs.on_node(NodeEvent{2, nd, std::span<const Tensor* const>(i2, 1), {}}).ok());
  const std::vector<double> expect = {35, 44, 44, 56};  // XᵀX by hand
  CHECK(obs.hessian(1) == expect);
  CHECK(obs.hessian(2) == expect);
}
