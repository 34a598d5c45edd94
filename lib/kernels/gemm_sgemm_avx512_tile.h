// The AVX-512 GEMM's full register tile (8 rows x 48 columns, packed B, alpha 1, beta 0 or 1) as one
// inline-assembly block, included by gemm_sgemm.h inside gemm_sgemm_avx512.cpp's namespace (after
// PfStream). GCC 12 compiles the generic micro-kernel for this tile with register-to-register copies
// and an accumulator spill in the k loop (copies take the FMA ports); here the 24 accumulators live
// in zmm0-23 for the whole call, B's three vectors of each k in zmm24-26 and the broadcast A value in
// zmm31. Per four k it steps the two prefetch streams (the next row panel of A, the next block of B)
// as micro() does: one line of A, two of B. Measured on the full tile alone (kc 64-256, A and B in
// cache, best of 400 interleaved trials): 133-137 GFLOP/s against 121-131 for the compiled kernel, on
// a core whose plain FMA loop gives 136.
//
// Accumulator registers: row r, vector v is zmm(3r + v).

static_assert(kMR == 8 && kNV == 3 && Vec::W == 16, "the assembly below is written for the 8 x 48 tile");
static_assert(offsetof(PfStream, p) == 0 && offsetof(PfStream, row) == 8 && offsetof(PfStream, left_row) == 16 &&
                  offsetof(PfStream, lpr) == 24 && offsetof(PfStream, stride) == 32 && offsetof(PfStream, n) == 56,
              "FRUGAL_T_PF reads PfStream's fields at these offsets");

// clang-format off
#define FRUGAL_T_S(x) #x
// One row of the tile for one k: broadcast A's value (asrc) and three FMAs into zmm r0..r2.
#define FRUGAL_T_ROW(asrc, r0, r1, r2)                          \
  "vbroadcastss " asrc ", %%zmm31\n\t"                          \
  "vfmadd231ps %%zmm24, %%zmm31, %%zmm" FRUGAL_T_S(r0) "\n\t"   \
  "vfmadd231ps %%zmm25, %%zmm31, %%zmm" FRUGAL_T_S(r1) "\n\t"   \
  "vfmadd231ps %%zmm26, %%zmm31, %%zmm" FRUGAL_T_S(r2) "\n\t"
// Row kk of the packed B panel (48 floats, 192 bytes) into zmm24-26.
#define FRUGAL_T_B(kk)                                   \
  "vmovups " #kk "*192(%[b]), %%zmm24\n\t"               \
  "vmovups " #kk "*192+64(%[b]), %%zmm25\n\t"            \
  "vmovups " #kk "*192+128(%[b]), %%zmm26\n\t"
// One k of the whole tile: B's row kk, then the eight rows, row r taking A's value at address
// A(kk, r) and accumulating into zmm 3r..3r+2.
#define FRUGAL_T_K(kk, A) FRUGAL_T_B(kk)                 \
  FRUGAL_T_ROW(A(kk, 0), 0, 1, 2)                        \
  FRUGAL_T_ROW(A(kk, 1), 3, 4, 5)                        \
  FRUGAL_T_ROW(A(kk, 2), 6, 7, 8)                        \
  FRUGAL_T_ROW(A(kk, 3), 9, 10, 11)                      \
  FRUGAL_T_ROW(A(kk, 4), 12, 13, 14)                     \
  FRUGAL_T_ROW(A(kk, 5), 15, 16, 17)                     \
  FRUGAL_T_ROW(A(kk, 6), 18, 19, 20)                     \
  FRUGAL_T_ROW(A(kk, 7), 21, 22, 23)
