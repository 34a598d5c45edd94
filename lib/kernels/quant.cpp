// Quantization ops: QuantizeLinear, DequantizeLinear (per-tensor, per-axis, blocked; 8/16-bit,
// packed 4/2-bit, float8 e4m3fn/e5m2 and float4 e2m1), DynamicQuantizeLinear.
// Every rounding/saturation step goes through frugal/quant_math.h (and quant_lowbit.h for the types it
// lacks) so these kernels agree bit for bit with the quantize pass.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "families.h"
#include "frugal/parallel.h"
#include "frugal/quant_math.h"
#include "kernel_util.h"
#include "quant_lowbit.h"

namespace frugal::kernels {
namespace {

// ---- storage access for the quantized types -------------------------------------------------

template <typename T>
struct NativeQ {
  static constexpr bool kPacked = false;
  static int32_t load(const void* p, int64_t i) { return static_cast<int32_t>(static_cast<const T*>(p)[i]); }
  static void store(void* p, int64_t i, int32_t v) { static_cast<T*>(p)[i] = static_cast<T>(v); }
};

template <int Bits, bool Signed>
struct PackedQ {
  static constexpr bool kPacked = true;
  static int32_t load(const void* p, int64_t i) {
    return quant::load_packed(static_cast<const uint8_t*>(p), i, Bits, Signed);
  }
  static void store(void* p, int64_t i, int32_t v) { quant::store_packed(static_cast<uint8_t*>(p), i, Bits, v); }
};

bool is_integer_qtype(DType t) {
  switch (t) {
    case DType::kInt8: case DType::kUInt8: case DType::kInt16: case DType::kUInt16: case DType::kInt32:
    case DType::kInt4: case DType::kUInt4: case DType::kInt2: case DType::kUInt2:
      return true;
    default:
      return false;
  }
}

const quant::MiniFloat* minifloat_of(DType t) {
  switch (t) {
    case DType::kFloat8E4M3FN: return &quant::kE4M3FN;
    case DType::kFloat8E5M2: return &quant::kE5M2;
    case DType::kFloat4E2M1: return &quant::kE2M1;
    default: return nullptr;
  }
}

quant::QRange qrange_of(DType t) {
  switch (t) {
    case DType::kInt8: return quant::kInt8;
    case DType::kUInt8: return quant::kUInt8;
    case DType::kInt16: return quant::kInt16;
    case DType::kUInt16: return quant::kUInt16;
    case DType::kInt4: return quant::kInt4;
    case DType::kUInt4: return quant::kUInt4;
    case DType::kInt2: return quant::kInt2;
    case DType::kUInt2: return quant::kUInt2;
    default: return quant::kInt32;
  }
}

template <typename F>
Status dispatch_qint(DType t, const NodeDef& node, F&& f) {
  switch (t) {
    case DType::kInt8: return f(TypeTag<NativeQ<int8_t>>{});
    case DType::kUInt8: return f(TypeTag<NativeQ<uint8_t>>{});
    case DType::kInt16: return f(TypeTag<NativeQ<int16_t>>{});
    case DType::kUInt16: return f(TypeTag<NativeQ<uint16_t>>{});
    case DType::kInt32: return f(TypeTag<NativeQ<int32_t>>{});
    case DType::kInt4: return f(TypeTag<PackedQ<4, true>>{});
    case DType::kUInt4: return f(TypeTag<PackedQ<4, false>>{});
    case DType::kInt2: return f(TypeTag<PackedQ<2, true>>{});
    case DType::kUInt2: return f(TypeTag<PackedQ<2, false>>{});
    default:
      return node.error(StatusCode::kUnsupported, std::string("quantized dtype ") + dtype_name(t) + " not supported");
  }
}

// Minifloat element i (float8 one per byte, float4 packed two per byte).
float load_mini(const void* p, int64_t i, DType t) {
  const auto* mf = minifloat_of(t);
  const uint32_t bits = t == DType::kFloat4E2M1
                            ? static_cast<uint32_t>(quant::load_packed(static_cast<const uint8_t*>(p), i, 4, false))
                            : static_cast<const uint8_t*>(p)[i];
  return quant::minifloat_to_float(bits, *mf);
}

// ---- granularity ----------------------------------------------------------------------------

// How scale/zero-point elements map onto x. For every run of `count` consecutive x elements starting
// at `begin`, the scale index is `sbase + j * sstride`.
struct Granularity {
  enum class Mode { kTensor, kAxis, kBlocked } mode = Mode::kTensor;
  int64_t outer = 1, dim = 1, inner = 1, block = 0, scale_dim = 1;
  int64_t numel = 0;
};

StatusOr<Granularity> make_granularity(const NodeDef& node, const Shape& x, const Shape& s, int64_t axis_attr,
                                       int64_t block_size) {
  Granularity g;
  g.numel = shape_numel(x);
  const int64_t sn = shape_numel(s);
  if (block_size <= 0 && s.size() <= 1 && sn == 1) return g;  // per-tensor
  const int64_t rank = static_cast<int64_t>(x.size());
  FRUGAL_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(axis_attr, rank, node));
  if (rank == 0) return node.error(StatusCode::kInvalidModel, "per-axis scale needs x of rank >= 1");
  g.dim = x[static_cast<size_t>(axis)];
  for (int64_t d = 0; d < axis; ++d) g.outer *= x[static_cast<size_t>(d)];
  for (int64_t d = axis + 1; d < rank; ++d) g.inner *= x[static_cast<size_t>(d)];
  if (block_size <= 0) {
    if (s.size() != 1 || s[0] != g.dim)
      return node.error(StatusCode::kInvalidModel, "per-axis scale shape " + shape_str(s) + " does not match dim " +
                                                       std::to_string(g.dim) + " of x " + shape_str(x));
    g.mode = Granularity::Mode::kAxis;
    return g;
  }
  g.mode = Granularity::Mode::kBlocked;
  g.block = block_size;
  g.scale_dim = (g.dim + block_size - 1) / block_size;
  bool ok = static_cast<int64_t>(s.size()) == rank;
  for (int64_t d = 0; ok && d < rank; ++d)
    ok = s[static_cast<size_t>(d)] == (d == axis ? g.scale_dim : x[static_cast<size_t>(d)]);
  if (!ok)
    return node.error(StatusCode::kInvalidModel, "blocked scale shape " + shape_str(s) + " does not match x " +
                                                     shape_str(x) + " with block_size " + std::to_string(block_size));
  return g;
}

// Calls fn(begin, count, sbase, sstride) over all of x. Parallel unless `serial` (packed outputs,
// whose bytes are shared by neighbouring elements).
template <typename Fn>
void for_each_run(const Granularity& g, bool serial, Fn&& fn) {
  const int64_t grain = serial ? std::numeric_limits<int64_t>::max() : 1;
  switch (g.mode) {
    case Granularity::Mode::kTensor: {
      const int64_t chunk = 1 << 14;
      const int64_t nchunks = (g.numel + chunk - 1) / chunk;
      parallel_for(nchunks, serial ? grain : 2, [&](int64_t b, int64_t e) {
        for (int64_t c = b; c < e; ++c) {
          const int64_t s = c * chunk;
          fn(s, std::min(chunk, g.numel - s), int64_t{0}, int64_t{0});
        }
      });
      break;
    }
    case Granularity::Mode::kAxis:
      if (g.inner == 1) {
        // The quantized axis is the last one (MatMul weights [K, N] on axis 1): one run per outer
        // row walks the scales with stride 1, instead of a run (and a div/mod) per element.
        const int64_t row_grain = serial ? grain : std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(g.dim, 1));
        parallel_for(g.outer, row_grain, [&](int64_t b, int64_t e) {
          for (int64_t o = b; o < e; ++o) fn(o * g.dim, g.dim, int64_t{0}, int64_t{1});
        });
        break;
      }
      [[fallthrough]];
    case Granularity::Mode::kBlocked: {
      const int64_t rows = g.outer * g.dim;
      const int64_t row_grain = serial ? grain : std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(g.inner, 1));
      parallel_for(rows, row_grain, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          const int64_t o = r / g.dim, d = r % g.dim;
          if (g.mode == Granularity::Mode::kAxis)
            fn(r * g.inner, g.inner, d, int64_t{0});
          else
            fn(r * g.inner, g.inner, (o * g.scale_dim + d / g.block) * g.inner, int64_t{1});
        }
      });
      break;
    }
  }
}

