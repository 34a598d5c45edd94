// Shape and data-movement kernels (ai.onnx): Transpose, Reshape, Flatten, Squeeze, Unsqueeze, Concat,
// Split, Slice, Gather, GatherElements, Expand, Tile, Pad, Shape, Size, ConstantOfShape, Constant,
// Range, DepthToSpace, SpaceToDepth, NonZero. Resize/Upsample live in shape_resize.cpp.
//
// Ops that only change the shape hand out a reshaped view of their input (no copy). Everything else is
// type-agnostic byte movement through strided_copy (shape_util.h), so every fixed-size dtype works.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "families.h"
#include "frugal/parallel.h"
#include "kernel_util.h"
#include "shape_util.h"

namespace frugal::kernels {

void register_resize_kernels(KernelRegistry& r);  // shape_resize.cpp

namespace {

using Ints = std::vector<int64_t>;

Status check_elem(const NodeDef& node, DType dt) {
  const size_t s = dtype_size(dt);
  if (s == 1 || s == 2 || s == 4 || s == 8) return OkStatus();
  return node.error(StatusCode::kUnsupported, std::string("dtype ") + dtype_name(dt) + " not supported");
}

// Axes from the attribute (older opsets) or from optional input `idx` (newer ones).
Ints axes_from(const NodeDef& node, KernelContext& ctx, size_t idx, bool from_input, bool* given) {
  if (from_input) {
    *given = ctx.has_input(idx);
    return *given ? int_values(ctx.input(idx)) : Ints{};
  }
  *given = node.has("axes");
  return node.get_ints("axes");
}

// ---------------------------------------------------------------- Transpose
Status transpose(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  FRUGAL_RETURN_IF_ERROR(check_elem(node, x.dtype()));
  const int64_t r = x.rank();
  Ints perm = node.get_ints("perm");
  if (perm.empty())
    for (int64_t i = r - 1; i >= 0; --i) perm.push_back(i);
  if (static_cast<int64_t>(perm.size()) != r)
    return node.error(StatusCode::kInvalidModel, "perm has " + std::to_string(perm.size()) +
                                                     " entries for input of rank " + std::to_string(r));
  const auto st = strides_of(x.shape());
  Shape out_shape(static_cast<size_t>(r));
  Ints in_st(static_cast<size_t>(r));
  std::vector<bool> seen(static_cast<size_t>(r), false);
  bool identity = true;
  for (int64_t i = 0; i < r; ++i) {
    FRUGAL_ASSIGN_OR_RETURN(int64_t p, normalize_axis(perm[static_cast<size_t>(i)], r, node));
    if (seen[static_cast<size_t>(p)]) return node.error(StatusCode::kInvalidModel, "perm repeats an axis");
    seen[static_cast<size_t>(p)] = true;
    out_shape[static_cast<size_t>(i)] = x.shape()[static_cast<size_t>(p)];
    in_st[static_cast<size_t>(i)] = st[static_cast<size_t>(p)];
    identity &= p == i;
  }
  // Moving only unit dims keeps the memory order: a view suffices.
  Ints nonunit_order;
  for (int64_t i = 0; i < r; ++i)
    if (out_shape[static_cast<size_t>(i)] != 1) nonunit_order.push_back(perm[static_cast<size_t>(i)] < 0 ? perm[static_cast<size_t>(i)] + r : perm[static_cast<size_t>(i)]);
  if (identity || std::is_sorted(nonunit_order.begin(), nonunit_order.end())) {
    ctx.set_output(0, x.reshaped(out_shape));
    return OkStatus();
  }
  ctx.set_output(0, strided_gather(x, 0, out_shape, in_st));
  return OkStatus();
}

// ---------------------------------------------------------------- Reshape / Flatten / (Un)Squeeze
Status reshape(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Ints shape = node.opset < 5 ? node.get_ints("shape") : int_values(ctx.input(1));
  const bool allowzero = node.opset >= 14 && node.get_int("allowzero", 0) != 0;
  int64_t known = 1, infer = -1;
  Shape out(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    int64_t d = shape[i];
    if (d == 0 && !allowzero) {
      if (static_cast<int64_t>(i) >= x.rank())
        return node.error(StatusCode::kInvalidData, "shape entry 0 at index " + std::to_string(i) +
                                                        " has no input dim to copy");
      d = x.shape()[i];
    }
    if (d == -1) {
      if (infer >= 0) return node.error(StatusCode::kInvalidData, "shape has more than one -1");
      infer = static_cast<int64_t>(i);
      continue;
    }
    if (d < 0) return node.error(StatusCode::kInvalidData, "negative shape entry " + std::to_string(d));
    out[i] = d;
    known *= d;
  }
  if (infer >= 0) {
    if (known == 0 || x.numel() % known != 0)
      return node.error(StatusCode::kInvalidData, "cannot infer -1 reshaping " + shape_str(x.shape()));
    out[static_cast<size_t>(infer)] = x.numel() / known;
  }
  if (shape_numel(out) != x.numel())
    return node.error(StatusCode::kInvalidData,
                      "cannot reshape " + shape_str(x.shape()) + " to " + shape_str(out));
  ctx.set_output(0, x.reshaped(out));
  return OkStatus();
}

Status flatten(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  int64_t axis = node.get_int("axis", 1);
  if (axis < 0) axis += x.rank();
  if (axis < 0 || axis > x.rank())
    return node.error(StatusCode::kInvalidModel, "axis out of range for rank " + std::to_string(x.rank()));
  int64_t a = 1, b = 1;
  for (int64_t i = 0; i < x.rank(); ++i) (i < axis ? a : b) *= x.shape()[static_cast<size_t>(i)];
  ctx.set_output(0, x.reshaped({a, b}));
  return OkStatus();
}

Status squeeze(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  bool given = false;
  Ints axes = axes_from(node, ctx, 1, node.opset >= 13, &given);
  std::vector<bool> drop(static_cast<size_t>(x.rank()), false);
  if (axes.empty()) {
    for (int64_t i = 0; i < x.rank(); ++i) drop[static_cast<size_t>(i)] = x.shape()[static_cast<size_t>(i)] == 1;
  } else {
    for (int64_t a : axes) {
      FRUGAL_ASSIGN_OR_RETURN(int64_t n, normalize_axis(a, x.rank(), node));
      if (x.shape()[static_cast<size_t>(n)] != 1)
        return node.error(StatusCode::kInvalidData, "cannot squeeze axis " + std::to_string(a) + " of shape " +
                                                        shape_str(x.shape()));
      drop[static_cast<size_t>(n)] = true;
    }
  }
  Shape out;
  for (int64_t i = 0; i < x.rank(); ++i)
    if (!drop[static_cast<size_t>(i)]) out.push_back(x.shape()[static_cast<size_t>(i)]);
  ctx.set_output(0, x.reshaped(out));
  return OkStatus();
}

Status unsqueeze(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  bool given = false;
  Ints axes = axes_from(node, ctx, 1, node.opset >= 13, &given);
  const int64_t r = x.rank() + static_cast<int64_t>(axes.size());
  std::vector<bool> ins(static_cast<size_t>(r), false);
  for (int64_t a : axes) {
    FRUGAL_ASSIGN_OR_RETURN(int64_t n, normalize_axis(a, r, node));
    if (ins[static_cast<size_t>(n)]) return node.error(StatusCode::kInvalidModel, "axes repeat");
    ins[static_cast<size_t>(n)] = true;
  }
  Shape out;
  size_t k = 0;
  for (int64_t i = 0; i < r; ++i) out.push_back(ins[static_cast<size_t>(i)] ? 1 : x.shape()[k++]);
  ctx.set_output(0, x.reshaped(out));
  return OkStatus();
}

// ---------------------------------------------------------------- Concat / Split
Status concat(const NodeDef& node, KernelContext& ctx) {
  std::vector<const Tensor*> ins;
  for (size_t i = 0; i < ctx.num_inputs(); ++i)
    if (ctx.has_input(i)) ins.push_back(&ctx.input(i));
  if (ins.empty()) return node.error(StatusCode::kInvalidModel, "no inputs");
  // Exporters (PyTorch 1.x BERT) concatenate scalars with 1-D shape vectors. onnxruntime of that era
  // read a scalar as a 1-element vector and produced reference outputs that way; frugal does the same
  // (current onnxruntime rejects such models at load).
  int64_t max_rank = 0;
  for (const Tensor* t : ins) max_rank = std::max(max_rank, t->rank());
  std::vector<Tensor> widened;
  widened.reserve(ins.size());
  if (max_rank == 1)
    for (auto& t : ins)
      if (t->rank() == 0) {
        widened.push_back(t->reshaped({1}));
        t = &widened.back();
      }
  const Tensor& x0 = *ins[0];
  FRUGAL_RETURN_IF_ERROR(check_elem(node, x0.dtype()));
  FRUGAL_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(node.get_int("axis", 0), x0.rank(), node));
  Shape out_shape = x0.shape();
  out_shape[static_cast<size_t>(axis)] = 0;
  for (const Tensor* t : ins) {
    if (t->rank() != x0.rank() || t->dtype() != x0.dtype())
      return node.error(StatusCode::kInvalidData, "inputs differ in rank or dtype");
    for (int64_t d = 0; d < x0.rank(); ++d)
      if (d != axis && t->shape()[static_cast<size_t>(d)] != x0.shape()[static_cast<size_t>(d)])
        return node.error(StatusCode::kInvalidData,
                          "input shapes " + shape_str(x0.shape()) + " and " + shape_str(t->shape()) + " differ");
    out_shape[static_cast<size_t>(axis)] += t->shape()[static_cast<size_t>(axis)];
  }
  Tensor out = Tensor::uninitialized(x0.dtype(), out_shape);
  const size_t es = dtype_size(x0.dtype());
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= out_shape[static_cast<size_t>(d)];
  const int64_t out_row = outer == 0 ? 0 : out.numel() / outer;
  std::vector<int64_t> chunk, at;
  int64_t pos = 0;
  for (const Tensor* t : ins) {
    chunk.push_back(outer == 0 ? 0 : t->numel() / outer);
    at.push_back(pos);
    pos += chunk.back();
  }
  auto* dst = static_cast<uint8_t*>(out.numel() ? out.raw_mut() : nullptr);
  parallel_for(outer, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(out_row, 1)), [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o)
      for (size_t k = 0; k < ins.size(); ++k)
        if (chunk[k])
          std::memcpy(dst + static_cast<size_t>(o * out_row + at[k]) * es,
                      static_cast<const uint8_t*>(ins[k]->raw()) + static_cast<size_t>(o * chunk[k]) * es,
                      static_cast<size_t>(chunk[k]) * es);
  });
  ctx.set_output(0, out);
  return OkStatus();
}

