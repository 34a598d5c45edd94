// Activation CPU kernels: pointwise activations (Relu .. Gelu), PRelu, Clip, and the normalising
// Softmax / LogSoftmax / Hardmax (flatten-to-2D before opset 13, one axis from 13). Float16/bfloat16
// inputs compute in float32. Pointwise loops run through elementwise_util.h's threaded maps.
// No FP-exception traps are observed anywhere in frugal, and without -ftrapping-math GCC if-converts
// the float selects in these loops (clamps, NaN checks, ReLU-style branches) and vectorises them.
#pragma GCC optimize("no-trapping-math")

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "conv_geom.h"  // FRUGAL_CLONES
#include "elementwise_math.h"
#include "elementwise_util.h"
#include "families.h"
#include "kernel_util.h"

namespace frugal::kernels {

namespace {

using KernelPtr = std::unique_ptr<Kernel>;

KernelPtr make_kernel(FnKernel::Fn fn) { return std::make_unique<FnKernel>(std::move(fn)); }

// float32 goes through the vectorisable approximations; double keeps libm.
template <typename T>
inline T k_exp(T v) {
  if constexpr (std::is_same_v<T, float>) return vexpf(v);
  else return std::exp(v);
}
template <typename T>
inline T k_erf(T v) {
  if constexpr (std::is_same_v<T, float>) return verff(v);
  else return std::erf(v);
}
template <typename T>
inline T k_tanh(T v) {
  if constexpr (std::is_same_v<T, float>) return vtanhf(v);
  else return std::tanh(v);
}

enum class Act {
  kRelu, kLeakyRelu, kElu, kSelu, kCelu, kSigmoid, kHardSigmoid, kHardSwish, kTanh, kErf, kGelu,
  kGeluTanh, kSoftplus, kSoftsign
};

struct ActParams {
  float alpha = 0, beta = 0, gamma = 0;
};

// One contiguous chunk, serially (activate() threads the chunks).
template <typename T, typename F>
inline void map_chunk(const T* x, T* o, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) o[i] = f(x[i]);
}

template <typename T>
__attribute__((always_inline)) inline void activate_chunk(Act a, const ActParams& p, const T* x, T* o, int64_t n) {
  const T alpha = static_cast<T>(p.alpha), beta = static_cast<T>(p.beta), gamma = static_cast<T>(p.gamma);
  auto unary_map = [](const T* in, T* out, int64_t len, auto f) { map_chunk(in, out, len, f); };
  switch (a) {
    case Act::kRelu: return unary_map(x, o, n, [](T v) { return relu_value(v); });
    case Act::kLeakyRelu: return unary_map(x, o, n, [alpha](T v) { return v >= T(0) ? v : alpha * v; });
    case Act::kElu: return unary_map(x, o, n, [alpha](T v) { return v >= T(0) ? v : alpha * std::expm1(v); });
    case Act::kSelu:
      return unary_map(x, o, n, [alpha, gamma](T v) {
        return v > T(0) ? gamma * v : gamma * alpha * std::expm1(v);
      });
    case Act::kCelu:
      return unary_map(x, o, n, [alpha](T v) {
        return std::max(T(0), v) + std::min(T(0), alpha * std::expm1(v / alpha));
      });
    case Act::kSigmoid:
      // exp(-v) may overflow to inf for very negative v, which correctly gives 0.
      return unary_map(x, o, n, [](T v) { return T(1) / (T(1) + k_exp(-v)); });
    case Act::kHardSigmoid:
      return unary_map(x, o, n, [alpha, beta](T v) { return std::max(T(0), std::min(T(1), alpha * v + beta)); });
    case Act::kHardSwish:
      return unary_map(x, o, n, [](T v) { return v * std::max(T(0), std::min(T(1), v / T(6) + T(0.5))); });
    case Act::kTanh: return unary_map(x, o, n, [](T v) { return k_tanh(v); });
    case Act::kErf: return unary_map(x, o, n, [](T v) { return k_erf(v); });
    case Act::kGelu:
      return unary_map(x, o, n, [](T v) { return T(0.5) * v * (T(1) + k_erf(v * T(0.70710678118654752440))); });
    case Act::kGeluTanh:
      return unary_map(x, o, n, [](T v) {
        const T c = T(0.79788456080286535588);  // sqrt(2/pi)
        return T(0.5) * v * (T(1) + k_tanh(c * (v + T(0.044715) * v * v * v)));
      });
    case Act::kSoftplus:
      return unary_map(x, o, n, [](T v) {
        return v > T(0) ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
      });
    case Act::kSoftsign: return unary_map(x, o, n, [](T v) { return v / (T(1) + std::fabs(v)); });
  }
}

// float32 chunks are compiled for AVX-512, AVX2 and baseline and picked at load time: the polynomial
// exp/erf/tanh vectorise 16 wide there (erf over 393k values: ~8 ms baseline SSE2, ~1.2 ms AVX-512
// measured on one core). fp-contract is off (ISO C++), so every clone gives the same bits.
FRUGAL_CLONES void activate_chunk_f32(Act a, const ActParams& p, const float* x, float* o, int64_t n) {
  activate_chunk<float>(a, p, x, o, n);
}

template <typename T>
void activate(Act a, const ActParams& p, const T* x, T* o, int64_t n) {
  parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
    if constexpr (std::is_same_v<T, float>) activate_chunk_f32(a, p, x + b, o + b, e - b);
    else activate_chunk<T>(a, p, x + b, o + b, e - b);
  });
}

