// Elementwise CPU kernels: arithmetic (with numpy and legacy opset<7 broadcasting), unary math,
// variadic Min/Max/Sum/Mean, comparisons, logic, Where, Cast/CastLike, Identity and Dropout.
// Binary ops go through the row engine in elementwise_util.h; float16/bfloat16 compute in float32.
// No FP-exception traps are observed anywhere in frugal, and without -ftrapping-math GCC if-converts
// the float selects in these loops (clamps, NaN checks, ReLU-style branches) and vectorises them.
#pragma GCC optimize("no-trapping-math")

#include <cmath>
#include <limits>
#include <type_traits>

#include "elementwise_cast.h"
#include "elementwise_math.h"
#include "elementwise_util.h"
#include "families.h"
#include "gemm_epilogue.h"
#include "kernel_util.h"

namespace frugal::kernels {

namespace {

using KernelPtr = std::unique_ptr<Kernel>;

KernelPtr make_kernel(FnKernel::Fn fn) { return std::make_unique<FnKernel>(std::move(fn)); }

Status unsupported_dtype(const NodeDef& node, DType t) {
  return node.error(StatusCode::kUnsupported, std::string("dtype ") + dtype_name(t) + " not supported");
}

// Signed integer arithmetic wraps (as onnxruntime's does) instead of being undefined behaviour.
template <typename T>
using WrapT = std::conditional_t<(sizeof(T) < 4), uint32_t, std::make_unsigned_t<T>>;

template <typename T>
T int_div(T x, T y) {
  if (y == 0) return 0;  // undefined in ONNX; avoid the trap
  if constexpr (std::is_signed_v<T>)
    if (y == T(-1)) return static_cast<T>(WrapT<T>(0) - static_cast<WrapT<T>>(x));
  return static_cast<T>(x / y);  // C truncation toward zero, as the spec's int Div
}

template <typename T>
T int_fmod(T x, T y) {
  if (y == 0) return 0;
  if constexpr (std::is_signed_v<T>)
    if (y == T(-1)) return 0;
  return static_cast<T>(x % y);  // sign of the dividend
}

template <typename T>
T int_pymod(T x, T y) {
  T r = int_fmod(x, y);
  if constexpr (std::is_signed_v<T>)
    if (r != 0 && ((r < 0) != (y < 0))) r = static_cast<T>(r + y);  // sign of the divisor
  return r;
}

enum class BinOp { kAdd, kSub, kMul, kDiv, kMod, kFMod, kMin, kMax };

template <typename T>
void arith_typed(BinOp op, const BinaryPlan& p, const T* a, const T* b, T* o) {
  if constexpr (std::is_integral_v<T>) {
    using W = WrapT<T>;
    switch (op) {
      case BinOp::kAdd: return binary_apply(p, a, b, o, [](T x, T y) { return T(W(x) + W(y)); });
      case BinOp::kSub: return binary_apply(p, a, b, o, [](T x, T y) { return T(W(x) - W(y)); });
      case BinOp::kMul: return binary_apply(p, a, b, o, [](T x, T y) { return T(W(x) * W(y)); });
      case BinOp::kDiv: return binary_apply(p, a, b, o, [](T x, T y) { return int_div(x, y); });
      case BinOp::kMod: return binary_apply(p, a, b, o, [](T x, T y) { return int_pymod(x, y); });
      case BinOp::kFMod: return binary_apply(p, a, b, o, [](T x, T y) { return int_fmod(x, y); });
      case BinOp::kMin: return binary_apply(p, a, b, o, [](T x, T y) { return x < y ? x : y; });
      case BinOp::kMax: return binary_apply(p, a, b, o, [](T x, T y) { return x > y ? x : y; });
    }
  } else {
    switch (op) {
      case BinOp::kAdd: return binary_apply(p, a, b, o, [](T x, T y) { return x + y; });
      case BinOp::kSub: return binary_apply(p, a, b, o, [](T x, T y) { return x - y; });
      case BinOp::kMul: return binary_apply(p, a, b, o, [](T x, T y) { return x * y; });
      case BinOp::kDiv: return binary_apply(p, a, b, o, [](T x, T y) { return x / y; });
      case BinOp::kMod:
        return binary_apply(p, a, b, o, [](T x, T y) {
          T r = std::fmod(x, y);
          if (r != 0 && ((r < 0) != (y < 0))) r += y;
          return r;
        });
      case BinOp::kFMod: return binary_apply(p, a, b, o, [](T x, T y) { return T(std::fmod(x, y)); });
      // NaN propagates, as in numpy's minimum/maximum.
      case BinOp::kMin: return binary_apply(p, a, b, o, [](T x, T y) { return (x < y || x != x) ? x : y; });
      case BinOp::kMax: return binary_apply(p, a, b, o, [](T x, T y) { return (x > y || x != x) ? x : y; });
    }
  }
}

// out = a op b for same-dtype numeric tensors (16-bit floats must already be float32); with relu, a
// Relu fused into this node by the Executor follows (in the same pass for a float Add: a residual
// Add + Relu then reads and writes each value once).
Status arith(BinOp op, const Tensor& a, const Tensor& b, const Shape& b_shape, const NodeDef& node, Tensor& out,
             bool relu = false) {
  if (a.dtype() != b.dtype())
    return node.error(StatusCode::kInvalidModel, std::string("input dtypes differ: ") + dtype_name(a.dtype()) +
                                                     " vs " + dtype_name(b.dtype()));
  FRUGAL_ASSIGN_OR_RETURN(auto plan, make_binary_plan(a.shape(), b_shape, node));
  return dispatch_numeric(a.dtype(), node, [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    out = Tensor::uninitialized(a.dtype(), plan.out);
    T* o = out.mut<T>();
    if constexpr (std::is_floating_point_v<T>) {
      if (relu && op == BinOp::kAdd) {
        binary_apply(plan, a.data<T>(), b.data<T>(), o, [](T x, T y) { return relu_value(T(x + y)); });
        return Status();
      }
    }
    arith_typed<T>(op, plan, a.data<T>(), b.data<T>(), o);
    if (relu) unary_map(o, o, out.numel(), [](T x) { return relu_value(x); });
    return Status();
  });
}

// Legacy (opset < 7) broadcast: B's shape matches a contiguous run of A's dims starting at `axis`
// (default: the trailing dims). Returns B's shape padded with 1s to A's rank.
StatusOr<Shape> legacy_b_shape(const Shape& a, const Shape& b, int64_t axis, const NodeDef& node) {
  const int64_t ra = static_cast<int64_t>(a.size()), rb = static_cast<int64_t>(b.size());
  if (rb > ra) return node.error(StatusCode::kInvalidModel, "legacy broadcast: B has higher rank than A");
  if (axis == std::numeric_limits<int64_t>::min()) axis = ra - rb;
  if (axis < 0) axis += ra;
  if (axis < 0 || axis + rb > ra)
    return node.error(StatusCode::kInvalidModel, "legacy broadcast: axis out of range");
  Shape s(static_cast<size_t>(ra), 1);
  for (int64_t i = 0; i < rb; ++i) s[static_cast<size_t>(axis + i)] = b[static_cast<size_t>(i)];
  return s;
}

struct LegacyBroadcast {
  bool on = false;
  int64_t axis = std::numeric_limits<int64_t>::min();
};

LegacyBroadcast legacy_of(const NodeDef& node) {
  LegacyBroadcast l;
  if (node.opset < 7 && node.get_int("broadcast", 0) != 0) {
    l.on = true;
    if (node.has("axis")) l.axis = node.get_int("axis", 0);
  }
  return l;
}

StatusOr<Shape> rhs_shape(const LegacyBroadcast& l, const Tensor& a, const Tensor& b, const NodeDef& node) {
  if (!l.on) return b.shape();
  return legacy_b_shape(a.shape(), b.shape(), l.axis, node);
}

// Whether the Executor's plan-time fusion put a Relu into this Add/Sum (see gemm_epilogue.h).
bool has_fused_relu(const NodeDef& node) { return activation_of(node) == Activation::kRelu; }

KernelFactory binary_arith(BinOp op) {
  return [op](const NodeDef& node) -> StatusOr<KernelPtr> {
    BinOp eff = op;
    if (op == BinOp::kMod && node.get_int("fmod", 0) != 0) eff = BinOp::kFMod;
    const LegacyBroadcast legacy = legacy_of(node);
    return make_kernel([node, eff, legacy](KernelContext& ctx) -> Status {
      return with_half_as_float(ctx, {ctx.input(0), ctx.input(1)}, [&](std::vector<Tensor>& in, Tensor& out) {
        FRUGAL_ASSIGN_OR_RETURN(Shape bs, rhs_shape(legacy, in[0], in[1], node));
        return arith(eff, in[0], in[1], bs, node, out, has_fused_relu(node));
      });
    });
  };
}

// Variadic Min/Max/Sum/Mean: a pairwise fold with broadcasting.
KernelFactory variadic(BinOp op, bool mean) {
  return [op, mean](const NodeDef& node) -> StatusOr<KernelPtr> {
    return make_kernel([node, op, mean](KernelContext& ctx) -> Status {
      std::vector<Tensor> ins;
      for (size_t i = 0; i < ctx.num_inputs(); ++i)
        if (ctx.has_input(i)) ins.push_back(ctx.input(i));
      if (ins.empty()) return node.error(StatusCode::kInvalidModel, "needs at least one input");
      return with_half_as_float(ctx, ins, [&](std::vector<Tensor>& in, Tensor& out) -> Status {
        // The Executor fuses a Relu only into a Sum of two or more inputs; it goes with the last step.
        Tensor acc = in[0];
        for (size_t i = 1; i < in.size(); ++i) {
          Tensor next;
          const bool relu = i + 1 == in.size() && !mean && has_fused_relu(node);
          FRUGAL_RETURN_IF_ERROR(arith(op, acc, in[i], in[i].shape(), node, next, relu));
          acc = next;
        }
        if (mean && in.size() > 1) {
          FRUGAL_RETURN_IF_ERROR(dispatch_float(acc.dtype(), node, [&](auto tag) -> Status {
            using T = typename decltype(tag)::type;
            T* d = acc.mut<T>();
            const T inv = T(1) / static_cast<T>(in.size());
            unary_map(d, d, acc.numel(), [inv](T x) { return x * inv; });
            return Status();
          }));
        }
        out = acc;
        return Status();
      });
    });
  };
}

// Pow: base and exponent may have different types; the output has the base's type.
template <typename B, typename E>
void pow_typed(const BinaryPlan& p, const B* a, const E* e, B* o) {
  if constexpr (std::is_integral_v<B> && std::is_integral_v<E>) {
    binary_apply(p, a, e, o, [](B x, E y) -> B {
      // Exact integer power by squaring; negative exponents follow truncation (only |x| == 1 survive).
      if constexpr (std::is_signed_v<E>) {
        if (y < 0) {
          if (x == 1) return 1;
          if constexpr (std::is_signed_v<B>)
            if (x == B(-1)) return (y % 2) ? B(-1) : B(1);
          return 0;
        }
      }
      using W = WrapT<B>;
      W r = 1, base = static_cast<W>(x);
      uint64_t n = static_cast<uint64_t>(y);
      while (n) {
        if (n & 1) r = static_cast<W>(r * base);
        base = static_cast<W>(base * base);
        n >>= 1;
      }
      return static_cast<B>(r);
    });
  } else if constexpr (std::is_integral_v<B>) {
    binary_apply(p, a, e, o, [](B x, E y) { return static_cast<B>(std::pow(double(x), double(y))); });
  } else if constexpr (std::is_same_v<B, float> && std::is_same_v<E, float>) {
    binary_apply(p, a, e, o, [](float x, float y) { return std::pow(x, y); });
  } else {
    binary_apply(p, a, e, o, [](B x, E y) { return static_cast<B>(std::pow(double(x), double(y))); });
  }
}

Status pow_tensors(const Tensor& a, const Tensor& e, const Shape& e_shape, const NodeDef& node, Tensor& out) {
  FRUGAL_ASSIGN_OR_RETURN(auto plan, make_binary_plan(a.shape(), e_shape, node));
  // A scalar float exponent of 2, 3, 0.5 or 1 (LayerNorm decompositions) skips pow().
  if (e.numel() == 1 && (a.dtype() == DType::kFloat || a.dtype() == DType::kDouble) &&
      (e.dtype() == DType::kFloat || e.dtype() == DType::kDouble)) {
    const double ev = e.dtype() == DType::kFloat ? double(*e.data<float>()) : *e.data<double>();
    if (ev == 2.0 || ev == 3.0 || ev == 0.5 || ev == 1.0) {
      return dispatch_float(a.dtype(), node, [&](auto tag) -> Status {
        using T = typename decltype(tag)::type;
        out = Tensor::uninitialized(a.dtype(), plan.out);
        const T* x = a.data<T>();
        T* o = out.mut<T>();
        const int64_t n = a.numel();
        if (plan.total != n) return node.error(StatusCode::kInternal, "scalar exponent changed the shape");
        if (ev == 2.0) unary_map(x, o, n, [](T v) { return v * v; });
        else if (ev == 3.0) unary_map(x, o, n, [](T v) { return v * v * v; });
        else if (ev == 0.5) unary_map(x, o, n, [](T v) { return std::sqrt(v); });
        else unary_map(x, o, n, [](T v) { return v; });
        return Status();
      });
    }
  }
  return dispatch_numeric(a.dtype(), node, [&](auto btag) -> Status {
    using B = typename decltype(btag)::type;
    return dispatch_numeric(e.dtype(), node, [&](auto etag) -> Status {
      using E = typename decltype(etag)::type;
      out = Tensor::uninitialized(a.dtype(), plan.out);
      pow_typed<B, E>(plan, a.data<B>(), e.data<E>(), out.mut<B>());
      return Status();
    });
  });
}

StatusOr<KernelPtr> pow_factory(const NodeDef& node) {
  const LegacyBroadcast legacy = legacy_of(node);
  return make_kernel([node, legacy](KernelContext& ctx) -> Status {
    return with_half_as_float(ctx, {ctx.input(0), ctx.input(1)}, [&](std::vector<Tensor>& in, Tensor& out) {
      FRUGAL_ASSIGN_OR_RETURN(Shape es, rhs_shape(legacy, in[0], in[1], node));
      return pow_tensors(in[0], in[1], es, node, out);
    });
  });
}

// ---- unary math ----

enum class UnOp { kSqrt, kExp, kLog, kNeg, kAbs, kReciprocal, kFloor, kCeil, kSign, kRound };

template <typename T>
void unary_typed(UnOp op, const T* x, T* o, int64_t n) {
  if constexpr (std::is_floating_point_v<T>) {
    switch (op) {
      case UnOp::kSqrt: return unary_map(x, o, n, [](T v) { return std::sqrt(v); });
      case UnOp::kExp:
        if constexpr (std::is_same_v<T, float>) return unary_map(x, o, n, [](T v) { return vexpf(v); });
        else return unary_map(x, o, n, [](T v) { return std::exp(v); });
      case UnOp::kLog: return unary_map(x, o, n, [](T v) { return std::log(v); });
      case UnOp::kNeg: return unary_map(x, o, n, [](T v) { return -v; });
      case UnOp::kAbs: return unary_map(x, o, n, [](T v) { return std::fabs(v); });
      case UnOp::kReciprocal: return unary_map(x, o, n, [](T v) { return T(1) / v; });
      case UnOp::kFloor: return unary_map(x, o, n, [](T v) { return std::floor(v); });
      case UnOp::kCeil: return unary_map(x, o, n, [](T v) { return std::ceil(v); });
      case UnOp::kSign: return unary_map(x, o, n, [](T v) { return v > 0 ? T(1) : v < 0 ? T(-1) : v; });
      // Halves round to even (the default rounding mode), as the spec asks.
      case UnOp::kRound: return unary_map(x, o, n, [](T v) { return std::nearbyint(v); });
    }
  } else {
    using W = WrapT<T>;
    switch (op) {
      case UnOp::kNeg: return unary_map(x, o, n, [](T v) { return T(W(0) - W(v)); });
      case UnOp::kAbs:
        if constexpr (std::is_signed_v<T>) return unary_map(x, o, n, [](T v) { return v < 0 ? T(W(0) - W(v)) : v; });
        else return unary_map(x, o, n, [](T v) { return v; });
      case UnOp::kSign: return unary_map(x, o, n, [](T v) { return v > 0 ? T(1) : v < 0 ? T(-1) : T(0); });
      case UnOp::kFloor:
      case UnOp::kCeil:
      case UnOp::kRound: return unary_map(x, o, n, [](T v) { return v; });
      default: return;  // rejected in the factory
    }
  }
}

KernelFactory unary(UnOp op) {
  const bool int_ok = op == UnOp::kNeg || op == UnOp::kAbs || op == UnOp::kSign;
  return [op, int_ok](const NodeDef& node) -> StatusOr<KernelPtr> {
    return make_kernel([node, op, int_ok](KernelContext& ctx) -> Status {
      return with_half_as_float(ctx, {ctx.input(0)}, [&](std::vector<Tensor>& in, Tensor& out) -> Status {
        const Tensor& x = in[0];
        if (!int_ok && !dtype_is_float(x.dtype())) return unsupported_dtype(node, x.dtype());
        return dispatch_numeric(x.dtype(), node, [&](auto tag) -> Status {
          using T = typename decltype(tag)::type;
          out = Tensor::uninitialized(x.dtype(), x.shape());
          unary_typed<T>(op, x.data<T>(), out.mut<T>(), x.numel());
          return Status();
        });
      });
    });
  };
}

// ---- comparison and logic ----

enum class CmpOp { kEq, kLt, kGt, kLe, kGe };

template <typename T>
void compare_typed(CmpOp op, const BinaryPlan& p, const T* a, const T* b, bool* o) {
  switch (op) {
    case CmpOp::kEq: return binary_apply(p, a, b, o, [](T x, T y) { return x == y; });
    case CmpOp::kLt: return binary_apply(p, a, b, o, [](T x, T y) { return x < y; });
    case CmpOp::kGt: return binary_apply(p, a, b, o, [](T x, T y) { return x > y; });
    case CmpOp::kLe: return binary_apply(p, a, b, o, [](T x, T y) { return x <= y; });
    case CmpOp::kGe: return binary_apply(p, a, b, o, [](T x, T y) { return x >= y; });
  }
}

KernelFactory compare(CmpOp op) {
  return [op](const NodeDef& node) -> StatusOr<KernelPtr> {
    const LegacyBroadcast legacy = legacy_of(node);
    return make_kernel([node, op, legacy](KernelContext& ctx) -> Status {
      Tensor a = ctx.input(0), b = ctx.input(1);
      if (a.dtype() != b.dtype()) return node.error(StatusCode::kInvalidModel, "input dtypes differ");
      if (is_half_type(a.dtype())) {
        a = to_float32(a);
        b = to_float32(b);
      }
      FRUGAL_ASSIGN_OR_RETURN(Shape bs, rhs_shape(legacy, a, b, node));
      FRUGAL_ASSIGN_OR_RETURN(auto plan, make_binary_plan(a.shape(), bs, node));
      Tensor out = Tensor::uninitialized(DType::kBool, plan.out);
      Status st;
      if (a.dtype() == DType::kBool) {
        compare_typed<uint8_t>(op, plan, a.data<uint8_t>(), b.data<uint8_t>(), out.mut<bool>());
      } else {
        st = dispatch_numeric(a.dtype(), node, [&](auto tag) -> Status {
          using T = typename decltype(tag)::type;
          compare_typed<T>(op, plan, a.data<T>(), b.data<T>(), out.mut<bool>());
          return Status();
        });
      }
      FRUGAL_RETURN_IF_ERROR(st);
      ctx.set_output(0, out);
      return Status();
    });
  };
}

enum class LogicOp { kAnd, kOr, kXor };

KernelFactory logic(LogicOp op) {
  return [op](const NodeDef& node) -> StatusOr<KernelPtr> {
    const LegacyBroadcast legacy = legacy_of(node);
    return make_kernel([node, op, legacy](KernelContext& ctx) -> Status {
      const Tensor &a = ctx.input(0), &b = ctx.input(1);
      if (a.dtype() != DType::kBool || b.dtype() != DType::kBool) return unsupported_dtype(node, a.dtype());
      FRUGAL_ASSIGN_OR_RETURN(Shape bs, rhs_shape(legacy, a, b, node));
      FRUGAL_ASSIGN_OR_RETURN(auto plan, make_binary_plan(a.shape(), bs, node));
      Tensor out = Tensor::uninitialized(DType::kBool, plan.out);
      const uint8_t *x = a.data<uint8_t>(), *y = b.data<uint8_t>();
      uint8_t* o = out.mut<uint8_t>();
      // Bools are 0/1 bytes, so bitwise ops are the logical ones.
      switch (op) {
        case LogicOp::kAnd: binary_apply(plan, x, y, o, [](uint8_t p, uint8_t q) { return uint8_t(p & q); }); break;
        case LogicOp::kOr: binary_apply(plan, x, y, o, [](uint8_t p, uint8_t q) { return uint8_t(p | q); }); break;
        case LogicOp::kXor: binary_apply(plan, x, y, o, [](uint8_t p, uint8_t q) { return uint8_t(p ^ q); }); break;
      }
      ctx.set_output(0, out);
      return Status();
    });
  };
}

StatusOr<KernelPtr> not_factory(const NodeDef& node) {
  return make_kernel([node](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    if (x.dtype() != DType::kBool) return unsupported_dtype(node, x.dtype());
    Tensor out = Tensor::uninitialized(DType::kBool, x.shape());
    unary_map(x.data<uint8_t>(), out.mut<uint8_t>(), x.numel(), [](uint8_t v) { return uint8_t(v ^ 1); });
    ctx.set_output(0, out);
    return Status();
  });
}

// Where(cond, X, Y): a three-way broadcast; any fixed-size element type moves as raw storage.
StatusOr<KernelPtr> where_factory(const NodeDef& node) {
  return make_kernel([node](KernelContext& ctx) -> Status {
    const Tensor &c = ctx.input(0), &x = ctx.input(1), &y = ctx.input(2);
    if (c.dtype() != DType::kBool) return node.error(StatusCode::kInvalidModel, "condition must be bool");
    if (x.dtype() != y.dtype()) return node.error(StatusCode::kInvalidModel, "X and Y dtypes differ");
    FRUGAL_ASSIGN_OR_RETURN(Shape out_shape, broadcast_shapes({c.shape(), x.shape(), y.shape()}, node));
    Tensor out = Tensor::uninitialized(x.dtype(), out_shape);
    FRUGAL_RETURN_IF_ERROR(dispatch_by_size(x.dtype(), node, [&](auto tag) -> Status {
      using T = typename decltype(tag)::type;
      const uint8_t* cd = c.data<uint8_t>();
      const T *xd = x.data<T>(), *yd = y.data<T>();
      T* o = out.mut<T>();
      const int64_t n = shape_numel(out_shape);
      if (c.shape() == out_shape && x.shape() == out_shape && y.shape() == out_shape) {
        parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) o[i] = cd[i] ? xd[i] : yd[i];
        });
        return Status();
      }
      const std::vector<int64_t> st[3] = {broadcast_strides(c.shape(), out_shape),
                                          broadcast_strides(x.shape(), out_shape),
                                          broadcast_strides(y.shape(), out_shape)};
      ternary_rows(out_shape, st, [&](int64_t base, int64_t len, const int64_t* off, const int64_t* step) {
        const uint8_t* cr = cd + off[0];
        const T *xr = xd + off[1], *yr = yd + off[2];
        T* orow = o + base;
        if (step[0] && step[1] && step[2]) {
          for (int64_t i = 0; i < len; ++i) orow[i] = cr[i] ? xr[i] : yr[i];
        } else {
          for (int64_t i = 0; i < len; ++i) orow[i] = cr[i * step[0]] ? xr[i * step[1]] : yr[i * step[2]];
        }
      });
      return Status();
    }));
    ctx.set_output(0, out);
    return Status();
  });
}