Status split(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  FRUGAL_RETURN_IF_ERROR(check_elem(node, x.dtype()));
  FRUGAL_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(node.get_int("axis", 0), x.rank(), node));
  const int64_t dim = x.shape()[static_cast<size_t>(axis)];
  const int64_t n = static_cast<int64_t>(ctx.num_outputs());
  Ints sizes;
  if (node.opset >= 13) {
    if (ctx.has_input(1)) sizes = int_values(ctx.input(1));
  } else if (node.opset >= 2) {
    sizes = node.get_ints("split");
  } else {
    sizes = ctx.has_input(1) ? int_values(ctx.input(1)) : node.get_ints("split");
  }
  if (sizes.empty()) {
    const int64_t parts = node.opset >= 18 && node.has("num_outputs") ? node.get_int("num_outputs", n) : n;
    if (parts <= 0) return node.error(StatusCode::kInvalidModel, "num_outputs must be positive");
    if (node.opset >= 18 && node.has("num_outputs")) {
      const int64_t c = (dim + parts - 1) / parts;  // last chunk takes the remainder
      for (int64_t i = 0; i < parts; ++i) sizes.push_back(std::max<int64_t>(0, std::min(c, dim - i * c)));
    } else {
      if (dim % parts != 0)
        return node.error(StatusCode::kInvalidData,
                          "axis dim " + std::to_string(dim) + " not divisible into " + std::to_string(parts));
      sizes.assign(static_cast<size_t>(parts), dim / parts);
    }
  }
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  if (total != dim || static_cast<int64_t>(sizes.size()) != n)
    return node.error(StatusCode::kInvalidData, "split sizes do not match axis dim " + std::to_string(dim) +
                                                    " and " + std::to_string(n) + " outputs");
  const auto st = strides_of(x.shape());
  int64_t start = 0;
  for (int64_t i = 0; i < n; ++i) {
    Shape os = x.shape();
    os[static_cast<size_t>(axis)] = sizes[static_cast<size_t>(i)];
    ctx.set_output(static_cast<size_t>(i), strided_gather(x, start * st[static_cast<size_t>(axis)], os, st));
    start += sizes[static_cast<size_t>(i)];
  }
  return OkStatus();
}

