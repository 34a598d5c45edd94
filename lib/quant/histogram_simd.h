// Vector kernels of the calibration observer (histogram.cpp, calibration.cpp), built for AVX-512 in
// histogram_avx512.cpp and chosen at run time: the SSE2 code beside their callers runs elsewhere.
#pragma once

#include <cstdint>

namespace frugal::quant_simd {

// True when the AVX-512 kernels below run: the same decision as the GEMM's (kernels::avx512_selected;
// FRUGAL_GEMM_ISA=avx2 or generic turns them off).
bool avx512();

// Layout of the count tables: four interleaved tables of `stride` (>= 2 * nb) uint32 counters, then
// 16 scratch slots where lanes holding nothing to count are sent (one per lane, so they never queue
// on a shared counter).
constexpr int64_t kScratchSlots = 16;

// Counts the finite, non-zero values of x[0:n) into the tables at t: value v goes to bin
// floor(v * scale) + nb clamped to [0, 2 nb) (scale a power of two, so the product is exact; a
// negative v whose product underflows to -0 goes to bin nb - 1), in table (i mod 4). Returns the number
// of exact zeros (+0 and -0), which the caller adds to bin nb. Counters must not wrap: n < 2^32.
uint64_t count_bins_avx512(const float* x, int64_t n, float scale, int32_t nb, uint32_t* t, int64_t stride);

// Minimum and maximum over the non-NaN values of x[0:n) (+inf and -inf when there are none).
void min_max_avx512(const float* x, int64_t n, float* lo, float* hi);

}  // namespace frugal::quant_simd
