// Conv, ConvTranspose, ConvInteger, QLinearConv for 1-D..3-D inputs.
//   * a 1x1 stride-1 unpadded convolution is one GEMM per group and image on the input as it is;
//   * other convolutions build im2col columns in a reused per-thread scratch buffer, then GEMM
//     (1-D/2-D windows: per tap, one copy per output row or per small plane, see im2col_row_2d);
//   * one input channel per group (depthwise, channel multipliers) runs as a direct loop over
//     output planes, parallel over N * M, vectorisable along the output row;
//   * ConvTranspose is a GEMM (W^T X) followed by col2im accumulation, parallel over output channels.
// Integer convolutions subtract zero points while widening to int32 (so padding contributes exactly
// 0) and use the exact int32 GEMM; QLinearConv requantizes per output channel with quant_math.h.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "conv_geom.h"
#include "families.h"
#include "frugal/parallel.h"
#include "gemm.h"
#include "gemm_epilogue.h"
#include "gemm_util.h"
#include "kernel_util.h"

namespace frugal::kernels {

namespace {

template <typename T>
void gemm_nn(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
             int64_t ldc) {
  if constexpr (std::is_same_v<T, int32_t>)
    gemm_s32(M, N, K, A, lda, B, ldb, C, ldc);
  else
    gemm(false, false, M, N, K, T(1), A, lda, B, ldb, T(0), C, ldc);
}

// y[n, m, ...] = act(y[n, m, ...] + bias[m]) over every output plane, in one pass (bias may be null).
template <typename T>
void add_bias(T* y, const T* bias, int64_t N, int64_t M, int64_t plane, Activation act = Activation::kNone) {
  if (!bias && act == Activation::kNone) return;
  parallel_for(N * M, std::max<int64_t>(1, 65536 / std::max<int64_t>(plane, 1)), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const T b = bias ? bias[p % M] : T(0);
      T* yp = y + p * plane;
      if constexpr (std::is_same_v<T, float>) {
        bias_act_run(yp, plane, b, act);
      } else {
        for (int64_t i = 0; i < plane; ++i) {
          T v = yp[i] + b;
          if (act == Activation::kRelu) v = relu_value(v);
          if (act == Activation::kGelu) v = static_cast<T>(gelu_erf(static_cast<float>(v)));
          yp[i] = v;
        }
      }
    }
  });
}

// Adds R window rows x KW column taps of a single-channel convolution to output row yr over the
// columns [a, b), where every one of those taps is inside its input row (xr[r] + ow * sw + off[i]):
// one pass with R * KW multiply-adds per output value, vectorised along the row.
template <typename T, int R, int KW>
FRUGAL_INLINE void channelwise_pass(T* __restrict yr, const T* const* xr, const T* const* wr, int64_t a, int64_t b,
                                    int64_t sw, const int64_t* off) {
  T w[R][KW];
  const T* x[R][KW];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int i = 0; i < KW; ++i) {
      w[r][i] = wr[r][i];
      x[r][i] = xr[r] + off[i];
    }
  auto run = [&](auto stride) __attribute__((always_inline)) {
    for (int64_t ow = a; ow < b; ++ow) {
      T s = yr[ow];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int i = 0; i < KW; ++i) s += w[r][i] * x[r][i][ow * stride];
      yr[ow] = s;
    }
  };
  if (sw == 1)
    run(std::integral_constant<int64_t, 1>{});
  else if (sw == 2)
    run(std::integral_constant<int64_t, 2>{});
  else
    run(sw);
}

// Stride-1 2-D planes with a K x K window: the input plane is copied with its zero padding into a
// scratch plane of row width PW, where output (oh, ow) at flat index i = oh * PW + ow reads
// xpad[i + off[t]] for every tap t; one flat pass over all outputs (the PW - OW columns between rows
// computed and dropped) then needs no edge cases and no vector remainder per row.
template <typename T, int K>
FRUGAL_INLINE void channelwise_padded(const Geom& g, const T* __restrict xp, const T* __restrict wm, T bias,
                                      T* __restrict yp) {
  const int64_t OH = g.out[1], OW = g.out[2], IH = g.in[1], IW = g.in[2];
  const int64_t dh = g.d[1], dw = g.d[2];
  const int64_t PW = OW + (K - 1) * dw, PH = OH + (K - 1) * dh;
  T* pad = scratch_buffer<T>(static_cast<size_t>(PH * PW + OH * PW), 1);
  T* ys = pad + PH * PW;
  // Input row ih lands at padded row ih + pt, columns from pl; everything else is zero.
  const int64_t pt = g.pb[1], pl = g.pb[2];
  for (int64_t r = 0; r < PH; ++r) {
    T* dr = pad + r * PW;
    const int64_t ih = r - pt;
    if (ih < 0 || ih >= IH) {
      std::fill(dr, dr + PW, T(0));
      continue;
    }
    const int64_t c0 = std::clamp<int64_t>(pl, 0, PW), c1 = std::clamp<int64_t>(pl + IW, c0, PW);
    std::fill(dr, dr + c0, T(0));
    std::copy(xp + ih * IW + (c0 - pl), xp + ih * IW + (c1 - pl), dr + c0);
    std::fill(dr + c1, dr + PW, T(0));
  }
  T w[K * K];
  const T* x[K * K];
#pragma GCC unroll 64
  for (int kh = 0; kh < K; ++kh)
#pragma GCC unroll 8
    for (int kw = 0; kw < K; ++kw) {
      w[kh * K + kw] = wm[kh * K + kw];
      x[kh * K + kw] = pad + kh * dh * PW + kw * dw;
    }
  const int64_t n = (OH - 1) * PW + OW;
  for (int64_t i = 0; i < n; ++i) {
    T s = bias;
#pragma GCC unroll 64
    for (int t = 0; t < K * K; ++t) s += w[t] * x[t][i];
    ys[i] = s;
  }
  for (int64_t oh = 0; oh < OH; ++oh) std::copy(ys + oh * PW, ys + oh * PW + OW, yp + oh * OW);
}