// ---------------------------------------------------------------- Slice
Status slice(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  FRUGAL_RETURN_IF_ERROR(check_elem(node, x.dtype()));
  Ints starts, ends, axes, steps;
  if (node.opset < 10) {
    starts = node.get_ints("starts");
    ends = node.get_ints("ends");
    axes = node.get_ints("axes");
  } else {
    starts = int_values(ctx.input(1));
    ends = int_values(ctx.input(2));
    if (ctx.has_input(3)) axes = int_values(ctx.input(3));
    if (ctx.has_input(4)) steps = int_values(ctx.input(4));
  }
  if (ends.size() != starts.size()) return node.error(StatusCode::kInvalidData, "starts and ends differ in length");
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (axes.size() != starts.size() || steps.size() != starts.size())
    return node.error(StatusCode::kInvalidData, "starts/ends/axes/steps differ in length");
  const auto st = strides_of(x.shape());
  Shape out_shape = x.shape();
  Ints in_st = st;
  int64_t offset = 0;
  std::vector<bool> seen(static_cast<size_t>(x.rank()), false);
  for (size_t i = 0; i < starts.size(); ++i) {
    FRUGAL_ASSIGN_OR_RETURN(int64_t a, normalize_axis(axes[i], x.rank(), node));
    if (seen[static_cast<size_t>(a)]) return node.error(StatusCode::kInvalidData, "axes repeat");
    seen[static_cast<size_t>(a)] = true;
    const int64_t dim = x.shape()[static_cast<size_t>(a)];
    const int64_t step = steps[i];
    if (step == 0) return node.error(StatusCode::kInvalidData, "step 0");
    int64_t s = starts[i], e = ends[i];
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    int64_t len;
    if (step > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      len = e > s ? (e - s + step - 1) / step : 0;
    } else {
      s = std::clamp<int64_t>(s, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      len = s > e ? (s - e + (-step) - 1) / (-step) : 0;
    }
    out_shape[static_cast<size_t>(a)] = len;
    if (len > 0) offset += s * st[static_cast<size_t>(a)];
    in_st[static_cast<size_t>(a)] = st[static_cast<size_t>(a)] * step;
  }
  ctx.set_output(0, strided_gather(x, offset, out_shape, in_st));
  return OkStatus();
}

// ---------------------------------------------------------------- Gather / GatherElements
Status gather(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& idx_t = ctx.input(1);
  FRUGAL_RETURN_IF_ERROR(check_elem(node, x.dtype()));
  FRUGAL_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(node.get_int("axis", 0), x.rank(), node));
  if (x.rank() == 0) return node.error(StatusCode::kInvalidData, "data must have rank >= 1");
  const Ints idx = int_values(idx_t);
  const int64_t n = x.shape()[static_cast<size_t>(axis)];
  Shape out_shape(x.shape().begin(), x.shape().begin() + axis);
  out_shape.insert(out_shape.end(), idx_t.shape().begin(), idx_t.shape().end());
  out_shape.insert(out_shape.end(), x.shape().begin() + axis + 1, x.shape().end());
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.shape()[static_cast<size_t>(d)];
  for (int64_t d = axis + 1; d < x.rank(); ++d) inner *= x.shape()[static_cast<size_t>(d)];
  for (int64_t v : idx)
    if (v < -n || v >= n)
      return node.error(StatusCode::kInvalidData,
                        "index " + std::to_string(v) + " out of range for axis of size " + std::to_string(n));
  Tensor out = Tensor::uninitialized(x.dtype(), out_shape);
  if (out.numel() == 0) {
    ctx.set_output(0, out);
    return OkStatus();
  }
  const size_t es = dtype_size(x.dtype());
  const size_t row = static_cast<size_t>(inner) * es;
  const auto* src = static_cast<const uint8_t*>(x.raw());
  auto* dst = static_cast<uint8_t*>(out.raw_mut());
  const int64_t k = static_cast<int64_t>(idx.size());
  parallel_for(outer * k, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / k, j = t % k;
      int64_t v = idx[static_cast<size_t>(j)];
      if (v < 0) v += n;
      std::memcpy(dst + static_cast<size_t>(t) * row, src + static_cast<size_t>(o * n + v) * row, row);
    }
  });
  ctx.set_output(0, out);
  return OkStatus();
}

