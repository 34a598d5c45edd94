// TensorProto <-> Tensor, and the external-data resolver with its path and bounds checks.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <limits>

#include "frugal/model.h"
#include "onnx_util.h"

namespace frugal {

bool is_external(const onnx::TensorProto& t) {
  return t.has_data_location() && t.data_location() == onnx::TensorProto_DataLocation_EXTERNAL;
}

std::optional<Tensor> tensor_view_of_proto(const onnx::TensorProto& t, std::shared_ptr<const void> keepalive) {
  const DType dt = static_cast<DType>(t.data_type());
  if (!t.has_raw_data() || is_external(t) || dtype_bits(dt) % 8 != 0 || dtype_size(dt) == 0) return std::nullopt;
  Shape shape(t.dims().begin(), t.dims().end());
  for (int64_t d : shape)
    if (d < 0) return std::nullopt;
  const std::string& raw = t.raw_data();
  if (raw.size() != storage_bytes(dt, shape_numel(shape)) || raw.empty() ||
      reinterpret_cast<uintptr_t>(raw.data()) % dtype_size(dt) != 0)
    return std::nullopt;
  return Tensor::view(dt, std::move(shape), std::move(keepalive), raw.data());
}

std::string tensor_label(const onnx::TensorProto& t) {
  return "tensor '" + t.name() + "'";
}

StatusOr<int64_t> checked_numel(const onnx::TensorProto& t) {
  int64_t n = 1;
  for (int64_t d : t.dims()) {
    if (d < 0) return InvalidModel(tensor_label(t) + " has a negative dimension " + std::to_string(d));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      return InvalidModel(tensor_label(t) + " has an element count that overflows");
    n *= d;
  }
  return n;
}

// ---- external data ------------------------------------------------------------------------------

struct ExternalDataResolver::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && size) munmap(addr, size);
  }
};

StatusOr<ExternalRef> parse_external_ref(const onnx::TensorProto& t) {
  ExternalRef ref;
  for (const auto& kv : t.external_data()) {
    if (kv.key() == "location") {
      ref.location = kv.value();
    } else if (kv.key() == "offset" || kv.key() == "length") {
      char* end = nullptr;
      errno = 0;
      const long long v = std::strtoll(kv.value().c_str(), &end, 10);
      if (errno || end == kv.value().c_str() || *end != '\0' || v < 0)
        return InvalidModel(tensor_label(t) + ": external data " + kv.key() + " '" + kv.value() + "' is not a valid size");
      (kv.key() == "offset" ? ref.offset : ref.length) = v;
    }
  }
  if (ref.location.empty()) return InvalidModel(tensor_label(t) + ": external data has no location");
  return ref;
}

StatusOr<std::filesystem::path> resolve_external_path(const std::filesystem::path& base_dir,
                                                      const onnx::TensorProto& t, const std::string& location) {
  namespace fs = std::filesystem;
  const fs::path loc(location);
  if (loc.is_absolute() || loc.has_root_name() || loc.has_root_directory())
    return InvalidModel(tensor_label(t) + ": external data location '" + location +
                        "' is absolute; it must be relative to the model's directory");
  for (const auto& part : loc)
    if (part == "..")
      return InvalidModel(tensor_label(t) + ": external data location '" + location +
                          "' escapes the model's directory");
  std::error_code ec;
  const fs::path base = fs::weakly_canonical(base_dir.empty() ? fs::path(".") : base_dir, ec);
  const fs::path full = fs::weakly_canonical(base / loc, ec);
  if (ec) return NotFound(tensor_label(t) + ": external data file '" + location + "' cannot be resolved");
  // A symlink inside the directory must not lead outside it either.
  auto b = base.begin();
  auto f = full.begin();
  for (; b != base.end(); ++b, ++f)
    if (f == full.end() || *b != *f)
      return InvalidModel(tensor_label(t) + ": external data location '" + location +
                          "' resolves outside the model's directory");
  return full;
}

