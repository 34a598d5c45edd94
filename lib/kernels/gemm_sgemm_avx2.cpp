// The hand-written float32 GEMM of gemm_sgemm.h built for AVX2 + FMA (selected at run time by gemm.cpp):
// 6 x 16 register tile (12 ymm accumulators, two B vectors, one broadcast A value).
#if defined(__x86_64__) && defined(__GNUC__)
#include <cstdint>
#include <cstdlib>

#include <immintrin.h>

#pragma GCC target("avx2,fma,avx,f16c,popcnt,sse4.2,sse4.1,ssse3,sse3")

namespace frugal::kernels::sgemm_avx2 {
namespace {

struct Vec {
  using R = __m256;
  static constexpr int W = 8;
  static __m256i mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static R zero() { return _mm256_setzero_ps(); }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static R load_n(const float* p, int n) { return _mm256_maskload_ps(p, mask(n)); }
  static void store(float* p, R x) { _mm256_storeu_ps(p, x); }
  static void store_n(float* p, R x, int n) { _mm256_maskstore_ps(p, mask(n), x); }
  static R bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static R set1(float x) { return _mm256_set1_ps(x); }
  static R fmadd(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static float hsum(R x) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
  }
};
constexpr int kMR = 6;
constexpr int kNV = 2;

}  // namespace
}  // namespace frugal::kernels::sgemm_avx2

#define FRUGAL_SGEMM_NS sgemm_avx2
#include "gemm_sgemm.h"
#endif
