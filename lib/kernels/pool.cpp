// MaxPool (with optional Indices), AveragePool, LpPool, GlobalAveragePool, GlobalMaxPool, GlobalLpPool
// for 1-D..3-D inputs. Every pool is parallel over the N * C planes; the window geometry (pads,
// auto_pad, dilations, ceil_mode) comes from conv_geom.h, shared with Conv.
#include <algorithm>
#include <cmath>
#include <limits>

#include "conv_geom.h"
#include "families.h"
#include "frugal/parallel.h"
#include "gemm_util.h"
#include "kernel_util.h"

namespace frugal::kernels {

namespace {

struct PoolShapes {
  int64_t planes = 0;
  Geom g;
  Shape out;
};

StatusOr<PoolShapes> pool_shapes(const NodeDef& node, const WindowAttrs& a, const Tensor& X) {
  if (X.rank() < 3)
    return node.error(StatusCode::kInvalidArgument, "X must be [N, C, spatial...], got " + shape_str(X.shape()));
  if (a.kernel.empty()) return node.error(StatusCode::kInvalidArgument, "kernel_shape is required");
  PoolShapes s;
  FRUGAL_ASSIGN_OR_RETURN(s.g, forward_geometry(node, a, Shape(X.shape().begin() + 2, X.shape().end()), a.kernel));
  s.planes = X.dim(0) * X.dim(1);
  s.out = {X.dim(0), X.dim(1)};
  for (int64_t v : s.g.out_spatial()) s.out.push_back(v);
  return s;
}

// Calls tap(input_offset, id, ih, iw) for every in-range tap of the window at (od, oh, ow).
template <typename F>
inline void for_each_tap(const Geom& g, int64_t od, int64_t oh, int64_t ow, F&& tap) {
  for_each_window_row(g, od, oh, [&](int64_t, int64_t row, int64_t id, int64_t ih) {
    for (int64_t kw = 0; kw < g.k[2]; ++kw) {
      const int64_t iw = ow * g.s[2] - g.pb[2] + kw * g.d[2];
      if (iw < 0 || iw >= g.in[2]) continue;
      tap(row + iw, id, ih, iw);
    }
  });
}

// Number of window taps per dim inside [lo, hi) of input coordinates, for output index o.
inline int64_t taps_within(const Geom& g, int j, int64_t o, int64_t lo, int64_t hi) {
  int64_t n = 0;
  for (int64_t k = 0; k < g.k[j]; ++k) {
    const int64_t i = o * g.s[j] - g.pb[j] + k * g.d[j];
    n += (i >= lo && i < hi);
  }
  return n;
}

// Runs f(plane_index, out_offset_within_plane, od, oh, ow) over all outputs, parallel over planes.
template <typename F>
void for_each_output(const PoolShapes& s, F&& f) {
  const Geom& g = s.g;
  const int64_t osz = g.out_size();
  parallel_for(s.planes, std::max<int64_t>(1, 4096 / std::max<int64_t>(osz * g.kvol(), 1)),
               [&](int64_t p0, int64_t p1) {
                 for (int64_t p = p0; p < p1; ++p) {
                   int64_t o = 0;
                   for (int64_t od = 0; od < g.out[0]; ++od)
                     for (int64_t oh = 0; oh < g.out[1]; ++oh)
                       for (int64_t ow = 0; ow < g.out[2]; ++ow, ++o) f(p, o, od, oh, ow);
                 }
               });
}

// One output plane of max (kMax) or sum pooling, applied tap by tap along output rows so the inner
// loop vectorises; used whenever no Indices output is requested. The column taps (ColTaps) are worked
// out once per call, not per output row or plane (a 7 x 7 average over 7 x 7 planes took 50
// divisions per output value).
struct PoolTaps : ColTaps {
  // With one output column and no dilation, the taps inside the row read [run_a, run_b).
  int64_t run_a = 0, run_b = 0;
  explicit PoolTaps(const Geom& g) : ColTaps(g) {
    if (g.out[2] == 1 && g.d[2] == 1) {
      run_a = std::max<int64_t>(0, -g.pb[2]);
      run_b = std::min<int64_t>(g.in[2], g.k[2] - g.pb[2]);
    }
  }
};

template <typename T, bool kMax>
FRUGAL_INLINE T combine(T a, T b) {
  if constexpr (kMax)
    return b > a ? b : a;
  else
    return a + b;
}

// Max or sum of x[0, n) in 8 interleaved partial results (vectorisable; NaNs skipped by max as by
// the tap loop).
template <typename T, bool kMax>
FRUGAL_INLINE T reduce_run(const T* __restrict x, int64_t n) {
  const T init = kMax ? std::numeric_limits<T>::lowest() : T(0);
  T part[8] = {init, init, init, init, init, init, init, init};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) part[j] = combine<T, kMax>(part[j], x[i + j]);
  T r = init;
  for (; i < n; ++i) r = combine<T, kMax>(r, x[i]);
  for (int j = 0; j < 8; ++j) r = combine<T, kMax>(r, part[j]);
  return r;
}

template <typename T, bool kMax>
FRUGAL_INLINE void pool_plane(const Geom& g, const PoolTaps& ct, const T* __restrict xp, T* __restrict yp) {
  const int64_t OD = g.out[0], OH = g.out[1], OW = g.out[2], ID = g.in[0], IH = g.in[1], IW = g.in[2];
  const int64_t sw = g.s[2];
  const T init = kMax ? std::numeric_limits<T>::lowest() : T(0);
  const bool flat = ID == 1 && OD == 1 && g.k[0] == 1 && g.pb[0] == 0;  // no depth window
  if (flat && OH == 1 && ct.run_a == 0 && ct.run_b == IW && g.d[1] == 1) {
    // One window over whole rows of a plane (global-style average or max): its rows are one run.
    const int64_t h0 = std::max<int64_t>(0, -g.pb[1]), h1 = std::min<int64_t>(IH, g.k[1] - g.pb[1]);
    yp[0] = h1 > h0 ? reduce_run<T, kMax>(xp + h0 * IW, (h1 - h0) * IW) : init;
    return;
  }
  // Combines the column taps of input row xr into output row yr.
  auto apply_cols = [&](const T* __restrict xr, T* __restrict yr) __attribute__((always_inline)) {
    if (OW == 1 && ct.run_b > ct.run_a) {
      // One output column over a run of adjacent inputs: reduced with independent partial
      // results, not one dependent add per tap.
      yr[0] = combine<T, kMax>(yr[0], reduce_run<T, kMax>(xr + ct.run_a, ct.run_b - ct.run_a));
      return;
    }
    for (int64_t kw = 0; kw < g.k[2]; ++kw) {
      int64_t off = 0, lo = 0, hi = 0;
      ct.get(kw, off, lo, hi);
      if (sw == 1) {
        for (int64_t ow = lo; ow < hi; ++ow) yr[ow] = combine<T, kMax>(yr[ow], xr[ow + off]);
      } else if (sw == 2) {
        for (int64_t ow = lo; ow < hi; ++ow) yr[ow] = combine<T, kMax>(yr[ow], xr[2 * ow + off]);
      } else {
        for (int64_t ow = lo; ow < hi; ++ow) yr[ow] = combine<T, kMax>(yr[ow], xr[ow * sw + off]);
      }
    }
  };
  if (flat && g.k[1] > 1 && OW > 1) {
    // Separable: the window's rows are first combined element by element over the whole input row
    // (contiguous, vectorised), then the column taps run once on that row instead of once per
    // window row (a 3 x 3 max pool: 3 strided passes per output row instead of 9).
    T* rows = scratch_buffer<T>(static_cast<size_t>(IW), 1);
    for (int64_t oh = 0; oh < OH; ++oh) {
      T* yr = yp + oh * OW;
      std::fill(yr, yr + OW, init);
      int64_t used = 0;
      for_each_window_row(g, 0, oh, [&](int64_t, int64_t roff, int64_t, int64_t) __attribute__((always_inline)) {
        const T* xr = xp + roff;
        if (used++ == 0) std::fill(rows, rows + IW, init);  // (not a copy: a NaN must not stick)
        for (int64_t i = 0; i < IW; ++i) rows[i] = combine<T, kMax>(rows[i], xr[i]);
      });
      if (used > 0) apply_cols(rows, yr);
    }
    return;
  }
  for (int64_t od = 0; od < OD; ++od)
    for (int64_t oh = 0; oh < OH; ++oh) {
      T* yr = yp + (od * OH + oh) * OW;
      std::fill(yr, yr + OW, init);
      for_each_window_row(g, od, oh, [&](int64_t, int64_t roff, int64_t, int64_t) __attribute__((always_inline)) {
        apply_cols(xp + roff, yr);
      });
    }
}

FRUGAL_CLONES void max_plane_f32(const Geom& g, const PoolTaps& ct, const float* xp, float* yp) {
  pool_plane<float, true>(g, ct, xp, yp);
}
FRUGAL_CLONES void sum_plane_f32(const Geom& g, const PoolTaps& ct, const float* xp, float* yp) {
  pool_plane<float, false>(g, ct, xp, yp);
}

template <typename T, bool kMax>
void pool_planes(const PoolShapes& s, const T* x, T* y) {
  const int64_t isz = s.g.in_size(), osz = s.g.out_size();
  const PoolTaps ct(s.g);
  parallel_for(s.planes, std::max<int64_t>(1, 4096 / std::max<int64_t>(osz * s.g.kvol(), 1)),
               [&](int64_t p0, int64_t p1) {
                 for (int64_t p = p0; p < p1; ++p) {
                   if constexpr (std::is_same_v<T, float>) {
                     if constexpr (kMax)
                       max_plane_f32(s.g, ct, x + p * isz, y + p * osz);
                     else
                       sum_plane_f32(s.g, ct, x + p * isz, y + p * osz);
                   } else {
                     pool_plane<T, kMax>(s.g, ct, x + p * isz, y + p * osz);
                   }
                 }
               });
}

// --- MaxPool ---------------------------------------------------------------------------------------

template <typename T>
Status max_pool_typed(const NodeDef& node, const WindowAttrs& a, bool col_major, KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  FRUGAL_ASSIGN_OR_RETURN(PoolShapes s, pool_shapes(node, a, X));
  const Geom& g = s.g;
  Tensor Y = Tensor::uninitialized(X.dtype(), s.out);
  const bool want_idx = ctx.num_outputs() > 1;
  Tensor I;
  if (want_idx) I = Tensor::uninitialized(DType::kInt64, s.out);
  const T* x = X.data<T>();
  T* y = Y.mut<T>();
  int64_t* ind = want_idx ? I.mut<int64_t>() : nullptr;
  const int64_t isz = g.in_size(), osz = g.out_size();
  if (!ind) {
    pool_planes<T, true>(s, x, y);
    ctx.set_output(0, Y);
    return OkStatus();
  }
  for_each_output(s, [&](int64_t p, int64_t o, int64_t od, int64_t oh, int64_t ow) {
    const T* xp = x + p * isz;
    T best = std::numeric_limits<T>::lowest();
    int64_t bi = -1, bd = 0, bh = 0, bw = 0;
    for_each_tap(g, od, oh, ow, [&](int64_t off, int64_t id, int64_t ih, int64_t iw) {
      const T v = xp[off];
      if (bi < 0 || v > best) {
        best = v;
        bi = off;
        bd = id;
        bh = ih;
        bw = iw;
      }
    });
    y[p * osz + o] = best;
    if (ind) {
      const int64_t local = col_major ? bd + bh * g.in[0] + bw * g.in[0] * g.in[1] : bi;
      ind[p * osz + o] = p * isz + (bi < 0 ? 0 : local);
    }
  });
  ctx.set_output(0, Y);
  if (want_idx) ctx.set_output(1, I);
  return OkStatus();
}

Status max_pool(const NodeDef& node, const WindowAttrs& a, bool col_major, KernelContext& ctx) {
  switch (ctx.input(0).dtype()) {
    case DType::kFloat: return max_pool_typed<float>(node, a, col_major, ctx);
    case DType::kDouble: return max_pool_typed<double>(node, a, col_major, ctx);
    case DType::kInt8: return max_pool_typed<int8_t>(node, a, col_major, ctx);
    case DType::kUInt8: return max_pool_typed<uint8_t>(node, a, col_major, ctx);
    case DType::kFloat16:
    case DType::kBFloat16:
      return with_half_as_float(ctx, [&](KernelContext& c) { return max_pool_typed<float>(node, a, col_major, c); });
    default:
      return node.error(StatusCode::kUnsupported,
                        std::string("dtype ") + dtype_name(ctx.input(0).dtype()) + " not supported");
  }
}

// --- AveragePool / LpPool ----------------------------------------------------------------------------

template <typename T>
Status avg_pool_typed(const NodeDef& node, const WindowAttrs& a, bool include_pad, KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  FRUGAL_ASSIGN_OR_RETURN(PoolShapes s, pool_shapes(node, a, X));
  const Geom& g = s.g;
  Tensor Y = Tensor::uninitialized(X.dtype(), s.out);
  const T* x = X.data<T>();
  T* y = Y.mut<T>();
  pool_planes<T, false>(s, x, y);
  // Divisors per dim: taps on the explicit padding count when include_pad (taps beyond it, added by
  // ceil_mode, never do); otherwise only taps inside the input.
  std::vector<T> cnt[3];
  for (int j = 0; j < 3; ++j) {
    cnt[j].resize(static_cast<size_t>(g.out[j]));
    for (int64_t o = 0; o < g.out[j]; ++o)
      cnt[j][static_cast<size_t>(o)] = static_cast<T>(
          include_pad ? taps_within(g, j, o, -g.pb[j], g.in[j] + g.pe[j]) : taps_within(g, j, o, 0, g.in[j]));
  }
  std::vector<T> inv(  // divisor per output position
      static_cast<size_t>(g.out_size()));
  for (int64_t od = 0, o = 0; od < g.out[0]; ++od)
    for (int64_t oh = 0; oh < g.out[1]; ++oh)
      for (int64_t ow = 0; ow < g.out[2]; ++ow, ++o) {
        const T n = cnt[0][static_cast<size_t>(od)] * cnt[1][static_cast<size_t>(oh)] * cnt[2][static_cast<size_t>(ow)];
        inv[static_cast<size_t>(o)] = n;
      }
  const int64_t osz = g.out_size();
  parallel_for(s.planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(osz, 1)), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t i = 0; i < osz; ++i) {
        const T n = inv[static_cast<size_t>(i)];
        y[p * osz + i] = n > 0 ? y[p * osz + i] / n : T(0);
      }
  });
  ctx.set_output(0, Y);
  return OkStatus();
}

