// Reduction kernels (ai.onnx): ReduceSum/Mean/Max/Min/Prod/L1/L2/SumSquare/LogSum/LogSumExp, ArgMax,
// ArgMin and TopK.
//
// Every reduction is brought to the layout [outer, R, inner] (R = product of the reduced dims): dims are
// coalesced, and when the reduced axes are not one contiguous block the input is first transposed so
// they are (one strided copy). inner == 1 (the common "last axis" case) is a tight contiguous loop per
// output; inner > 1 accumulates whole rows so the inner loop stays contiguous. Both run in parallel
// over outputs. Float inputs accumulate in double; 16-bit floats compute through a float32 copy.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "families.h"
#include "frugal/parallel.h"
#include "kernel_util.h"
#include "shape_util.h"

namespace frugal::kernels {

namespace {

using Ints = std::vector<int64_t>;

enum class RKind { kSum, kMean, kMax, kMin, kProd, kL1, kL2, kSumSquare, kLogSum, kLogSumExp };

// Input prepared as [outer, R, inner], plus the output shape.
struct Layout {
  Tensor data;  // contiguous, possibly a transposed copy of the input
  int64_t outer = 1, r = 1, inner = 1;
  Shape out_shape;
};

Layout make_layout(const Tensor& x, const std::vector<bool>& red, bool keepdims) {
  Layout L;
  const size_t rank = static_cast<size_t>(x.rank());
  for (size_t d = 0; d < rank; ++d) {
    if (!red[d]) L.out_shape.push_back(x.shape()[d]);
    else if (keepdims) L.out_shape.push_back(1);
  }
  // Coalesce into runs of (reduced?, size), dropping unit dims.
  std::vector<std::pair<bool, int64_t>> runs;
  for (size_t d = 0; d < rank; ++d) {
    if (x.shape()[d] == 1) continue;
    if (!runs.empty() && runs.back().first == red[d]) runs.back().second *= x.shape()[d];
    else runs.emplace_back(red[d], x.shape()[d]);
  }
  int reduced_runs = 0;
  for (auto& rr : runs) reduced_runs += rr.first;
  if (reduced_runs <= 1) {
    L.data = x;
    bool seen_r = false;
    for (auto& [is_r, n] : runs) {
      if (is_r) {
        L.r = n;
        seen_r = true;
      } else {
        (seen_r ? L.inner : L.outer) *= n;
      }
    }
    if (x.numel() == 0) {  // unit-dim dropping above loses zero dims: recompute directly
      L.outer = 1;
      L.r = 1;
      L.inner = 1;
      for (size_t d = 0; d < rank; ++d) (red[d] ? L.r : L.outer) *= x.shape()[d];
    }
    return L;
  }
  // Kept dims first, reduced dims last.
  const auto st = strides_of(x.shape());
  Shape ps;
  Ints pst;
  for (int pass = 0; pass < 2; ++pass)
    for (size_t d = 0; d < rank; ++d)
      if (red[d] == (pass == 1)) {
        ps.push_back(x.shape()[d]);
        pst.push_back(st[d]);
        (pass ? L.r : L.outer) *= x.shape()[d];
      }
  L.data = strided_gather(x, 0, ps, pst);
  return L;
}

template <typename T>
using AccOf = std::conditional_t<std::is_floating_point_v<T>, double,
                                 std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>;

// out[o*inner + i] = comb_r map(x[(o*R + r)*inner + i], o*inner + i), starting from init.
template <typename T, typename Acc, typename Map, typename Comb>
void reduce_block(const T* x, int64_t outer, int64_t R, int64_t inner, Acc init, Map map, Comb comb, Acc* out) {
  if (inner == 1) {
    parallel_for(outer, std::max<int64_t>(1, 16384 / std::max<int64_t>(R, 1)), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        // Eight independent accumulators break the add dependency chain and let the compiler
        // vectorise; partial results combine with the same operation.
        const T* p = x + o * R;
        Acc a[8] = {init, init, init, init, init, init, init, init};
        int64_t r = 0;
        for (; r + 8 <= R; r += 8)
          for (int k = 0; k < 8; ++k) a[k] = comb(a[k], map(p[r + k], o));
        for (; r < R; ++r) a[0] = comb(a[0], map(p[r], o));
        for (int k = 1; k < 8; ++k) a[0] = comb(a[0], a[k]);
        out[o] = a[0];
      }
    });
    return;
  }
  // Split inner into chunks so a single large output row still spreads over threads.
  constexpr int64_t kChunk = 256;
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
  parallel_for(outer * chunks, std::max<int64_t>(1, 16384 / std::max<int64_t>(R * kChunk, 1)),
               [&](int64_t b, int64_t e) {
                 for (int64_t t = b; t < e; ++t) {
                   const int64_t o = t / chunks, i0 = (t % chunks) * kChunk, i1 = std::min(inner, i0 + kChunk);
                   Acc* acc = out + o * inner;
                   for (int64_t i = i0; i < i1; ++i) acc[i] = init;
                   for (int64_t r = 0; r < R; ++r) {
                     const T* p = x + (o * R + r) * inner;
                     for (int64_t i = i0; i < i1; ++i) acc[i] = comb(acc[i], map(p[i], o * inner + i));
                   }
                 }
               });
}