// One output plane of a convolution with a single input channel. Per output row: over the columns
// where every column tap is inside the input (all but a few at the edges), the window's valid rows
// go in one pass (3 x 3 and 5 x 5 with all rows valid) or one pass per row (3, 5 or 7 taps wide);
// the edge columns, and other window widths, go tap by tap along the row. Stride-1 2-D planes with
// a 3 x 3, 5 x 5 or 7 x 7 window go through a padded copy instead (channelwise_padded): on small
// planes (MobileNet's 28 x 28 down to 7 x 7) the per-row edges and vector remainders cost more than
// the taps.
template <typename T>
FRUGAL_INLINE void channelwise_plane(const Geom& g, const T* __restrict xp, const T* __restrict wm, T bias,
                                     T* __restrict yp) {
  const int64_t OD = g.out[0], OH = g.out[1], OW = g.out[2], ID = g.in[0];
  const int64_t sw = g.s[2];
  if (OD == 1 && ID == 1 && g.k[0] == 1 && g.pb[0] == 0 && sw == 1 && g.s[1] == 1 && g.k[1] == g.k[2]) {
    if (g.k[2] == 3) return channelwise_padded<T, 3>(g, xp, wm, bias, yp);
    if (g.k[2] == 5) return channelwise_padded<T, 5>(g, xp, wm, bias, yp);
    if (g.k[2] == 7) return channelwise_padded<T, 7>(g, xp, wm, bias, yp);
  }
  std::fill(yp, yp + OD * OH * OW, bias);
  constexpr int64_t kTaps = 64;
  const ColTaps ct(g);
  const int64_t* woff = ct.off;
  int64_t clo = 0, chi = OW;  // columns where every column tap is inside
  for (int64_t kw = 0; kw < ct.n; ++kw) {
    clo = std::max(clo, ct.lo[kw]);
    chi = std::min(chi, ct.hi[kw]);
  }
  const int64_t k2 = g.k[2];
  const bool passes = ct.n == k2 && (k2 == 3 || k2 == 5 || k2 == 7) && chi > clo && g.k[0] * g.k[1] <= kTaps;
  if (!passes) clo = chi = 0;
  const T* rows[kTaps];
  const T* wrows[kTaps];
  // Output row oh (of depth od), added to what the row holds; the passes take columns [clo, chi).
  auto do_row = [&](int64_t od, int64_t oh) __attribute__((always_inline)) {
    T* yr = yp + (od * OH + oh) * OW;
    int64_t nr = 0;
    for_each_window_row(g, od, oh, [&](int64_t wrow, int64_t roff, int64_t, int64_t) __attribute__((always_inline)) {
      const T* xr = xp + roff;
      const T* wr = wm + wrow * g.k[2];
      if (nr < kTaps) rows[nr] = xr, wrows[nr] = wr, ++nr;
      for (int64_t kw = 0; kw < g.k[2]; ++kw) {
        int64_t off = 0, l = 0, h = 0;
        ct.get(kw, off, l, h);
        const T wv = wr[kw];
        // The tap over [l, h) minus the passes' columns [clo, chi).
        auto span = [&](int64_t s0, int64_t s1) __attribute__((always_inline)) {
          if (sw == 1) {
            for (int64_t ow = s0; ow < s1; ++ow) yr[ow] += wv * xr[ow + off];
          } else {
            for (int64_t ow = s0; ow < s1; ++ow) yr[ow] += wv * xr[ow * sw + off];
          }
        };
        if (chi > clo) {
          span(l, std::min(h, clo));
          span(std::max(l, chi), h);
        } else {
          span(l, h);
        }
      }
    });
    if (chi <= clo) return;
    if (nr == 3 && k2 == 3) {
      channelwise_pass<T, 3, 3>(yr, rows, wrows, clo, chi, sw, woff);
    } else if (nr == 5 && k2 == 5) {
      channelwise_pass<T, 5, 5>(yr, rows, wrows, clo, chi, sw, woff);
    } else {
      for (int64_t r = 0; r < nr; ++r) {
        if (k2 == 3)
          channelwise_pass<T, 1, 3>(yr, rows + r, wrows + r, clo, chi, sw, woff);
        else if (k2 == 5)
          channelwise_pass<T, 1, 5>(yr, rows + r, wrows + r, clo, chi, sw, woff);
        else
          channelwise_pass<T, 1, 7>(yr, rows + r, wrows + r, clo, chi, sw, woff);
      }
    }
  };
  for (int64_t od = 0; od < OD; ++od)
    for (int64_t oh = 0; oh < OH; ++oh) do_row(od, oh);
}

