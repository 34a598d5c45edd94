// gemm_f32 (the hand-written SGEMM on AVX-512, Eigen elsewhere) against a double-precision loop written
// here: every transpose combination, alpha/beta variants, K = 0, edge and prime sizes, row strides wider
// than the matrices (the padding must stay untouched), and shapes large enough to cross the K blocks,
// the packed-B blocks and the split over threads. The AVX-512 and AVX2 builds of the hand-written
// kernel are also called directly, whichever one gemm_f32 picks, when the CPU runs them.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "frugal/parallel.h"
#include "kernels/gemm.h"

using frugal::kernels::gemm_f32;

#if defined(__x86_64__) && defined(__GNUC__)
// Per-ISA entry points of the hand-written kernel (lib/kernels/gemm_sgemm_*.cpp), one thread's block each.
namespace frugal::kernels::sgemm_avx2 {
bool sgemm_f32(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
               float*, int64_t);
}  // namespace frugal::kernels::sgemm_avx2
namespace frugal::kernels::sgemm_avx512 {
bool sgemm_f32(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
               float*, int64_t);
}  // namespace frugal::kernels::sgemm_avx512
#endif

namespace {

using GemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                        float, float*, int64_t);

struct Case {
  bool ta = false, tb = false;
  int64_t M = 1, N = 1, K = 1;
  float alpha = 1, beta = 0;
  int64_t pad_a = 0, pad_b = 0, pad_c = 0;  // extra floats per stored row
};

constexpr float kSentinel = -12345.0f;

// Runs one case and checks each C value against alpha * sum_k a*b + beta * c0 accumulated in double,
// within 1e-6 * (K + 2) of the sum of magnitudes of its terms; C's row padding must keep its sentinel.
void check_case(const Case& c, uint32_t seed, GemmFn gemm = &gemm_f32) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const int64_t ar = c.ta ? c.K : c.M, ac = c.ta ? c.M : c.K;  // stored A is ar x ac
  const int64_t br = c.tb ? c.N : c.K, bc = c.tb ? c.K : c.N;
  const int64_t lda = ac + c.pad_a, ldb = bc + c.pad_b, ldc = c.N + c.pad_c;
  std::vector<float> A(static_cast<size_t>(std::max<int64_t>(ar * lda, 1)), kSentinel);
  std::vector<float> B(static_cast<size_t>(std::max<int64_t>(br * ldb, 1)), kSentinel);
  std::vector<float> C(static_cast<size_t>(c.M * ldc), kSentinel);
  for (int64_t i = 0; i < ar; ++i)
    for (int64_t j = 0; j < ac; ++j) A[static_cast<size_t>(i * lda + j)] = dist(rng);
  for (int64_t i = 0; i < br; ++i)
    for (int64_t j = 0; j < bc; ++j) B[static_cast<size_t>(i * ldb + j)] = dist(rng);
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j)
      // beta == 0 must overwrite C without reading it, so NaN there must not leak into the result.
      C[static_cast<size_t>(i * ldc + j)] = c.beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : dist(rng);
  const std::vector<float> C0 = C;
  gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc);
  INFO("ta=" << c.ta << " tb=" << c.tb << " M=" << c.M << " N=" << c.N << " K=" << c.K << " alpha=" << c.alpha
             << " beta=" << c.beta << " pads=" << c.pad_a << "," << c.pad_b << "," << c.pad_c);
  int64_t bad = 0;
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < c.N; ++j) {
      double s = 0, mag = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const double a = c.ta ? A[static_cast<size_t>(k * lda + i)] : A[static_cast<size_t>(i * lda + k)];
        const double b = c.tb ? B[static_cast<size_t>(j * ldb + k)] : B[static_cast<size_t>(k * ldb + j)];
        s += a * b;
        mag += std::fabs(a * b);
      }
      double want = c.alpha * s, bound = std::fabs(c.alpha) * mag;
      if (c.beta != 0.0f) {
        const double c0 = C0[static_cast<size_t>(i * ldc + j)];
        want += c.beta * c0;
        bound += std::fabs(c.beta * c0);
      }
      const double got = C[static_cast<size_t>(i * ldc + j)];
      if (!(std::fabs(got - want) <= 1e-6 * static_cast<double>(c.K + 2) * bound + 1e-30)) {
        if (bad++ < 3) UNSCOPED_INFO("C[" << i << "," << j << "] = " << got << ", want " << want);
      }
    }
    for (int64_t j = c.N; j < ldc; ++j)
      if (C[static_cast<size_t>(i * ldc + j)] != kSentinel) {
        if (bad++ < 3) UNSCOPED_INFO("padding C[" << i << "," << j << "] overwritten");
      }
  }
  REQUIRE(bad == 0);
}

}  // namespace

TEST_CASE("gemm_f32 edge and prime sizes with every transpose", "[gemm]") {
  const int64_t sizes[] = {1, 2, 3, 5, 7, 8, 9, 13, 16, 17, 31, 32, 33, 47, 48, 49, 64, 65, 70};
  uint32_t seed = 1;
  for (const bool ta : {false, true})
    for (const bool tb : {false, true})
      for (const int64_t M : sizes)
        for (const int64_t N : sizes) {
          Case c;
          c.ta = ta;
          c.tb = tb;
          c.M = M;
          c.N = N;
          c.K = sizes[(M * 7 + N * 3 + (ta ? 5 : 0) + (tb ? 11 : 0)) % 19];
          check_case(c, seed++);
        }
}