StatusOr<std::pair<std::shared_ptr<const void>, const void*>> ExternalDataResolver::bytes(
    const onnx::TensorProto& t, size_t expected_bytes) {
  FRUGAL_ASSIGN_OR_RETURN(ExternalRef ref, parse_external_ref(t));
  FRUGAL_ASSIGN_OR_RETURN(std::filesystem::path full, resolve_external_path(base_dir_, t, ref.location));
  std::shared_ptr<Mapping> map;
  auto it = maps_.find(full.string());
  if (it != maps_.end()) {
    map = it->second;
  } else {
    const int fd = ::open(full.c_str(), O_RDONLY);
    if (fd < 0) return NotFound(tensor_label(t) + ": external data file '" + ref.location + "' not found next to the model");
    struct stat st{};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      return InvalidModel(tensor_label(t) + ": external data '" + ref.location + "' is not a regular file");
    }
    map = std::make_shared<Mapping>();
    map->size = static_cast<size_t>(st.st_size);
    if (map->size > 0) {
      void* a = mmap(nullptr, map->size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (a == MAP_FAILED) {
        ::close(fd);
        return IoError(tensor_label(t) + ": cannot map external data file '" + ref.location + "'");
      }
      map->addr = a;
    }
    ::close(fd);
    maps_[full.string()] = map;
  }
  const int64_t length = ref.length >= 0 ? ref.length : static_cast<int64_t>(map->size) - ref.offset;
  if (ref.offset < 0 || length < 0 || static_cast<uint64_t>(ref.offset) + static_cast<uint64_t>(length) > map->size)
    return InvalidModel(tensor_label(t) + ": external data range [" + std::to_string(ref.offset) + ", " +
                        std::to_string(ref.offset + std::max<int64_t>(length, 0)) + ") lies past the end of '" +
                        ref.location + "' (" + std::to_string(map->size) + " bytes)");
  if (static_cast<size_t>(length) != expected_bytes)
    return InvalidModel(tensor_label(t) + ": external data holds " + std::to_string(length) + " bytes but dims need " +
                        std::to_string(expected_bytes));
  const char* p = static_cast<const char*>(map->addr) + ref.offset;
  return std::make_pair(std::shared_ptr<const void>(map, map->addr), static_cast<const void*>(p));
}

// ---- TensorProto -> Tensor ----------------------------------------------------------------------

namespace {

// Count of elements held by typed fields for a dtype (the unit differs for packed types).
int64_t typed_count(const onnx::TensorProto& t, DType dt) {
  switch (dt) {
    case DType::kFloat: return t.float_data_size();
    case DType::kDouble: return t.double_data_size();
    case DType::kInt64: return t.int64_data_size();
    case DType::kUInt32: case DType::kUInt64: return t.uint64_data_size();
    default: return t.int32_data_size();
  }
}

}  // namespace

Status check_tensor_proto(const onnx::TensorProto& t, ExternalDataResolver* resolver) {
  const DType dt = static_cast<DType>(t.data_type());
  if (t.has_segment()) return Unsupported(tensor_label(t) + ": segmented tensors are not supported");
  FRUGAL_ASSIGN_OR_RETURN(int64_t n, checked_numel(t));
  if (dt == DType::kString) {
    if (t.string_data_size() != n)
      return InvalidModel(tensor_label(t) + " declares " + std::to_string(n) + " strings but holds " +
                          std::to_string(t.string_data_size()));
    return OkStatus();
  }
  if (!dtype_is_supported(dt))
    return Unsupported(tensor_label(t) + " has data type " + std::to_string(t.data_type()) + " (" +
                       dtype_onnx_name(dt) + ") which frugal cannot hold");
  const size_t need = storage_bytes(dt, n);
  if (is_external(t)) {
    if (!resolver) return InvalidModel(tensor_label(t) + " uses external data but no model directory is known");
    auto r = resolver->bytes(t, need);
    return r.ok() ? OkStatus() : r.status();
  }
  if (t.has_raw_data()) {
    if (t.raw_data().size() != need)
      return InvalidModel(tensor_label(t) + " declares " + std::to_string(n) + " elements of " + dtype_name(dt) +
                          shape_str({t.dims().begin(), t.dims().end()}) + " (" + std::to_string(need) +
                          " bytes) but holds " + std::to_string(t.raw_data().size()) + " bytes");
    return OkStatus();
  }
  const int bits = dtype_bits(dt);
  const int64_t want = bits < 8 ? static_cast<int64_t>(need) : n;
  const int64_t have = typed_count(t, dt);
  if (have != want)
    return InvalidModel(tensor_label(t) + " declares " + std::to_string(n) + " elements of " + dtype_name(dt) +
                        " but holds " + std::to_string(have) + " values");
  return OkStatus();
}

StatusOr<Tensor> tensor_from_proto(const onnx::TensorProto& t, ExternalDataResolver* resolver) {
  FRUGAL_RETURN_IF_ERROR(check_tensor_proto(t, resolver));
  const DType dt = static_cast<DType>(t.data_type());
  if (dt == DType::kString) return Unsupported(tensor_label(t) + ": string tensors are not supported");
  Shape shape(t.dims().begin(), t.dims().end());
  const int64_t n = shape_numel(shape);
  const size_t need = storage_bytes(dt, n);
  if (is_external(t)) {
    FRUGAL_ASSIGN_OR_RETURN(auto mem, resolver->bytes(t, need));
    // Views need the natural alignment of the element type; copy otherwise.
    if (reinterpret_cast<uintptr_t>(mem.second) % 64 == 0) return Tensor::view(dt, shape, mem.first, mem.second);
    return Tensor::from_bytes(dt, shape, mem.second);
  }
  if (t.has_raw_data()) return Tensor::from_bytes(dt, shape, t.raw_data().data());
  Tensor out = Tensor::uninitialized(dt, shape);
  void* p = out.raw_mut();
  switch (dt) {
    case DType::kFloat: std::memcpy(p, t.float_data().data(), need); break;
    case DType::kDouble: std::memcpy(p, t.double_data().data(), need); break;
    case DType::kInt64: std::memcpy(p, t.int64_data().data(), need); break;
    case DType::kUInt64: std::memcpy(p, t.uint64_data().data(), need); break;
    case DType::kUInt32: {
      auto* d = static_cast<uint32_t*>(p);
      for (int64_t i = 0; i < n; ++i) d[i] = static_cast<uint32_t>(t.uint64_data(static_cast<int>(i)));
      break;
    }
    case DType::kInt32: std::memcpy(p, t.int32_data().data(), need); break;
    default: {
      // int32_data carries one element (or one packed byte for sub-byte types) per entry, low bits.
      const size_t esz = dtype_bits(dt) < 8 ? 1 : dtype_size(dt);
      const int64_t count = dtype_bits(dt) < 8 ? static_cast<int64_t>(need) : n;
      auto* b = static_cast<uint8_t*>(p);
      for (int64_t i = 0; i < count; ++i) {
        const uint32_t v = static_cast<uint32_t>(t.int32_data(static_cast<int>(i)));
        if (esz == 1) b[i] = static_cast<uint8_t>(v);
        else reinterpret_cast<uint16_t*>(b)[i] = static_cast<uint16_t>(v);
      }
    }
  }
  return out;
}