// A k-major: the 8 values of k side by side at a + kk*32.
#define FRUGAL_T_ACOL(kk, r) #kk "*32+" #r "*4(%[a])"
#define FRUGAL_T_KCOL(kk) FRUGAL_T_K(kk, FRUGAL_T_ACOL)
// A as rows: row r at a + r*ld bytes, reached from a, a3 = a + 3 ld and a6 = a + 6 ld.
#define FRUGAL_T_AROW(kk, r) FRUGAL_T_AROW_##r(#kk "*4")
#define FRUGAL_T_AROW_0(d) d "(%[a])"
#define FRUGAL_T_AROW_1(d) d "(%[a],%[ld],1)"
#define FRUGAL_T_AROW_2(d) d "(%[a],%[ld],2)"
#define FRUGAL_T_AROW_3(d) d "(%[a3])"
#define FRUGAL_T_AROW_4(d) d "(%[a],%[ld],4)"
#define FRUGAL_T_AROW_5(d) d "(%[a3],%[ld],2)"
#define FRUGAL_T_AROW_6(d) d "(%[a6])"
#define FRUGAL_T_AROW_7(d) d "(%[a6],%[ld],1)"
#define FRUGAL_T_KROW(kk) FRUGAL_T_K(kk, FRUGAL_T_AROW)
// One step of the PfStream at %[s] (PfStream::step: fields p, row, left_row, lpr, stride at byte
// offsets 0-32, n at 56): while it has lines for this call, prefetch the next one into L2.
#define FRUGAL_T_PF(s)                                   \
  "cmpq $0, 56(%[" s "])\n\t"                            \
  "jle 9f\n\t"                                           \
  "mov (%[" s "]), %%rax\n\t"                            \
  "prefetcht1 (%%rax)\n\t"                               \
  "decq 56(%[" s "])\n\t"                                \
  "add $64, %%rax\n\t"                                   \
  "decq 16(%[" s "])\n\t"                                \
  "jnz 8f\n\t"                                           \
  "mov 8(%[" s "]), %%rax\n\t"                           \
  "add 32(%[" s "]), %%rax\n\t"                          \
  "mov %%rax, 8(%[" s "])\n\t"                           \
  "and $-64, %%rax\n\t"                                  \
  "mov 24(%[" s "]), %%rdx\n\t"                          \
  "mov %%rdx, 16(%[" s "])\n\t"                          \
  "8:\n\t"                                               \
  "mov %%rax, (%[" s "])\n\t"                            \
  "9:\n\t"
#define FRUGAL_T_ZERO3(r0, r1, r2)                                                \
  "vxorps %%zmm" FRUGAL_T_S(r0) ", %%zmm" FRUGAL_T_S(r0) ", %%zmm" FRUGAL_T_S(r0) "\n\t" \
  "vxorps %%zmm" FRUGAL_T_S(r1) ", %%zmm" FRUGAL_T_S(r1) ", %%zmm" FRUGAL_T_S(r1) "\n\t" \
  "vxorps %%zmm" FRUGAL_T_S(r2) ", %%zmm" FRUGAL_T_S(r2) ", %%zmm" FRUGAL_T_S(r2) "\n\t"
// Adds the C row at rax into one accumulator row, then steps rax to the next C row.
#define FRUGAL_T_ADDC(r0, r1, r2)                                                 \
  "vaddps (%%rax), %%zmm" FRUGAL_T_S(r0) ", %%zmm" FRUGAL_T_S(r0) "\n\t"          \
  "vaddps 64(%%rax), %%zmm" FRUGAL_T_S(r1) ", %%zmm" FRUGAL_T_S(r1) "\n\t"        \
  "vaddps 128(%%rax), %%zmm" FRUGAL_T_S(r2) ", %%zmm" FRUGAL_T_S(r2) "\n\t"       \
  "add %[ldc], %%rax\n\t"
// Stores one accumulator row to the C row at rax, then steps rax.
#define FRUGAL_T_STC(r0, r1, r2)                         \
  "vmovups %%zmm" FRUGAL_T_S(r0) ", (%%rax)\n\t"         \
  "vmovups %%zmm" FRUGAL_T_S(r1) ", 64(%%rax)\n\t"       \
  "vmovups %%zmm" FRUGAL_T_S(r2) ", 128(%%rax)\n\t"      \
  "add %[ldc], %%rax\n\t"
#define FRUGAL_T_ALL8(M) \
  M(0, 1, 2) M(3, 4, 5) M(6, 7, 8) M(9, 10, 11) M(12, 13, 14) M(15, 16, 17) M(18, 19, 20) M(21, 22, 23)
#define FRUGAL_T_CLOBBERS                                                                                \
  "rax", "rdx", "zmm0", "zmm1", "zmm2", "zmm3", "zmm4", "zmm5", "zmm6", "zmm7", "zmm8", "zmm9", "zmm10", \
  "zmm11", "zmm12", "zmm13", "zmm14", "zmm15", "zmm16", "zmm17", "zmm18", "zmm19", "zmm20", "zmm21",    \
  "zmm22", "zmm23", "zmm24", "zmm25", "zmm26", "zmm31", "cc", "memory"