Status gather_elements(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& idx_t = ctx.input(1);
  FRUGAL_RETURN_IF_ERROR(check_elem(node, x.dtype()));
  FRUGAL_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(node.get_int("axis", 0), x.rank(), node));
  if (idx_t.rank() != x.rank()) return node.error(StatusCode::kInvalidData, "indices rank differs from data rank");
  const Ints idx = int_values(idx_t);
  const auto xs = strides_of(x.shape());
  const int64_t n = x.shape()[static_cast<size_t>(axis)];
  Tensor out = Tensor::uninitialized(x.dtype(), idx_t.shape());
  const size_t es = dtype_size(x.dtype());
  const auto* src = static_cast<const uint8_t*>(x.raw());
  auto* dst = out.numel() ? static_cast<uint8_t*>(out.raw_mut()) : nullptr;
  const size_t r = static_cast<size_t>(x.rank());
  Ints pos(r, 0);
  for (int64_t i = 0; i < out.numel(); ++i) {
    int64_t off = 0;
    for (size_t d = 0; d < r; ++d) {
      if (static_cast<int64_t>(d) == axis) continue;
      if (pos[d] >= x.shape()[d]) return node.error(StatusCode::kInvalidData, "indices shape exceeds data shape");
      off += pos[d] * xs[d];
    }
    int64_t v = idx[static_cast<size_t>(i)];
    if (v < -n || v >= n) return node.error(StatusCode::kInvalidData, "index " + std::to_string(v) + " out of range");
    if (v < 0) v += n;
    off += v * xs[static_cast<size_t>(axis)];
    std::memcpy(dst + static_cast<size_t>(i) * es, src + static_cast<size_t>(off) * es, es);
    for (int64_t d = static_cast<int64_t>(r) - 1; d >= 0; --d) {
      if (++pos[static_cast<size_t>(d)] < idx_t.shape()[static_cast<size_t>(d)]) break;
      pos[static_cast<size_t>(d)] = 0;
    }
  }
  ctx.set_output(0, out);
  return OkStatus();
}