bool is_scale_type(DType t) { return t == DType::kFloat || t == DType::kFloat16 || t == DType::kBFloat16; }

// Zero points as int32 (integer types) or float (minifloat types); empty tensor -> zeros.
std::vector<int32_t> zero_points_int(const Tensor* zp, int64_t n) {
  std::vector<int32_t> v(static_cast<size_t>(n), 0);
  if (!zp) return v;
  const DType t = zp->dtype();
  if (t == DType::kInt4 || t == DType::kUInt4 || t == DType::kInt2 || t == DType::kUInt2) {
    const int bits = dtype_bits(t);
    for (int64_t i = 0; i < n; ++i)
      v[static_cast<size_t>(i)] =
          quant::load_packed(static_cast<const uint8_t*>(zp->raw()), i, bits, dtype_is_signed(t));
  } else {
    const auto w = zp->to_int64_vector();
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<int32_t>(w[static_cast<size_t>(i)]);
  }
  return v;
}

std::vector<float> zero_points_mini(const Tensor* zp, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n), 0.0f);
  if (!zp) return v;
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = load_mini(zp->raw(), i, zp->dtype());
  return v;
}

// ---- QuantizeLinear -------------------------------------------------------------------------

class QuantizeLinearKernel : public Kernel {
 public:
  explicit QuantizeLinearKernel(const NodeDef& n)
      : node_(n),
        axis_(n.get_int("axis", 1)),
        block_(n.get_int("block_size", 0)),
        out_attr_(static_cast<DType>(n.get_int("output_dtype", 0))),
        saturate_(n.get_int("saturate", 1) != 0) {}

