// Resize (opsets 10, 11, 13, 18, 19) and Upsample (7-9) on CPU.
//
// Each axis gets its own 1-D plan (output size, scale, region of interest), so everything is
// separable: "nearest" is one gather pass with a per-axis index map (any dtype, exact), "linear" and
// "cubic" run one weighted pass per resized axis in double precision. The coordinate transforms,
// tap positions, antialias filters and exclude_outside follow the ONNX spec and its reference
// implementation (taps sit around ceil(x) - 1, edge values repeat past the borders).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "frugal/parallel.h"
#include "kernel_util.h"
#include "shape_util.h"

namespace frugal::kernels {

namespace {

using Ints = std::vector<int64_t>;

enum class Mode { kNearest, kLinear, kCubic };
enum class Coord { kHalfPixel, kHalfPixelSymmetric, kPytorchHalfPixel, kAlignCorners, kAsymmetric, kTfCrop };
enum class Nearest { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil, kSimple };

struct Params {
  Mode mode = Mode::kNearest;
  Coord coord = Coord::kHalfPixel;
  Nearest nearest = Nearest::kRoundPreferFloor;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  double extrapolation = 0;
  bool antialias = false;
};

struct AxisPlan {
  int64_t in = 1, out = 1;
  double scale = 1;
  double roi_start = 0, roi_end = 1;
};

// Maps output coordinate x to the input coordinate along one axis.
double original_coord(const Params& p, const AxisPlan& a, int64_t xi) {
  const double x = static_cast<double>(xi);
  const double in = static_cast<double>(a.in);
  const double out_w = a.scale * in;  // the reference uses the unrounded output length
  switch (p.coord) {
    case Coord::kHalfPixel: return (x + 0.5) / a.scale - 0.5;
    case Coord::kHalfPixelSymmetric: {
      const double adjustment = static_cast<double>(a.out) / out_w;
      const double center = in / 2;
      return center * (1 - adjustment) + (x + 0.5) / a.scale - 0.5;
    }
    case Coord::kPytorchHalfPixel: return out_w == 1 ? -0.5 : (x + 0.5) / a.scale - 0.5;
    case Coord::kAlignCorners: return out_w == 1 ? 0.0 : x * (in - 1) / (out_w - 1);
    case Coord::kAsymmetric: return x / a.scale;
    case Coord::kTfCrop: {
      double v = out_w == 1 ? (a.roi_end - a.roi_start) * (in - 1) / 2
                            : x * (a.roi_end - a.roi_start) * (in - 1) / (out_w - 1);
      return v + a.roi_start * (in - 1);
    }
  }
  return x;
}

bool extrapolated(const Params& p, const AxisPlan& a, double xo) {
  return p.coord == Coord::kTfCrop && (xo < 0 || xo > static_cast<double>(a.in - 1));
}

// Index map for nearest mode; -1 marks "extrapolation value".
Ints nearest_map(const Params& p, const AxisPlan& a) {
  Ints m(static_cast<size_t>(a.out));
  for (int64_t x = 0; x < a.out; ++x) {
    const double xo = original_coord(p, a, x);
    if (extrapolated(p, a, xo)) {
      m[static_cast<size_t>(x)] = -1;
      continue;
    }
    const double fl = std::floor(xo);
    const double ratio = xo - fl;
    int64_t i;
    switch (p.nearest) {
      case Nearest::kRoundPreferFloor: i = static_cast<int64_t>(ratio <= 0.5 ? fl : fl + 1); break;
      case Nearest::kRoundPreferCeil: i = static_cast<int64_t>(ratio < 0.5 ? fl : fl + 1); break;
      case Nearest::kFloor: i = static_cast<int64_t>(fl); break;
      case Nearest::kCeil: i = static_cast<int64_t>(std::ceil(xo)); break;
      case Nearest::kSimple:
      default: i = static_cast<int64_t>(a.scale < 1 ? std::ceil(xo) : fl); break;
    }
    m[static_cast<size_t>(x)] = std::clamp<int64_t>(i, 0, a.in - 1);
  }
  return m;
}

double cubic_kernel(double x, double A) {
  x = std::abs(x);
  if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return 0;
}

// Taps for linear/cubic along one axis: for output j, `taps` (clamped indices) and weights; an
// output whose coordinate leaves a tf_crop_and_resize box is flagged in `extra`.
struct Taps {
  int64_t n = 0;
  Ints idx;
  std::vector<double> w;
  std::vector<bool> extra;
};

Taps make_taps(const Params& p, const AxisPlan& a) {
  Taps t;
  const double s = std::min(a.scale, 1.0);
  const bool aa = p.antialias && a.scale < 1;
  int64_t start;
  if (p.mode == Mode::kLinear) start = aa ? static_cast<int64_t>(std::floor(-1 / s)) + 1 : 0;
  else start = aa ? static_cast<int64_t>(std::floor(-2 / s)) + 1 : -1;
  t.n = 2 - 2 * start;
  t.idx.resize(static_cast<size_t>(a.out * t.n));
  t.w.resize(static_cast<size_t>(a.out * t.n));
  t.extra.assign(static_cast<size_t>(a.out), false);
  std::vector<double> c(static_cast<size_t>(t.n));
  for (int64_t x = 0; x < a.out; ++x) {
    const double xo = original_coord(p, a, x);
    if (extrapolated(p, a, xo)) {
      t.extra[static_cast<size_t>(x)] = true;
      continue;
    }
    // ratio in (0, 1]: the left tap is ceil(xo) - 1, as the reference picks neighbours.
    double i0 = std::floor(xo), ratio = xo - i0;
    if (ratio == 0) {
      ratio = 1;
      i0 -= 1;
    }
    for (int64_t j = 0; j < t.n; ++j) {
      const double off = static_cast<double>(start + j) - ratio;  // tap position minus xo
      double v;
      if (p.mode == Mode::kLinear) v = aa ? std::clamp(1 - std::abs(off * s), 0.0, 1.0) : (j == 0 ? 1 - ratio : ratio);
      else v = aa ? cubic_kernel(off * s, p.cubic_a) : cubic_kernel(off, p.cubic_a);
      c[static_cast<size_t>(j)] = v;
    }
    if (aa) {
      double sum = 0;
      for (double v : c) sum += v;
      for (double& v : c) v /= sum;
    }
    if (p.exclude_outside) {
      double sum = 0;
      for (int64_t j = 0; j < t.n; ++j) {
        const int64_t raw = static_cast<int64_t>(i0) + start + j;
        if (raw < 0 || raw >= a.in) c[static_cast<size_t>(j)] = 0;
        sum += c[static_cast<size_t>(j)];
      }
      if (sum != 0)
        for (double& v : c) v /= sum;
    }
    for (int64_t j = 0; j < t.n; ++j) {
      const int64_t raw = static_cast<int64_t>(i0) + start + j;
      t.idx[static_cast<size_t>(x * t.n + j)] = std::clamp<int64_t>(raw, 0, a.in - 1);
      t.w[static_cast<size_t>(x * t.n + j)] = c[static_cast<size_t>(j)];
    }
  }
  return t;
}

// One weighted pass along `axis` of a [outer, in, inner] buffer into [outer, out, inner].
std::vector<double> interp_axis(const std::vector<double>& src, int64_t outer, int64_t in, int64_t inner,
                                const Taps& t, int64_t out, double extra) {
  std::vector<double> dst(static_cast<size_t>(outer * out * inner));
  parallel_for(outer * out, std::max<int64_t>(1, 4096 / std::max<int64_t>(inner * t.n, 1)), [&](int64_t b, int64_t e) {
    for (int64_t task = b; task < e; ++task) {
      const int64_t o = task / out, x = task % out;
      double* d = dst.data() + task * inner;
      if (t.extra[static_cast<size_t>(x)]) {
        std::fill(d, d + inner, extra);
        continue;
      }
      std::fill(d, d + inner, 0.0);
      for (int64_t j = 0; j < t.n; ++j) {
        const double w = t.w[static_cast<size_t>(x * t.n + j)];
        if (w == 0) continue;
        const double* s = src.data() + (o * in + t.idx[static_cast<size_t>(x * t.n + j)]) * inner;
        for (int64_t i = 0; i < inner; ++i) d[i] += w * s[i];
      }
    }
  });
  return dst;
}

Status run_nearest(const NodeDef& node, const Tensor& x, const Params& p, const std::vector<AxisPlan>& plan,
                   Tensor& out) {
  const size_t r = plan.size();
  const size_t es = dtype_size(x.dtype());
  uint64_t fill = 0;
  if (!store_scalar(x.dtype(), p.extrapolation, &fill))
    return node.error(StatusCode::kUnsupported, "cannot write extrapolation_value");
  std::vector<Ints> maps(r);
  for (size_t d = 0; d < r; ++d) maps[d] = nearest_map(p, plan[d]);
  const auto xs = strides_of(x.shape());
  const int64_t inner = plan[r - 1].out;
  const int64_t rows = out.numel() / inner;
  gather_rows_mapped(x.raw(), out.raw_mut(), es, rows, maps[r - 1], [&](int64_t row) -> int64_t {
    int64_t rem = row, off = 0;
    for (int64_t d = static_cast<int64_t>(r) - 2; d >= 0; --d) {
      const size_t du = static_cast<size_t>(d);
      const int64_t i = maps[du][static_cast<size_t>(rem % plan[du].out)];
      rem /= plan[du].out;
      if (i < 0) return -1;
      off += i * xs[du];
    }
    return off;
  }, fill);
  return OkStatus();
}

Status run_interp(const NodeDef& node, const Tensor& x, const Params& p, const std::vector<AxisPlan>& plan,
                  Tensor& out) {
  if (!dtype_is_float(x.dtype()) && !dtype_is_integer(x.dtype()))
    return node.error(StatusCode::kUnsupported, std::string("dtype ") + dtype_name(x.dtype()));
  std::vector<double> buf = x.to_double_vector();
  Shape cur = x.shape();
  for (size_t d = 0; d < plan.size(); ++d) {
    const AxisPlan& a = plan[d];
    if (a.in == a.out && a.scale == 1 && p.coord != Coord::kTfCrop) continue;  // exact identity
    int64_t outer = 1, inner = 1;
    for (size_t k = 0; k < d; ++k) outer *= cur[k];
    for (size_t k = d + 1; k < cur.size(); ++k) inner *= cur[k];
    buf = interp_axis(buf, outer, a.in, inner, make_taps(p, a), a.out, p.extrapolation);
    cur[d] = a.out;
  }
  const int64_t n = out.numel();
  const DType dt = out.dtype();
  if (dt == DType::kFloat) {
    float* o = out.mut<float>();
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<float>(buf[static_cast<size_t>(i)]);
  } else {
    const size_t es = dtype_size(dt);
    auto* o = static_cast<uint8_t*>(out.raw_mut());
    const bool is_int = dtype_is_integer(dt);
    for (int64_t i = 0; i < n; ++i) {
      double v = buf[static_cast<size_t>(i)];
      if (is_int) v = std::round(v);  // integer images round to nearest, as runtimes do for uint8
      if (dt == DType::kUInt8) v = std::clamp(v, 0.0, 255.0);
      if (dt == DType::kInt8) v = std::clamp(v, -128.0, 127.0);
      store_scalar(dt, v, o + static_cast<size_t>(i) * es);
    }
  }
  return OkStatus();
}

std::vector<double> float_values(const Tensor& t) { return t.to_double_vector(); }

bool present(KernelContext& ctx, size_t i) { return ctx.has_input(i) && ctx.input(i).numel() > 0; }

Status resize(const NodeDef& node, KernelContext& ctx, bool upsample) {
  const Tensor& x = ctx.input(0);
  const int64_t r = x.rank();
  if (r == 0) return node.error(StatusCode::kInvalidData, "input must have rank >= 1");
  if (dtype_size(x.dtype()) == 0) return node.error(StatusCode::kUnsupported, "sub-byte dtype");
  const bool legacy = upsample || node.opset < 11;  // Upsample and Resize-10: asymmetric, "simple" nearest
  Params p;
  const std::string mode = node.get_string("mode", "nearest");
  if (mode == "nearest") p.mode = Mode::kNearest;
  else if (mode == "linear" || mode == "bilinear") p.mode = Mode::kLinear;
  else if (mode == "cubic" && !legacy) p.mode = Mode::kCubic;
  else return node.error(StatusCode::kUnsupported, "mode '" + mode + "'");
  if (legacy) {
    p.coord = Coord::kAsymmetric;
    p.nearest = Nearest::kSimple;
  } else {
    const std::string c = node.get_string("coordinate_transformation_mode", "half_pixel");
    if (c == "half_pixel") p.coord = Coord::kHalfPixel;
    else if (c == "half_pixel_symmetric") p.coord = Coord::kHalfPixelSymmetric;
    else if (c == "pytorch_half_pixel") p.coord = Coord::kPytorchHalfPixel;
    else if (c == "align_corners") p.coord = Coord::kAlignCorners;
    else if (c == "asymmetric") p.coord = Coord::kAsymmetric;
    else if (c == "tf_crop_and_resize") p.coord = Coord::kTfCrop;
    else return node.error(StatusCode::kUnsupported, "coordinate_transformation_mode '" + c + "'");
    const std::string nm = node.get_string("nearest_mode", "round_prefer_floor");
    if (nm == "round_prefer_floor") p.nearest = Nearest::kRoundPreferFloor;
    else if (nm == "round_prefer_ceil") p.nearest = Nearest::kRoundPreferCeil;
    else if (nm == "floor") p.nearest = Nearest::kFloor;
    else if (nm == "ceil") p.nearest = Nearest::kCeil;
    else return node.error(StatusCode::kUnsupported, "nearest_mode '" + nm + "'");
    p.cubic_a = node.get_float("cubic_coeff_a", -0.75f);
    p.exclude_outside = node.get_int("exclude_outside", 0) != 0;
    p.extrapolation = node.get_float("extrapolation_value", 0.f);
    p.antialias = node.opset >= 18 && node.get_int("antialias", 0) != 0;
  }
  // Inputs: Upsample-7/8 scales attribute; Upsample-9 and Resize-10 (X, scales); Resize-11+
  // (X, roi, scales, sizes).
  std::vector<double> scales, roi;
  Ints sizes;
  if (upsample && node.opset < 9) {
    for (float f : node.get_floats("scales")) scales.push_back(f);
  } else if (legacy) {
    if (present(ctx, 1)) scales = float_values(ctx.input(1));
  } else {
    if (present(ctx, 1)) roi = float_values(ctx.input(1));
    if (present(ctx, 2)) scales = float_values(ctx.input(2));
    if (present(ctx, 3)) sizes = int_values(ctx.input(3));
  }
  if (scales.empty() == sizes.empty())
    return node.error(StatusCode::kInvalidData, "exactly one of scales and sizes must be given");
  Ints axes;
  if (node.opset >= 18 && !legacy && node.has("axes")) {
    for (int64_t a : node.get_ints("axes")) {
      FRUGAL_ASSIGN_OR_RETURN(int64_t n, normalize_axis(a, r, node));
      axes.push_back(n);
    }
  } else {
    for (int64_t i = 0; i < r; ++i) axes.push_back(i);
  }
  const size_t na = axes.size();
  if ((!scales.empty() && scales.size() != na) || (!sizes.empty() && sizes.size() != na))
    return node.error(StatusCode::kInvalidData, "scales/sizes length differs from the number of axes");
  std::vector<AxisPlan> plan(static_cast<size_t>(r));
  for (int64_t d = 0; d < r; ++d) plan[static_cast<size_t>(d)].in = plan[static_cast<size_t>(d)].out = x.dim(d);
  if (!roi.empty()) {
    if (roi.size() != 2 * na && roi.size() != static_cast<size_t>(2 * r))
      return node.error(StatusCode::kInvalidData, "roi length must be 2 * number of axes");
    const bool full = roi.size() == static_cast<size_t>(2 * r) && na != static_cast<size_t>(r);
    for (size_t i = 0; i < na; ++i) {
      const size_t d = static_cast<size_t>(axes[i]);
      plan[d].roi_start = full ? roi[d] : roi[i];
      plan[d].roi_end = full ? roi[d + static_cast<size_t>(r)] : roi[i + na];
    }
  }
  if (!scales.empty()) {
    for (size_t i = 0; i < na; ++i) {
      AxisPlan& a = plan[static_cast<size_t>(axes[i])];
      if (scales[i] <= 0) return node.error(StatusCode::kInvalidData, "scales must be positive");
      a.scale = scales[i];
      a.out = static_cast<int64_t>(std::floor(scales[i] * static_cast<double>(a.in)));
    }
  } else {
    const std::string policy = node.get_string("keep_aspect_ratio_policy", "stretch");
    for (size_t i = 0; i < na; ++i) {
      AxisPlan& a = plan[static_cast<size_t>(axes[i])];
      if (sizes[i] < 0) return node.error(StatusCode::kInvalidData, "negative size");
      a.scale = static_cast<double>(sizes[i]) / static_cast<double>(a.in);
      a.out = sizes[i];
    }
    if (policy != "stretch" && node.opset >= 18) {
      if (policy != "not_larger" && policy != "not_smaller")
        return node.error(StatusCode::kUnsupported, "keep_aspect_ratio_policy '" + policy + "'");
      double s = policy == "not_larger" ? std::numeric_limits<double>::infinity() : 0;
      for (int64_t a : axes)
        s = policy == "not_larger" ? std::min(s, plan[static_cast<size_t>(a)].scale)
                                   : std::max(s, plan[static_cast<size_t>(a)].scale);
      for (int64_t a : axes) {
        AxisPlan& ap = plan[static_cast<size_t>(a)];
        ap.scale = s;
        ap.out = static_cast<int64_t>(s * static_cast<double>(ap.in) + 0.5);
      }
    }
  }
  Shape out_shape;
  for (const auto& a : plan) out_shape.push_back(a.out);
  Tensor out = Tensor::uninitialized(x.dtype(), out_shape);
  if (out.numel() > 0) {
    if (x.numel() == 0) return node.error(StatusCode::kInvalidData, "cannot resize an empty input to a non-empty output");
    if (p.mode == Mode::kNearest) {
      FRUGAL_RETURN_IF_ERROR(run_nearest(node, x, p, plan, out));
    } else {
      FRUGAL_RETURN_IF_ERROR(run_interp(node, x, p, plan, out));
    }
  }
  ctx.set_output(0, out);
  return OkStatus();
}

}  // namespace

void register_resize_kernels(KernelRegistry& r) {
  register_ranges(r, "Resize", {10, 11, 13, 18, 19}, simple_kernel([](const NodeDef& n, KernelContext& c) {
                    return resize(n, c, false);
                  }));
  register_ranges(r, "Upsample", {7, 9}, simple_kernel([](const NodeDef& n, KernelContext& c) {
                    return resize(n, c, true);
                  }));
}

}  // namespace frugal::kernels