template <typename T>
Status lp_pool_typed(const NodeDef& node, const WindowAttrs& a, int64_t pw, KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  FRUGAL_ASSIGN_OR_RETURN(PoolShapes s, pool_shapes(node, a, X));
  const Geom& g = s.g;
  Tensor Y = Tensor::uninitialized(X.dtype(), s.out);
  const T* x = X.data<T>();
  T* y = Y.mut<T>();
  const int64_t isz = g.in_size(), osz = g.out_size();
  const T p = static_cast<T>(pw);
  for_each_output(s, [&](int64_t pl, int64_t o, int64_t od, int64_t oh, int64_t ow) {
    const T* xp = x + pl * isz;
    T sum = 0;
    for_each_tap(g, od, oh, ow, [&](int64_t off, int64_t, int64_t, int64_t) {
      const T v = std::fabs(xp[off]);
      sum += pw == 2 ? v * v : (pw == 1 ? v : std::pow(v, p));
    });
    y[pl * osz + o] = pw == 2 ? std::sqrt(sum) : (pw == 1 ? sum : std::pow(sum, T(1) / p));
  });
  ctx.set_output(0, Y);
  return OkStatus();
}

// --- Global pools ----------------------------------------------------------------------------------

enum class GlobalKind { kAvg, kMax, kLp };