template <typename T>
void reduce_typed(RKind kind, const Layout& L, Tensor& out) {
  using Acc = AccOf<T>;
  const T* x = L.data.data<T>();
  const int64_t n_out = L.outer * L.inner;
  std::vector<Acc> acc(static_cast<size_t>(n_out));
  std::vector<double> lse;
  // Integer sums and products wrap (two's complement, as the narrow type would) instead of
  // overflowing the signed accumulator, which would be undefined behaviour.
  const auto sum = [](Acc a, Acc b) {
    if constexpr (std::is_integral_v<Acc>) return static_cast<Acc>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
    else return a + b;
  };
  const auto mul = [](Acc a, Acc b) {
    if constexpr (std::is_integral_v<Acc>) return static_cast<Acc>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
    else return a * b;
  };
  const auto ident = [](T v, int64_t) { return static_cast<Acc>(v); };
  constexpr bool kFloat = std::is_floating_point_v<T>;
  // Identities of max/min: +-inf for floats, the limits of T (not of the wider Acc) for integers.
  const Acc lowest = kFloat ? -std::numeric_limits<Acc>::infinity() : static_cast<Acc>(std::numeric_limits<T>::lowest());
  const Acc highest = kFloat ? std::numeric_limits<Acc>::infinity() : static_cast<Acc>(std::numeric_limits<T>::max());
  switch (kind) {
    case RKind::kSum:
    case RKind::kMean:
    case RKind::kLogSum:
      reduce_block<T, Acc>(x, L.outer, L.r, L.inner, Acc(0), ident, sum, acc.data());
      break;
    case RKind::kMax:
      reduce_block<T, Acc>(x, L.outer, L.r, L.inner, lowest, ident,
                           [](Acc a, Acc b) { return b > a || b != b ? b : a; }, acc.data());
      break;
    case RKind::kMin:
      reduce_block<T, Acc>(x, L.outer, L.r, L.inner, highest, ident,
                           [](Acc a, Acc b) { return b < a || b != b ? b : a; }, acc.data());
      break;
    case RKind::kProd:
      reduce_block<T, Acc>(x, L.outer, L.r, L.inner, Acc(1), ident, mul, acc.data());
      break;
    case RKind::kL1:
      reduce_block<T, Acc>(
          x, L.outer, L.r, L.inner, Acc(0),
          [](T v, int64_t) {
            const Acc a = static_cast<Acc>(v);
            if constexpr (std::is_unsigned_v<Acc>) return a;
            else return a < 0 ? -a : a;
          },
          sum, acc.data());
      break;
    case RKind::kL2:
    case RKind::kSumSquare:
      reduce_block<T, Acc>(
          x, L.outer, L.r, L.inner, Acc(0),
          [mul](T v, int64_t) {
            const Acc a = static_cast<Acc>(v);
            return mul(a, a);
          },
          sum, acc.data());
      break;
    case RKind::kLogSumExp: {
      // Shift by the max so exp cannot overflow: log(sum(exp(x - m))) + m.
      std::vector<Acc> mx(static_cast<size_t>(n_out));
      reduce_block<T, Acc>(x, L.outer, L.r, L.inner, lowest, ident,
                           [](Acc a, Acc b) { return b > a ? b : a; }, mx.data());
      std::vector<double> shift(mx.begin(), mx.end());
      for (auto& m : shift)
        if (!std::isfinite(m)) m = 0;
      lse.resize(static_cast<size_t>(n_out));
      const double* mp = shift.data();
      reduce_block<T, double>(
          x, L.outer, L.r, L.inner, 0.0, [mp](T v, int64_t o) { return std::exp(static_cast<double>(v) - mp[o]); },
          [](double a, double b) { return a + b; }, lse.data());
      for (size_t i = 0; i < lse.size(); ++i) lse[i] = std::log(lse[i]) + shift[i];
      break;
    }
  }
  T* o = out.mut<T>();
  for (int64_t i = 0; i < n_out; ++i) {
    Acc a = acc[static_cast<size_t>(i)];
    double v;
    switch (kind) {
      case RKind::kMean:
        if constexpr (kFloat) v = static_cast<double>(a) / static_cast<double>(L.r);
        else v = static_cast<double>(L.r ? a / static_cast<Acc>(L.r) : 0);
        break;
      case RKind::kL2: v = std::sqrt(static_cast<double>(a)); break;
      case RKind::kLogSum: v = std::log(static_cast<double>(a)); break;
      case RKind::kLogSumExp: v = lse[static_cast<size_t>(i)]; break;
      default:
        if constexpr (!kFloat) {  // keep 64-bit integer results exact
          o[i] = static_cast<T>(a);
          continue;
        } else {
          v = static_cast<double>(a);
        }
    }
    o[i] = static_cast<T>(v);
  }
}