// ---- Cast, CastLike, Identity, Dropout ----

KernelFactory cast_factory(bool like) {
  return [like](const NodeDef& node) -> StatusOr<KernelPtr> {
    DType to = DType::kUndefined;
    if (!like) {
      if (!node.has("to")) return node.error(StatusCode::kInvalidModel, "missing attribute 'to'");
      to = static_cast<DType>(node.get_int("to", 0));
      if (!cast_supported(to))
        return node.error(StatusCode::kUnsupported, std::string("cast to ") + dtype_name(to) + " not supported");
    }
    CastOptions opt;
    opt.saturate = node.get_int("saturate", 1) != 0;
    opt.round_mode = node.get_string("round_mode", "up");
    if (opt.round_mode != "up" && opt.round_mode != "down" && opt.round_mode != "nearest")
      return node.error(StatusCode::kInvalidModel, "round_mode must be up, down or nearest");
    return make_kernel([node, to, like, opt](KernelContext& ctx) -> Status {
      const Tensor& x = ctx.input(0);
      const DType target = like ? ctx.input(1).dtype() : to;
      if (x.dtype() == target) {
        ctx.set_output(0, x);
        return Status();
      }
      if (!cast_supported(x.dtype()) || !cast_supported(target))
        return node.error(StatusCode::kUnsupported, std::string("cast from ") + dtype_name(x.dtype()) + " to " +
                                                        dtype_name(target) + " not supported");
      ctx.set_output(0, cast_tensor(x, target, opt));
      return Status();
    });
  };
}