// The whole call: zero the tile; per four k, the prefetch steps (B, A, B) and four k; the k left
// over one at a time; then C += tile (accumulate) or C = tile.
#define FRUGAL_T_KERNEL(KBODY, ADVANCE4, ADVANCE1)                       \
  FRUGAL_T_ALL8(FRUGAL_T_ZERO3)                                          \
  "test %[n4], %[n4]\n\t"                                                \
  "jz 2f\n\t"                                                            \
  "1:\n\t"                                                               \
  FRUGAL_T_PF("qb") FRUGAL_T_PF("qa") FRUGAL_T_PF("qb")                  \
  KBODY(0) KBODY(1) KBODY(2) KBODY(3)                                    \
  "add $768, %[b]\n\t" ADVANCE4                                          \
  "dec %[n4]\n\t"                                                        \
  "jnz 1b\n\t"                                                           \
  "2:\n\t"                                                               \
  "test %[n1], %[n1]\n\t"                                                \
  "jz 4f\n\t"                                                            \
  "3:\n\t"                                                               \
  KBODY(0) "add $192, %[b]\n\t" ADVANCE1                                 \
  "dec %[n1]\n\t"                                                        \
  "jnz 3b\n\t"                                                           \
  "4:\n\t"                                                               \
  "test %[acc], %[acc]\n\t"                                              \
  "jz 5f\n\t"                                                            \
  "mov %[c], %%rax\n\t" FRUGAL_T_ALL8(FRUGAL_T_ADDC)                     \
  "5:\n\t"                                                               \
  "mov %[c], %%rax\n\t" FRUGAL_T_ALL8(FRUGAL_T_STC)
// clang-format on

// C[8 x 48] (row stride ldc) = or += A[8 x kc] * B panel[kc x 48]. kACols: A k-major (a[k * 8 + r],
// lda = 8); else rows of A at stride lda floats.
template <bool kACols>
void full_tile(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, bool accumulate,
               PfStream* pa, PfStream* pb) {
  PfStream qa = *pa, qb = *pb;
  int64_t n4 = kc / 4, n1 = kc % 4;
  const int64_t ldcb = ldc * 4;
  const int64_t acc = accumulate ? 1 : 0;
  if constexpr (kACols) {
    asm volatile(FRUGAL_T_KERNEL(FRUGAL_T_KCOL, "add $128, %[a]\n\t", "add $32, %[a]\n\t")
                 : [a] "+r"(a), [b] "+r"(b), [n4] "+r"(n4), [n1] "+r"(n1)
                 : [c] "r"(c), [ldc] "r"(ldcb), [acc] "r"(acc), [qa] "r"(&qa), [qb] "r"(&qb)
                 : FRUGAL_T_CLOBBERS);
  } else {
    const float* a3 = a + 3 * lda;
    const float* a6 = a + 6 * lda;
    const int64_t ld = lda * 4;
    asm volatile(FRUGAL_T_KERNEL(FRUGAL_T_KROW, "add $16, %[a]\n\tadd $16, %[a3]\n\tadd $16, %[a6]\n\t",
                                 "add $4, %[a]\n\tadd $4, %[a3]\n\tadd $4, %[a6]\n\t")
                 : [a] "+r"(a), [a3] "+r"(a3), [a6] "+r"(a6), [b] "+r"(b), [n4] "+r"(n4), [n1] "+r"(n1)
                 : [c] "r"(c), [ldc] "r"(ldcb), [acc] "r"(acc), [ld] "r"(ld), [qa] "r"(&qa), [qb] "r"(&qb)
                 : FRUGAL_T_CLOBBERS);
  }
  *pa = qa;
  *pb = qb;
}

#undef FRUGAL_T_S
#undef FRUGAL_T_ROW
#undef FRUGAL_T_B
#undef FRUGAL_T_K
#undef FRUGAL_T_ACOL
#undef FRUGAL_T_KCOL
#undef FRUGAL_T_AROW
#undef FRUGAL_T_AROW_0
#undef FRUGAL_T_AROW_1
#undef FRUGAL_T_AROW_2
#undef FRUGAL_T_AROW_3
#undef FRUGAL_T_AROW_4
#undef FRUGAL_T_AROW_5
#undef FRUGAL_T_AROW_6
#undef FRUGAL_T_AROW_7
#undef FRUGAL_T_KROW
#undef FRUGAL_T_PF
#undef FRUGAL_T_ZERO3
#undef FRUGAL_T_ADDC
#undef FRUGAL_T_STC
#undef FRUGAL_T_ALL8
#undef FRUGAL_T_CLOBBERS
#undef FRUGAL_T_KERNEL