// ---------------------------------------------------------------- Expand / Tile
Status expand(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  FRUGAL_RETURN_IF_ERROR(check_elem(node, x.dtype()));
  const Ints shape = int_values(ctx.input(1));
  FRUGAL_ASSIGN_OR_RETURN(Shape out_shape, broadcast_shapes({x.shape(), Shape(shape)}, node));
  if (out_shape == x.shape()) {
    ctx.set_output(0, x);
    return OkStatus();
  }
  ctx.set_output(0, strided_gather(x, 0, out_shape, broadcast_strides(x.shape(), out_shape)));
  return OkStatus();
}

Status tile(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  FRUGAL_RETURN_IF_ERROR(check_elem(node, x.dtype()));
  const Ints reps = int_values(ctx.input(1));
  if (static_cast<int64_t>(reps.size()) != x.rank())
    return node.error(StatusCode::kInvalidData, "repeats length differs from input rank");
  // View the output as [r0, d0, r1, d1, ...] with stride 0 on the repeat dims.
  const auto st = strides_of(x.shape());
  Shape big, out_shape;
  Ints big_st;
  for (size_t d = 0; d < reps.size(); ++d) {
    if (reps[d] < 0) return node.error(StatusCode::kInvalidData, "negative repeat");
    big.push_back(reps[d]);
    big.push_back(x.shape()[d]);
    big_st.push_back(0);
    big_st.push_back(st[d]);
    out_shape.push_back(reps[d] * x.shape()[d]);
  }
  Tensor out = strided_gather(x, 0, big, big_st);
  ctx.set_output(0, out.reshaped(out_shape));
  return OkStatus();
}

