// MatMul, Gemm, MatMulInteger, QLinearMatMul against plain loops written here (double accumulation,
// numpy.matmul broadcasting) and hand-derived values. Sizes sweep tile edges and primes.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <tuple>
#include <vector>

#include "frugal/kernel.h"
#include "kernel_test_util.h"

using namespace frugal;
using namespace frugal::testing;

namespace {

// Node "mm" with inputs a, b, ... and the single output y.
NodeDef mm_node(const std::string& op, int opset, size_t n_in) {
  return make_node("mm", op, opset, letter_names(n_in), {"y"});
}

void check_close(const Tensor& got, const std::vector<double>& want, double tol = 1e-4) {
  REQUIRE(got.numel() == static_cast<int64_t>(want.size()));
  const float* g = got.data<float>();
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("index " << i);
    REQUIRE(std::fabs(g[i] - want[i]) <= tol * (1.0 + std::fabs(want[i])));
  }
}

// Reference C[M,N] = A[M,K] B[K,N] for one matrix pair.
std::vector<double> ref_mm(const float* a, const float* b, int64_t M, int64_t N, int64_t K) {
  std::vector<double> c(static_cast<size_t>(M * N), 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(a[i * K + k]) * b[k * N + j];
      c[static_cast<size_t>(i * N + j)] = s;
    }
  return c;
}

}  // namespace

TEST_CASE("MatMul 2-D sizes around tile edges", "[matmul]") {
  const int64_t sizes[] = {1, 7, 17, 64, 65};
  uint32_t seed = 1;
  for (int64_t M : sizes)
    for (int64_t N : sizes)
      for (int64_t K : {int64_t{1}, int64_t{17}, int64_t{65}}) {
        auto a = rand_floats(static_cast<size_t>(M * K), seed++);
        auto b = rand_floats(static_cast<size_t>(K * N), seed++);
        Tensor y = run1(mm_node("MatMul", 13, 2),
                        {Tensor::from_vector<float>({M, K}, a), Tensor::from_vector<float>({K, N}, b)});
        REQUIRE(y.shape() == Shape{M, N});
        INFO("M=" << M << " N=" << N << " K=" << K);
        check_close(y, ref_mm(a.data(), b.data(), M, N, K));
      }
}

TEST_CASE("MatMul 1-D operands drop the promoted dims", "[matmul]") {
  // [2] x [2,3] -> [3]; [2,3] x [3] -> [2]; [3] x [3] -> scalar
  Tensor v2 = Tensor::from_vector<float>({2}, {1, 2});
  Tensor m23 = Tensor::from_vector<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor v3 = Tensor::from_vector<float>({3}, {1, 0, -1});
  Tensor y1 = run1(mm_node("MatMul", 13, 2), {v2, m23});
  REQUIRE(y1.shape() == Shape{3});
  check_close(y1, {9, 12, 15});
  Tensor y2 = run1(mm_node("MatMul", 13, 2), {m23, v3});
  REQUIRE(y2.shape() == Shape{2});
  check_close(y2, {-2, -2});
  Tensor y3 = run1(mm_node("MatMul", 13, 2), {v3, v3});
  REQUIRE(y3.shape() == Shape{});
  check_close(y3, {2});
}

TEST_CASE("MatMul broadcasts batch dims", "[matmul]") {
  // A [2,1,M,K] x B [3,K,N] -> [2,3,M,N]; also a shared 2-D B folding A's batches into M.
  const int64_t M = 5, K = 7, N = 9;
  auto a = rand_floats(2 * M * K, 11);
  auto b = rand_floats(3 * K * N, 12);
  Tensor y = run1(mm_node("MatMul", 13, 2),
                  {Tensor::from_vector<float>({2, 1, M, K}, a), Tensor::from_vector<float>({3, K, N}, b)});
  REQUIRE(y.shape() == Shape{2, 3, M, N});
  std::vector<double> want;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) {
      auto c = ref_mm(a.data() + i * M * K, b.data() + j * K * N, M, N, K);
      want.insert(want.end(), c.begin(), c.end());
    }
  check_close(y, want);

  auto w = rand_floats(K * N, 13);
  auto x = rand_floats(4 * 3 * M * K, 14);
  Tensor y2 = run1(mm_node("MatMul", 13, 2),
                   {Tensor::from_vector<float>({4, 3, M, K}, x), Tensor::from_vector<float>({K, N}, w)});
  REQUIRE(y2.shape() == Shape{4, 3, M, N});
  check_close(y2, ref_mm(x.data(), w.data(), 12 * M, N, K));

  // many small batches (the attention shape) take the batch-parallel path
  const int64_t B = 24;
  auto q = rand_floats(B * 8 * 16, 15), k = rand_floats(B * 16 * 8, 16);
  Tensor y3 = run1(mm_node("MatMul", 13, 2),
                   {Tensor::from_vector<float>({2, 12, 8, 16}, q), Tensor::from_vector<float>({2, 12, 16, 8}, k)});
  std::vector<double> want3;
  for (int64_t i = 0; i < B; ++i) {
    auto c = ref_mm(q.data() + i * 128, k.data() + i * 128, 8, 8, 16);
    want3.insert(want3.end(), c.begin(), c.end());
  }
  check_close(y3, want3);
}

