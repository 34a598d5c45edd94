// Convolution and pooling geometry shared by conv.cpp and pool.cpp: spatial sizes, strides, dilations
// and begin/end pads for 1-D..3-D windows, normalised to three dims (leading dims of size 1) so that
// one set of loops serves every rank. Also im2col for the GEMM-based convolutions.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "frugal/kernel.h"
#include "frugal/parallel.h"

// The library is built for baseline x86-64; hot per-plane loops are cloned for AVX2 and AVX-512 and
// the loader picks the widest the CPU has (GCC function multiversioning via ifunc). The templates a
// clone calls must be FRUGAL_INLINE (lambdas in them too): GCC does not always inline an `inline`
// template into a clone, and a call that is not inlined runs the baseline (SSE2) build of the loop.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define FRUGAL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FRUGAL_CLONES
#endif
#if defined(__GNUC__)
#define FRUGAL_INLINE __attribute__((always_inline)) inline
#else
#define FRUGAL_INLINE inline
#endif

namespace frugal::kernels {

// floor(a / b) and ceil(a / b) for b > 0 and any sign of a.
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// Window attributes as read from a Conv/ConvTranspose/pool node.
struct WindowAttrs {
  std::string auto_pad = "NOTSET";
  std::vector<int64_t> kernel, strides, dilations, pads, output_padding, output_shape;
  bool ceil_mode = false;
};

inline WindowAttrs read_window_attrs(const NodeDef& node) {
  WindowAttrs a;
  a.auto_pad = node.get_string("auto_pad", "NOTSET");
  a.kernel = node.get_ints("kernel_shape");
  a.strides = node.get_ints("strides");
  a.dilations = node.get_ints("dilations");
  a.pads = node.get_ints("pads");
  a.output_padding = node.get_ints("output_padding");
  a.output_shape = node.get_ints("output_shape");
  a.ceil_mode = node.get_int("ceil_mode", 0) != 0;
  return a;
}

struct Geom {
  int nd = 0;  // real spatial rank
  // Normalised to 3 dims: index 3 - nd .. 2 are real, the rest are 1 (pads 0).
  int64_t in[3] = {1, 1, 1}, out[3] = {1, 1, 1}, k[3] = {1, 1, 1}, s[3] = {1, 1, 1}, d[3] = {1, 1, 1};
  int64_t pb[3] = {0, 0, 0}, pe[3] = {0, 0, 0};
  int64_t in_size() const { return in[0] * in[1] * in[2]; }
  int64_t out_size() const { return out[0] * out[1] * out[2]; }
  int64_t kvol() const { return k[0] * k[1] * k[2]; }
  bool pointwise() const {
    for (int i = 0; i < 3; ++i)
      if (k[i] != 1 || s[i] != 1 || pb[i] != 0 || pe[i] != 0) return false;
    return true;
  }
  Shape out_spatial() const { return Shape(out + 3 - nd, out + 3); }
};

// Forward window geometry (Conv, pools). `spatial` are the input's spatial dims, `kernel` the window.
// ceil_mode rounds the output size up, dropping a last window that would start inside the end padding.
inline StatusOr<Geom> forward_geometry(const NodeDef& node, const WindowAttrs& a, const Shape& spatial,
                                       const std::vector<int64_t>& kernel) {
  Geom g;
  const int nd = static_cast<int>(spatial.size());
  if (nd < 1 || nd > 3)
    return node.error(StatusCode::kUnsupported, "only 1-D, 2-D and 3-D windows are supported, got " +
                                                    std::to_string(nd) + " spatial dims");
  if (static_cast<int>(kernel.size()) != nd)
    return node.error(StatusCode::kInvalidArgument, "kernel rank " + std::to_string(kernel.size()) +
                                                        " does not match " + std::to_string(nd) + " spatial dims");
  auto attr_ok = [&](const std::vector<int64_t>& v, size_t n, const char* name) -> Status {
    if (!v.empty() && v.size() != n)
      return node.error(StatusCode::kInvalidArgument, std::string(name) + " has " + std::to_string(v.size()) +
                                                          " values, expected " + std::to_string(n));
    return OkStatus();
  };
  FRUGAL_RETURN_IF_ERROR(attr_ok(a.strides, static_cast<size_t>(nd), "strides"));
  FRUGAL_RETURN_IF_ERROR(attr_ok(a.dilations, static_cast<size_t>(nd), "dilations"));
  FRUGAL_RETURN_IF_ERROR(attr_ok(a.pads, static_cast<size_t>(2 * nd), "pads"));
  g.nd = nd;
  for (int i = 0; i < nd; ++i) {
    const int j = 3 - nd + i;
    g.in[j] = spatial[static_cast<size_t>(i)];
    g.k[j] = kernel[static_cast<size_t>(i)];
    g.s[j] = a.strides.empty() ? 1 : a.strides[static_cast<size_t>(i)];
    g.d[j] = a.dilations.empty() ? 1 : a.dilations[static_cast<size_t>(i)];
    if (g.k[j] < 1 || g.s[j] < 1 || g.d[j] < 1)
      return node.error(StatusCode::kInvalidArgument, "kernel, strides and dilations must be positive");
    const int64_t ext = (g.k[j] - 1) * g.d[j] + 1;
    if (a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER") {
      g.out[j] = ceil_div(g.in[j], g.s[j]);
      const int64_t total = std::max<int64_t>(0, (g.out[j] - 1) * g.s[j] + ext - g.in[j]);
      const int64_t small = total / 2, big = total - small;
      g.pb[j] = a.auto_pad == "SAME_UPPER" ? small : big;
      g.pe[j] = a.auto_pad == "SAME_UPPER" ? big : small;
      continue;
    }
    if (a.auto_pad == "NOTSET" || a.auto_pad.empty()) {
      if (!a.pads.empty()) {
        g.pb[j] = a.pads[static_cast<size_t>(i)];
        g.pe[j] = a.pads[static_cast<size_t>(i + nd)];
      }
    } else if (a.auto_pad != "VALID") {
      return node.error(StatusCode::kInvalidArgument, "unknown auto_pad '" + a.auto_pad + "'");
    }
    const int64_t span = g.in[j] + g.pb[j] + g.pe[j] - ext;
    if (span < 0)
      return node.error(StatusCode::kInvalidArgument, "window larger than the padded input");
    if (a.ceil_mode) {
      g.out[j] = ceil_div(span, g.s[j]) + 1;
      // A last window starting in the end padding is dropped (PyTorch and onnxruntime agree).
      if ((g.out[j] - 1) * g.s[j] >= g.in[j] + g.pb[j]) --g.out[j];
    } else {
      g.out[j] = span / g.s[j] + 1;
    }
  }
  return g;
}

// The output columns [lo, hi) whose input coordinate o * stride + off lies in [0, in).
inline void valid_range(int64_t off, int64_t stride, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
  lo = std::clamp<int64_t>(ceil_div(-off, stride), 0, out);
  hi = std::clamp<int64_t>(floor_div(in - 1 - off, stride) + 1, lo, out);
}

// Where each column tap kw of a window reads along an output row: input offset off (ow * s + off)
// and the output columns [lo, hi) it covers inside the input. Worked out once per plane or call:
// the integer divisions behind it cost more than the taps on small planes. The first kMax taps come
// from the table, wider windows work out the rest on each call of get().
struct ColTaps {
  static constexpr int64_t kMax = 64;
  int64_t n = 0, off[kMax], lo[kMax], hi[kMax];
  explicit ColTaps(const Geom& g) : n(std::min<int64_t>(g.k[2], kMax)), g_(&g) {
    for (int64_t kw = 0; kw < n; ++kw) {
      off[kw] = kw * g.d[2] - g.pb[2];
      valid_range(off[kw], g.s[2], g.in[2], g.out[2], lo[kw], hi[kw]);
    }
  }
  __attribute__((always_inline)) void get(int64_t kw, int64_t& o, int64_t& l, int64_t& h) const {
    if (kw < n) {
      o = off[kw], l = lo[kw], h = hi[kw];
      return;
    }
    o = kw * g_->d[2] - g_->pb[2];
    valid_range(o, g_->s[2], g_->in[2], g_->out[2], l, h);
  }

