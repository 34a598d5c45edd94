// Eigen GEMM built for AVX2 + FMA (selected at run time by gemm.cpp). See gemm_impl.h.
#if defined(__x86_64__) && defined(__GNUC__)
#include "gemm_isa_prelude.h"
// Eigen 3.4's AVX-512 packet code trips a false positive inside GCC's own intrinsic headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx2,fma,avx,f16c,popcnt,sse4.2,sse4.1,ssse3,sse3")
// GCC's target pragma does not define the ISA macros Eigen keys its packet code on; define them here.
#define __SSE3__ 1
#define __SSSE3__ 1
#define __SSE4_1__ 1
#define __SSE4_2__ 1
#define __AVX__ 1
#define __AVX2__ 1
#define __FMA__ 1
#define __F16C__ 1
#define Eigen FrugalEigenAvx2
#define FRUGAL_GEMM_NS avx2
#include "gemm_impl.h"
#endif