FRUGAL_CLONES void channelwise_plane_f32(const Geom& g, const float* xp, const float* wm, float bias, float* yp) {
  channelwise_plane<float>(g, xp, wm, bias, yp);
}

// Convolution with one input channel per group: output plane (n, m) reads input plane (n, m / Mg).
template <typename T>
void conv_channelwise(const Geom& g, int64_t N, int64_t C, int64_t M, const T* x, const T* w, const T* bias,
                      T* y) {
  const int64_t Mg = M / C, kvol = g.kvol(), isz = g.in_size(), osz = g.out_size();
  parallel_for(N * M, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / M, m = p % M;
      const T* xp = x + (n * C + m / Mg) * isz;
      const T b = bias ? bias[m] : T(0);
      if constexpr (std::is_same_v<T, float>)
        channelwise_plane_f32(g, xp, w + m * kvol, b, y + p * osz);
      else
        channelwise_plane<T>(g, xp, w + m * kvol, b, y + p * osz);
    }
  });
}

// Where tap (kh, kw) of a 2-D (or 1-D) window reads: output rows [hlo, hhi) and columns [lo, hi)
// fall inside the input (all empty when none does), at input offset (oh * sh + hoff, ow * sw + woff).
struct Tap2d {
  int64_t hlo = 0, hhi = 0, lo = 0, hi = 0, hoff = 0, woff = 0;
};

inline Tap2d tap_2d(const Geom& g, int64_t kk) {
  Tap2d t;
  t.hoff = kk / g.k[2] * g.d[1] - g.pb[1];
  t.woff = kk % g.k[2] * g.d[2] - g.pb[2];
  valid_range(t.hoff, g.s[1], g.in[1], g.out[1], t.hlo, t.hhi);
  valid_range(t.woff, g.s[2], g.in[2], g.out[2], t.lo, t.hi);
  if (t.hi <= t.lo || t.hhi <= t.hlo) t.hlo = t.hhi = t.lo = t.hi = 0;
  return t;
}

// Output positions of a band of output rows [oh0, oh1) of a 2-D plane; oh1 < 0: the whole plane.
inline int64_t band_size(const Geom& g, int64_t oh0, int64_t oh1) {
  return oh1 < 0 ? g.out_size() : (oh1 - oh0) * g.out[2];
}

// One im2col row: tap t of channel plane xc [IH, IW] for every output position, out-of-range taps 0.
// With stride 1, output rows as wide as input rows (same padding) and a small plane, the valid output
// rows are one contiguous run of the plane, copied at once, after which the pad columns it crossed
// are zeroed; otherwise row by row (stride 2 as its own loop so that it vectorises).
// Only output rows [oh0, oh1) when given (a band of the plane, dst then holds band_size values).
template <typename T>
FRUGAL_INLINE void im2col_row_2d(const T* __restrict xc, const Geom& g, const Tap2d& t, T* __restrict dst,
                                 int64_t oh0 = 0, int64_t oh1 = -1) {
  const int64_t OW = g.out[2], IW = g.in[2], sw = g.s[2];
  const bool whole = oh0 == 0 && (oh1 < 0 || oh1 == g.out[1]);
  const int64_t OH = oh1 < 0 ? g.out[1] : oh1;
  const int64_t hlo = std::clamp(t.hlo, oh0, OH), hhi = std::clamp(t.hhi, oh0, OH), lo = t.lo, hi = t.hi;
  auto row = [&](int64_t oh) { return dst + (oh - oh0) * OW; };  // output row oh of the plane
  if (hhi <= hlo) {
    std::fill(dst, row(OH), T(0));
    return;
  }
  std::fill(dst, row(hlo), T(0));
  std::fill(row(hhi), row(OH), T(0));
  if (whole && sw == 1 && g.s[1] == 1 && OW == IW && OH * OW * static_cast<int64_t>(sizeof(T)) <= 2048) {
    // dst[oh * OW + ow] = xc[(oh + hoff) * IW + ow + woff]: from (hlo, lo) to (hhi - 1, hi - 1) this
    // is one run of the plane; its elements outside [lo, hi) of each row are pads, zeroed after.
    // Only for small planes (resnet's 14 x 14 and 7 x 7, where it measured 10-20% faster than the
    // rows): on 28 x 28 and 56 x 56 planes the long copies measured 10-40% slower than the rows.
    const int64_t b = hlo * OW + lo, e = (hhi - 1) * OW + hi;
    std::memcpy(dst + b, xc + (hlo + t.hoff) * IW + lo + t.woff, static_cast<size_t>(e - b) * sizeof(T));
    if (lo > 0 || hi < OW)
      for (int64_t oh = hlo; oh < hhi; ++oh) {
        T* d = dst + oh * OW;
        for (int64_t ow = 0; ow < lo; ++ow) d[ow] = T(0);
        for (int64_t ow = hi; ow < OW; ++ow) d[ow] = T(0);
      }
    return;
  }
  for (int64_t oh = hlo; oh < hhi; ++oh) {
    T* d = row(oh);
    const T* xr = xc + (oh * g.s[1] + t.hoff) * IW + t.woff;
    for (int64_t ow = 0; ow < lo; ++ow) d[ow] = T(0);
    if (sw == 1) {
      std::memcpy(d + lo, xr + lo, static_cast<size_t>(hi - lo) * sizeof(T));
    } else if (sw == 2) {
      for (int64_t ow = lo; ow < hi; ++ow) d[ow] = xr[2 * ow];
    } else {
      for (int64_t ow = lo; ow < hi; ++ow) d[ow] = xr[ow * sw];
    }
    for (int64_t ow = hi; ow < OW; ++ow) d[ow] = T(0);
  }
}