TEST_CASE("gemm_f32 random shapes, alpha, beta and row strides", "[gemm]") {
  std::mt19937 rng(42);
  std::uniform_int_distribution<int64_t> dim(1, 70), pad(0, 5);
  const float alphas[] = {1.0f, -1.0f, 0.5f, 2.25f, 0.0f};
  const float betas[] = {0.0f, 1.0f, -0.75f, 3.0f};
  for (int t = 0; t < 400; ++t) {
    Case c;
    c.ta = (t & 1) != 0;
    c.tb = (t & 2) != 0;
    c.M = dim(rng);
    c.N = dim(rng);
    c.K = dim(rng);
    c.alpha = alphas[t % 5];
    c.beta = betas[(t / 5) % 4];
    if (t % 3 != 0) {
      c.pad_a = pad(rng);
      c.pad_b = pad(rng);
      c.pad_c = pad(rng);
    }
    check_case(c, 1000u + static_cast<uint32_t>(t));
  }
}

TEST_CASE("gemm_f32 K = 0 scales C by beta", "[gemm]") {
  for (const float beta : {0.0f, 1.0f, -2.0f})
    for (const int64_t M : {1, 9, 20})
      for (const int64_t N : {1, 17, 50}) {
        Case c;
        c.M = M;
        c.N = N;
        c.K = 0;
        c.beta = beta;
        c.pad_c = 3;
        check_case(c, 7u);
      }
}

TEST_CASE("gemm_f32 shapes crossing the K blocks, packed-B blocks and the thread split", "[gemm]") {
  const int saved = frugal::num_threads();
  frugal::set_num_threads(2);
  uint32_t seed = 500;
  struct Shape3 {
    int64_t M, N, K;
  };
  // K beyond one K block (256) and unevenly split; N beyond one packed-B block; few-row short cuts.
  const Shape3 shapes[] = {{20, 700, 300},  {130, 97, 600},  {3, 1000, 700},  {1, 1000, 513},
                           {4, 333, 257},   {9, 600, 520},   {128, 768, 96},  {200, 50, 1030},
                           {64, 1568, 64},  {1, 1, 2000},    {2, 77, 1025},   {300, 1, 40}};
  for (const Shape3& s : shapes)
    for (const bool ta : {false, true})
      for (const bool tb : {false, true}) {
        Case c;
        c.ta = ta;
        c.tb = tb;
        c.M = s.M;
        c.N = s.N;
        c.K = s.K;
        c.beta = (seed % 2) ? 0.5f : 0.0f;
        c.alpha = (seed % 3) ? 1.0f : -1.5f;
        c.pad_c = seed % 4;
        c.pad_a = seed % 3;
        check_case(c, seed++);
      }
  frugal::set_num_threads(saved);
}

#if defined(__x86_64__) && defined(__GNUC__)
TEST_CASE("hand-written AVX-512 and AVX2 kernels called directly", "[gemm]") {
  std::vector<std::pair<const char*, GemmFn>> fns;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("fma"))
    fns.emplace_back("avx512", [](bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
      REQUIRE(frugal::kernels::sgemm_avx512::sgemm_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
    });
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    fns.emplace_back("avx2", [](bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
      REQUIRE(frugal::kernels::sgemm_avx2::sgemm_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
    });
  std::mt19937 rng(7);
  std::uniform_int_distribution<int64_t> dim(1, 70), pad(0, 4);
  for (const auto& [name, fn] : fns) {
    INFO("kernel " << name);
    uint32_t seed = 9000;
    for (int t = 0; t < 160; ++t) {
      Case c;
      c.ta = (t & 1) != 0;
      c.tb = (t & 2) != 0;
      c.M = dim(rng);
      c.N = dim(rng);
      c.K = (t % 40 == 0) ? 0 : dim(rng);
      c.alpha = (t % 3 == 0) ? -0.5f : 1.0f;
      c.beta = (t % 4 == 0) ? 0.0f : (t % 4 == 1 ? 1.0f : 2.0f);
      c.pad_a = pad(rng);
      c.pad_b = pad(rng);
      c.pad_c = pad(rng);
      check_case(c, seed++, fn);
    }
    // Several K blocks (with the ramp), several packed-B blocks, the few-row short cuts; wide products
    // (N >= 4 M, K >= 256: B panels held in L1) with edge row panels, uneven K blocks and more rows
    // than one packed block of A (256).
    for (const auto& [M, N, K] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {40, 700, 900}, {17, 250, 520}, {3, 300, 600}, {9, 1000, 40}, {2, 90, 1100}, {300, 1250, 260},
             {33, 700, 333}}) {
      for (const bool ta : {false, true})
        for (const bool tb : {false, true}) {
          Case c;
          c.ta = ta;
          c.tb = tb;
          c.M = M;
          c.N = N;
          c.K = K;
          c.beta = ta ? 0.0f : 1.0f;
          c.pad_c = 1;
          check_case(c, seed++, fn);
        }
    }
  }
}
#endif
