#include "frugal/tensor.h"

#include <cassert>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <type_traits>

namespace frugal {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ",";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

size_t storage_bytes(DType t, int64_t n) {
  if (n <= 0) return 0;
  const int bits = dtype_bits(t);
  return (static_cast<size_t>(n) * static_cast<size_t>(bits) + 7) / 8;
}

namespace {

// Large tensor buffers are recycled. A run's intermediates come back with the same sizes on the next
// run, and each fresh block of that size is a new mapping (the CLI sets glibc's mmap threshold to
// 1 MiB so freed weight-sized blocks return to the system): page faults and kernel zeroing on every
// inference, about 12% of a single-thread resnet50 run. Freed blocks of at least kRecycleMin bytes
// wait in a size-keyed cache holding at most kRecycleCap bytes in all (the rest is freed at once);
// an allocation of the same page-rounded size takes one back.
class BlockCache {
 public:
  static constexpr size_t kRecycleMin = size_t{1} << 20;
  static constexpr size_t kRecycleCap = size_t{32} << 20;

  void* take(size_t size) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(size);
    if (it == free_.end()) return nullptr;
    void* p = it->second;
    free_.erase(it);
    held_ -= size;
    return p;
  }
  void give(void* p, size_t size) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (held_ + size <= kRecycleCap) {
        free_.emplace(size, p);
        held_ += size;
        return;
      }
    }
    std::free(p);
  }
  void clear() {
    std::multimap<size_t, void*> drop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      drop.swap(free_);
      held_ = 0;
    }
    for (auto& kv : drop) std::free(kv.second);
  }

 private:
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  size_t held_ = 0;
};

BlockCache& block_cache() {
  static BlockCache* c = new BlockCache();  // never destroyed: tensors may be freed during exit
  return *c;
}

std::shared_ptr<void> allocate(size_t bytes, bool zero) {
  size_t size = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  if (size >= BlockCache::kRecycleMin) {
    size = (size + 4095) / 4096 * 4096;
    void* p = block_cache().take(size);
    if (!p) p = std::aligned_alloc(64, size);
    if (!p) throw std::bad_alloc();
    if (zero) std::memset(p, 0, size);
    return std::shared_ptr<void>(p, [size](void* q) { block_cache().give(q, size); });
  }
  void* p = std::aligned_alloc(64, size);
  if (!p) throw std::bad_alloc();
  if (zero) std::memset(p, 0, size);
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

}  // namespace

void release_recycled_tensor_memory() { block_cache().clear(); }

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  auto mem = allocate(t.nbytes(), true);
  t.data_ = mem.get();
  t.holder_ = std::move(mem);
  return t;
}

Tensor Tensor::uninitialized(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  auto mem = allocate(t.nbytes(), false);
  t.data_ = mem.get();
  t.holder_ = std::move(mem);
  return t;
}

Tensor Tensor::view(DType dtype, Shape shape, std::shared_ptr<const void> keepalive, const void* data) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.holder_ = std::move(keepalive);
  t.data_ = data;
  t.readonly_ = true;
  return t;
}

Tensor Tensor::from_bytes(DType dtype, Shape shape, const void* bytes) {
  Tensor t = uninitialized(dtype, std::move(shape));
  if (t.nbytes()) std::memcpy(t.raw_mut(), bytes, t.nbytes());
  return t;
}

void* Tensor::raw_mut() {
  assert(!readonly_ && "writing into a read-only tensor view");
  return const_cast<void*>(data_);
}