// Rows [r0, r1) of the 2-D im2col matrix (row = (c, kh, kw), as im2col in conv_geom.h). The taps of
// windows up to 8 x 8 are worked out once per chunk, not per row: with small planes (7 x 7) the
// integer divisions behind them cost as much as the copies.
// With a band [oh0, oh1) of output rows, only those (rows of col (oh1 - oh0) * OW long).
template <typename T>
FRUGAL_INLINE void im2col_rows_2d(const T* x, const Geom& g, int64_t r0, int64_t r1, T* col, int64_t oh0 = 0,
                                  int64_t oh1 = -1) {
  constexpr int64_t kMaxTaps = 64;
  const int64_t kvol = g.kvol(), isz = g.in_size(), osz = band_size(g, oh0, oh1);
  Tap2d taps[kMaxTaps];
  const bool table = kvol <= kMaxTaps && r1 - r0 >= kvol;
  if (table)
    for (int64_t i = 0; i < kvol; ++i) taps[i] = tap_2d(g, i);
  int64_t c = r0 / kvol, kk = r0 % kvol;
  for (int64_t r = r0; r < r1; ++r, ++kk) {
    if (kk == kvol) kk = 0, ++c;
    im2col_row_2d<T>(x + c * isz, g, table ? taps[kk] : tap_2d(g, kk), col + (r - r0) * osz, oh0, oh1);
  }
}

FRUGAL_CLONES void im2col_rows_2d_f32(const float* x, const Geom& g, int64_t r0, int64_t r1, float* col, int64_t oh0,
                                      int64_t oh1) {
  im2col_rows_2d<float>(x, g, r0, r1, col, oh0, oh1);
}

// Small output planes (the last stage of a CNN: 7 x 7 = 49 positions) waste most of the last vector
// of every row of C when the product is vectorised along the plane (49 = 3 vectors of 16 and one
// value); with many output channels it pays to compute y^T instead, vectorised along the channels,
// and transpose it back.
inline bool transposed_product_pays(int64_t M, int64_t osz, int64_t K) {
  return osz < 64 && M >= 128 && K >= 64;
}

// y [M, osz] = act(ct^T + bias[m]) for ct [osz, M].
FRUGAL_CLONES void transpose_bias_act(const float* ct, int64_t osz, int64_t M, const float* bias, Activation act,
                                      float* y) {
  constexpr int64_t kB = 16;
  parallel_for((M + kB - 1) / kB, 4, [&](int64_t b0, int64_t b1) {
    for (int64_t mb = b0 * kB; mb < std::min(M, b1 * kB); mb += kB) {
      const int64_t me = std::min(M, mb + kB);
      for (int64_t j = 0; j < osz; ++j) {
        const float* c = ct + j * M;
        for (int64_t m = mb; m < me; ++m) y[m * osz + j] = c[m];
      }
      for (int64_t m = mb; m < me; ++m) bias_act_run(y + m * osz, osz, bias ? bias[m] : 0.0f, act);
    }
  });
}

// A window over at most two dims (no depth): the im2col rows of conv_geom.h have a faster path.
inline bool planar(const Geom& g) { return g.k[0] == 1 && g.in[0] == 1 && g.out[0] == 1 && g.pb[0] == 0; }

// im2col of conv_geom.h with a faster path for planar windows; with a band [oh0, oh1) of output rows
// (planar windows only), the columns of those output positions alone.
template <typename T>
void im2col_conv(const T* x, int64_t c_count, const Geom& g, T* col, int64_t oh0 = 0, int64_t oh1 = -1) {
  if (!planar(g)) {
    im2col(x, c_count, g, col);
    return;
  }
  const int64_t rows = c_count * g.kvol(), osz = band_size(g, oh0, oh1);
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(osz, 1)), [&](int64_t r0, int64_t r1) {
    if constexpr (std::is_same_v<T, float>)
      im2col_rows_2d_f32(x, g, r0, r1, col + r0 * osz, oh0, oh1);
    else
      im2col_rows_2d<T>(x, g, r0, r1, col + r0 * osz, oh0, oh1);
  });
}