TEST_CASE("MatMul double, int32 and float16", "[matmul]") {
  Tensor a = Tensor::from_vector<double>({2, 2}, {1, 2, 3, 4});
  Tensor b = Tensor::from_vector<double>({2, 2}, {5, 6, 7, 8});
  Tensor y = run1(mm_node("MatMul", 13, 2), {a, b});
  REQUIRE(y.dtype() == DType::kDouble);
  REQUIRE(y.to_double_vector() == std::vector<double>{19, 22, 43, 50});
  Tensor ai = Tensor::from_vector<int32_t>({2, 2}, {1, 2, 3, 4});
  Tensor bi = Tensor::from_vector<int32_t>({2, 2}, {5, 6, 7, 8});
  Tensor yi = run1(mm_node("MatMul", 13, 2), {ai, bi});
  REQUIRE(yi.dtype() == DType::kInt32);
  REQUIRE(yi.to_int64_vector() == std::vector<int64_t>{19, 22, 43, 50});
  std::vector<Half> ha(4), hb(4);
  const float av[] = {1, 2, 3, 4}, bv[] = {0.5f, -1, 2, 0.25f};
  for (int i = 0; i < 4; ++i) {
    ha[static_cast<size_t>(i)].bits = float_to_half(av[i]);
    hb[static_cast<size_t>(i)].bits = float_to_half(bv[i]);
  }
  Tensor yh =
      run1(mm_node("MatMul", 13, 2), {Tensor::from_vector<Half>({2, 2}, ha), Tensor::from_vector<Half>({2, 2}, hb)});
  REQUIRE(yh.dtype() == DType::kFloat16);
  REQUIRE(yh.to_double_vector() == std::vector<double>{4.5, -0.5, 9.5, -2});
}

TEST_CASE("Gemm transposes, alpha, beta and C broadcasting", "[matmul]") {
  const int64_t M = 17, N = 7, K = 65;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int cshape = 0; cshape < 5; ++cshape) {
        auto a = rand_floats(M * K, 100 + ta);
        auto b = rand_floats(K * N, 200 + tb);
        // stored layouts
        std::vector<float> as(a.size()), bs(b.size());
        for (int64_t i = 0; i < M; ++i)
          for (int64_t k = 0; k < K; ++k) as[static_cast<size_t>(ta ? k * M + i : i * K + k)] = a[static_cast<size_t>(i * K + k)];
        for (int64_t k = 0; k < K; ++k)
          for (int64_t j = 0; j < N; ++j) bs[static_cast<size_t>(tb ? j * K + k : k * N + j)] = b[static_cast<size_t>(k * N + j)];
        NodeDef n = mm_node("Gemm", 13, cshape == 4 ? 2 : 3);
        set_int(n, "transA", ta);
        set_int(n, "transB", tb);
        set_float(n, "alpha", 0.5f);
        set_float(n, "beta", 2.0f);
        Shape cs = cshape == 0 ? Shape{} : cshape == 1 ? Shape{N} : cshape == 2 ? Shape{M, 1} : Shape{M, N};
        auto c = rand_floats(static_cast<size_t>(shape_numel(cs)), 300);
        std::vector<Tensor> ins = {Tensor::from_vector<float>(ta ? Shape{K, M} : Shape{M, K}, as),
                                   Tensor::from_vector<float>(tb ? Shape{N, K} : Shape{K, N}, bs)};
        if (cshape != 4) ins.push_back(Tensor::from_vector<float>(cs, c));
        Tensor y = run1(n, ins);
        auto ab = ref_mm(a.data(), b.data(), M, N, K);
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) {
            double cv = 0;
            if (cshape == 0) cv = c[0];
            if (cshape == 1) cv = c[static_cast<size_t>(j)];
            if (cshape == 2) cv = c[static_cast<size_t>(i)];
            if (cshape == 3) cv = c[static_cast<size_t>(i * N + j)];
            ab[static_cast<size_t>(i * N + j)] = 0.5 * ab[static_cast<size_t>(i * N + j)] + 2.0 * cv;
          }
        INFO("transA=" << ta << " transB=" << tb << " C case " << cshape);
        check_close(y, ab);
      }
}

TEST_CASE("Gemm opset 6 with the broadcast attribute", "[matmul]") {
  NodeDef n = mm_node("Gemm", 6, 3);
  set_int(n, "broadcast", 1);
  Tensor y = run1(n, {Tensor::from_vector<float>({1, 2}, {1, 2}), Tensor::from_vector<float>({2, 2}, {1, 0, 0, 1}),
                      Tensor::from_vector<float>({2}, {10, 20})});
  check_close(y, {11, 22});
}