Tensor Tensor::reshaped(Shape shape) const {
  assert(shape_numel(shape) == numel());
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const { return from_bytes(dtype_, shape_, data_); }

namespace {

template <typename Out>
std::vector<Out> convert_all(const Tensor& t) {
  const int64_t n = t.numel();
  std::vector<Out> v(static_cast<size_t>(n));
  const void* p = t.raw();
  auto put = [&](auto* src) {
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<Out>(src[i]);
  };
  switch (t.dtype()) {
    case DType::kFloat: put(static_cast<const float*>(p)); break;
    case DType::kDouble: put(static_cast<const double*>(p)); break;
    case DType::kInt8: put(static_cast<const int8_t*>(p)); break;
    case DType::kUInt8: put(static_cast<const uint8_t*>(p)); break;
    case DType::kInt16: put(static_cast<const int16_t*>(p)); break;
    case DType::kUInt16: put(static_cast<const uint16_t*>(p)); break;
    case DType::kInt32: put(static_cast<const int32_t*>(p)); break;
    case DType::kUInt32: put(static_cast<const uint32_t*>(p)); break;
    case DType::kInt64: put(static_cast<const int64_t*>(p)); break;
    case DType::kUInt64: put(static_cast<const uint64_t*>(p)); break;
    case DType::kBool: put(static_cast<const uint8_t*>(p)); break;
    case DType::kFloat16: {
      auto* s = static_cast<const uint16_t*>(p);
      for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<Out>(half_to_float(s[i]));
      break;
    }
    case DType::kBFloat16: {
      auto* s = static_cast<const uint16_t*>(p);
      for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<Out>(bf16_to_float(s[i]));
      break;
    }
    default: break;  // unsupported types convert to zeros; callers check dtypes first
  }
  return v;
}

}  // namespace

std::vector<double> Tensor::to_double_vector() const { return convert_all<double>(*this); }
std::vector<int64_t> Tensor::to_int64_vector() const { return convert_all<int64_t>(*this); }

Tensor Tensor::to_float() const {
  if (dtype_ == DType::kFloat) return *this;
  auto v = convert_all<float>(*this);
  return from_bytes(DType::kFloat, shape_, v.data());
}

namespace {

// Types whose values the double conversion cannot represent (packed sub-byte integers, float8,
// float4): compared element by element on their bit patterns, which must match exactly.
bool compared_bitwise(DType t) {
  return dtype_bits(t) < 8 || t == DType::kFloat8E4M3FN || t == DType::kFloat8E4M3FNUZ || t == DType::kFloat8E5M2 ||
         t == DType::kFloat8E5M2FNUZ || t == DType::kFloat8E8M0;
}

uint32_t element_bits(const Tensor& t, int64_t i) {
  const int bits = dtype_bits(t.dtype());
  const auto* p = static_cast<const uint8_t*>(t.raw());
  if (bits >= 8) return p[i];
  const int64_t bit = i * bits;
  return (p[bit / 8] >> (bit % 8)) & ((1u << bits) - 1u);
}

}  // namespace

CompareResult compare_tensors(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  CompareResult r;
  r.shape_ok = actual.shape() == expected.shape();
  r.dtype_ok = actual.dtype() == expected.dtype();
  if (!r.shape_ok) return r;
  if (compared_bitwise(expected.dtype()) || compared_bitwise(actual.dtype())) {
    if (!r.dtype_ok) return r;
    for (int64_t i = 0; i < expected.numel(); ++i)
      if (element_bits(actual, i) != element_bits(expected, i)) {
        if (r.first_bad < 0) r.first_bad = i;
        ++r.mismatches;
      }
    return r;
  }
  const auto a = actual.to_double_vector(), e = expected.to_double_vector();
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = a[i], y = e[i];
    if (std::isnan(x) || std::isnan(y)) {
      if (std::isnan(x) != std::isnan(y)) {
        if (r.first_bad < 0) r.first_bad = static_cast<int64_t>(i);
        ++r.mismatches;
      }
      continue;
    }
    if (std::isinf(x) || std::isinf(y)) {
      if (x != y) {
        if (r.first_bad < 0) r.first_bad = static_cast<int64_t>(i);
        ++r.mismatches;
      }
      continue;
    }
    const double d = std::fabs(x - y);
    r.max_abs = std::max(r.max_abs, d);
    if (y != 0) r.max_rel = std::max(r.max_rel, d / std::fabs(y));
    if (d > atol + rtol * std::fabs(y)) {
      if (r.first_bad < 0) r.first_bad = static_cast<int64_t>(i);
      ++r.mismatches;
    }
  }
  return r;
}

int64_t count_zeros(const Tensor& t) {
  const int64_t n = t.numel();
  int64_t z = 0;
  // Contiguous elements compared with a zero of their own type: 32-bit counts per chunk, vectorised.
  auto count_plain = [&](const auto* p) {
    using E = std::remove_cv_t<std::remove_pointer_t<decltype(p)>>;
    for (int64_t e0 = 0; e0 < n; e0 += 4096) {
      const int64_t e1 = std::min(n, e0 + 4096);
      int32_t zc = 0;
      for (int64_t e = e0; e < e1; ++e) zc += p[e] == E(0);
      z += zc;
    }
  };
  switch (t.dtype()) {
    case DType::kFloat:
      count_plain(t.data<float>());
      break;
    case DType::kDouble:
      for (double v : t.span<double>()) z += v == 0.0;
      break;
    case DType::kFloat16:
    case DType::kBFloat16: {
      const auto* p = t.data<uint16_t>();
      for (int64_t i = 0; i < n; ++i) z += (p[i] & 0x7FFF) == 0;
      break;
    }
    case DType::kFloat8E4M3FN:
    case DType::kFloat8E5M2:
    case DType::kFloat8E4M3FNUZ:
    case DType::kFloat8E5M2FNUZ: {
      // Zero is the all-zero code, sign bit aside; the fnuz types have no -0 (0x80 is their NaN).
      const bool fnuz = t.dtype() == DType::kFloat8E4M3FNUZ || t.dtype() == DType::kFloat8E5M2FNUZ;
      const uint8_t mask = fnuz ? 0xFF : 0x7F;
      const auto* p = static_cast<const uint8_t*>(t.raw());
      for (int64_t i = 0; i < n; ++i) z += (p[i] & mask) == 0;
      break;
    }
    case DType::kFloat8E8M0:  // powers of two only: no zero
      break;
    case DType::kFloat4E2M1: {  // packed nibbles, sign in bit 3
      const auto* p = static_cast<const uint8_t*>(t.raw());
      for (int64_t i = 0; i < n; ++i) z += ((p[i / 2] >> ((i & 1) * 4)) & 0x7) == 0;
      break;
    }
    default: {
      const auto* p = static_cast<const uint8_t*>(t.raw());
      if (dtype_bits(t.dtype()) < 8) {  // packed: zero nibbles/crumbs
        const int bits = dtype_bits(t.dtype());
        for (int64_t i = 0; i < n; ++i) {
          const int64_t bit = i * bits;
          z += ((p[bit / 8] >> (bit % 8)) & ((1 << bits) - 1)) == 0;
        }
        break;
      }
      const size_t es = dtype_size(t.dtype());
      if (es == 1) {  // int8, uint8, bool
        count_plain(p);
        break;
      }
      for (int64_t i = 0; i < n; ++i) {
        bool zero = true;
        for (size_t b = 0; b < es; ++b) zero &= p[static_cast<size_t>(i) * es + b] == 0;
        z += zero;
      }
    }
  }
  return z;
}

}  // namespace frugal
