// Tensor: a dtype, an int64 shape and contiguous row-major storage. The storage is shared and either
// owned (heap, 64-byte aligned) or a read-only view of memory someone else keeps alive (a mmapped
// external-data file, a protobuf raw_data string). Copying a Tensor copies the handle, not the data.
// Sub-byte types (int4, uint4, int2, uint2, float4) are stored packed, low nibble first, as ONNX does.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "frugal/dtype.h"
#include "frugal/status.h"

namespace frugal {

using Shape = std::vector<int64_t>;

// 1 for a scalar (empty shape). Inline: it sits in loop conditions all over the kernels.
inline int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}
std::string shape_str(const Shape& s);  // "[1,3,224,224]"
// Bytes needed for n elements of t (packed for sub-byte types).
size_t storage_bytes(DType t, int64_t n);

class Tensor {
 public:
  Tensor() = default;

  // Zero-filled owned storage.
  static Tensor zeros(DType dtype, Shape shape);
  // Owned storage, contents unspecified (the caller writes every element).
  static Tensor uninitialized(DType dtype, Shape shape);
  // A read-only view of `data`; `keepalive` owns it. No copy.
  static Tensor view(DType dtype, Shape shape, std::shared_ptr<const void> keepalive, const void* data);
  // Owned copy of `bytes` (must be storage_bytes(dtype, numel) long).
  static Tensor from_bytes(DType dtype, Shape shape, const void* bytes);
  template <typename T>
  static Tensor from_vector(Shape shape, const std::vector<T>& v) {
    return from_bytes(DTypeOf<T>::value, std::move(shape), v.data());
  }
  template <typename T>
  static Tensor scalar(T v) {
    return from_bytes(DTypeOf<T>::value, {}, &v);
  }

  bool defined() const { return dtype_ != DType::kUndefined; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t dim(int64_t i) const { return shape_[static_cast<size_t>(i < 0 ? i + rank() : i)]; }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return storage_bytes(dtype_, numel()); }
  bool is_view() const { return readonly_; }

  const void* raw() const { return data_; }
  // Mutable access; only valid on owned storage (asserts otherwise).
  void* raw_mut();
  template <typename T>
  const T* data() const { return static_cast<const T*>(data_); }
  template <typename T>
  T* mut() { return static_cast<T*>(raw_mut()); }
  template <typename T>
  std::span<const T> span() const { return {data<T>(), static_cast<size_t>(numel())}; }

  // Same storage, another shape with the same element count.
  Tensor reshaped(Shape shape) const;
  // An owned deep copy (writable).
  Tensor clone() const;
  // Values converted to double / int64 (for shape inputs, attributes, tests). Not for hot paths.
  std::vector<double> to_double_vector() const;
  std::vector<int64_t> to_int64_vector() const;
  // A float32 copy of any numeric tensor.
  Tensor to_float() const;

 private:
  DType dtype_ = DType::kUndefined;
  Shape shape_;
  std::shared_ptr<const void> holder_;
  const void* data_ = nullptr;
  bool readonly_ = false;
};

// Freed tensor buffers of 1 MiB and more are kept (32 MiB at most) for the next allocation of the
// same size, so repeated runs do not map and zero fresh pages every time. This frees the kept ones:
// for a caller whose next phase allocates different sizes (calibration done, an unfused run over).
void release_recycled_tensor_memory();

// Elements equal to zero: +0 and -0 for the float types (float8 and float4 by value: a -0 counts, a
// float8 e8m0, which has no zero, never does), all-zero bits for integers, bool and complex.
int64_t count_zeros(const Tensor& t);

// Element-wise comparison for tests and `frugal run --expect`.
struct CompareResult {
  double max_abs = 0, max_rel = 0;
  int64_t mismatches = 0;  // elements outside atol + rtol * |expected|
  int64_t first_bad = -1;
  bool shape_ok = true, dtype_ok = true;
  bool ok() const { return shape_ok && dtype_ok && mismatches == 0; }
};
CompareResult compare_tensors(const Tensor& actual, const Tensor& expected, double rtol, double atol);

}  // namespace frugal
