// Data-movement helpers shared by the shape-family kernels (and usable by reductions): a strided
// gather copy that Transpose, Slice, Expand, Tile, Split and DepthToSpace reduce to, plus small
// helpers for opset-ranged registration and for writing a scalar of any dtype.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <vector>

#include "frugal/kernel.h"
#include "frugal/tensor.h"

namespace frugal::kernels {

// Fills the contiguous `dst` (shape `out_shape`, elements of `elem_size` bytes) with
// dst[i0,...,ik] = src[offset + sum_d i_d * in_strides[d]] (strides in elements, may be 0 or
// negative). Coalesces dims, uses memcpy when the inner source stride is 1, a tiled 2-D loop for
// transposes, and parallel_for on large outputs. elem_size must be 1, 2, 4 or 8.
void strided_copy(const void* src, int64_t offset, void* dst, size_t elem_size, const Shape& out_shape,
                  const std::vector<int64_t>& in_strides);

// A tensor of `out_shape` gathered from `in` as above. When the gather reads one contiguous run in
// order (Slice/Split along the leading axis, full slices), the result is a read-only view into
// `in` (no copy) that keeps `in`'s storage alive; otherwise a new owned tensor.
Tensor strided_gather(const Tensor& in, int64_t offset, const Shape& out_shape,
                      const std::vector<int64_t>& in_strides);

// Row gather used by Pad and nearest Resize: output row `row` (of `rows`, each `lastmap.size()`
// elements) is filled from source offset base = row_base(row) as dst[j] = src[base + lastmap[j]];
// a negative base or lastmap entry writes the raw `fill` bits instead. Threaded over rows.
void gather_rows_mapped(const void* src, void* dst, size_t elem_size, int64_t rows, const std::vector<int64_t>& lastmap,
                        const std::function<int64_t(int64_t)>& row_base, uint64_t fill);

// Writes `v` converted to `dt` into dst (one element). Returns false for types it cannot write.
bool store_scalar(DType dt, double v, void* dst);

// Registers `f` for `op` over consecutive opset ranges [s0, s1-1], [s1, s2-1], ..., [sn, kMaxOpset]
// (one registry entry per range where the op's semantics changed; the kernel reads node.opset).
void register_ranges(KernelRegistry& r, const char* op, std::initializer_list<int> sinces, KernelFactory f);

// Wraps a compute lambda as a factory that validates nothing at creation.
template <typename F>
KernelFactory simple_kernel(F fn) {
  return [fn](const NodeDef& node) -> StatusOr<std::unique_ptr<Kernel>> {
    return std::unique_ptr<Kernel>(
        new FnKernel([fn, node](KernelContext& ctx) -> Status { return fn(node, ctx); }));
  };
}

}  // namespace frugal::kernels