template <typename T>
Status global_pool_typed(const NodeDef& node, GlobalKind kind, int64_t pw, KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  if (X.rank() < 3)
    return node.error(StatusCode::kInvalidArgument, "X must be [N, C, spatial...], got " + shape_str(X.shape()));
  Shape out(X.shape().size(), 1);
  out[0] = X.dim(0);
  out[1] = X.dim(1);
  const int64_t planes = X.dim(0) * X.dim(1), plane = X.numel() / std::max<int64_t>(planes, 1);
  Tensor Y = Tensor::uninitialized(X.dtype(), out);
  const T* x = X.data<T>();
  T* y = Y.mut<T>();
  parallel_for(planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(plane, 1)), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const T* xp = x + p * plane;
      if (kind == GlobalKind::kMax) {
        T m = plane > 0 ? xp[0] : T(0);
        for (int64_t i = 1; i < plane; ++i) m = xp[i] > m ? xp[i] : m;
        y[p] = m;
      } else if (kind == GlobalKind::kAvg) {
        T sum = 0;
        for (int64_t i = 0; i < plane; ++i) sum += xp[i];
        y[p] = plane > 0 ? sum / static_cast<T>(plane) : T(0);
      } else {
        T sum = 0;
        for (int64_t i = 0; i < plane; ++i) sum += std::pow(std::fabs(xp[i]), static_cast<T>(pw));
        y[p] = std::pow(sum, T(1) / static_cast<T>(pw));
      }
    }
  });
  ctx.set_output(0, Y);
  return OkStatus();
}