KernelFactory activation(Act a) {
  return [a](const NodeDef& node) -> StatusOr<KernelPtr> {
    ActParams p;
    Act eff = a;
    switch (a) {
      case Act::kLeakyRelu: p.alpha = node.get_float("alpha", 0.01f); break;
      case Act::kElu: p.alpha = node.get_float("alpha", 1.0f); break;
      case Act::kCelu:
        p.alpha = node.get_float("alpha", 1.0f);
        if (p.alpha == 0) return node.error(StatusCode::kInvalidModel, "alpha must be non-zero");
        break;
      case Act::kSelu:
        p.alpha = node.get_float("alpha", 1.67326319217681884765625f);
        p.gamma = node.get_float("gamma", 1.05070102214813232421875f);
        break;
      case Act::kHardSigmoid:
        p.alpha = node.get_float("alpha", 0.2f);
        p.beta = node.get_float("beta", 0.5f);
        break;
      case Act::kGelu: {
        const std::string approx = node.get_string("approximate", "none");
        if (approx == "tanh") eff = Act::kGeluTanh;
        else if (approx != "none")
          return node.error(StatusCode::kInvalidModel, "approximate must be 'none' or 'tanh', got '" + approx + "'");
        break;
      }
      default: break;
    }
    return make_kernel([node, eff, p](KernelContext& ctx) -> Status {
      const Tensor& in0 = ctx.input(0);
      // Relu also takes integer types (opset 14).
      if (eff == Act::kRelu && dtype_is_integer(in0.dtype())) {
        return dispatch_int(in0.dtype(), node, [&](auto tag) -> Status {
          using T = typename decltype(tag)::type;
          Tensor out = Tensor::uninitialized(in0.dtype(), in0.shape());
          unary_map(in0.data<T>(), out.mut<T>(), in0.numel(), [](T v) { return relu_value(v); });
          ctx.set_output(0, out);
          return Status();
        });
      }
      return with_half_as_float(ctx, {in0}, [&](std::vector<Tensor>& in, Tensor& out) -> Status {
        const Tensor& x = in[0];
        return dispatch_float(x.dtype(), node, [&](auto tag) -> Status {
          using T = typename decltype(tag)::type;
          out = Tensor::uninitialized(x.dtype(), x.shape());
          activate<T>(eff, p, x.data<T>(), out.mut<T>(), x.numel());
          return Status();
        });
      });
    });
  };
}

