#include "shape_util.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "frugal/dtype.h"
#include "frugal/parallel.h"
#include "kernel_util.h"

namespace frugal::kernels {

namespace {

constexpr int64_t kTile = 16;
constexpr int64_t kParallelGrain = 1 << 15;  // elements per task before threading pays off

template <typename T>
void copy_rows(const T* src, int64_t offset, T* dst, const Shape& shape, const std::vector<int64_t>& st) {
  const size_t rank = shape.size();
  const int64_t inner = shape[rank - 1];
  const int64_t ist = st[rank - 1];
  const int64_t rows = shape_numel(shape) / inner;
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(inner, 1));
  parallel_for(rows, grain, [&](int64_t b, int64_t e) {
    // Multi-index of row b over dims [0, rank-1).
    std::vector<int64_t> idx(rank, 0);
    int64_t off = offset;
    int64_t rem = b;
    for (int64_t d = static_cast<int64_t>(rank) - 2; d >= 0; --d) {
      const size_t du = static_cast<size_t>(d);
      idx[du] = rem % shape[du];
      rem /= shape[du];
      off += idx[du] * st[du];
    }
    for (int64_t r = b; r < e; ++r) {
      T* out = dst + r * inner;
      const T* in = src + off;
      if (ist == 1) {
        std::memcpy(out, in, static_cast<size_t>(inner) * sizeof(T));
      } else if (ist == 0) {
        std::fill(out, out + inner, *in);
      } else {
        for (int64_t j = 0; j < inner; ++j) out[j] = in[j * ist];
      }
      for (int64_t d = static_cast<int64_t>(rank) - 2; d >= 0; --d) {
        const size_t du = static_cast<size_t>(d);
        off += st[du];
        if (++idx[du] < shape[du]) break;
        off -= st[du] * shape[du];
        idx[du] = 0;
      }
    }
  });
}

// Transpose-like case: the source's unit-stride dim p is not the output's last dim. Copies
// kTile x kTile blocks of (p, last) so both reads and writes stay within a few cache lines.
template <typename T>
void copy_tiled(const T* src, int64_t offset, T* dst, const Shape& shape, const std::vector<int64_t>& st,
                size_t p) {
  const size_t rank = shape.size();
  const size_t last = rank - 1;
  const auto ost = strides_of(shape);
  std::vector<size_t> outer_dims;
  for (size_t d = 0; d < last; ++d)
    if (d != p) outer_dims.push_back(d);
  int64_t outer = 1;
  for (size_t d : outer_dims) outer *= shape[d];
  const int64_t np = shape[p], nl = shape[last];
  const int64_t pblocks = (np + kTile - 1) / kTile;
  const int64_t sl = st[last], osp = ost[p];
  const int64_t per_task = kTile * nl;
  parallel_for(outer * pblocks, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(per_task, 1)),
               [&](int64_t b, int64_t e) {
                 for (int64_t t = b; t < e; ++t) {
                   int64_t o = t / pblocks;
                   const int64_t pb = t % pblocks;
                   int64_t in_off = offset, out_off = 0;
                   for (int64_t k = static_cast<int64_t>(outer_dims.size()) - 1; k >= 0; --k) {
                     const size_t d = outer_dims[static_cast<size_t>(k)];
                     const int64_t i = o % shape[d];
                     o /= shape[d];
                     in_off += i * st[d];
                     out_off += i * ost[d];
                   }
                   const int64_t i0 = pb * kTile, i1 = std::min(np, i0 + kTile);
                   for (int64_t j0 = 0; j0 < nl; j0 += kTile) {
                     const int64_t j1 = std::min(nl, j0 + kTile);
                     // Contiguous writes along the output row; the kTile source lines read per
                     // row stay in L1 across the tile.
                     for (int64_t i = i0; i < i1; ++i) {
                       T* __restrict out = dst + out_off + i * osp;
                       const T* __restrict in = src + in_off + i;  // st[p] == 1
                       for (int64_t j = j0; j < j1; ++j) out[j] = in[j * sl];
                     }
                   }
                 }
               });
}

template <typename T>
void strided_copy_t(const T* src, int64_t offset, T* dst, const Shape& out_shape,
                    const std::vector<int64_t>& in_strides) {
  const int64_t n = shape_numel(out_shape);
  if (n == 0) return;
  // Drop unit dims and merge dims that are contiguous with their successor in the source.
  Shape shape;
  std::vector<int64_t> st;
  for (size_t d = 0; d < out_shape.size(); ++d) {
    if (out_shape[d] == 1) continue;
    if (!shape.empty() && st.back() == in_strides[d] * out_shape[d]) {
      shape.back() *= out_shape[d];
      st.back() = in_strides[d];
      continue;
    }
    shape.push_back(out_shape[d]);
    st.push_back(in_strides[d]);
  }
  if (shape.empty()) {
    dst[0] = src[offset];
    return;
  }
  const size_t rank = shape.size();
  if (rank >= 2 && st[rank - 1] != 1 && shape[rank - 1] >= 4) {
    for (size_t p = 0; p + 1 < rank; ++p)
      if (st[p] == 1 && shape[p] >= 4) {
        copy_tiled(src, offset, dst, shape, st, p);
        return;
      }
  }
  copy_rows(src, offset, dst, shape, st);
}

