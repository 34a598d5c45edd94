// Hand-written float32 GEMM (BLIS/GotoBLAS layout, row-major C), instantiated once per ISA by
// gemm_sgemm_avx512.cpp and gemm_sgemm_avx2.cpp. The includer switches the target ISA and defines,
// in namespace frugal::kernels::FRUGAL_SGEMM_NS, a struct `Vec` (one SIMD register of floats:
// R, W, zero, load, load_n, store, store_n, bcast, set1, fmadd, mul, add, hsum) and the tile shape
// kMR (rows) x kNV (vectors of W floats per row).
//
// Blocking: B is packed per [kc x nc] block (kBBlock floats, within a 1 MiB L2) into panels of kNV*W
// columns ([panel][k][NR], zero padded); each row panel of A (kMR rows x kc) is copied into an L1
// block and reused across the panels; the micro-kernel keeps a kMR x NR tile of C in registers and
// does one FMA per (row, vector) and k, broadcasting A. Edge rows are separate instantiations, edge
// columns use masked loads/stores of C. K blocks (KBlocks) are at most kKC; the first applies beta,
// the rest accumulate. While one block is multiplied, the micro-kernel prefetches the next B block and
// the next row panel of A into L2 (PfStream), since weights stream from memory on every inference.
// Two short cuts skip packing: a few rows with B not transposed read B in place, and a few rows with
// B transposed (fully connected layers at batch 1) run as dot products along K.
// Everything but sgemm_f32 has internal linkage, so no code built for this ISA can be merged into
// a generic caller.

namespace frugal::kernels::FRUGAL_SGEMM_NS {
namespace {

constexpr int W = Vec::W;
constexpr int NR = kNV * W;
constexpr int64_t kKC = 256;
// Floats of packed B per block (384 KiB): the block, the next one being prefetched and the row panels
// of A stay within a 1 MiB L2, and a BERT-base product split over two threads (384 columns of K
// blocks up to 256) is one column block, so each row panel of A is copied once per K block.
constexpr int64_t kBBlock = 96 * 1024;
constexpr int64_t kDotRows = 4;          // up to this many rows, transposed B runs as dot products
using VR = typename Vec::R;

struct Scratch {
  float* p = nullptr;
  size_t n = 0;
  ~Scratch() { std::free(p); }
};

// A per-thread 64-byte aligned buffer of at least n floats, reused across calls.
float* scratch(size_t n) {
  static thread_local Scratch s;
  if (s.n < n) {
    std::free(s.p);
    const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    s.p = static_cast<float*>(std::aligned_alloc(64, bytes));
    s.n = s.p ? n : 0;
  }
  return s.p;
}

// Software prefetches (into L2) of a strided region: rows of lpr cache lines, stride bytes apart. The
// caller hands each micro-kernel call a share (n) of the lines left, and the kernel issues them one at
// a time between its FMAs, so the next block of B (and the next row panel of A) arrive from memory
// while this one is multiplied instead of stalling the copies that read them.
struct PfStream {
  const char* p = nullptr;    // next line
  const char* row = nullptr;  // start of the current row
  int64_t left_row = 0, lpr = 0, stride = 0;
  int64_t left = 0;      // lines of the region not yet handed out
  int64_t per_call = 0;  // share per call
  int64_t n = 0;         // lines for the current call
  void init(const float* base, int64_t rows, int64_t ld, int64_t len, int64_t calls) {
    row = reinterpret_cast<const char*>(base);
    p = align(row);
    stride = ld * 4;
    lpr = (len * 4 + 63) / 64 + 1;  // one more: the row need not start on a line
    left_row = lpr;
    left = rows > 0 && len > 0 ? rows * lpr : 0;
    per_call = calls > 0 ? (left + calls - 1) / calls : 0;
    n = 0;
  }
  void none() { left = per_call = n = 0; }
  void hand_out() {
    n = left < per_call ? left : per_call;
    left -= n;
  }
  static const char* align(const char* q) {
    return reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(q) & ~uintptr_t{63});
  }
  inline void step() {
    __builtin_prefetch(p, 0, 2);
    --n;
    p += 64;
    if (--left_row == 0) {
      row += stride;
      p = align(row);
      left_row = lpr;
    }
  }
};

#ifdef FRUGAL_SGEMM_FULL_TILE
#include FRUGAL_SGEMM_FULL_TILE
#endif

// C tile [R x (NV-1)*W + last_n] = alpha * op(A)[R x kc] * Bpanel[kc x NV*W] + beta * C.
// A element (r, k) is a[r * lda + k] (rows) or a[k * lda + r] (kACols). B row k starts at b + k * bs;
// kBMask loads only the first last_n floats of B's last vector (B read in place, not padded).
// beta == 0 writes C without reading it. The n lines of pb are prefetched one every second step of k,
// those of pa one every fourth.
template <int R, int NV, bool kACols, bool kBMask>
inline void micro(int64_t kc, const float* __restrict a, int64_t lda, const float* __restrict b, int64_t bs,
                  int last_n, float* __restrict c, int64_t ldc, float alpha, float beta,
                  PfStream* pa, PfStream* pb) {
#ifdef FRUGAL_SGEMM_FULL_TILE
  // The ISA's hand-scheduled full tile (packed B, the usual alpha and beta), where it has one.
  if constexpr (R == kMR && NV == kNV && !kBMask)
    if (alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && bs == NR && last_n == W) {
      full_tile<kACols>(kc, a, lda, b, c, ldc, beta != 0.0f, pa, pb);
      return;
    }
#endif
  VR acc[R][NV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = Vec::zero();
  const float* ar[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) ar[r] = kACols ? a + r : a + r * lda;
  // One k: a row of B against a column of the A panel.
  auto one_k = [&](int64_t k) __attribute__((always_inline)) {
    VR bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      bv[v] = (kBMask && v == NV - 1) ? Vec::load_n(b + v * W, last_n) : Vec::load(b + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const VR av = Vec::bcast(kACols ? ar[r] + k * lda : ar[r] + k);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = Vec::fmadd(av, bv[v], acc[r][v]);
    }
    b += bs;
  };
  // Four k per step with the prefetches (two lines of pb, one of pa) issued once per step from
  // copies held in registers, so the loop carries no branches or memory updates per k.
  PfStream qa = *pa, qb = *pb;  // (pa and pb are distinct streams)
  int64_t k = 0;
  for (; k + 4 <= kc; k += 4) {
    if (qb.n > 0) qb.step();
    if (qa.n > 0) qa.step();
    if (qb.n > 0) qb.step();
    one_k(k);
    one_k(k + 1);
    one_k(k + 2);
    one_k(k + 3);
  }
  for (; k < kc; ++k) one_k(k);
  *pa = qa;
  *pb = qb;
  const VR va = Vec::set1(alpha), vb = Vec::set1(beta);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const bool last = v == NV - 1;
      VR x = acc[r][v];
      if (alpha != 1.0f) x = Vec::mul(x, va);
      if (beta != 0.0f) {
        const VR old = last ? Vec::load_n(cr + v * W, last_n) : Vec::load(cr + v * W);
        x = beta == 1.0f ? Vec::add(x, old) : Vec::fmadd(vb, old, x);
      }
      if (last)
        Vec::store_n(cr + v * W, x, last_n);
      else
        Vec::store(cr + v * W, x);
    }
  }
}