  Status compute(KernelContext& ctx) override {
    const Tensor& x_in = ctx.input(0);
    const Tensor& s_in = ctx.input(1);
    const Tensor* zp = ctx.has_input(2) ? &ctx.input(2) : nullptr;
    if (!is_scale_type(s_in.dtype()))
      return node_.error(StatusCode::kUnsupported, std::string("scale dtype ") + dtype_name(s_in.dtype()));
    DType out = zp ? zp->dtype() : (out_attr_ != DType::kUndefined ? out_attr_ : DType::kUInt8);
    if (zp && out_attr_ != DType::kUndefined && out_attr_ != out)
      return node_.error(StatusCode::kInvalidModel, "output_dtype disagrees with the zero point's dtype");
    // Element counts, not shapes: exporters write a [1] zero point beside a scalar scale.
    if (zp && zp->numel() != s_in.numel())
      return node_.error(StatusCode::kInvalidModel, "zero point shape " + shape_str(zp->shape()) +
                                                        " differs from scale shape " + shape_str(s_in.shape()));
    FRUGAL_ASSIGN_OR_RETURN(Granularity g, make_granularity(node_, x_in.shape(), s_in.shape(), axis_, block_));
    const Tensor x = x_in.to_float();
    const Tensor s = s_in.to_float();
    const float* xp = x.data<float>();
    const float* sp = s.data<float>();
    Tensor& y = ctx.allocate_output(0, out, x_in.shape());
    void* yp = y.raw_mut();
    const int64_t sn = s.numel();

    if (const auto* mf = minifloat_of(out)) {
      const auto z = zero_points_mini(zp, sn);
      const bool packed = out == DType::kFloat4E2M1;
      for_each_run(g, packed, [&](int64_t b, int64_t cnt, int64_t sb, int64_t ss) {
        for (int64_t j = 0; j < cnt; ++j) {
          const size_t k = static_cast<size_t>(sb + j * ss);
          // Minifloat targets: no integer rounding, the cast itself rounds half to even.
          const uint32_t bits = quant::float_to_minifloat(xp[b + j] / sp[k] + z[k], *mf, saturate_);
          if (packed)
            quant::store_packed(static_cast<uint8_t*>(yp), b + j, 4, static_cast<int32_t>(bits));
          else
            static_cast<uint8_t*>(yp)[b + j] = static_cast<uint8_t>(bits);
        }
      });
      return OkStatus();
    }
    if (!is_integer_qtype(out) || out == DType::kInt32)
      return node_.error(StatusCode::kUnsupported, std::string("cannot quantize to ") + dtype_name(out));
    const auto z = zero_points_int(zp, sn);
    const quant::QRange r = qrange_of(out);
    return dispatch_qint(out, node_, [&](auto tag) -> Status {
      using Q = typename decltype(tag)::type;
      for_each_run(g, Q::kPacked, [&](int64_t b, int64_t cnt, int64_t sb, int64_t ss) {
        if (ss == 0) {
          const float sc = sp[sb];
          const int32_t zz = z[static_cast<size_t>(sb)];
          for (int64_t j = 0; j < cnt; ++j) Q::store(yp, b + j, quant::quantize_value(xp[b + j], sc, zz, r.lo, r.hi));
        } else {
          for (int64_t j = 0; j < cnt; ++j) {
            const int64_t k = sb + j * ss;
            Q::store(yp, b + j, quant::quantize_value(xp[b + j], sp[k], z[static_cast<size_t>(k)], r.lo, r.hi));
          }
        }
      });
      return OkStatus();
    });
  }