// Reduce axes for a node: from the attribute below `input_since`, else from input 1.
Status reduce_compute(const NodeDef& node, KernelContext& ctx, RKind kind, int input_since) {
  const Tensor& x_in = ctx.input(0);
  Ints axes;
  if (node.opset >= input_since) {
    if (ctx.has_input(1)) axes = int_values(ctx.input(1));
  } else {
    axes = node.get_ints("axes");
  }
  const bool keepdims = node.get_int("keepdims", 1) != 0;
  const bool noop = node.get_int("noop_with_empty_axes", 0) != 0;
  const int64_t rank = x_in.rank();
  if (axes.empty() && noop) {
    ctx.set_output(0, x_in);
    return OkStatus();
  }
  std::vector<bool> red(static_cast<size_t>(rank), axes.empty());
  for (int64_t a : axes) {
    FRUGAL_ASSIGN_OR_RETURN(int64_t n, normalize_axis(a, rank, node));
    red[static_cast<size_t>(n)] = true;
  }
  const DType dt = x_in.dtype();
  const bool half = is_half_type(dt);
  const Tensor x = half ? to_float32(x_in) : x_in;
  if (dt == DType::kBool && kind != RKind::kMax && kind != RKind::kMin)
    return node.error(StatusCode::kUnsupported, "bool input only for ReduceMax/ReduceMin");
  Layout L = make_layout(x, red, keepdims);
  Tensor out = Tensor::uninitialized(half ? DType::kFloat : dt, L.out_shape);
  if (out.numel() > 0) {
    if (dt == DType::kBool) {
      reduce_typed<uint8_t>(kind, L, out);  // bool is stored as one byte 0/1
    } else {
      FRUGAL_RETURN_IF_ERROR(dispatch_numeric(x.dtype(), node, [&](auto tag) -> Status {
        using T = typename decltype(tag)::type;
        reduce_typed<T>(kind, L, out);
        return OkStatus();
      }));
    }
  }
  ctx.set_output(0, half ? from_float32(out, dt) : out);
  return OkStatus();
}

KernelFactory reduce_kernel(RKind kind, int input_since) {
  return simple_kernel([kind, input_since](const NodeDef& node, KernelContext& ctx) {
    return reduce_compute(node, ctx, kind, input_since);
  });
}

