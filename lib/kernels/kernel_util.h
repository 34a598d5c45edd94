// Helpers shared by the CPU kernel families: axis normalisation, broadcasting, strides and dtype
// dispatch. Kept header-only and free of protobuf so kernel files compile fast.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "frugal/dtype.h"
#include "frugal/kernel.h"
#include "frugal/status.h"
#include "frugal/tensor.h"

namespace frugal::kernels {

template <typename T>
struct TypeTag {
  using type = T;
};

// Normalises a possibly negative axis into [0, rank). `rank` may be 0 only for axis 0 / -1 checks.
StatusOr<int64_t> normalize_axis(int64_t axis, int64_t rank, const NodeDef& node);

// Row-major strides (in elements).
std::vector<int64_t> strides_of(const Shape& s);

// Numpy-style multidirectional broadcast of any number of shapes.
StatusOr<Shape> broadcast_shapes(const std::vector<Shape>& shapes, const NodeDef& node);

// Strides of `in` for iterating over `out` (0 where `in` is broadcast). `in` is right-aligned.
std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out);

// Walks every element of `out_shape` in row-major order and calls f(out_index, in_offsets...)
// for N inputs with the given broadcast strides. Inner loop is a straight stride walk.
template <size_t N, typename F>
void for_each_broadcast(const Shape& out_shape, const std::vector<int64_t> (&in_strides)[N], F&& f) {
  const int64_t rank = static_cast<int64_t>(out_shape.size());
  const int64_t total = shape_numel(out_shape);
  if (total == 0) return;
  if (rank == 0) {
    int64_t offs[N] = {};
    f(int64_t{0}, offs);
    return;
  }
  std::vector<int64_t> idx(static_cast<size_t>(rank), 0);
  int64_t offs[N] = {};
  const int64_t inner = out_shape[static_cast<size_t>(rank - 1)];
  int64_t inner_stride[N];
  for (size_t k = 0; k < N; ++k) inner_stride[k] = in_strides[k][static_cast<size_t>(rank - 1)];
  for (int64_t o = 0; o < total; o += inner) {
    int64_t cur[N];
    for (size_t k = 0; k < N; ++k) cur[k] = offs[k];
    for (int64_t j = 0; j < inner; ++j) {
      f(o + j, cur);
      for (size_t k = 0; k < N; ++k) cur[k] += inner_stride[k];
    }
    // advance the outer index (all dims but the last)
    for (int64_t d = rank - 2; d >= 0; --d) {
      const size_t du = static_cast<size_t>(d);
      ++idx[du];
      for (size_t k = 0; k < N; ++k) offs[k] += in_strides[k][du];
      if (idx[du] < out_shape[du]) break;
      for (size_t k = 0; k < N; ++k) offs[k] -= in_strides[k][du] * out_shape[du];
      idx[du] = 0;
    }
  }
}

// Calls f(TypeTag<T>{}) for the C++ type of `t`. Returns Unsupported for types not in the list.
// Usage: return dispatch_float(x.dtype(), node, [&](auto tag) -> Status { using T = typename
//        decltype(tag)::type; ... });
#define FRUGAL_DISPATCH_CASE(DT, T) \
  case DType::DT:                   \
    return f(TypeTag<T>{});

template <typename F>
Status dispatch_float(DType t, const NodeDef& node, F&& f) {
  switch (t) {
    FRUGAL_DISPATCH_CASE(kFloat, float)
    FRUGAL_DISPATCH_CASE(kDouble, double)
    default:
      return node.error(StatusCode::kUnsupported, std::string("dtype ") + dtype_name(t) + " not supported");
  }
}

template <typename F>
Status dispatch_int(DType t, const NodeDef& node, F&& f) {
  switch (t) {
    FRUGAL_DISPATCH_CASE(kInt8, int8_t)
    FRUGAL_DISPATCH_CASE(kUInt8, uint8_t)
    FRUGAL_DISPATCH_CASE(kInt16, int16_t)
    FRUGAL_DISPATCH_CASE(kUInt16, uint16_t)
    FRUGAL_DISPATCH_CASE(kInt32, int32_t)
    FRUGAL_DISPATCH_CASE(kUInt32, uint32_t)
    FRUGAL_DISPATCH_CASE(kInt64, int64_t)
    FRUGAL_DISPATCH_CASE(kUInt64, uint64_t)
    default:
      return node.error(StatusCode::kUnsupported, std::string("dtype ") + dtype_name(t) + " not supported");
  }
}

// float, double and every integer type (the usual "numeric" set of arithmetic ops).
template <typename F>
Status dispatch_numeric(DType t, const NodeDef& node, F&& f) {
  if (t == DType::kFloat || t == DType::kDouble) return dispatch_float(t, node, f);
  return dispatch_int(t, node, f);
}

// Every fixed-size type, bool and 16-bit floats included, as storage of that width (for data
// movement ops: Transpose, Concat, Gather, Slice, ...). The callable sees an unsigned int type.
template <typename F>
Status dispatch_by_size(DType t, const NodeDef& node, F&& f) {
  switch (dtype_size(t)) {
    case 1: return f(TypeTag<uint8_t>{});
    case 2: return f(TypeTag<uint16_t>{});
    case 4: return f(TypeTag<uint32_t>{});
    case 8: return f(TypeTag<uint64_t>{});
    default:
      return node.error(StatusCode::kUnsupported, std::string("dtype ") + dtype_name(t) + " not supported");
  }
}

// Reads the values of a 1-D (or scalar) integer tensor (shape inputs, axes, pads) as int64.
std::vector<int64_t> int_values(const Tensor& t);

// Makes a float32 compute copy of a float16/bfloat16 tensor and converts the result back; used by
// float ops that accept 16-bit floats without a native kernel.
bool is_half_type(DType t);
Tensor to_float32(const Tensor& t);
Tensor from_float32(const Tensor& t, DType target);

// Runs f(inputs, out) on a float32 view of 16-bit float inputs and converts the output back; other
// types pass through unchanged. The output takes the first input's type (Pow: the base's), so only
// that one decides the way back.
template <typename F>
Status with_half_as_float(KernelContext& ctx, std::vector<Tensor> ins, F f) {
  const DType half = !ins.empty() && is_half_type(ins[0].dtype()) ? ins[0].dtype() : DType::kUndefined;
  for (auto& t : ins)
    if (is_half_type(t.dtype())) t = to_float32(t);
  Tensor out;
  FRUGAL_RETURN_IF_ERROR(f(ins, out));
  ctx.set_output(0, half != DType::kUndefined && out.dtype() == DType::kFloat ? from_float32(out, half) : out);
  return Status();
}

}  // namespace frugal::kernels