 private:
  const Geom* g_;
};

// Calls f(window_row, input_row_offset, id, ih) for every row (kd, kh) of the window of output row
// (od, oh) that lies inside the input: window_row = kd * k[1] + kh, input row (id, ih) starting at
// x + input_row_offset of its plane. Pass an always_inline lambda (see FRUGAL_INLINE).
template <typename F>
FRUGAL_INLINE void for_each_window_row(const Geom& g, int64_t od, int64_t oh, F&& f) {
  for (int64_t kd = 0; kd < g.k[0]; ++kd) {
    const int64_t id = od * g.s[0] - g.pb[0] + kd * g.d[0];
    if (id < 0 || id >= g.in[0]) continue;
    for (int64_t kh = 0; kh < g.k[1]; ++kh) {
      const int64_t ih = oh * g.s[1] - g.pb[1] + kh * g.d[1];
      if (ih < 0 || ih >= g.in[1]) continue;
      f(kd * g.k[1] + kh, (id * g.in[1] + ih) * g.in[2], id, ih);
    }
  }
}

// Columns of `c_count` channel planes of x (each g.in_size() long) for a GEMM with the weights:
// row (c, kd, kh, kw), column (od, oh, ow). Out-of-range taps read `pad`.
template <typename T>
void im2col(const T* x, int64_t c_count, const Geom& g, T* col, T pad = T(0)) {
  const int64_t kvol = g.kvol(), osz = g.out_size(), isz = g.in_size();
  const int64_t rows = c_count * kvol;
  const int64_t OD = g.out[0], OH = g.out[1], OW = g.out[2];
  const int64_t ID = g.in[0], IH = g.in[1], IW = g.in[2];
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(osz, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r / kvol, kk = r % kvol;
      const int64_t kd = kk / (g.k[1] * g.k[2]), kh = (kk / g.k[2]) % g.k[1], kw = kk % g.k[2];
      const T* xc = x + c * isz;
      T* dst = col + r * osz;
      const int64_t woff = kw * g.d[2] - g.pb[2];
      // ow range whose input column iw = ow * s + woff lies in [0, IW)
      const int64_t lo = std::clamp<int64_t>(ceil_div(-woff, g.s[2]), 0, OW);
      const int64_t hi = std::clamp<int64_t>(floor_div(IW - 1 - woff, g.s[2]) + 1, lo, OW);
      for (int64_t od = 0; od < OD; ++od) {
        const int64_t id = od * g.s[0] - g.pb[0] + kd * g.d[0];
        for (int64_t oh = 0; oh < OH; ++oh, dst += OW) {
          const int64_t ih = oh * g.s[1] - g.pb[1] + kh * g.d[1];
          if (id < 0 || id >= ID || ih < 0 || ih >= IH) {
            std::fill(dst, dst + OW, pad);
            continue;
          }
          const T* xr = xc + (id * IH + ih) * IW;
          std::fill(dst, dst + lo, pad);
          if (g.s[2] == 1) {
            if (hi > lo) std::memcpy(dst + lo, xr + lo + woff, static_cast<size_t>(hi - lo) * sizeof(T));
          } else {
            const int64_t sw = g.s[2];
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = xr[ow * sw + woff];
          }
          std::fill(dst + hi, dst + OW, pad);
        }
      }
    }
  });
}

}  // namespace frugal::kernels