 private:
  NodeDef node_;
  int64_t axis_, block_;
  DType out_attr_;
  bool saturate_;
};

// ---- DequantizeLinear -----------------------------------------------------------------------

class DequantizeLinearKernel : public Kernel {
 public:
  explicit DequantizeLinearKernel(const NodeDef& n)
      : node_(n),
        axis_(n.get_int("axis", 1)),
        block_(n.get_int("block_size", 0)),
        out_attr_(static_cast<DType>(n.get_int("output_dtype", 0))) {}

  Status compute(KernelContext& ctx) override {
    const Tensor& x = ctx.input(0);
    const Tensor& s_in = ctx.input(1);
    const Tensor* zp = ctx.has_input(2) ? &ctx.input(2) : nullptr;
    if (!is_scale_type(s_in.dtype()))
      return node_.error(StatusCode::kUnsupported, std::string("scale dtype ") + dtype_name(s_in.dtype()));
    if (zp && zp->dtype() != x.dtype())
      return node_.error(StatusCode::kInvalidModel, "zero point dtype differs from x dtype");
    // Element counts, not shapes: exporters write a [1] zero point beside a scalar scale.
    if (zp && zp->numel() != s_in.numel())
      return node_.error(StatusCode::kInvalidModel, "zero point shape " + shape_str(zp->shape()) +
                                                        " differs from scale shape " + shape_str(s_in.shape()));
    const DType out = out_attr_ != DType::kUndefined ? out_attr_ : s_in.dtype();
    if (!is_scale_type(out))
      return node_.error(StatusCode::kUnsupported, std::string("output dtype ") + dtype_name(out));
    FRUGAL_ASSIGN_OR_RETURN(Granularity g, make_granularity(node_, x.shape(), s_in.shape(), axis_, block_));
    const Tensor s = s_in.to_float();
    const float* sp = s.data<float>();
    const int64_t sn = s.numel();
    Tensor yf = out == DType::kFloat ? ctx.allocate_output(0, out, x.shape()) : Tensor::uninitialized(DType::kFloat, x.shape());
    float* yp = yf.mut<float>();
    const void* xp = x.raw();

    if (minifloat_of(x.dtype())) {
      const auto z = zero_points_mini(zp, sn);
      const DType xt = x.dtype();
      for_each_run(g, false, [&](int64_t b, int64_t cnt, int64_t sb, int64_t ss) {
        for (int64_t j = 0; j < cnt; ++j) {
          const size_t k = static_cast<size_t>(sb + j * ss);
          yp[b + j] = (load_mini(xp, b + j, xt) - z[k]) * sp[k];
        }
      });
    } else {
      if (!is_integer_qtype(x.dtype()))
        return node_.error(StatusCode::kUnsupported, std::string("cannot dequantize ") + dtype_name(x.dtype()));
      const auto z = zero_points_int(zp, sn);
      FRUGAL_RETURN_IF_ERROR(dispatch_qint(x.dtype(), node_, [&](auto tag) -> Status {
        using Q = typename decltype(tag)::type;
        for_each_run(g, false, [&](int64_t b, int64_t cnt, int64_t sb, int64_t ss) {
          for (int64_t j = 0; j < cnt; ++j) {
            const int64_t k = sb + j * ss;
            // int64 difference: int32 inputs minus a zero point must not wrap.
            const int64_t d = static_cast<int64_t>(Q::load(xp, b + j)) - z[static_cast<size_t>(k)];
            yp[b + j] = static_cast<float>(d) * sp[k];
          }
        });
        return OkStatus();
      }));
    }
    if (out != DType::kFloat) ctx.set_output(0, from_float32(yf, out));
    return OkStatus();
  }