// ---------------------------------------------------------------- Pad
Status pad(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  FRUGAL_RETURN_IF_ERROR(check_elem(node, x.dtype()));
  const int64_t r = x.rank();
  const std::string mode = node.get_string("mode", "constant");
  Ints pads;
  const size_t es = dtype_size(x.dtype());
  uint64_t fill = 0;  // raw bits of the constant value
  if (node.opset < 11) {
    pads = node.opset < 2 ? node.get_ints("paddings") : node.get_ints("pads");
    if (!store_scalar(x.dtype(), node.get_float("value", 0.f), &fill))
      return node.error(StatusCode::kUnsupported, "cannot write pad value");
  } else {
    pads = int_values(ctx.input(1));
    if (ctx.has_input(2) && ctx.input(2).numel() > 0) {
      if (ctx.input(2).dtype() != x.dtype())
        return node.error(StatusCode::kInvalidData, "constant_value dtype differs from data");
      std::memcpy(&fill, ctx.input(2).raw(), es);
    }
  }
  Ints axes;
  if (node.opset >= 18 && ctx.has_input(3)) axes = int_values(ctx.input(3));
  Ints pb(static_cast<size_t>(r), 0), pe(static_cast<size_t>(r), 0);
  if (axes.empty()) {
    if (static_cast<int64_t>(pads.size()) != 2 * r)
      return node.error(StatusCode::kInvalidData, "pads has " + std::to_string(pads.size()) +
                                                      " entries for rank " + std::to_string(r));
    for (int64_t d = 0; d < r; ++d) {
      pb[static_cast<size_t>(d)] = pads[static_cast<size_t>(d)];
      pe[static_cast<size_t>(d)] = pads[static_cast<size_t>(d + r)];
    }
  } else {
    const size_t na = axes.size();
    if (pads.size() != 2 * na) return node.error(StatusCode::kInvalidData, "pads length differs from 2 * axes");
    for (size_t i = 0; i < na; ++i) {
      FRUGAL_ASSIGN_OR_RETURN(int64_t a, normalize_axis(axes[i], r, node));
      pb[static_cast<size_t>(a)] = pads[i];
      pe[static_cast<size_t>(a)] = pads[i + na];
    }
  }
  enum { kConst, kReflect, kEdge, kWrap } m;
  if (mode == "constant") m = kConst;
  else if (mode == "reflect") m = kReflect;
  else if (mode == "edge") m = kEdge;
  else if (mode == "wrap") m = kWrap;
  else return node.error(StatusCode::kUnsupported, "mode '" + mode + "'");
  Shape out_shape(static_cast<size_t>(r));
  for (size_t d = 0; d < static_cast<size_t>(r); ++d) {
    out_shape[d] = x.shape()[d] + pb[d] + pe[d];
    if (out_shape[d] < 0) return node.error(StatusCode::kInvalidData, "pads make a negative dim");
    if (m != kConst && x.shape()[d] == 0 && out_shape[d] > 0)
      return node.error(StatusCode::kInvalidData, "cannot pad an empty axis in mode " + mode);
  }
  Tensor out = Tensor::uninitialized(x.dtype(), out_shape);
  const int64_t total = out.numel();
  if (total == 0) {
    ctx.set_output(0, out);
    return OkStatus();
  }
  if (r == 0) {
    std::memcpy(out.raw_mut(), x.raw(), es);
    ctx.set_output(0, out);
    return OkStatus();
  }
  // Source coordinate for output coordinate o along dim d; -1 means "constant".
  auto src_coord = [&](size_t d, int64_t o) -> int64_t {
    const int64_t n = x.shape()[d];
    int64_t c = o - pb[d];
    if (c >= 0 && c < n) return c;
    switch (m) {
      case kConst: return -1;
      case kEdge: return std::clamp<int64_t>(c, 0, n - 1);
      case kWrap: return ((c % n) + n) % n;
      case kReflect: {
        if (n == 1) return 0;
        const int64_t period = 2 * (n - 1);
        c = ((c % period) + period) % period;
        return c < n ? c : period - c;
      }
    }
    return -1;
  };
  const auto xs = strides_of(x.shape());
  const size_t last = static_cast<size_t>(r - 1);
  const int64_t inner = out_shape[last];
  Ints lastmap(static_cast<size_t>(inner));
  for (int64_t j = 0; j < inner; ++j) lastmap[static_cast<size_t>(j)] = src_coord(last, j);
  const int64_t rows = total / inner;
  gather_rows_mapped(x.raw(), out.raw_mut(), es, rows, lastmap, [&](int64_t row) -> int64_t {
    int64_t rem = row, off = 0;
    for (int64_t d = r - 2; d >= 0; --d) {
      const size_t du = static_cast<size_t>(d);
      const int64_t c = src_coord(du, rem % out_shape[du]);
      rem /= out_shape[du];
      if (c < 0) return -1;
      off += c * xs[du];
    }
    return off;
  }, fill);
  ctx.set_output(0, out);
  return OkStatus();
}

// ---------------------------------------------------------------- Shape / Size / constants
Status shape_op(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t r = x.rank();
  int64_t s = 0, e = r;
  if (node.opset >= 15) {
    s = node.get_int("start", 0);
    e = node.get_int("end", r);
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = std::clamp<int64_t>(s, 0, r);
    e = std::clamp<int64_t>(e, 0, r);
  }
  Ints dims;
  for (int64_t i = s; i < e; ++i) dims.push_back(x.shape()[static_cast<size_t>(i)]);
  ctx.set_output(0, Tensor::from_vector<int64_t>({static_cast<int64_t>(dims.size())}, dims));
  return OkStatus();
}

Status size_op(const NodeDef&, KernelContext& ctx) {
  ctx.set_output(0, Tensor::scalar<int64_t>(ctx.input(0).numel()));
  return OkStatus();
}

Status constant_of_shape(const NodeDef& node, KernelContext& ctx) {
  const Ints shape = ctx.has_input(0) ? int_values(ctx.input(0)) : Ints{};
  for (int64_t d : shape)
    if (d < 0) return node.error(StatusCode::kInvalidData, "negative dim in shape");
  const Tensor* v = node.get_tensor("value");
  DType dt = DType::kFloat;
  uint64_t bits = 0;
  if (v) {
    if (v->numel() != 1) return node.error(StatusCode::kInvalidModel, "value must hold one element");
    dt = v->dtype();
    FRUGAL_RETURN_IF_ERROR(check_elem(node, dt));
    std::memcpy(&bits, v->raw(), dtype_size(dt));
  }
  Tensor out = Tensor::uninitialized(dt, Shape(shape));
  const size_t es = dtype_size(dt);
  auto* dst = out.numel() ? static_cast<uint8_t*>(out.raw_mut()) : nullptr;
  if (bits == 0) {
    if (dst) std::memset(dst, 0, out.nbytes());
  } else {
    for (int64_t i = 0; i < out.numel(); ++i) std::memcpy(dst + static_cast<size_t>(i) * es, &bits, es);
  }
  ctx.set_output(0, out);
  return OkStatus();
}