StatusOr<KernelPtr> identity_factory(const NodeDef& /*node*/) {
  return make_kernel([](KernelContext& ctx) -> Status {
    ctx.set_output(0, ctx.input(0));
    return Status();
  });
}

// Inference-mode Dropout: the output is the input and the mask is all true. Training mode with a
// non-zero ratio would need random numbers, so it is refused rather than silently changed.
StatusOr<KernelPtr> dropout_factory(const NodeDef& node) {
  const bool want_mask = node.outputs.size() > 1 && !node.outputs[1].empty();
  return make_kernel([node, want_mask](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    if (ctx.has_input(2) && ctx.input(2).numel() > 0 && *ctx.input(2).data<uint8_t>() != 0) {
      double ratio = 0.5;
      if (ctx.has_input(1) && ctx.input(1).numel() > 0) ratio = ctx.input(1).to_double_vector()[0];
      if (ratio != 0.0)
        return node.error(StatusCode::kUnsupported, "training_mode=true with ratio > 0 is not supported");
    }
    ctx.set_output(0, x);
    if (want_mask && ctx.num_outputs() > 1) {
      // Opset < 10 typed the mask like the input; later opsets use bool.
      const DType mt = node.opset < 10 ? x.dtype() : DType::kBool;
      if (mt == DType::kBool) {
        Tensor m = Tensor::uninitialized(DType::kBool, x.shape());
        std::fill_n(m.mut<uint8_t>(), m.numel(), uint8_t(1));
        ctx.set_output(1, m);
      } else {
        Tensor ones = Tensor::uninitialized(DType::kFloat, x.shape());
        std::fill_n(ones.mut<float>(), ones.numel(), 1.0f);
        ctx.set_output(1, cast_tensor(ones, mt, CastOptions{}));
      }
    }
    return Status();
  });
}

}  // namespace