// Output rows per band when a planar convolution's im2col matrix is built band by band: the band's
// columns (K rows of them) then stay in L2 for the GEMM that packs them, instead of a whole matrix of
// several MB (resnet's 7 x 7 stem: 7.4 MB) going out to memory and back. Only where the work runs
// on one thread (calibration's lanes, --threads 1): threaded GEMMs over a band of a few hundred
// columns measured slower than one over the whole plane. 0: in one piece (it fits, the plane is not
// planar, or threads are available).
inline int64_t im2col_band_rows(const Geom& g, int64_t K, size_t elem) {
  if (num_threads() > 1 && !parallel_region_active()) return 0;
  constexpr int64_t kBandBytes = 384 << 10;
  constexpr int64_t kMinBandCols = 192;  // four column panels of the GEMM at least
  const int64_t OH = g.out[1], OW = g.out[2];
  const int64_t row_bytes = K * OW * static_cast<int64_t>(elem);
  if (!planar(g) || row_bytes * OH <= 2 * kBandBytes) return 0;
  const int64_t rows = std::max(kBandBytes / std::max<int64_t>(row_bytes, 1), (kMinBandCols + OW - 1) / OW);
  return 2 * rows <= OH ? rows : 0;
}

// y[N, M, out...] = conv(x[N, C, in...], w[M, C/G, k...]) + bias.
template <typename T>
void conv_forward(const Geom& g, int64_t N, int64_t C, int64_t M, int64_t G, const T* x, const T* w,
                  const T* bias, T* y, Activation act = Activation::kNone) {
  const int64_t Cg = C / G, Mg = M / G, kvol = g.kvol(), isz = g.in_size(), osz = g.out_size();
  if (Cg == 1 && G == C) {
    conv_channelwise(g, N, C, M, x, w, bias, y);
    add_bias<T>(y, nullptr, N, M, osz, act);
    return;
  }
  const int64_t Kd = Cg * kvol;
  const bool pointwise = g.pointwise();
  T* col = pointwise ? nullptr : scratch_buffer<T>(static_cast<size_t>(Kd * osz));
  if constexpr (std::is_same_v<T, float>) {
    if (G == 1 && transposed_product_pays(M, osz, Kd)) {
      float* ct = scratch_buffer<float>(static_cast<size_t>(osz * M), 2);
      for (int64_t n = 0; n < N; ++n) {
        const float* B = x + n * C * isz;
        if (!pointwise) {
          im2col_conv(B, C, g, col);
          B = col;
        }
        // y^T [osz, M] = col^T w^T, vectorised along the output channels.
        gemm(true, true, osz, M, Kd, 1.0f, B, osz, w, Kd, 0.0f, ct, M);
        transpose_bias_act(ct, osz, M, bias, act, y + n * M * osz);
      }
      return;
    }
  }
  const int64_t band = pointwise ? 0 : im2col_band_rows(g, Kd, sizeof(T));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t grp = 0; grp < G; ++grp) {
      const T* xg = x + (n * C + grp * Cg) * isz;
      T* yg = y + (n * M + grp * Mg) * osz;
      if (pointwise) {
        gemm_nn<T>(Mg, osz, Kd, w + grp * Mg * Kd, Kd, xg, osz, yg, osz);
      } else if (band == 0) {
        im2col_conv(xg, Cg, g, col);
        gemm_nn<T>(Mg, osz, Kd, w + grp * Mg * Kd, Kd, col, osz, yg, osz);
      } else {
        for (int64_t oh0 = 0; oh0 < g.out[1]; oh0 += band) {
          const int64_t oh1 = std::min(g.out[1], oh0 + band), cols = band_size(g, oh0, oh1);
          im2col_conv(xg, Cg, g, col, oh0, oh1);
          gemm_nn<T>(Mg, cols, Kd, w + grp * Mg * Kd, Kd, col, cols, yg + oh0 * g.out[2], osz);
        }
      }
    }
  add_bias(y, bias, N, M, osz, act);
}

struct ConvAttrs {
  WindowAttrs w;
  int64_t group = 1;
};

// Shapes of a forward convolution: validates X [N, C, ...] and W [M, C/group, k...].
struct ConvShapes {
  int64_t N = 0, C = 0, M = 0;
  Geom g;
  Shape out;
};

StatusOr<ConvShapes> conv_shapes(const NodeDef& node, const ConvAttrs& a, const Tensor& X, const Tensor& W) {
  if (X.rank() < 3)
    return node.error(StatusCode::kInvalidArgument, "X must be [N, C, spatial...], got " + shape_str(X.shape()));
  if (W.rank() != X.rank())
    return node.error(StatusCode::kInvalidArgument,
                      "W " + shape_str(W.shape()) + " and X " + shape_str(X.shape()) + " ranks differ");
  ConvShapes s;
  s.N = X.dim(0);
  s.C = X.dim(1);
  s.M = W.dim(0);
  if (a.group < 1 || s.C != W.dim(1) * a.group || s.M % a.group != 0)
    return node.error(StatusCode::kInvalidArgument, "channels do not match: X " + shape_str(X.shape()) + ", W " +
                                                        shape_str(W.shape()) + ", group " +
                                                        std::to_string(a.group));
  std::vector<int64_t> kernel(W.shape().begin() + 2, W.shape().end());
  if (!a.w.kernel.empty() && a.w.kernel != kernel)
    return node.error(StatusCode::kInvalidArgument, "kernel_shape does not match W " + shape_str(W.shape()));
  Shape spatial(X.shape().begin() + 2, X.shape().end());
  FRUGAL_ASSIGN_OR_RETURN(s.g, forward_geometry(node, a.w, spatial, kernel));
  s.out = {s.N, s.M};
  for (int64_t v : s.g.out_spatial()) s.out.push_back(v);
  return s;
}