StatusOr<std::unique_ptr<Kernel>> make_constant(const NodeDef& node) {
  Tensor t;
  if (const Tensor* v = node.get_tensor("value")) {
    t = *v;
  } else if (node.has("value_float")) {
    t = Tensor::scalar<float>(node.get_float("value_float", 0.f));
  } else if (node.has("value_floats")) {
    const auto f = node.get_floats("value_floats");
    t = Tensor::from_vector<float>({static_cast<int64_t>(f.size())}, f);
  } else if (node.has("value_int")) {
    t = Tensor::scalar<int64_t>(node.get_int("value_int", 0));
  } else if (node.has("value_ints")) {
    const auto v = node.get_ints("value_ints");
    t = Tensor::from_vector<int64_t>({static_cast<int64_t>(v.size())}, v);
  } else {
    return node.error(StatusCode::kUnsupported,
                      "needs value, value_float(s) or value_int(s) (sparse and string values are not supported)");
  }
  return std::unique_ptr<Kernel>(new FnKernel([t](KernelContext& ctx) -> Status {
    ctx.set_output(0, t);
    return OkStatus();
  }));
}

Status range(const NodeDef& node, KernelContext& ctx) {
  const Tensor& st = ctx.input(0);
  const DType dt = st.dtype();
  if (dtype_is_integer(dt)) {
    const int64_t s = int_values(st)[0], l = int_values(ctx.input(1))[0], d = int_values(ctx.input(2))[0];
    if (d == 0) return node.error(StatusCode::kInvalidData, "delta is 0");
    const int64_t diff = l - s;
    int64_t n = d > 0 ? (diff > 0 ? (diff + d - 1) / d : 0) : (diff < 0 ? (-diff + (-d) - 1) / (-d) : 0);
    Tensor out = Tensor::uninitialized(dt, {n});
    for (int64_t i = 0; i < n; ++i)
      store_scalar(dt, static_cast<double>(s + i * d), static_cast<uint8_t*>(out.raw_mut()) + i * dtype_size(dt));
    ctx.set_output(0, out);
    return OkStatus();
  }
  if (!dtype_is_float(dt)) return node.error(StatusCode::kUnsupported, std::string("dtype ") + dtype_name(dt));
  const double s = st.to_double_vector()[0], l = ctx.input(1).to_double_vector()[0],
               d = ctx.input(2).to_double_vector()[0];
  if (d == 0) return node.error(StatusCode::kInvalidData, "delta is 0");
  const int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((l - s) / d)));
  Tensor out = Tensor::uninitialized(dt, {n});
  const size_t es = dtype_size(dt);
  for (int64_t i = 0; i < n; ++i) {
    double v = s + static_cast<double>(i) * d;
    if (dt == DType::kFloat) v = static_cast<float>(s) + static_cast<float>(i) * static_cast<float>(d);
    store_scalar(dt, v, static_cast<uint8_t*>(out.raw_mut()) + static_cast<size_t>(i) * es);
  }
  ctx.set_output(0, out);
  return OkStatus();
}

// ---------------------------------------------------------------- DepthToSpace / SpaceToDepth
Status depth_to_space(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  FRUGAL_RETURN_IF_ERROR(check_elem(node, x.dtype()));
  const int64_t b = node.get_int("blocksize", 0);
  if (x.rank() != 4 || b <= 0 || x.dim(1) % (b * b) != 0)
    return node.error(StatusCode::kInvalidData, "needs NCHW input with C divisible by blocksize^2");
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), c = C / (b * b);
  const bool crd = node.opset >= 11 && node.get_string("mode", "DCR") == "CRD";
  // Output [N, c, H, b1, W, b2] gathered from the input viewed as [N, b1, b2, c, H, W] (DCR) or
  // [N, c, b1, b2, H, W] (CRD).
  const int64_t sN = C * H * W, sH = W, sW = 1;
  int64_t sc, sb1, sb2;
  if (crd) {
    sc = b * b * H * W;
    sb1 = b * H * W;
    sb2 = H * W;
  } else {
    sb1 = b * c * H * W;
    sb2 = c * H * W;
    sc = H * W;
  }
  Tensor out = strided_gather(x, 0, {N, c, H, b, W, b}, {sN, sc, sH, sb1, sW, sb2});
  ctx.set_output(0, out.reshaped({N, c, H * b, W * b}));
  return OkStatus();
}

