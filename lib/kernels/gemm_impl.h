// The body of the Eigen GEMM wrappers, included by gemm.cpp, gemm_avx2.cpp and gemm_avx512.cpp. Each
// includer first renames Eigen's namespace (#define Eigen ...) so the three builds of Eigen's templates
// get distinct symbols and the linker cannot merge an AVX instantiation into generic code.
// Requires FRUGAL_GEMM_NS (the namespace of this variant) to be defined.
#include <Eigen/Core>

namespace frugal::kernels::FRUGAL_GEMM_NS {

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using CMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using MMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;

template <typename T, typename LA, typename LB>
static void finish(const LA& a, const LB& b, T alpha, T beta, MMap<T>& c) {
  if (beta == T(0)) {
    if (alpha == T(1))
      c.noalias() = a * b;
    else
      c.noalias() = alpha * (a * b);
  } else {
    if (beta != T(1)) c *= beta;
    if (alpha == T(1))
      c.noalias() += a * b;
    else
      c.noalias() += alpha * (a * b);
  }
}

template <typename T>
static void gemm_t(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                   const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  // Threads are split by gemm.cpp into independent blocks; Eigen's own threaded GEMM synchronises by
  // spinning, which stalls badly when the machine is oversubscribed.
  Eigen::setNbThreads(1);
  MMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  if (K <= 0) {
    if (beta == T(0))
      c.setZero();
    else
      c *= beta;
    return;
  }
  if (!ta && !tb) {
    finish(CMap<T>(A, M, K, Eigen::OuterStride<>(lda)), CMap<T>(B, K, N, Eigen::OuterStride<>(ldb)), alpha,
           beta, c);
  } else if (!ta && tb) {
    finish(CMap<T>(A, M, K, Eigen::OuterStride<>(lda)),
           CMap<T>(B, N, K, Eigen::OuterStride<>(ldb)).transpose(), alpha, beta, c);
  } else if (ta && !tb) {
    finish(CMap<T>(A, K, M, Eigen::OuterStride<>(lda)).transpose(),
           CMap<T>(B, K, N, Eigen::OuterStride<>(ldb)), alpha, beta, c);
  } else {
    finish(CMap<T>(A, K, M, Eigen::OuterStride<>(lda)).transpose(),
           CMap<T>(B, N, K, Eigen::OuterStride<>(ldb)).transpose(), alpha, beta, c);
  }
}

void gemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_t<float>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_s32(int64_t M, int64_t N, int64_t K, const int32_t* A, int64_t lda, const int32_t* B, int64_t ldb,
              int32_t* C, int64_t ldc) {
  gemm_t<int32_t>(false, false, M, N, K, 1, A, lda, B, ldb, 0, C, ldc);
}

}  // namespace frugal::kernels::FRUGAL_GEMM_NS