Status conv_compute(const NodeDef& node, const ConvAttrs& a, KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  if (X.dtype() != W.dtype()) return node.error(StatusCode::kInvalidArgument, "X and W dtypes differ");
  FRUGAL_ASSIGN_OR_RETURN(ConvShapes s, conv_shapes(node, a, X, W));
  const bool has_b = ctx.has_input(2) && ctx.input(2).numel() > 0;
  if (has_b && ctx.input(2).numel() != s.M)
    return node.error(StatusCode::kInvalidArgument, "B must have " + std::to_string(s.M) + " values");
  return dispatch_float(X.dtype(), node, [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    Tensor Y = Tensor::uninitialized(X.dtype(), s.out);
    conv_forward<T>(s.g, s.N, s.C, s.M, a.group, X.data<T>(), W.data<T>(),
                    has_b ? ctx.input(2).data<T>() : nullptr, Y.mut<T>(), activation_of(node));
    ctx.set_output(0, Y);
    return OkStatus();
  });
}

// --- ConvTranspose --------------------------------------------------------------------------------

StatusOr<Geom> transpose_geometry(const NodeDef& node, const WindowAttrs& a, const Shape& spatial,
                                  const std::vector<int64_t>& kernel) {
  Geom g;
  const int nd = static_cast<int>(spatial.size());
  if (nd < 1 || nd > 3)
    return node.error(StatusCode::kUnsupported, "only 1-D, 2-D and 3-D ConvTranspose is supported");
  std::vector<int64_t> oshape = a.output_shape;
  if (oshape.size() == static_cast<size_t>(nd + 2)) oshape.erase(oshape.begin(), oshape.begin() + 2);
  if (!oshape.empty() && oshape.size() != static_cast<size_t>(nd))
    return node.error(StatusCode::kInvalidArgument, "output_shape has the wrong number of values");
  if ((!a.strides.empty() && a.strides.size() != static_cast<size_t>(nd)) ||
      (!a.dilations.empty() && a.dilations.size() != static_cast<size_t>(nd)) ||
      (!a.pads.empty() && a.pads.size() != static_cast<size_t>(2 * nd)) ||
      (!a.output_padding.empty() && a.output_padding.size() != static_cast<size_t>(nd)))
    return node.error(StatusCode::kInvalidArgument, "strides/dilations/pads/output_padding sizes do not match");
  g.nd = nd;
  const bool same = a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER";
  for (int i = 0; i < nd; ++i) {
    const size_t u = static_cast<size_t>(i);
    const int j = 3 - nd + i;
    g.in[j] = spatial[u];
    g.k[j] = kernel[u];
    g.s[j] = a.strides.empty() ? 1 : a.strides[u];
    g.d[j] = a.dilations.empty() ? 1 : a.dilations[u];
    const int64_t op = a.output_padding.empty() ? 0 : a.output_padding[u];
    const int64_t full = g.s[j] * (g.in[j] - 1) + op + (g.k[j] - 1) * g.d[j] + 1;
    if (same) {
      // As the ONNX reference does: SAME pads split the total padding implied by output_shape
      // (default in * stride); with explicit or default pads, output_shape only sets the size
      // (positions beyond the computed extent stay zero).
      g.out[j] = !oshape.empty() ? oshape[u] : g.in[j] * g.s[j];
      const int64_t total = full - g.out[j];
      if (a.auto_pad == "SAME_UPPER") {
        g.pb[j] = total / 2;
        g.pe[j] = total - total / 2;
      } else {
        g.pb[j] = total - total / 2;
        g.pe[j] = total / 2;
      }
    } else {
      if (a.auto_pad != "VALID" && !a.pads.empty()) {
        g.pb[j] = a.pads[u];
        g.pe[j] = a.pads[u + static_cast<size_t>(nd)];
      }
      g.out[j] = !oshape.empty() ? oshape[u] : full - g.pb[j] - g.pe[j];
    }
    if (g.out[j] <= 0) return node.error(StatusCode::kInvalidArgument, "non-positive output size");
  }
  return g;
}

