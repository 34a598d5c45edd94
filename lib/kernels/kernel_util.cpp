#include "kernel_util.h"

#include <algorithm>

namespace frugal::kernels {

StatusOr<int64_t> normalize_axis(int64_t axis, int64_t rank, const NodeDef& node) {
  const int64_t lo = -std::max<int64_t>(rank, 1), hi = std::max<int64_t>(rank, 1) - 1;
  if (axis < lo || axis > hi)
    return node.error(StatusCode::kInvalidModel,
                      "axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  return axis < 0 ? axis + std::max<int64_t>(rank, 1) : axis;
}

std::vector<int64_t> strides_of(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (int64_t i = static_cast<int64_t>(s.size()) - 2; i >= 0; --i)
    st[static_cast<size_t>(i)] = st[static_cast<size_t>(i + 1)] * s[static_cast<size_t>(i + 1)];
  return st;
}

StatusOr<Shape> broadcast_shapes(const std::vector<Shape>& shapes, const NodeDef& node) {
  size_t rank = 0;
  for (const auto& s : shapes) rank = std::max(rank, s.size());
  Shape out(rank, 1);
  for (const auto& s : shapes) {
    const size_t off = rank - s.size();
    for (size_t i = 0; i < s.size(); ++i) {
      int64_t& o = out[off + i];
      const int64_t d = s[i];
      if (d == o || d == 1) continue;
      if (o == 1) {
        o = d;
        continue;
      }
      std::string msg = "shapes cannot broadcast:";
      for (const auto& x : shapes) msg += " " + shape_str(x);
      return node.error(StatusCode::kInvalidData, msg);
    }
  }
  return out;
}

std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> st(out.size(), 0);
  const auto in_st = strides_of(in);
  const size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) st[off + i] = in[i] == 1 ? 0 : in_st[i];
  return st;
}

std::vector<int64_t> int_values(const Tensor& t) { return t.to_int64_vector(); }

bool is_half_type(DType t) { return t == DType::kFloat16 || t == DType::kBFloat16; }

Tensor to_float32(const Tensor& t) { return t.to_float(); }

Tensor from_float32(const Tensor& t, DType target) {
  Tensor out = Tensor::uninitialized(target, t.shape());
  const float* src = t.data<float>();
  const int64_t n = t.numel();
  if (target == DType::kFloat16) {
    auto* d = out.mut<uint16_t>();
    for (int64_t i = 0; i < n; ++i) d[i] = float_to_half(src[i]);
  } else if (target == DType::kBFloat16) {
    auto* d = out.mut<uint16_t>();
    for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(src[i]);
  } else if (target == DType::kDouble) {
    auto* d = out.mut<double>();
    for (int64_t i = 0; i < n; ++i) d[i] = src[i];
  } else {
    return t;
  }
  return out;
}

}  // namespace frugal::kernels