// ---------------------------------------------------------------- ArgMax / ArgMin
template <typename T>
void arg_typed(const T* x, int64_t outer, int64_t R, int64_t inner, bool is_max, bool last, int64_t* out) {
  parallel_for(outer * inner, std::max<int64_t>(1, 16384 / std::max<int64_t>(R, 1)), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / inner, i = t % inner;
      const T* p = x + o * R * inner + i;
      int64_t best = 0;
      T bv = p[0];
      for (int64_t r = 1; r < R; ++r) {
        const T v = p[r * inner];
        const bool better = is_max ? (last ? v >= bv : v > bv) : (last ? v <= bv : v < bv);
        if (better) {
          bv = v;
          best = r;
        }
      }
      out[t] = best;
    }
  });
}

Status arg_compute(const NodeDef& node, KernelContext& ctx, bool is_max) {
  const Tensor& x_in = ctx.input(0);
  const int64_t rank = x_in.rank();
  FRUGAL_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(node.get_int("axis", 0), rank, node));
  const bool keepdims = node.get_int("keepdims", 1) != 0;
  const bool last = node.opset >= 12 && node.get_int("select_last_index", 0) != 0;
  Shape out_shape;
  int64_t outer = 1, R = rank ? x_in.shape()[static_cast<size_t>(axis)] : 1, inner = 1;
  for (int64_t d = 0; d < rank; ++d) {
    const int64_t n = x_in.shape()[static_cast<size_t>(d)];
    if (d < axis) outer *= n;
    if (d > axis) inner *= n;
    if (d != axis) out_shape.push_back(n);
    else if (keepdims) out_shape.push_back(1);
  }
  if (R == 0 && outer * inner > 0) return node.error(StatusCode::kInvalidData, "cannot take arg over an empty axis");
  Tensor out = Tensor::uninitialized(DType::kInt64, out_shape);
  if (out.numel() == 0) {
    ctx.set_output(0, out);
    return OkStatus();
  }
  const Tensor x = is_half_type(x_in.dtype()) ? to_float32(x_in) : x_in;
  if (x.dtype() == DType::kBool) {
    arg_typed(x.data<uint8_t>(), outer, R, inner, is_max, last, out.mut<int64_t>());
  } else {
    FRUGAL_RETURN_IF_ERROR(dispatch_numeric(x.dtype(), node, [&](auto tag) -> Status {
      using T = typename decltype(tag)::type;
      arg_typed(x.data<T>(), outer, R, inner, is_max, last, out.mut<int64_t>());
      return OkStatus();
    }));
  }
  ctx.set_output(0, out);
  return OkStatus();
}

// ---------------------------------------------------------------- TopK
template <typename T>
void topk_typed(const T* x, int64_t outer, int64_t n, int64_t inner, int64_t k, bool largest, int64_t* idx_out) {
  parallel_for(outer * inner, std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)), [&](int64_t b, int64_t e) {
    std::vector<int64_t> order(static_cast<size_t>(n));
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / inner, i = t % inner;
      const T* p = x + o * n * inner + i;
      std::iota(order.begin(), order.end(), int64_t{0});
      // Ties keep the lower index first (the spec's order); NaN counts as the largest value.
      auto key_less = [&](int64_t a, int64_t c) {
        const T va = p[a * inner], vc = p[c * inner];
        if constexpr (std::is_floating_point_v<T>) {
          if (std::isnan(va) || std::isnan(vc)) return !std::isnan(va) && std::isnan(vc);
        }
        return va < vc;
      };
      auto cmp = [&](int64_t a, int64_t c) {
        if (largest) {
          if (key_less(c, a)) return true;
          if (key_less(a, c)) return false;
        } else {
          if (key_less(a, c)) return true;
          if (key_less(c, a)) return false;
        }
        return a < c;
      };
      std::partial_sort(order.begin(), order.begin() + k, order.end(), cmp);
      for (int64_t j = 0; j < k; ++j) idx_out[(o * k + j) * inner + i] = order[static_cast<size_t>(j)];
    }
  });
}