// Scatters columns [Mg * kvol, in_size] into output planes y [Mg, out_size] (accumulating).
template <typename T>
void col2im(const T* col, int64_t Mg, const Geom& g, T* y) {
  const int64_t kvol = g.kvol(), isz = g.in_size(), osz = g.out_size();
  const int64_t ID = g.in[0], IH = g.in[1], IW = g.in[2], OD = g.out[0], OH = g.out[1], OW = g.out[2];
  parallel_for(Mg, 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      T* ym = y + m * osz;
      for (int64_t kk = 0; kk < kvol; ++kk) {
        const int64_t kd = kk / (g.k[1] * g.k[2]), kh = (kk / g.k[2]) % g.k[1], kw = kk % g.k[2];
        const T* cr = col + (m * kvol + kk) * isz;
        const int64_t woff = kw * g.d[2] - g.pb[2];
        const int64_t lo = std::clamp<int64_t>(ceil_div(-woff, g.s[2]), 0, IW);
        const int64_t hi = std::clamp<int64_t>(floor_div(OW - 1 - woff, g.s[2]) + 1, lo, IW);
        for (int64_t id = 0; id < ID; ++id) {
          const int64_t od = id * g.s[0] - g.pb[0] + kd * g.d[0];
          if (od < 0 || od >= OD) continue;
          for (int64_t ih = 0; ih < IH; ++ih) {
            const int64_t oh = ih * g.s[1] - g.pb[1] + kh * g.d[1];
            if (oh < 0 || oh >= OH) continue;
            T* yr = ym + (od * OH + oh) * OW;
            const T* cx = cr + (id * IH + ih) * IW;
            for (int64_t iw = lo; iw < hi; ++iw) yr[iw * g.s[2] + woff] += cx[iw];
          }
        }
      }
    }
  });
}

Status conv_transpose_compute(const NodeDef& node, const ConvAttrs& a, KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  if (X.rank() < 3 || W.rank() != X.rank())
    return node.error(StatusCode::kInvalidArgument,
                      "X " + shape_str(X.shape()) + " and W " + shape_str(W.shape()) + " do not match");
  const int64_t N = X.dim(0), C = X.dim(1), G = a.group;
  if (G < 1 || W.dim(0) != C || C % G != 0)
    return node.error(StatusCode::kInvalidArgument, "W " + shape_str(W.shape()) + " does not match X channels " +
                                                        std::to_string(C) + " with group " + std::to_string(G));
  const int64_t Mg = W.dim(1), M = Mg * G, Cg = C / G;
  std::vector<int64_t> kernel(W.shape().begin() + 2, W.shape().end());
  if (!a.w.kernel.empty() && a.w.kernel != kernel)
    return node.error(StatusCode::kInvalidArgument, "kernel_shape does not match W " + shape_str(W.shape()));
  FRUGAL_ASSIGN_OR_RETURN(Geom g, transpose_geometry(node, a.w, Shape(X.shape().begin() + 2, X.shape().end()),
                                                     kernel));
  Shape out{N, M};
  for (int64_t v : g.out_spatial()) out.push_back(v);
  const bool has_b = ctx.has_input(2) && ctx.input(2).numel() > 0;
  if (has_b && ctx.input(2).numel() != M)
    return node.error(StatusCode::kInvalidArgument, "B must have " + std::to_string(M) + " values");
  return dispatch_float(X.dtype(), node, [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    Tensor& Y = ctx.allocate_output(0, X.dtype(), out);
    const int64_t kvol = g.kvol(), isz = g.in_size(), osz = g.out_size();
    T* col = scratch_buffer<T>(static_cast<size_t>(Mg * kvol * isz));
    const T* x = X.data<T>();
    const T* w = W.data<T>();
    T* y = Y.mut<T>();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t grp = 0; grp < G; ++grp) {
        gemm(true, false, Mg * kvol, isz, Cg, T(1), w + grp * Cg * Mg * kvol, Mg * kvol,
             x + (n * C + grp * Cg) * isz, isz, T(0), col, isz);
        col2im(col, Mg, g, y + (n * M + grp * Mg) * osz);
      }
    add_bias(y, has_b ? ctx.input(2).data<T>() : nullptr, N, M, osz);
    return OkStatus();
  });
}

// --- ConvInteger / QLinearConv --------------------------------------------------------------------

// int32 accumulators of conv(x - x_zp, w - w_zp[m]) + bias, laid out as the output.
Status integer_conv(const NodeDef& node, const ConvAttrs& a, const Tensor& X, int32_t xzp, const Tensor& W,
                    const std::vector<int32_t>& wzp, const int32_t* bias, ConvShapes& s, Tensor& acc) {
  auto is8 = [](DType t) { return t == DType::kUInt8 || t == DType::kInt8; };
  if (!is8(X.dtype()) || !is8(W.dtype()))
    return node.error(StatusCode::kUnsupported, std::string("x and w must be uint8/int8, got ") +
                                                    dtype_name(X.dtype()) + " and " + dtype_name(W.dtype()));
  FRUGAL_ASSIGN_OR_RETURN(s, conv_shapes(node, a, X, W));
  if (wzp.size() != 1 && static_cast<int64_t>(wzp.size()) != s.M)
    return node.error(StatusCode::kInvalidArgument, "w_zero_point must have 1 or " + std::to_string(s.M) + " values");
  std::vector<int32_t> xw(static_cast<size_t>(X.numel())), ww(static_cast<size_t>(W.numel()));
  widen_to_i32(X, xw.data());
  if (xzp != 0)
    for (auto& v : xw) v -= xzp;
  widen_to_i32(W, ww.data());
  const int64_t per = W.numel() / std::max<int64_t>(s.M, 1);
  for (int64_t m = 0; m < s.M; ++m) {
    const int32_t z = wzp.size() == 1 ? wzp[0] : wzp[static_cast<size_t>(m)];
    if (z != 0)
      for (int64_t i = 0; i < per; ++i) ww[static_cast<size_t>(m * per + i)] -= z;
  }
  acc = Tensor::uninitialized(DType::kInt32, s.out);
  conv_forward<int32_t>(s.g, s.N, s.C, s.M, a.group, xw.data(), ww.data(), bias, acc.mut<int32_t>());
  return OkStatus();
}

