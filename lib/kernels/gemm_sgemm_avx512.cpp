// The hand-written float32 GEMM of gemm_sgemm.h built for AVX-512F (selected at run time by gemm.cpp):
// 8 x 48 register tile (24 zmm accumulators, three B vectors, one broadcast A value); the full tile is
// the inline assembly of gemm_sgemm_avx512_tile.h.
#if defined(__x86_64__) && defined(__GNUC__)
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include <immintrin.h>

// GCC 12 reports false positives inside its own AVX-512 intrinsic headers (masked loads; the
// undefined-vector operand of the unpack and lane-shuffle intrinsics transpose16 uses).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,avx,f16c,popcnt,sse4.2,sse4.1,ssse3,sse3")

namespace frugal::kernels::sgemm_avx512 {
namespace {

struct Vec {
  using R = __m512;
  static constexpr int W = 16;
  static __mmask16 mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static R zero() { return _mm512_setzero_ps(); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static R load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static void store(float* p, R x) { _mm512_storeu_ps(p, x); }
  static void store_n(float* p, R x, int n) { _mm512_mask_storeu_ps(p, mask(n), x); }
  static R bcast(const float* p) { return _mm512_set1_ps(*p); }
  static R set1(float x) { return _mm512_set1_ps(x); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static float hsum(R x) { return _mm512_reduce_add_ps(x); }
  // Packs 8 rows of A (row stride lda, lda < 2^28) into k-major order, d[k * 8 + r] = a[r * lda + k]
  // for k < kc, two k per gathered vector: the 8 rows are read side by side, so their cache misses
  // overlap (A is usually the activation the previous node has just written).
  static void pack_kmajor8(const float* a, int64_t lda, int64_t kc, float* d) {
    const int l = static_cast<int>(lda);
    const __m512i idx = _mm512_setr_epi32(0, l, 2 * l, 3 * l, 4 * l, 5 * l, 6 * l, 7 * l, 1, l + 1, 2 * l + 1,
                                          3 * l + 1, 4 * l + 1, 5 * l + 1, 6 * l + 1, 7 * l + 1);
    int64_t k = 0;
    for (; k + 2 <= kc; k += 2) _mm512_storeu_ps(d + k * 8, _mm512_i32gather_ps(idx, a + k, 4));
    if (k < kc)
      for (int r = 0; r < 8; ++r) d[k * 8 + r] = a[r * lda + k];
  }
  // d[c * ld + r] = s[r * ls + c] for r < rows, c < cols (both <= 16), rows past `rows` zero: a
  // 16 x 16 block transposed in registers (pairs of rows interleaved, then pairs of pairs, then the
  // four 128-bit lanes of each group of four vectors), for packing B stored [N, K].
  static void transpose16(const float* s, int64_t ls, int rows, int cols, float* d, int64_t ld) {
    __m512 r[16];
    const __mmask16 cm = mask(cols);
    for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_maskz_loadu_ps(cm, s + i * ls) : _mm512_setzero_ps();
    __m512 u[16];  // u[4g + i], lane L: column 4L + i of rows 4g..4g+3
    for (int g = 0; g < 4; ++g) {
      const __m512 t0 = _mm512_unpacklo_ps(r[4 * g], r[4 * g + 1]), t1 = _mm512_unpackhi_ps(r[4 * g], r[4 * g + 1]);
      const __m512 t2 = _mm512_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]),
                   t3 = _mm512_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
      u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));
      u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));
      u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));
      u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));
    }
    for (int i = 0; i < 4; ++i) {
      const __m512 p0 = _mm512_shuffle_f32x4(u[i], u[4 + i], 0x44), p1 = _mm512_shuffle_f32x4(u[i], u[4 + i], 0xEE);
      const __m512 p2 = _mm512_shuffle_f32x4(u[8 + i], u[12 + i], 0x44),
                   p3 = _mm512_shuffle_f32x4(u[8 + i], u[12 + i], 0xEE);
      const __m512 o[4] = {_mm512_shuffle_f32x4(p0, p2, 0x88), _mm512_shuffle_f32x4(p0, p2, 0xDD),
                           _mm512_shuffle_f32x4(p1, p3, 0x88), _mm512_shuffle_f32x4(p1, p3, 0xDD)};
      for (int L = 0; L < 4; ++L)
        if (4 * L + i < cols) _mm512_storeu_ps(d + (4 * L + i) * ld, o[L]);
    }
  }
};
constexpr int kMR = 8;
constexpr int kNV = 3;

}  // namespace
}  // namespace frugal::kernels::sgemm_avx512

#define FRUGAL_SGEMM_NS sgemm_avx512
#define FRUGAL_SGEMM_FULL_TILE "gemm_sgemm_avx512_tile.h"
#include "gemm_sgemm.h"
#endif