StatusOr<Tensor> tensor_from_sparse_proto(const onnx::SparseTensorProto& s, ExternalDataResolver* resolver) {
  const std::string what = "sparse tensor '" + s.values().name() + "'";
  Shape dims(s.dims().begin(), s.dims().end());
  for (int64_t d : dims)
    if (d < 0) return InvalidModel(what + " has a negative dimension");
  FRUGAL_ASSIGN_OR_RETURN(Tensor values, tensor_from_proto(s.values(), resolver));
  FRUGAL_ASSIGN_OR_RETURN(Tensor indices, tensor_from_proto(s.indices(), resolver));
  if (values.rank() != 1) return InvalidModel(what + ": values must be 1-D");
  const int64_t nnz = values.numel(), total = shape_numel(dims);
  const auto idx = indices.to_int64_vector();
  const size_t es = dtype_size(values.dtype());
  if (es == 0) return Unsupported(what + ": packed value types are not supported in sparse form");
  Tensor out = Tensor::zeros(values.dtype(), dims);
  auto* dst = static_cast<char*>(out.raw_mut());
  const auto* src = static_cast<const char*>(values.raw());
  const bool linear = indices.rank() == 1;
  if (linear ? indices.numel() != nnz : (indices.rank() != 2 || indices.dim(0) != nnz ||
                                          indices.dim(1) != static_cast<int64_t>(dims.size())))
    return InvalidModel(what + ": indices shape " + shape_str(indices.shape()) + " does not fit " +
                        std::to_string(nnz) + " values of rank " + std::to_string(dims.size()));
  for (int64_t k = 0; k < nnz; ++k) {
    int64_t at = 0;
    if (linear) {
      at = idx[static_cast<size_t>(k)];
    } else {
      for (size_t d = 0; d < dims.size(); ++d) {
        const int64_t c = idx[static_cast<size_t>(k) * dims.size() + d];
        if (c < 0 || c >= dims[d]) return InvalidModel(what + ": index out of range");
        at = at * dims[d] + c;
      }
    }
    if (at < 0 || at >= total) return InvalidModel(what + ": index " + std::to_string(at) + " out of range");
    std::memcpy(dst + static_cast<size_t>(at) * es, src + static_cast<size_t>(k) * es, es);
  }
  return out;
}

void tensor_to_proto(const Tensor& t, onnx::TensorProto* out) {
  out->clear_dims();
  for (int64_t d : t.shape()) out->add_dims(d);
  out->set_data_type(static_cast<int32_t>(t.dtype()));
  out->clear_float_data();
  out->clear_int32_data();
  out->clear_int64_data();
  out->clear_double_data();
  out->clear_uint64_data();
  out->clear_external_data();
  out->clear_data_location();
  out->set_raw_data(t.raw(), t.nbytes());
}

StatusOr<std::pair<std::string, Tensor>> read_tensor_pb(const std::filesystem::path& path) {
  FRUGAL_ASSIGN_OR_RETURN(std::string bytes, read_file_bytes(path, "tensor file"));
  onnx::TensorProto t;
  if (bytes.empty() || !t.ParseFromString(bytes))
    return InvalidData(path.string() + ": not a valid serialized TensorProto");
  if (!t.has_data_type() || t.data_type() == 0)
    return InvalidData(path.string() + ": TensorProto has no data type");
  ExternalDataResolver resolver(path.parent_path());
  auto tensor = tensor_from_proto(t, &resolver);
  if (!tensor.ok()) return Status(StatusCode::kInvalidData, path.string() + ": " + tensor.status().message());
  return std::make_pair(t.name(), std::move(tensor).value());
}

Status write_tensor_pb(const std::filesystem::path& path, const std::string& name, const Tensor& t) {
  onnx::TensorProto p;
  tensor_to_proto(t, &p);
  p.set_name(name);
  return write_file_atomic(path, p.SerializeAsString());
}

}  // namespace frugal
