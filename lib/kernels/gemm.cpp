// GEMM dispatch: run-time selection of the float32 kernel (the hand-written AVX-512 / AVX2 SGEMM of
// gemm_sgemm.h, or Eigen built generic / AVX2 / AVX-512) and the split of C over threads.
#include "gemm.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include <Eigen/Core>

#include "frugal/parallel.h"

#define FRUGAL_GEMM_NS generic
#include "gemm_impl.h"

namespace frugal::kernels {

#if defined(__x86_64__) && defined(__GNUC__)
#define FRUGAL_GEMM_X86 1
namespace avx2 {
void gemm_f32(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
              float*, int64_t);
void gemm_s32(int64_t, int64_t, int64_t, const int32_t*, int64_t, const int32_t*, int64_t, int32_t*, int64_t);
}  // namespace avx2
namespace avx512 {
void gemm_f32(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
              float*, int64_t);
void gemm_s32(int64_t, int64_t, int64_t, const int32_t*, int64_t, const int32_t*, int64_t, int32_t*, int64_t);
}  // namespace avx512
namespace sgemm_avx2 {
bool sgemm_f32(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
               float*, int64_t);
}  // namespace sgemm_avx2
namespace sgemm_avx512 {
bool sgemm_f32(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
               float*, int64_t);
}  // namespace sgemm_avx512
#endif

namespace {

enum class Isa { kGeneric, kAvx2, kAvx512 };

Isa detect_isa() {
#ifdef FRUGAL_GEMM_X86
  __builtin_cpu_init();
  // FRUGAL_GEMM_ISA=avx2|generic caps the variant (for comparing kernels on one machine).
  const char* cap = std::getenv("FRUGAL_GEMM_ISA");
  if (cap && std::string(cap) == "generic") return Isa::kGeneric;
  if (cap && std::string(cap) == "avx2" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c"))
    return Isa::kAvx2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("fma"))
    return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Isa::kAvx2;
#endif
  return Isa::kGeneric;
}

Isa isa() {
  static const Isa v = detect_isa();
  return v;
}

// Which float32 kernel runs: the hand-written SGEMM where it beats Eigen (AVX-512), Eigen elsewhere.
// FRUGAL_GEMM_IMPL=eigen or =own overrides that (to compare the two on one machine). On AVX2 the
// hand-written 6x16 tile measured ~20% slower than Eigen's AVX2 build (docs/BENCHMARKS.md), so it is
// opt-in there.
enum class F32Impl { kOwn, kEigen, kDefault };

F32Impl f32_impl() {
  static const F32Impl v = [] {
    const char* e = std::getenv("FRUGAL_GEMM_IMPL");
    if (e && std::string(e) == "eigen") return F32Impl::kEigen;
    if (e && std::string(e) == "own") return F32Impl::kOwn;
    return F32Impl::kDefault;
  }();
  return v;
}

bool own_f32(Isa v) {
  const F32Impl i = f32_impl();
  return i == F32Impl::kOwn || (i == F32Impl::kDefault && v == Isa::kAvx512);
}

// Runs `serial(ta, tb, m, n, K, A', B', C')` on independent blocks of C, one per thread: columns when
// N is the larger side, else rows. Each block is a complete GEMM, so threads never wait on each other.
template <typename T, typename F>
void split_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                int64_t ldb, T* C, int64_t ldc, F&& serial) {
  const int threads = parallel_region_active() ? 1 : num_threads();
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  const bool by_cols = N >= M;
  const int64_t extent = by_cols ? N : M, align = by_cols ? 16 : 8;
  const int64_t parts = std::min<int64_t>(threads, extent / align);
  if (parts < 2 || flops < 1.0e6) {
    serial(ta, tb, M, N, K, A, B, C);
    return;
  }
  const int64_t per = ((extent + parts - 1) / parts + align - 1) / align * align;
  parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t b = p * per, e = std::min(extent, b + per);
      if (b >= e) continue;
      if (by_cols)
        serial(ta, tb, M, e - b, K, A, tb ? B + b * ldb : B + b, C + b);
      else
        serial(ta, tb, e - b, N, K, ta ? A + b : A + b * lda, B, C + b * ldc);
    }
  });
}

}  // namespace

void gemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const Isa v = isa();
  const bool own = own_f32(v);
  split_gemm<float>(ta, tb, M, N, K, A, lda, B, ldb, C, ldc,
                    [&](bool a_t, bool b_t, int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c) {
                      switch (v) {
#ifdef FRUGAL_GEMM_X86
                        case Isa::kAvx512:
                          if (own && sgemm_avx512::sgemm_f32(a_t, b_t, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
                            return;
                          return avx512::gemm_f32(a_t, b_t, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
                        case Isa::kAvx2:
                          if (own && sgemm_avx2::sgemm_f32(a_t, b_t, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
                            return;
                          return avx2::gemm_f32(a_t, b_t, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
                        default:
                          return generic::gemm_f32(a_t, b_t, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
                      }
                    });
}

void gemm_s32(int64_t M, int64_t N, int64_t K, const int32_t* A, int64_t lda, const int32_t* B, int64_t ldb,
              int32_t* C, int64_t ldc) {
  const Isa v = isa();
  split_gemm<int32_t>(false, false, M, N, K, A, lda, B, ldb, C, ldc,
                      [&](bool, bool, int64_t m, int64_t n, int64_t k, const int32_t* a, const int32_t* b, int32_t* c) {
                        switch (v) {
#ifdef FRUGAL_GEMM_X86
                          case Isa::kAvx512:
                            return avx512::gemm_s32(m, n, k, a, lda, b, ldb, c, ldc);
                          case Isa::kAvx2:
                            return avx2::gemm_s32(m, n, k, a, lda, b, ldb, c, ldc);
#endif
                          default:
                            return generic::gemm_s32(m, n, k, a, lda, b, ldb, c, ldc);
                        }
                      });
}

void gemm_f64(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
              const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  split_gemm<double>(ta, tb, M, N, K, A, lda, B, ldb, C, ldc,
                     [&](bool a_t, bool b_t, int64_t m, int64_t n, int64_t k, const double* a, const double* b,
                         double* c) { generic::gemm_t<double>(a_t, b_t, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); });
}

bool avx512_selected() { return isa() == Isa::kAvx512; }

const char* gemm_isa() {
  switch (isa()) {
    case Isa::kAvx512: return own_f32(Isa::kAvx512) ? "avx512" : "avx512-eigen";
    case Isa::kAvx2: return own_f32(Isa::kAvx2) ? "avx2" : "avx2-eigen";
    default: return "generic";
  }
}

}  // namespace frugal::kernels