TEST_CASE("MatMulInteger with per-row and per-column zero points is exact", "[matmul]") {
  const int64_t M = 17, K = 65, N = 7;
  auto a = rand_ints<uint8_t>(M * K, 5, 0, 255);
  auto b = rand_ints<int8_t>(K * N, 6, -128, 127);
  auto azp = rand_ints<uint8_t>(M, 7, 0, 255);
  auto bzp = rand_ints<int8_t>(N, 8, -128, 127);
  for (int per = 0; per < 2; ++per) {
    std::vector<Tensor> ins = {Tensor::from_vector<uint8_t>({M, K}, a), Tensor::from_vector<int8_t>({K, N}, b)};
    if (per) {
      ins.push_back(Tensor::from_vector<uint8_t>({M}, azp));
      ins.push_back(Tensor::from_vector<int8_t>({N}, bzp));
    } else {
      ins.push_back(Tensor::scalar<uint8_t>(azp[0]));
      ins.push_back(Tensor::scalar<int8_t>(bzp[0]));
    }
    Tensor y = run1(mm_node("MatMulInteger", 10, 4), ins);
    REQUIRE(y.dtype() == DType::kInt32);
    const int32_t* yv = y.data<int32_t>();
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        int64_t s = 0;
        const int64_t za = per ? azp[static_cast<size_t>(i)] : azp[0];
        const int64_t zb = per ? bzp[static_cast<size_t>(j)] : bzp[0];
        for (int64_t k = 0; k < K; ++k)
          s += (a[static_cast<size_t>(i * K + k)] - za) * (b[static_cast<size_t>(k * N + j)] - zb);
        REQUIRE(yv[i * N + j] == s);
      }
  }
}

TEST_CASE("QLinearMatMul requantizes with round half to even", "[matmul]") {
  // Hand-derived: a = [[2, 4]] (scale 0.5, zp 0) is [[1, 2]]; b = [[1],[3]] (scale 1, zp 0);
  // a*b = 7; y_scale 2, zp 10 -> 7 / 2 = 3.5 -> rounds to 4 -> 14. A second column gives 2.5 -> 2 -> 12.
  Tensor y =
      run1(mm_node("QLinearMatMul", 10, 8),
           {Tensor::from_vector<uint8_t>({1, 2}, {2, 4}), Tensor::scalar<float>(0.5f), Tensor::scalar<uint8_t>(0),
            Tensor::from_vector<uint8_t>({2, 2}, {1, 1, 3, 2}), Tensor::scalar<float>(1.0f), Tensor::scalar<uint8_t>(0),
            Tensor::scalar<float>(2.0f), Tensor::scalar<uint8_t>(10)});
  REQUIRE(y.dtype() == DType::kUInt8);
  REQUIRE(y.to_int64_vector() == std::vector<int64_t>{14, 12});

  // int8 random case with saturation against a plain loop
  const int64_t M = 7, K = 17, N = 64;
  auto a = rand_ints<int8_t>(M * K, 21, -128, 127);
  auto b = rand_ints<int8_t>(K * N, 22, -128, 127);
  Tensor yr = run1(mm_node("QLinearMatMul", 21, 8),
                   {Tensor::from_vector<int8_t>({M, K}, a), Tensor::scalar<float>(0.02f), Tensor::scalar<int8_t>(3),
                    Tensor::from_vector<int8_t>({K, N}, b), Tensor::scalar<float>(0.01f), Tensor::scalar<int8_t>(-2),
                    Tensor::scalar<float>(0.05f), Tensor::scalar<int8_t>(1)});
  REQUIRE(yr.dtype() == DType::kInt8);
  const int8_t* yv = yr.data<int8_t>();
  const float mult = 0.02f * 0.01f / 0.05f;
  int saturated = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      int64_t s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += (a[static_cast<size_t>(i * K + k)] - 3) * (b[static_cast<size_t>(k * N + j)] + 2);
      long q = std::lrint(static_cast<float>(s) * mult) + 1;
      q = std::min(127L, std::max(-128L, q));
      saturated += (q == 127 || q == -128);
      REQUIRE(yv[i * N + j] == q);
    }
  CHECK(saturated > 0);
}

TEST_CASE("MatMul large enough to split over threads by rows and by columns", "[matmul]") {
  // M > N splits rows, N > M splits columns (when more than one thread is configured).
  for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{403, 24, 67}, {24, 403, 67}}) {
    auto a = rand_floats(static_cast<size_t>(M * K), 31);
    auto b = rand_floats(static_cast<size_t>(K * N), 32);
    Tensor y =
        run1(mm_node("MatMul", 13, 2), {Tensor::from_vector<float>({M, K}, a), Tensor::from_vector<float>({K, N}, b)});
    check_close(y, ref_mm(a.data(), b.data(), M, N, K));
    // the same product through Gemm with transposed operands
    std::vector<float> at(a.size()), bt(b.size());
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < K; ++k) at[static_cast<size_t>(k * M + i)] = a[static_cast<size_t>(i * K + k)];
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j) bt[static_cast<size_t>(j * K + k)] = b[static_cast<size_t>(k * N + j)];
    NodeDef g = mm_node("Gemm", 13, 2);
    set_int(g, "transA", 1);
    set_int(g, "transB", 1);
    Tensor yg = run1(g, {Tensor::from_vector<float>({K, M}, at), Tensor::from_vector<float>({N, K}, bt)});
    check_close(yg, ref_mm(a.data(), b.data(), M, N, K));
  }
}