Status topk(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x_in = ctx.input(0);
  const int64_t rank = x_in.rank();
  if (rank == 0) return node.error(StatusCode::kInvalidData, "input must have rank >= 1");
  FRUGAL_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(node.get_int("axis", -1), rank, node));
  int64_t k;
  if (node.opset < 10) {
    k = node.get_int("k", -1);
  } else {
    const Ints kv = int_values(ctx.input(1));
    if (kv.size() != 1) return node.error(StatusCode::kInvalidData, "K must hold one value");
    k = kv[0];
  }
  const bool largest = node.opset < 11 || node.get_int("largest", 1) != 0;
  const int64_t n = x_in.shape()[static_cast<size_t>(axis)];
  if (k < 0 || k > n)
    return node.error(StatusCode::kInvalidData, "k " + std::to_string(k) + " out of range for axis of size " +
                                                    std::to_string(n));
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x_in.shape()[static_cast<size_t>(d)];
  for (int64_t d = axis + 1; d < rank; ++d) inner *= x_in.shape()[static_cast<size_t>(d)];
  Shape out_shape = x_in.shape();
  out_shape[static_cast<size_t>(axis)] = k;
  Tensor idx = Tensor::uninitialized(DType::kInt64, out_shape);
  Tensor vals = Tensor::uninitialized(x_in.dtype(), out_shape);
  if (idx.numel() > 0) {
    const Tensor x = is_half_type(x_in.dtype()) ? to_float32(x_in) : x_in;
    FRUGAL_RETURN_IF_ERROR(dispatch_numeric(x.dtype(), node, [&](auto tag) -> Status {
      using T = typename decltype(tag)::type;
      topk_typed(x.data<T>(), outer, n, inner, k, largest, idx.mut<int64_t>());
      return OkStatus();
    }));
    // Values are gathered from the original bits, so every dtype comes back exactly.
    const size_t es = dtype_size(x_in.dtype());
    const auto* src = static_cast<const uint8_t*>(x_in.raw());
    auto* dst = static_cast<uint8_t*>(vals.raw_mut());
    const int64_t* ip = idx.data<int64_t>();
    for (int64_t t = 0; t < idx.numel(); ++t) {
      const int64_t o = t / (k * inner), i = t % inner;
      std::memcpy(dst + static_cast<size_t>(t) * es, src + static_cast<size_t>((o * n + ip[t]) * inner + i) * es, es);
    }
  }
  ctx.set_output(0, vals);
  if (ctx.num_outputs() > 1) ctx.set_output(1, idx);
  return OkStatus();
}

}  // namespace

void register_reduce_kernels(KernelRegistry& r) {
  // ReduceSum took axes as an input at opset 13, the others at 18.
  register_ranges(r, "ReduceSum", {1, 11, 13}, reduce_kernel(RKind::kSum, 13));
  const std::pair<const char*, RKind> others[] = {
      {"ReduceMean", RKind::kMean},   {"ReduceMax", RKind::kMax},         {"ReduceMin", RKind::kMin},
      {"ReduceProd", RKind::kProd},   {"ReduceL1", RKind::kL1},           {"ReduceL2", RKind::kL2},
      {"ReduceSumSquare", RKind::kSumSquare}, {"ReduceLogSum", RKind::kLogSum},
      {"ReduceLogSumExp", RKind::kLogSumExp}};
  for (const auto& [op, kind] : others) {
    if (kind == RKind::kMax || kind == RKind::kMin)
      register_ranges(r, op, {1, 11, 12, 13, 18, 20}, reduce_kernel(kind, 18));
    else
      register_ranges(r, op, {1, 11, 13, 18}, reduce_kernel(kind, 18));
  }
  register_ranges(r, "ArgMax", {1, 11, 12, 13}, simple_kernel([](const NodeDef& n, KernelContext& c) {
                    return arg_compute(n, c, true);
                  }));
  register_ranges(r, "ArgMin", {1, 11, 12, 13}, simple_kernel([](const NodeDef& n, KernelContext& c) {
                    return arg_compute(n, c, false);
                  }));
  register_ranges(r, "TopK", {1, 10, 11, 24}, simple_kernel(topk));
}

}  // namespace frugal::kernels