using MicroFn = void (*)(int64_t, const float*, int64_t, const float*, int64_t, int, float*, int64_t, float, float,
                         PfStream*, PfStream*);

template <int R, bool kACols, bool kBMask>
MicroFn pick_nv(int nv) {
  if constexpr (kNV >= 4)
    if (nv == 4) return &micro<R, 4, kACols, kBMask>;
  if constexpr (kNV >= 3)
    if (nv == 3) return &micro<R, 3, kACols, kBMask>;
  if (nv == 2) return &micro<R, 2, kACols, kBMask>;
  return &micro<R, 1, kACols, kBMask>;
}

template <bool kACols, bool kBMask>
MicroFn pick(int rows, int nv) {
  static_assert(kMR <= 14, "row cases below go up to 14");
  switch (rows) {
#define FRUGAL_SGEMM_ROW(n) \
  case n:                   \
    if constexpr (kMR >= n) return pick_nv<n, kACols, kBMask>(nv);
    FRUGAL_SGEMM_ROW(14)
    FRUGAL_SGEMM_ROW(13)
    FRUGAL_SGEMM_ROW(12)
    FRUGAL_SGEMM_ROW(11)
    FRUGAL_SGEMM_ROW(10)
    FRUGAL_SGEMM_ROW(9)
    FRUGAL_SGEMM_ROW(8)
    FRUGAL_SGEMM_ROW(7)
    FRUGAL_SGEMM_ROW(6)
    FRUGAL_SGEMM_ROW(5)
    FRUGAL_SGEMM_ROW(4)
    FRUGAL_SGEMM_ROW(3)
    FRUGAL_SGEMM_ROW(2)
#undef FRUGAL_SGEMM_ROW
    default:
      return pick_nv<1, kACols, kBMask>(nv);
  }
}