// Float kernels for float32/float64, with float16/bfloat16 computed in float32.
template <typename Fn>
Status float_pool(const NodeDef& node, KernelContext& ctx, Fn&& fn) {
  const DType t = ctx.input(0).dtype();
  if (t == DType::kFloat) return fn(TypeTag<float>{}, ctx);
  if (t == DType::kDouble) return fn(TypeTag<double>{}, ctx);
  if (is_half_type(t))
    return with_half_as_float(ctx, [&](KernelContext& c) { return fn(TypeTag<float>{}, c); });
  return node.error(StatusCode::kUnsupported, std::string("dtype ") + dtype_name(t) + " not supported");
}

}  // namespace

void register_pool_kernels(KernelRegistry& r) {
  r.add("MaxPool", 1, kMaxOpset, [](const NodeDef& node) -> StatusOr<std::unique_ptr<Kernel>> {
    const WindowAttrs a = read_window_attrs(node);
    const int64_t order = node.get_int("storage_order", 0);
    if (order != 0 && order != 1) return node.error(StatusCode::kInvalidArgument, "storage_order must be 0 or 1");
    return make_fn_kernel([node, a, order](KernelContext& ctx) { return max_pool(node, a, order == 1, ctx); });
  });
  r.add("AveragePool", 1, kMaxOpset, [](const NodeDef& node) -> StatusOr<std::unique_ptr<Kernel>> {
    const WindowAttrs a = read_window_attrs(node);
    const bool include_pad = node.get_int("count_include_pad", 0) != 0;
    return make_fn_kernel([node, a, include_pad](KernelContext& ctx) {
      return float_pool(node, ctx, [&](auto tag, KernelContext& c) {
        return avg_pool_typed<typename decltype(tag)::type>(node, a, include_pad, c);
      });
    });
  });
  r.add("LpPool", 1, kMaxOpset, [](const NodeDef& node) -> StatusOr<std::unique_ptr<Kernel>> {
    const WindowAttrs a = read_window_attrs(node);
    // Opset 1 declared p as a float; later opsets as an int.
    const auto it = node.attrs.find("p");
    int64_t p = 2;
    if (it != node.attrs.end())
      p = it->second.kind == Attribute::Kind::kFloat ? static_cast<int64_t>(it->second.f) : it->second.i;
    if (p < 1) return node.error(StatusCode::kInvalidArgument, "p must be >= 1");
    return make_fn_kernel([node, a, p](KernelContext& ctx) {
      return float_pool(node, ctx, [&](auto tag, KernelContext& c) {
        return lp_pool_typed<typename decltype(tag)::type>(node, a, p, c);
      });
    });
  });
  auto global = [](GlobalKind kind) {
    return [kind](const NodeDef& node) -> StatusOr<std::unique_ptr<Kernel>> {
      int64_t p = 2;
      const auto it = node.attrs.find("p");
      if (it != node.attrs.end())
        p = it->second.kind == Attribute::Kind::kFloat ? static_cast<int64_t>(it->second.f) : it->second.i;
      return make_fn_kernel([node, kind, p](KernelContext& ctx) -> Status {
        const DType t = ctx.input(0).dtype();
        if (kind == GlobalKind::kMax && t == DType::kInt8) return global_pool_typed<int8_t>(node, kind, p, ctx);
        if (kind == GlobalKind::kMax && t == DType::kUInt8) return global_pool_typed<uint8_t>(node, kind, p, ctx);
        return float_pool(node, ctx, [&](auto tag, KernelContext& c) {
          return global_pool_typed<typename decltype(tag)::type>(node, kind, p, c);
        });
      });
    };
  };
  r.add("GlobalAveragePool", 1, kMaxOpset, global(GlobalKind::kAvg));
  r.add("GlobalMaxPool", 1, kMaxOpset, global(GlobalKind::kMax));
  r.add("GlobalLpPool", 1, kMaxOpset, global(GlobalKind::kLp));
}

}  // namespace frugal::kernels