// PRelu: slope broadcasts to X. Old exporters give a [C] slope for an [N, C, ...] input, which
// numpy rules would align with the last axis; that case is mapped to the channel axis.
StatusOr<KernelPtr> prelu_factory(const NodeDef& node) {
  return make_kernel([node](KernelContext& ctx) -> Status {
    return with_half_as_float(ctx, {ctx.input(0), ctx.input(1)}, [&](std::vector<Tensor>& in, Tensor& out) -> Status {
      const Tensor &x = in[0], &slope = in[1];
      if (x.dtype() != slope.dtype()) return node.error(StatusCode::kInvalidModel, "X and slope dtypes differ");
      Shape ss = slope.shape();
      if (ss.size() == 1 && x.rank() >= 2 && ss[0] == x.dim(1) && ss[0] != x.dim(-1) && ss[0] != 1) {
        ss = Shape(static_cast<size_t>(x.rank() - 1), 1);
        ss[0] = slope.dim(0);
      }
      FRUGAL_ASSIGN_OR_RETURN(auto plan, make_binary_plan(x.shape(), ss, node));
      if (plan.out != x.shape())
        return node.error(StatusCode::kInvalidModel, "slope " + shape_str(slope.shape()) +
                                                         " does not broadcast to X " + shape_str(x.shape()));
      return dispatch_numeric(x.dtype(), node, [&](auto tag) -> Status {
        using T = typename decltype(tag)::type;
        out = Tensor::uninitialized(x.dtype(), x.shape());
        binary_apply(plan, x.data<T>(), slope.data<T>(), out.mut<T>(),
                     [](T v, T s) { return v < T(0) ? T(v * s) : v; });
        return Status();
      });
    });
  });
}

// Clip: bounds are attributes before opset 11 and optional scalar inputs from 11.
StatusOr<KernelPtr> clip_factory(const NodeDef& node) {
  const bool attr_bounds = node.opset < 11;
  const float amin = node.get_float("min", std::numeric_limits<float>::lowest());
  const float amax = node.get_float("max", std::numeric_limits<float>::max());
  return make_kernel([node, attr_bounds, amin, amax](KernelContext& ctx) -> Status {
    const bool has_lo = !attr_bounds && ctx.has_input(1) && ctx.input(1).numel() > 0;
    const bool has_hi = !attr_bounds && ctx.has_input(2) && ctx.input(2).numel() > 0;
    std::vector<Tensor> ins{ctx.input(0)};
    if (has_lo) ins.push_back(ctx.input(1));
    if (has_hi) ins.push_back(ctx.input(2));
    return with_half_as_float(ctx, ins, [&](std::vector<Tensor>& in, Tensor& out) -> Status {
      const Tensor& x = in[0];
      return dispatch_numeric(x.dtype(), node, [&](auto tag) -> Status {
        using T = typename decltype(tag)::type;
        T lo = std::numeric_limits<T>::lowest(), hi = std::numeric_limits<T>::max();
        if (attr_bounds) {
          if constexpr (std::is_floating_point_v<T>) {
            lo = static_cast<T>(amin);
            hi = static_cast<T>(amax);
          }
        } else {
          size_t k = 1;
          if (has_lo) {
            if (in[k].dtype() != x.dtype()) return node.error(StatusCode::kInvalidModel, "min dtype differs from input");
            lo = *in[k++].data<T>();
          }
          if (has_hi) {
            if (in[k].dtype() != x.dtype()) return node.error(StatusCode::kInvalidModel, "max dtype differs from input");
            hi = *in[k].data<T>();
          }
        }
        out = Tensor::uninitialized(x.dtype(), x.shape());
        // min applies first, then max caps it, so min > max yields max as the spec asks; NaN passes.
        unary_map(x.data<T>(), out.mut<T>(), x.numel(), [lo, hi](T v) {
          v = v < lo ? lo : v;
          return v > hi ? hi : v;
        });
        return Status();
      });
    });
  });
}

// ---- Softmax family ----

enum class Norm { kSoftmax, kLogSoftmax, kHardmax };

// Max and sum over a row with 8 independent lanes: a plain float reduction is not vectorised without
// -ffast-math, lane arrays are.
template <typename T>
__attribute__((always_inline)) inline T row_max(const T* x, int64_t n) {
  T lane[8];
  for (auto& l : lane) l = -std::numeric_limits<T>::infinity();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) lane[k] = x[j + k] > lane[k] ? x[j + k] : lane[k];
  T m = -std::numeric_limits<T>::infinity();
  for (; j < n; ++j) m = x[j] > m ? x[j] : m;
  for (T l : lane) m = l > m ? l : m;
  return m;
}