MicroFn pick_micro(bool a_cols, bool b_mask, int rows, int nv) {
  if (a_cols) return b_mask ? pick<true, true>(rows, nv) : pick<true, false>(rows, nv);
  return b_mask ? pick<false, true>(rows, nv) : pick<false, false>(rows, nv);
}

// Width of the column panel starting at jr of a block of nc columns: NR, the last one what is left.
// (Splitting a last one-vector panel and the full one before it as 2 + 2 vectors measured slower.)
inline int64_t panel_w(int64_t nc, int64_t jr) { return nc - jr < NR ? nc - jr : NR; }

// One column panel of pack_b (w <= NR columns starting at row jb0 of B stored [N, K], k0 .. k0+kc) in
// 16 x 16 blocks transposed in registers, columns past w zero, where the ISA's Vec has transpose16;
// false (nothing done) otherwise.
template <class V>
bool pack_panel_t16(const float* B, int64_t ldb, int64_t k0, int64_t kc, int64_t jb0, int64_t w, float* d) {
  if constexpr (requires(const float* s, float* t) { V::transpose16(s, int64_t{}, 0, 0, t, int64_t{}); }) {
    static_assert(V::W == 16 && NR % 16 == 0, "transpose16 packs whole 16-float vectors");
    const int64_t wp = (w + 15) / 16 * 16;
    for (int64_t jb = 0; jb < wp; jb += 16) {
      const int rows = static_cast<int>(w - jb < 16 ? w - jb : 16);
      for (int64_t kb = 0; kb < kc; kb += 16)
        V::transpose16(B + (jb0 + jb) * ldb + k0 + kb, ldb, rows, static_cast<int>(kc - kb < 16 ? kc - kb : 16),
                       d + kb * NR + jb, NR);
    }
    return true;
  }
  return false;
}

// Packs op(B)[k0:k0+kc, j0:j0+nc] into column panels (see panel_w): panel p holds rows k at
// dst + p*kc*NR + k*NR, its columns past the panel's width (up to the next multiple of W) zeroed.
void pack_b(bool tb, const float* B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  if (!tb) {
    // Row by row, so B is read along its rows (what the hardware prefetchers follow).
    for (int64_t k = 0; k < kc; ++k) {
      const float* sk = B + (k0 + k) * ldb + j0;
      float* dk = dst + k * NR;
      int64_t p = 0;
      for (int64_t jr = 0, w = 0; jr < nc; jr += w, ++p) {
        w = panel_w(nc, jr);
        float* d = dk + p * kc * NR;
        const float* sj = sk + jr;
        if (w == NR) {
#pragma GCC unroll 4
          for (int v = 0; v < kNV; ++v) Vec::store(d + v * W, Vec::load(sj + v * W));
        } else {
          for (int64_t v = 0; v * W < w; ++v) {
            const int64_t n = w - v * W;
            Vec::store(d + v * W, n >= W ? Vec::load(sj + v * W) : Vec::load_n(sj + v * W, static_cast<int>(n)));
          }
        }
      }
    }
    return;
  }
  int64_t p = 0;
  for (int64_t jr = 0, w = 0; jr < nc; jr += w, ++p) {
    w = panel_w(nc, jr);
    const int64_t wp = (w + W - 1) / W * W;
    float* d = dst + p * kc * NR;
    if (pack_panel_t16<Vec>(B, ldb, k0, kc, j0 + jr, w, d)) continue;
    // B stored [N, K]: column j of op(B) is row j0 + jr + j of B, read along K.
    for (int64_t j = 0; j < w; ++j) {
      const float* sj = B + (j0 + jr + j) * ldb + k0;
      for (int64_t k = 0; k < kc; ++k) d[k * NR + j] = sj[k];
    }
    if (wp > w)
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t j = w; j < wp; ++j) d[k * NR + j] = 0.0f;
  }
}

