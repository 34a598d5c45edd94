// GEMM dispatch: the generic Eigen build plus run-time selection of the AVX2 / AVX-512 builds.
#include "gemm.h"

#include <Eigen/Core>

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
#endif

namespace {

enum class Isa { kGeneric, kAvx2, kAvx512 };

Isa detect_isa() {
#ifdef FRUGAL_GEMM_X86
  __builtin_cpu_init();
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

}  // namespace

void gemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  switch (isa()) {
#ifdef FRUGAL_GEMM_X86
    case Isa::kAvx512:
      return avx512::gemm_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    case Isa::kAvx2:
      return avx2::gemm_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
    default:
      return generic::gemm_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

void gemm_s32(int64_t M, int64_t N, int64_t K, const int32_t* A, int64_t lda, const int32_t* B, int64_t ldb,
              int32_t* C, int64_t ldc) {
  switch (isa()) {
#ifdef FRUGAL_GEMM_X86
    case Isa::kAvx512:
      return avx512::gemm_s32(M, N, K, A, lda, B, ldb, C, ldc);
    case Isa::kAvx2:
      return avx2::gemm_s32(M, N, K, A, lda, B, ldb, C, ldc);
#endif
    default:
      return generic::gemm_s32(M, N, K, A, lda, B, ldb, C, ldc);
  }
}

void gemm_f64(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
              const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  generic::gemm_t<double>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const char* gemm_isa() {
  switch (isa()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "generic";
  }
}

}  // namespace frugal::kernels
