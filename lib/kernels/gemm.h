// Dense GEMM for the CPU kernels: row-major, strided, with transposes. float32 runs through the
// hand-written SGEMM of gemm_sgemm.h on AVX-512 CPUs and through Eigen's blocked GEMM elsewhere; Eigen
// is compiled three times (generic x86-64, AVX2+FMA, AVX-512) and the hand-written kernel twice
// (AVX-512, AVX2), and the widest variant the CPU supports is picked once at run time, because the
// library itself is built without -march flags. FRUGAL_GEMM_ISA=avx2|generic caps the ISA and
// FRUGAL_GEMM_IMPL=eigen|own picks the float32 implementation (see gemm.cpp). gemm.cpp splits C into
// one independent block per thread unless the caller is already inside a parallel region.
#pragma once

#include <cstdint>

namespace frugal::kernels {

// C[M,N] = alpha * op(A) * op(B) + beta * C. op(A) is MxK (A is stored KxM when trans_a), op(B) is
// KxN. lda/ldb/ldc are the row strides of the stored matrices. beta == 0 overwrites C (NaN-safe).
void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm_f64(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
              int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);
// Exact int32 product C = A * B (no transposes); the integer ops widen and subtract zero points first.
void gemm_s32(int64_t M, int64_t N, int64_t K, const int32_t* A, int64_t lda, const int32_t* B, int64_t ldb,
              int32_t* C, int64_t ldc);

// Overloads so templated kernels can call gemm<T>.
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                 const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm_f64(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// "avx512", "avx2" (hand-written), "avx512-eigen", "avx2-eigen" or "generic": what gemm_f32 uses here.
const char* gemm_isa();
// Whether the AVX-512 kernels run here: the CPU has AVX-512 F/DQ/VL/BW and FMA, and FRUGAL_GEMM_ISA
// does not cap it. The one decision every run-time-selected AVX-512 kernel follows.
bool avx512_selected();

}  // namespace frugal::kernels