// C row-block of at most a few rows with B [N, K] (transposed): each C value is a dot product along K.
void dot_rows(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
              int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t kfull = K / W * W;
  const int tail = static_cast<int>(K - kfull);
  for (int64_t i = 0; i < M; ++i) {
    const float* a = A + i * lda;
    float* c = C + i * ldc;
    int64_t j = 0;
    auto finish = [&](int64_t jj, float s) {
      s *= alpha;
      c[jj] = beta == 0.0f ? s : s + beta * c[jj];
    };
    for (; j + 4 <= N; j += 4) {
      const float* b0 = B + j * ldb;
      const float* b1 = b0 + ldb;
      const float* b2 = b1 + ldb;
      const float* b3 = b2 + ldb;
      VR s0 = Vec::zero(), s1 = Vec::zero(), s2 = Vec::zero(), s3 = Vec::zero();
      for (int64_t k = 0; k < kfull; k += W) {
        const VR av = Vec::load(a + k);
        s0 = Vec::fmadd(av, Vec::load(b0 + k), s0);
        s1 = Vec::fmadd(av, Vec::load(b1 + k), s1);
        s2 = Vec::fmadd(av, Vec::load(b2 + k), s2);
        s3 = Vec::fmadd(av, Vec::load(b3 + k), s3);
      }
      if (tail) {
        const VR av = Vec::load_n(a + kfull, tail);
        s0 = Vec::fmadd(av, Vec::load_n(b0 + kfull, tail), s0);
        s1 = Vec::fmadd(av, Vec::load_n(b1 + kfull, tail), s1);
        s2 = Vec::fmadd(av, Vec::load_n(b2 + kfull, tail), s2);
        s3 = Vec::fmadd(av, Vec::load_n(b3 + kfull, tail), s3);
      }
      finish(j, Vec::hsum(s0));
      finish(j + 1, Vec::hsum(s1));
      finish(j + 2, Vec::hsum(s2));
      finish(j + 3, Vec::hsum(s3));
    }
    for (; j < N; ++j) {
      const float* b0 = B + j * ldb;
      VR s0 = Vec::zero();
      for (int64_t k = 0; k < kfull; k += W) s0 = Vec::fmadd(Vec::load(a + k), Vec::load(b0 + k), s0);
      if (tail) s0 = Vec::fmadd(Vec::load_n(a + kfull, tail), Vec::load_n(b0 + kfull, tail), s0);
      finish(j, Vec::hsum(s0));
    }
  }
}

// Copies rows x kc of op(A) (row panel at a) into buf so that the micro-kernel reads it from one hot,
// unaliased block: rows kept as rows with a stride of kc rounded up plus 16 floats (a stride that is a
// multiple of 4 KiB would put every row in the same L1 sets), or, for A stored transposed, the kMR
// values of each k side by side. Returns the stride the micro-kernel then uses.
int64_t copy_a(bool ta, int rows, int64_t kc, const float* a, int64_t lda, float* buf) {
  if (ta) {
    for (int64_t k = 0; k < kc; ++k) Vec::store_n(buf + k * kMR, Vec::load_n(a + k * lda, rows), rows);
    return kMR;
  }
  const int64_t ld = (kc + W - 1) / W * W + 16;
  const int64_t full = kc / W * W;
  const int tail = static_cast<int>(kc - full);
  for (int r = 0; r < rows; ++r) {
    const float* s = a + r * lda;
    float* d = buf + r * ld;
    for (int64_t k = 0; k < full; k += W) Vec::store(d + k, Vec::load(s + k));
    if (tail) Vec::store_n(d + full, Vec::load_n(s + full, tail), tail);
  }
  return ld;
}

// Row panels [0, M) x columns [0, nc) of C against B read from bp (panels of NR columns with row
// stride bs, or B in place with bs = ldb when b_direct); pf (may be null) is the next block of B to
// prefetch. With packed B (kc <= kKC) each row panel of A is first copied by copy_a, and the next one
// prefetched during this one's sweep.
void sweep(bool ta, bool b_direct, int64_t M, int64_t kc, const float* A, int64_t lda, const float* bp,
           int64_t bs, int64_t nc, float alpha, float beta, float* C, int64_t ldc, PfStream* pf) {
  static_assert(kMR <= W, "copy_a moves one row panel column per vector");
  alignas(64) float abuf[kMR * (kKC + 16)];
  const int64_t panels = (nc + NR - 1) / NR;
  PfStream pa, none;
  if (!pf) pf = &none;
  for (int64_t ir = 0; ir < M; ir += kMR) {
    const int rows = static_cast<int>(M - ir < kMR ? M - ir : kMR);
    const float* a = ta ? A + ir : A + ir * lda;
    int64_t la = lda;
    pa.none();
    if (!b_direct) {
      la = copy_a(ta, rows, kc, a, lda, abuf);
      a = abuf;
      const int64_t next = ir + kMR, next_rows = M - next < kMR ? M - next : kMR;
      if (next_rows > 0) {
        if (ta)
          pa.init(A + next, kc, lda, next_rows, panels);
        else
          pa.init(A + next * lda, next_rows, lda, kc, panels);
      }
    }
    int64_t p = 0;
    for (int64_t jr = 0, w = 0; jr < nc; jr += w, ++p) {
      w = panel_w(nc, jr);
      const int nv = static_cast<int>((w + W - 1) / W);
      const int last_n = static_cast<int>(w - (nv - 1) * W);
      const float* b = b_direct ? bp + jr : bp + p * kc * NR;
      pa.hand_out();
      pf->hand_out();
      pick_micro(ta, b_direct, rows, nv)(kc, a, la, b, bs, last_n, C + ir * ldc + jr, ldc, alpha, beta, &pa, pf);
    }
  }
}