void register_elementwise_kernels(KernelRegistry& r) {
  // Opsets 1..6 carry the legacy broadcast/axis attributes; from 7 on broadcasting is numpy's.
  const std::pair<const char*, BinOp> arith_ops[] = {
      {"Add", BinOp::kAdd}, {"Sub", BinOp::kSub}, {"Mul", BinOp::kMul}, {"Div", BinOp::kDiv}};
  for (const auto& [name, op] : arith_ops) {
    r.add(name, 1, 6, binary_arith(op));
    r.add(name, 7, kMaxOpset, binary_arith(op));
  }
  r.add("Pow", 1, 6, pow_factory);
  r.add("Pow", 7, kMaxOpset, pow_factory);
  r.add("Mod", 10, kMaxOpset, binary_arith(BinOp::kMod));

  // Before opset 8 the variadic ops required equal shapes; numpy broadcasting is a superset.
  r.add("Min", 1, kMaxOpset, variadic(BinOp::kMin, false));
  r.add("Max", 1, kMaxOpset, variadic(BinOp::kMax, false));
  r.add("Sum", 1, kMaxOpset, variadic(BinOp::kAdd, false));
  r.add("Mean", 1, kMaxOpset, variadic(BinOp::kAdd, true));

  r.add("Sqrt", 1, kMaxOpset, unary(UnOp::kSqrt));
  r.add("Exp", 1, kMaxOpset, unary(UnOp::kExp));
  r.add("Log", 1, kMaxOpset, unary(UnOp::kLog));
  r.add("Neg", 1, kMaxOpset, unary(UnOp::kNeg));
  r.add("Abs", 1, kMaxOpset, unary(UnOp::kAbs));
  r.add("Reciprocal", 1, kMaxOpset, unary(UnOp::kReciprocal));
  r.add("Floor", 1, kMaxOpset, unary(UnOp::kFloor));
  r.add("Ceil", 1, kMaxOpset, unary(UnOp::kCeil));
  r.add("Sign", 9, kMaxOpset, unary(UnOp::kSign));
  r.add("Round", 11, kMaxOpset, unary(UnOp::kRound));

  const std::pair<const char*, CmpOp> cmp_ops[] = {{"Equal", CmpOp::kEq},
                                                   {"Less", CmpOp::kLt},
                                                   {"Greater", CmpOp::kGt}};
  for (const auto& [name, op] : cmp_ops) {
    r.add(name, 1, 6, compare(op));
    r.add(name, 7, kMaxOpset, compare(op));
  }
  r.add("LessOrEqual", 12, kMaxOpset, compare(CmpOp::kLe));
  r.add("GreaterOrEqual", 12, kMaxOpset, compare(CmpOp::kGe));

  const std::pair<const char*, LogicOp> logic_ops[] = {
      {"And", LogicOp::kAnd}, {"Or", LogicOp::kOr}, {"Xor", LogicOp::kXor}};
  for (const auto& [name, op] : logic_ops) {
    r.add(name, 1, 6, logic(op));
    r.add(name, 7, kMaxOpset, logic(op));
  }
  r.add("Not", 1, kMaxOpset, not_factory);
  r.add("Where", 9, kMaxOpset, where_factory);

  // Cast gained `saturate` (float8) at 19 and `round_mode` (float8e8m0) at 24; one kernel reads both.
  r.add("Cast", 1, 18, cast_factory(false));
  r.add("Cast", 19, kMaxOpset, cast_factory(false));
  r.add("CastLike", 15, kMaxOpset, cast_factory(true));
  r.add("Identity", 1, kMaxOpset, identity_factory);
  // Dropout: ratio is an attribute before 12 and an input (with training_mode) from 12.
  r.add("Dropout", 1, 11, dropout_factory);
  r.add("Dropout", 12, kMaxOpset, dropout_factory);
}

}  // namespace frugal::kernels