Status space_to_depth(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  FRUGAL_RETURN_IF_ERROR(check_elem(node, x.dtype()));
  const int64_t b = node.get_int("blocksize", 0);
  if (x.rank() != 4 || b <= 0 || x.dim(2) % b != 0 || x.dim(3) % b != 0)
    return node.error(StatusCode::kInvalidData, "needs NCHW input with H and W divisible by blocksize");
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), h = H / b, w = W / b;
  // Input viewed as [N, C, h, b1, w, b2]; output [N, b1, b2, C, h, w].
  Tensor out = strided_gather(x, 0, {N, b, b, C, h, w}, {C * H * W, W, 1, H * W, b * W, b});
  ctx.set_output(0, out.reshaped({N, C * b * b, h, w}));
  return OkStatus();
}

// ---------------------------------------------------------------- NonZero
Status nonzero(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  FRUGAL_RETURN_IF_ERROR(check_elem(node, x.dtype()));
  const int64_t n = x.numel();
  std::vector<int64_t> hits;
  const DType dt = x.dtype();
  for (int64_t i = 0; i < n; ++i) {
    bool nz;
    if (dt == DType::kFloat) nz = x.data<float>()[i] != 0.f;
    else if (dt == DType::kDouble) nz = x.data<double>()[i] != 0.0;
    else if (is_half_type(dt)) nz = (x.data<uint16_t>()[i] & 0x7fff) != 0;
    else {
      const auto* p = static_cast<const uint8_t*>(x.raw()) + static_cast<size_t>(i) * dtype_size(dt);
      nz = false;
      for (size_t k = 0; k < dtype_size(dt); ++k) nz |= p[k] != 0;
    }
    if (nz) hits.push_back(i);
  }
  const int64_t r = std::max<int64_t>(x.rank(), 1);
  const int64_t nnz = static_cast<int64_t>(hits.size());
  Tensor out = Tensor::uninitialized(DType::kInt64, {x.rank() == 0 ? 1 : x.rank(), nnz});
  if (nnz) {
    auto* o = out.mut<int64_t>();
    const auto st = strides_of(x.shape());
    for (int64_t k = 0; k < nnz; ++k) {
      int64_t rem = hits[static_cast<size_t>(k)];
      for (int64_t d = 0; d < r; ++d) {
        if (x.rank() == 0) {
          o[d * nnz + k] = 0;
          continue;
        }
        o[d * nnz + k] = rem / st[static_cast<size_t>(d)];
        rem %= st[static_cast<size_t>(d)];
      }
    }
  }
  ctx.set_output(0, out);
  return OkStatus();
}

}  // namespace

void register_shape_kernels(KernelRegistry& r) {
  register_ranges(r, "Transpose", {1, 13, 21}, simple_kernel(transpose));
  register_ranges(r, "Reshape", {1, 5, 13, 14, 19, 21}, simple_kernel(reshape));
  register_ranges(r, "Flatten", {1, 9, 11, 13, 21}, simple_kernel(flatten));
  register_ranges(r, "Squeeze", {1, 11, 13, 21}, simple_kernel(squeeze));
  register_ranges(r, "Unsqueeze", {1, 11, 13, 21}, simple_kernel(unsqueeze));
  register_ranges(r, "Concat", {1, 4, 11, 13}, simple_kernel(concat));
  register_ranges(r, "Split", {1, 2, 11, 13, 18}, simple_kernel(split));
  register_ranges(r, "Slice", {1, 10, 11, 13}, simple_kernel(slice));
  register_ranges(r, "Gather", {1, 11, 13}, simple_kernel(gather));
  register_ranges(r, "GatherElements", {11, 13}, simple_kernel(gather_elements));
  register_ranges(r, "Expand", {8, 13}, simple_kernel(expand));
  register_ranges(r, "Tile", {6, 13}, simple_kernel(tile));
  register_ranges(r, "Pad", {1, 2, 11, 13, 18, 19, 21}, simple_kernel(pad));
  register_ranges(r, "Shape", {1, 13, 15, 19, 21}, simple_kernel(shape_op));
  register_ranges(r, "Size", {1, 13, 19, 21}, simple_kernel(size_op));
  register_ranges(r, "ConstantOfShape", {9, 20, 21}, simple_kernel(constant_of_shape));
  register_ranges(r, "Constant", {1, 9, 11, 12, 13, 19, 21}, make_constant);
  register_ranges(r, "Range", {11}, simple_kernel(range));
  register_ranges(r, "DepthToSpace", {1, 11, 13}, simple_kernel(depth_to_space));
  register_ranges(r, "SpaceToDepth", {1, 13}, simple_kernel(space_to_depth));
  register_ranges(r, "NonZero", {9, 13}, simple_kernel(nonzero));
  register_resize_kernels(r);
}

}  // namespace frugal::kernels