// The K blocks of a packed product. With more than a few blocks, the first ones ramp up (32, 64, 128
// rows of B): the first block is packed before any multiply can overlap its loads from memory, and
// each later block is prefetched while the one before it is multiplied, so a small first block and
// doubling sizes keep B arriving in time. The rest of K is split evenly in blocks of at most kKC.
struct KBlocks {
  static constexpr int64_t kRampEnd = 32 + 64 + 128;
  int64_t K, ramp_end, kc_rest, kc_max;
  // ramp: only worth its extra passes over C when the blocks of B are wide (many columns to fetch).
  KBlocks(int64_t k, bool ramp) : K(k) {
    ramp_end = ramp && K >= kRampEnd + kKC ? kRampEnd : 0;
    const int64_t rest = K - ramp_end, blocks = (rest + kKC - 1) / kKC;
    kc_rest = (rest + blocks - 1) / blocks;
    kc_max = kc_rest > 128 || ramp_end == 0 ? kc_rest : 128;
  }
  // Size of the block starting at pc (a block start).
  int64_t size(int64_t pc) const {
    if (pc < ramp_end) return pc + 32;  // 32, 64, 128 at 0, 32, 96
    return K - pc < kc_rest ? K - pc : kc_rest;
  }
};

// Copies rows x kc of A (rows at stride lda) as [k][kMR] (d[k * kMR + r]), what copy_a does for
// transposed A. An ISA whose Vec has pack_kmajor8 (gathers) does full 8-row panels with it.
template <class V>
void pack_a_kmajor(int rows, int64_t kc, const float* a, int64_t lda, float* d) {
  if constexpr (requires(const float* s, float* t) { V::pack_kmajor8(s, int64_t{}, int64_t{}, t); }) {
    if (kMR == 8 && rows == 8 && lda < (int64_t{1} << 28)) {
      V::pack_kmajor8(a, lda, kc, d);
      return;
    }
  }
  for (int r = 0; r < rows; ++r)
    for (int64_t k = 0; k < kc; ++k) d[k * kMR + r] = a[r * lda + k];
}

// Wide products (N >= 4 M, K >= kWideMinK: a transformer's projections at a few hundred tokens, the
// early convolutions): the other loop order. Per K block of at most kKC1, A is packed once into row
// panels of kMR values per k ([panel][k][kMR], up to kMC rows, in L2); each column panel of B (kc x NR,
// 30 KiB at kc = 160) is packed into an L1-resident buffer and every row panel of A streams past
// it. Per k the micro-kernel then reads kMR floats of A from L2
// instead of NR floats of B (48 against 8), and the next panel of B is prefetched from memory while
// this one is used. Measured against the blocked order on one thread: +3-11% on BERT-base and
// resnet50 stage-2 shapes, no gain where N or K is small (docs/BENCHMARKS.md).
constexpr int64_t kKC1 = 160, kMC = 256, kWideMinK = 256;