 private:
  NodeDef node_;
  int64_t axis_, block_;
  DType out_attr_;
};

// ---- DynamicQuantizeLinear ------------------------------------------------------------------

Status dynamic_quantize_linear(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x_in = ctx.input(0);
  if (!dtype_is_float(x_in.dtype()))
    return node.error(StatusCode::kUnsupported, std::string("x dtype ") + dtype_name(x_in.dtype()));
  const Tensor x = x_in.to_float();
  const float* xp = x.data<float>();
  const int64_t n = x.numel();
  float lo = 0.0f, hi = 0.0f;  // the range always includes 0 (spec)
  for (int64_t i = 0; i < n; ++i) {
    lo = std::min(lo, xp[i]);
    hi = std::max(hi, xp[i]);
  }
  const quant::QParams p = quant::asymmetric_params(lo, hi, quant::kUInt8);
  Tensor& y = ctx.allocate_output(0, DType::kUInt8, x.shape());
  uint8_t* yp = y.mut<uint8_t>();
  parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      yp[i] = static_cast<uint8_t>(quant::quantize_value(xp[i], p.scale, p.zero_point, 0, 255));
  });
  if (ctx.num_outputs() > 1) ctx.allocate_output(1, DType::kFloat, {}).mut<float>()[0] = p.scale;
  if (ctx.num_outputs() > 2)
    ctx.allocate_output(2, DType::kUInt8, {}).mut<uint8_t>()[0] = static_cast<uint8_t>(p.zero_point);
  return OkStatus();
}

}  // namespace

void register_quant_kernels(KernelRegistry& r) {
  r.add("QuantizeLinear", 10, kMaxOpset, [](const NodeDef& n) -> StatusOr<std::unique_ptr<Kernel>> {
    return std::unique_ptr<Kernel>(new QuantizeLinearKernel(n));
  });
  r.add("DequantizeLinear", 10, kMaxOpset, [](const NodeDef& n) -> StatusOr<std::unique_ptr<Kernel>> {
    return std::unique_ptr<Kernel>(new DequantizeLinearKernel(n));
  });
  r.add("DynamicQuantizeLinear", 11, kMaxOpset, [](const NodeDef& n) -> StatusOr<std::unique_ptr<Kernel>> {
    return std::unique_ptr<Kernel>(new FnKernel([n](KernelContext& ctx) { return dynamic_quantize_linear(n, ctx); }));
  });
}

}  // namespace frugal::kernels