template <typename T>
void gather_rows_t(const T* src, T* dst, int64_t rows, const std::vector<int64_t>& lastmap,
                   const std::function<int64_t(int64_t)>& row_base, T fill) {
  const int64_t inner = static_cast<int64_t>(lastmap.size());
  const int64_t* map = lastmap.data();
  parallel_for(rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      T* out = dst + row * inner;
      const int64_t base = row_base(row);
      if (base < 0) {
        std::fill(out, out + inner, fill);
        continue;
      }
      const T* in = src + base;
      for (int64_t j = 0; j < inner; ++j) out[j] = map[j] < 0 ? fill : in[map[j]];
    }
  });
}

}  // namespace

void gather_rows_mapped(const void* src, void* dst, size_t elem_size, int64_t rows, const std::vector<int64_t>& lastmap,
                        const std::function<int64_t(int64_t)>& row_base, uint64_t fill) {
  auto go = [&](auto tag) {
    using T = decltype(tag);
    T f;
    std::memcpy(&f, &fill, sizeof(T));
    gather_rows_t(static_cast<const T*>(src), static_cast<T*>(dst), rows, lastmap, row_base, f);
  };
  switch (elem_size) {
    case 1: go(uint8_t{}); break;
    case 2: go(uint16_t{}); break;
    case 4: go(uint32_t{}); break;
    case 8: go(uint64_t{}); break;
    default: break;
  }
}

void strided_copy(const void* src, int64_t offset, void* dst, size_t elem_size, const Shape& out_shape,
                  const std::vector<int64_t>& in_strides) {
  switch (elem_size) {
    case 1:
      strided_copy_t(static_cast<const uint8_t*>(src), offset, static_cast<uint8_t*>(dst), out_shape, in_strides);
      break;
    case 2:
      strided_copy_t(static_cast<const uint16_t*>(src), offset, static_cast<uint16_t*>(dst), out_shape,
                     in_strides);
      break;
    case 4:
      strided_copy_t(static_cast<const uint32_t*>(src), offset, static_cast<uint32_t*>(dst), out_shape,
                     in_strides);
      break;
    case 8:
      strided_copy_t(static_cast<const uint64_t*>(src), offset, static_cast<uint64_t*>(dst), out_shape,
                     in_strides);
      break;
    default:
      break;
  }
}

// Whether the gather reads one contiguous run of the source in order (so a view can serve it).
static bool is_contiguous_run(const Shape& out_shape, const std::vector<int64_t>& in_strides) {
  int64_t expect = 1;
  for (int64_t d = static_cast<int64_t>(out_shape.size()) - 1; d >= 0; --d) {
    const size_t du = static_cast<size_t>(d);
    if (out_shape[du] == 1) continue;
    if (in_strides[du] != expect) return false;
    expect *= out_shape[du];
  }
  return true;
}

Tensor strided_gather(const Tensor& in, int64_t offset, const Shape& out_shape,
                      const std::vector<int64_t>& in_strides) {
  const size_t es = dtype_size(in.dtype());
  if (shape_numel(out_shape) > 0 && is_contiguous_run(out_shape, in_strides)) {
    // Zero-copy: a read-only view into the source, which the view keeps alive.
    auto keep = std::make_shared<Tensor>(in);
    return Tensor::view(in.dtype(), out_shape, keep,
                        static_cast<const uint8_t*>(in.raw()) + static_cast<size_t>(offset) * es);
  }
  Tensor out = Tensor::uninitialized(in.dtype(), out_shape);
  if (out.numel() > 0) strided_copy(in.raw(), offset, out.raw_mut(), es, out_shape, in_strides);
  return out;
}

bool store_scalar(DType dt, double v, void* dst) {
  auto put = [&](auto x) { std::memcpy(dst, &x, sizeof(x)); };
  switch (dt) {
    case DType::kFloat: put(static_cast<float>(v)); return true;
    case DType::kDouble: put(v); return true;
    case DType::kInt8: put(static_cast<int8_t>(v)); return true;
    case DType::kUInt8: put(static_cast<uint8_t>(v)); return true;
    case DType::kInt16: put(static_cast<int16_t>(v)); return true;
    case DType::kUInt16: put(static_cast<uint16_t>(v)); return true;
    case DType::kInt32: put(static_cast<int32_t>(v)); return true;
    case DType::kUInt32: put(static_cast<uint32_t>(v)); return true;
    case DType::kInt64: put(static_cast<int64_t>(v)); return true;
    case DType::kUInt64: put(static_cast<uint64_t>(v)); return true;
    case DType::kBool: put(static_cast<uint8_t>(v != 0)); return true;
    case DType::kFloat16: put(float_to_half(static_cast<float>(v))); return true;
    case DType::kBFloat16: put(float_to_bf16(static_cast<float>(v))); return true;
    default: return false;
  }
}

void register_ranges(KernelRegistry& r, const char* op, std::initializer_list<int> sinces, KernelFactory f) {
  std::vector<int> s(sinces);
  for (size_t i = 0; i < s.size(); ++i) {
    const int until = i + 1 < s.size() ? s[i + 1] - 1 : kMaxOpset;
    r.add(op, s[i], until, f);
  }
}

}  // namespace frugal::kernels