bool sgemm_wide(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t kblocks = (K + kKC1 - 1) / kKC1, kcm = (K + kblocks - 1) / kblocks;
  const int64_t mc_max = M < kMC ? M : kMC, apanels_max = (mc_max + kMR - 1) / kMR;
  float* abuf = scratch(static_cast<size_t>(apanels_max * kMR * kcm + kcm * NR + 16));
  if (!abuf) return false;
  float* bbuf = abuf + apanels_max * kMR * kcm;
  bbuf = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(bbuf) + 63) & ~uintptr_t{63});
  PfStream pf, none, no_a;
  for (int64_t pc = 0; pc < K; pc += kcm) {
    const int64_t kc = K - pc < kcm ? K - pc : kcm;
    const float be = pc == 0 ? beta : 1.0f;
    for (int64_t ic = 0; ic < M; ic += kMC) {
      const int64_t mc = M - ic < kMC ? M - ic : kMC;
      const int64_t panels = (mc + kMR - 1) / kMR;
      for (int64_t p = 0; p < panels; ++p) {
        const int rows = static_cast<int>(mc - p * kMR < kMR ? mc - p * kMR : kMR);
        float* d = abuf + p * kMR * kc;
        if (ta) {
          copy_a(true, rows, kc, A + pc * lda + ic + p * kMR, lda, d);  // already [k][kMR]
        } else {
          pack_a_kmajor<Vec>(rows, kc, A + (ic + p * kMR) * lda + pc, lda, d);
        }
      }
      for (int64_t jr = 0; jr < N; jr += NR) {
        const int64_t w = N - jr < NR ? N - jr : NR;
        pack_b(tb, B, ldb, pc, kc, jr, w, bbuf);
        const int nv = static_cast<int>((w + W - 1) / W);
        const int last_n = static_cast<int>(w - (nv - 1) * W);
        PfStream* next = &none;
        if (jr + NR < N) {
          const int64_t nw = N - jr - NR < NR ? N - jr - NR : NR;
          if (tb)
            pf.init(B + (jr + NR) * ldb + pc, nw, ldb, kc, panels);
          else
            pf.init(B + pc * ldb + jr + NR, kc, ldb, nw, panels);
          next = &pf;
        }
        for (int64_t p = 0; p < panels; ++p) {
          const int rows = static_cast<int>(mc - p * kMR < kMR ? mc - p * kMR : kMR);
          next->hand_out();
          pick_micro(true, false, rows, nv)(kc, abuf + p * kMR * kc, kMR, bbuf, NR, last_n,
                                            C + (ic + p * kMR) * ldc + jr, ldc, alpha, be, &no_a, next);
        }
      }
    }
  }
  return true;
}

}  // namespace

// C = alpha * op(A) op(B) + beta * C for one thread's block (see gemm.h). Returns false only when the
// packing buffer cannot be allocated (the caller then falls back to another implementation).
bool sgemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return true;
  if (K <= 0) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return true;
  }
  if (tb && !ta && M <= kDotRows) {
    dot_rows(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return true;
  }
  if (!tb && M <= kMR) {
    // One row panel: each B value is used once, so packing it would only add a copy.
    sweep(ta, true, M, K, A, lda, B, ldb, N, alpha, beta, C, ldc, nullptr);
    return true;
  }
  if (N >= 4 * M && K >= kWideMinK) return sgemm_wide(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  const KBlocks kb(K, N >= 4 * NR);
  // Column blocks: as wide as kBBlock allows, then evened out over N in whole panels.
  int64_t ncb = kBBlock / kb.kc_max / NR * NR;
  if (ncb < NR) ncb = NR;
  const int64_t nblocks = (N + ncb - 1) / ncb;
  ncb = ((N + nblocks - 1) / nblocks + NR - 1) / NR * NR;
  float* buf = scratch(static_cast<size_t>(kb.kc_max * ncb));
  if (!buf) return false;
  const int64_t row_panels = (M + kMR - 1) / kMR;
  PfStream pf;
  for (int64_t jc = 0; jc < N; jc += ncb) {
    const int64_t nc = N - jc < ncb ? N - jc : ncb;
    for (int64_t pc = 0; pc < K;) {
      const int64_t kc = kb.size(pc);
      // The block after this one: the next K block of these columns, else the first of the next columns.
      int64_t nj = jc, np = pc + kc;
      if (np >= K) {
        nj = jc + ncb;
        np = 0;
      }
      PfStream* p = nullptr;
      const int64_t calls = row_panels * ((nc + NR - 1) / NR);
      if (nj < N) {
        const int64_t nnc = N - nj < ncb ? N - nj : ncb, nkc = kb.size(np);
        if (tb)
          pf.init(B + nj * ldb + np, nnc, ldb, nkc, calls);
        else
          pf.init(B + np * ldb + nj, nkc, ldb, nnc, calls);
        p = &pf;
      }
      const float* a = ta ? A + pc * lda : A + pc;
      pack_b(tb, B, ldb, pc, kc, jc, nc, buf);
      sweep(ta, false, M, kc, a, lda, buf, NR, nc, alpha, pc == 0 ? beta : 1.0f, C + jc, ldc, p);
      pc += kc;
    }
  }
  return true;
}

}  // namespace frugal::kernels::FRUGAL_SGEMM_NS