Status conv_integer_compute(const NodeDef& node, const ConvAttrs& a, KernelContext& ctx) {
  const std::vector<int32_t> xzp = zero_points(ctx, 2);
  if (xzp.size() != 1) return node.error(StatusCode::kInvalidArgument, "x_zero_point must be a scalar");
  ConvShapes s;
  Tensor acc;
  FRUGAL_RETURN_IF_ERROR(integer_conv(node, a, ctx.input(0), xzp[0], ctx.input(1), zero_points(ctx, 3), nullptr,
                                      s, acc));
  ctx.set_output(0, acc);
  return OkStatus();
}

Status qlinear_conv_compute(const NodeDef& node, const ConvAttrs& a, KernelContext& ctx) {
  const std::vector<float> xs = float_values(ctx.input(1)), ws = float_values(ctx.input(4)),
                           ys = float_values(ctx.input(6));
  const std::vector<int32_t> xzp = zero_points(ctx, 2), wzp = zero_points(ctx, 5), yzp = zero_points(ctx, 7);
  if (xs.size() != 1 || xzp.size() != 1 || ys.size() != 1 || yzp.size() != 1)
    return node.error(StatusCode::kInvalidArgument, "x and y scales / zero points must be scalars");
  const DType out_t = ctx.has_input(7) ? ctx.input(7).dtype() : ctx.input(0).dtype();
  const int64_t M = ctx.input(3).rank() > 0 ? ctx.input(3).dim(0) : 0;
  if (ws.size() != 1 && static_cast<int64_t>(ws.size()) != M)
    return node.error(StatusCode::kInvalidArgument, "w_scale must have 1 or " + std::to_string(M) + " values");
  std::vector<int32_t> bias;
  if (ctx.has_input(8) && ctx.input(8).numel() > 0) {
    if (ctx.input(8).numel() != M)
      return node.error(StatusCode::kInvalidArgument, "B must have " + std::to_string(M) + " values");
    for (int64_t v : ctx.input(8).to_int64_vector()) bias.push_back(static_cast<int32_t>(v));
  }
  ConvShapes s;
  Tensor acc;
  FRUGAL_RETURN_IF_ERROR(integer_conv(node, a, ctx.input(0), xzp[0], ctx.input(3), wzp,
                                      bias.empty() ? nullptr : bias.data(), s, acc));
  Tensor Y = Tensor::uninitialized(out_t, s.out);
  const int64_t plane = s.g.out_size();
  const int32_t* av = acc.data<int32_t>();
  void* y = Y.raw_mut();
  const quant::QRange r = qrange_of(out_t);
  parallel_for(s.N * s.M, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t m = p % s.M;
      const float mult = xs[0] * (ws.size() == 1 ? ws[0] : ws[static_cast<size_t>(m)]) / ys[0];
      for (int64_t i = p * plane; i < (p + 1) * plane; ++i) store_requantized(av[i], mult, yzp[0], r, out_t, y, i);
    }
  });
  ctx.set_output(0, Y);
  return OkStatus();
}

template <typename Fn>
KernelFactory conv_factory(Fn fn, bool half_ok) {
  return [fn, half_ok](const NodeDef& node) -> StatusOr<std::unique_ptr<Kernel>> {
    ConvAttrs a;
    a.w = read_window_attrs(node);
    a.group = node.get_int("group", 1);
    if (a.group < 1) return node.error(StatusCode::kInvalidArgument, "group must be >= 1");
    return make_fn_kernel([node, a, fn, half_ok](KernelContext& ctx) -> Status {
      if (half_ok && is_half_type(ctx.input(0).dtype()))
        return with_half_as_float(ctx, [&](KernelContext& c) { return fn(node, a, c); });
      return fn(node, a, ctx);
    });
  };
}

}  // namespace

void register_conv_kernels(KernelRegistry& r) {
  r.add("Conv", 1, kMaxOpset, conv_factory(conv_compute, true));
  r.add("ConvTranspose", 1, kMaxOpset, conv_factory(conv_transpose_compute, true));
  r.add("ConvInteger", 10, kMaxOpset, conv_factory(conv_integer_compute, false));
  r.add("QLinearConv", 10, kMaxOpset, conv_factory(qlinear_conv_compute, false));
}

}  // namespace frugal::kernels