template <typename T>
__attribute__((always_inline)) inline T row_sum(const T* x, int64_t n) {
  T lane[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) lane[k] += x[j + k];
  T s = 0;
  for (; j < n; ++j) s += x[j];
  for (T l : lane) s += l;
  return s;
}

// One row of a last-axis Softmax / LogSoftmax / Hardmax.
template <typename T>
__attribute__((always_inline)) inline void normalize_row(Norm kind, const T* xr, T* orow, int64_t n) {
  if (kind == Norm::kHardmax) {
    T mx = -std::numeric_limits<T>::infinity();
    int64_t arg = 0;
    for (int64_t j = 0; j < n; ++j)
      if (xr[j] > mx) {
        mx = xr[j];
        arg = j;
      }
    for (int64_t j = 0; j < n; ++j) orow[j] = T(0);
    if (n > 0) orow[arg] = T(1);
    return;
  }
  T mx = row_max(xr, n);
  if (std::isinf(mx) && mx < 0) mx = 0;  // an all -inf row: avoid inf - inf
  // exp into the output first (a loop without a reduction vectorises), then sum it.
  for (int64_t j = 0; j < n; ++j) orow[j] = k_exp(xr[j] - mx);
  const T sum = row_sum(orow, n);
  if (kind == Norm::kSoftmax) {
    const T inv = T(1) / sum;
    for (int64_t j = 0; j < n; ++j) orow[j] *= inv;
  } else {
    const T sh = mx + std::log(sum);
    for (int64_t j = 0; j < n; ++j) orow[j] = xr[j] - sh;
  }
}

// float32 rows [r0, r1) of [rows, n], cloned for AVX-512/AVX2 like the pointwise activations.
FRUGAL_CLONES void normalize_rows_f32(Norm kind, const float* x, float* o, int64_t r0, int64_t r1, int64_t n) {
  for (int64_t r = r0; r < r1; ++r) normalize_row<float>(kind, x + r * n, o + r * n, n);
}

// Normalises x viewed as [outer, n, inner] along n.
template <typename T>
void normalize_rows(Norm kind, const T* x, T* o, int64_t outer, int64_t n, int64_t inner) {
  if (inner == 1) {
    // Row-contiguous: the common last-axis case.
    parallel_for(outer, std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(n, 1)), [&](int64_t r0, int64_t r1) {
      if constexpr (std::is_same_v<T, float>) {
        normalize_rows_f32(kind, x, o, r0, r1, n);
      } else {
        for (int64_t r = r0; r < r1; ++r) normalize_row<T>(kind, x + r * n, o + r * n, n);
      }
    });
    return;
  }
  // Strided axis: work on whole [n, inner] slabs so inner loops stay contiguous.
  parallel_for(outer, 1, [&](int64_t b0, int64_t b1) {
    std::vector<T> mx(static_cast<size_t>(inner)), sum(static_cast<size_t>(inner));
    std::vector<int64_t> arg(static_cast<size_t>(inner));
    for (int64_t b = b0; b < b1; ++b) {
      const T* xs = x + b * n * inner;
      T* os = o + b * n * inner;
      std::fill(mx.begin(), mx.end(), -std::numeric_limits<T>::infinity());
      std::fill(arg.begin(), arg.end(), 0);
      for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < inner; ++i)
          if (xs[j * inner + i] > mx[size_t(i)]) {
            mx[size_t(i)] = xs[j * inner + i];
            arg[size_t(i)] = j;
          }
      if (kind == Norm::kHardmax) {
        std::fill(os, os + n * inner, T(0));
        if (n > 0)
          for (int64_t i = 0; i < inner; ++i) os[arg[size_t(i)] * inner + i] = T(1);
        continue;
      }
      for (auto& m : mx)
        if (std::isinf(m) && m < 0) m = 0;
      std::fill(sum.begin(), sum.end(), T(0));
      for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < inner; ++i) {
          const T e = k_exp(xs[j * inner + i] - mx[size_t(i)]);
          if (kind == Norm::kSoftmax) os[j * inner + i] = e;
          sum[size_t(i)] += e;
        }
      if (kind == Norm::kSoftmax) {
        for (auto& s : sum) s = T(1) / s;
        for (int64_t j = 0; j < n; ++j)
          for (int64_t i = 0; i < inner; ++i) os[j * inner + i] *= sum[size_t(i)];
      } else {
        for (int64_t i = 0; i < inner; ++i) sum[size_t(i)] = mx[size_t(i)] + std::log(sum[size_t(i)]);
        for (int64_t j = 0; j < n; ++j)
          for (int64_t i = 0; i < inner; ++i) os[j * inner + i] = xs[j * inner + i] - sum[size_t(i)];
      }
    }
  });
}

KernelFactory normalize(Norm kind, bool flatten) {
  return [kind, flatten](const NodeDef& node) -> StatusOr<KernelPtr> {
    const int64_t axis_attr = node.get_int("axis", flatten ? 1 : -1);
    return make_kernel([node, kind, flatten, axis_attr](KernelContext& ctx) -> Status {
      return with_half_as_float(ctx, {ctx.input(0)}, [&](std::vector<Tensor>& in, Tensor& out) -> Status {
        const Tensor& x = in[0];
        FRUGAL_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(axis_attr, x.rank(), node));
        int64_t outer = 1, n = 1, inner = 1;
        for (int64_t d = 0; d < x.rank(); ++d) {
          if (d < axis) outer *= x.dim(d);
          else if (d == axis || flatten) n *= x.dim(d);
          else inner *= x.dim(d);
        }
        return dispatch_float(x.dtype(), node, [&](auto tag) -> Status {
          using T = typename decltype(tag)::type;
          out = Tensor::uninitialized(x.dtype(), x.shape());
          if (x.numel() > 0) normalize_rows<T>(kind, x.data<T>(), out.mut<T>(), outer, n, inner);
          return Status();
        });
      });
    });
  };
}

}  // namespace

void register_activation_kernels(KernelRegistry& r) {
  r.add("Relu", 1, kMaxOpset, activation(Act::kRelu));
  r.add("LeakyRelu", 1, kMaxOpset, activation(Act::kLeakyRelu));
  r.add("Elu", 1, kMaxOpset, activation(Act::kElu));
  r.add("Selu", 1, kMaxOpset, activation(Act::kSelu));
  r.add("Celu", 12, kMaxOpset, activation(Act::kCelu));
  r.add("Sigmoid", 1, kMaxOpset, activation(Act::kSigmoid));
  r.add("HardSigmoid", 1, kMaxOpset, activation(Act::kHardSigmoid));
  r.add("HardSwish", 14, kMaxOpset, activation(Act::kHardSwish));
  r.add("Tanh", 1, kMaxOpset, activation(Act::kTanh));
  r.add("Erf", 9, kMaxOpset, activation(Act::kErf));
  r.add("Gelu", 20, kMaxOpset, activation(Act::kGelu));
  r.add("Softplus", 1, kMaxOpset, activation(Act::kSoftplus));
  r.add("Softsign", 1, kMaxOpset, activation(Act::kSoftsign));
  r.add("PRelu", 1, kMaxOpset, prelu_factory);
  // Clip: min/max attributes up to 10, optional inputs from 11 (the kernel reads node.opset).
  r.add("Clip", 1, 10, clip_factory);
  r.add("Clip", 11, kMaxOpset, clip_factory);
  // Before 13 the input is flattened to 2-D at `axis` (default 1); from 13 one axis, default -1.
  r.add("Softmax", 1, 12, normalize(Norm::kSoftmax, true));
  r.add("Softmax", 13, kMaxOpset, normalize(Norm::kSoftmax, false));
  r.add("LogSoftmax", 1, 12, normalize(Norm::kLogSoftmax, true));
  r.add("LogSoftmax", 13, kMaxOpset, normalize(Norm::kLogSoftmax, false));
  r.add("Hardmax", 1, 12, normalize(Norm::kHardmax, true));
  r.add("Hardmax", 13, kMaxOpset, normalize(Norm::kHardmax, false));
}

}  // namespace frugal::kernels
