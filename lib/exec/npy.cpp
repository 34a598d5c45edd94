// numpy .npy / .npz reading and .npy writing. Only what numpy writes for plain numeric arrays:
// little-endian, C order, format versions 1-3, .npz stored or deflated (zip_reader.h). read_npy/read_npz
// load whole files; ArrayFile (npy_stream.h) reads byte ranges of the arrays for streaming datasets.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <regex>

#include "frugal/dataset.h"
#include "frugal/file_util.h"
#include "npy_stream.h"
#include "zip_reader.h"

namespace frugal {

namespace {

StatusOr<DType> dtype_from_descr(const std::string& descr, const std::string& what) {
  if (descr.size() < 3) return InvalidData(what + ": unknown numpy dtype '" + descr + "'");
  const char order = descr[0];
  if (order == '>' && descr.substr(1) != "i1" && descr.substr(1) != "u1" && descr.substr(1) != "b1")
    return Unsupported(what + ": big-endian numpy arrays are not supported (dtype '" + descr + "')");
  const std::string t = descr.substr(1);
  if (t == "f4") return DType::kFloat;
  if (t == "f8") return DType::kDouble;
  if (t == "f2") return DType::kFloat16;
  if (t == "i1") return DType::kInt8;
  if (t == "i2") return DType::kInt16;
  if (t == "i4") return DType::kInt32;
  if (t == "i8") return DType::kInt64;
  if (t == "u1") return DType::kUInt8;
  if (t == "u2") return DType::kUInt16;
  if (t == "u4") return DType::kUInt32;
  if (t == "u8") return DType::kUInt64;
  if (t == "b1") return DType::kBool;
  return Unsupported(what + ": numpy dtype '" + descr + "' is not supported");
}

const char* descr_for(DType t) {
  switch (t) {
    case DType::kFloat: return "<f4";
    case DType::kDouble: return "<f8";
    case DType::kFloat16: return "<f2";
    case DType::kInt8: return "|i1";
    case DType::kInt16: return "<i2";
    case DType::kInt32: return "<i4";
    case DType::kInt64: return "<i8";
    case DType::kUInt8: return "|u1";
    case DType::kUInt16: return "<u2";
    case DType::kUInt32: return "<u4";
    case DType::kUInt64: return "<u8";
    case DType::kBool: return "|b1";
    default: return nullptr;
  }
}

}  // namespace

StatusOr<NpyHeader> parse_npy_header(const void* data, size_t size, const std::string& what) {
  const auto* p = static_cast<const unsigned char*>(data);
  if (size < 10 || std::memcmp(p, "\x93NUMPY", 6) != 0) return InvalidData(what + ": not a .npy file (bad magic)");
  const int major = p[6];
  size_t header_len, offset;
  if (major == 1) {
    header_len = p[8] | (p[9] << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) return InvalidData(what + ": truncated .npy header");
    header_len = p[8] | (p[9] << 8) | (p[10] << 16) | (static_cast<size_t>(p[11]) << 24);
    offset = 12;
  } else {
    return Unsupported(what + ": .npy format version " + std::to_string(major) + " is not supported");
  }
  if (offset + header_len > size) return InvalidData(what + ": truncated .npy header");
  const std::string header(reinterpret_cast<const char*>(p + offset), header_len);
  std::smatch m;
  static const std::regex descr_re(R"('descr'\s*:\s*'([^']+)')");
  static const std::regex fortran_re(R"('fortran_order'\s*:\s*(True|False))");
  static const std::regex shape_re(R"('shape'\s*:\s*\(([^)]*)\))");
  if (!std::regex_search(header, m, descr_re)) return InvalidData(what + ": .npy header has no descr");
  FRUGAL_ASSIGN_OR_RETURN(DType dt, dtype_from_descr(m[1].str(), what));
  if (std::regex_search(header, m, fortran_re) && m[1].str() == "True")
    return Unsupported(what + ": Fortran-order arrays are not supported (save with numpy.ascontiguousarray)");
  if (!std::regex_search(header, m, shape_re)) return InvalidData(what + ": .npy header has no shape");
  Shape shape;
  const std::string dims = m[1].str();
  static const std::regex int_re(R"(\d+)");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), int_re); it != std::sregex_iterator(); ++it)
    shape.push_back(std::stoll(it->str()));
  return NpyHeader{dt, shape, offset + header_len};
}

StatusOr<Tensor> parse_npy(const void* data, size_t size, const std::string& what) {
  FRUGAL_ASSIGN_OR_RETURN(NpyHeader h, parse_npy_header(data, size, what));
  const size_t need = storage_bytes(h.dtype, shape_numel(h.shape));
  const size_t body = size - h.data_offset;
  if (body < need)
    return InvalidData(what + ": array " + shape_str(h.shape) + " of " + dtype_name(h.dtype) + " needs " +
                       std::to_string(need) + " bytes but the file holds " + std::to_string(body));
  return Tensor::from_bytes(h.dtype, h.shape, static_cast<const char*>(data) + h.data_offset);
}

StatusOr<Tensor> read_npy(const std::filesystem::path& path) {
  FRUGAL_ASSIGN_OR_RETURN(std::string bytes, read_file_bytes(path, "array file"));
  return parse_npy(bytes.data(), bytes.size(), path.string());
}

Status write_npy(const std::filesystem::path& path, const Tensor& t) {
  const char* descr = descr_for(t.dtype());
  if (!descr) return Unsupported(std::string("cannot write ") + dtype_name(t.dtype()) + " as .npy");
  std::string shape = "(";
  for (size_t i = 0; i < t.shape().size(); ++i) shape += std::to_string(t.shape()[i]) + (t.shape().size() == 1 ? "," : i + 1 < t.shape().size() ? ", " : "");
  shape += ")";
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t unpadded = 10 + header.size() + 1;
  header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xFF);
  out += static_cast<char>((header.size() >> 8) & 0xFF);
  out += header;
  out.append(static_cast<const char*>(t.raw()), t.nbytes());
  return write_file_atomic(path, out);
}

namespace {

bool is_npy_entry(const std::string& name) { return name.size() >= 4 && name.compare(name.size() - 4, 4, ".npy") == 0; }

// Calls fn(name, bytes) for each .npy entry of an .npz, reading at most `limit` bytes of each (an
// entry read to its end has its CRC checked).
Status for_each_npz_entry(const std::filesystem::path& path, size_t limit,
                          const std::function<Status(const std::string&, const std::string&)>& fn) {
  FRUGAL_ASSIGN_OR_RETURN(std::unique_ptr<ZipArchive> z, ZipArchive::open(path));
  for (size_t i = 0; i < z->entries().size(); ++i) {
    const ZipEntry& ent = z->entries()[i];
    if (!is_npy_entry(ent.name)) continue;
    FRUGAL_ASSIGN_OR_RETURN(std::unique_ptr<ZipEntryReader> r, z->open_entry(i));
    std::string buf(static_cast<size_t>(std::min<uint64_t>(ent.size, limit)), '\0');
    FRUGAL_RETURN_IF_ERROR(r->read_exact(buf.data(), buf.size()));
    FRUGAL_RETURN_IF_ERROR(fn(ent.name.substr(0, ent.name.size() - 4), buf));
  }
  return OkStatus();
}

}  // namespace

StatusOr<NamedTensors> read_npz(const std::filesystem::path& path) {
  NamedTensors out;
  FRUGAL_RETURN_IF_ERROR(for_each_npz_entry(path, SIZE_MAX, [&](const std::string& name, const std::string& bytes) {
    FRUGAL_ASSIGN_OR_RETURN(Tensor t, parse_npy(bytes.data(), bytes.size(), path.string() + ":" + name));
    out.emplace_back(name, std::move(t));
    return OkStatus();
  }));
  return out;
}

StatusOr<std::vector<std::pair<std::string, NpyHeader>>> read_npz_headers(const std::filesystem::path& path) {
  std::vector<std::pair<std::string, NpyHeader>> out;
  // A v1 header is at most 65535 bytes after the 10-byte preamble; numpy writes far less.
  FRUGAL_RETURN_IF_ERROR(for_each_npz_entry(path, 65546, [&](const std::string& name, const std::string& bytes) {
    FRUGAL_ASSIGN_OR_RETURN(NpyHeader h, parse_npy_header(bytes.data(), bytes.size(), path.string() + ":" + name));
    out.emplace_back(name, std::move(h));
    return OkStatus();
  }));
  return out;
}

StatusOr<NpyHeader> read_npy_header(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("array file '" + path.string() + "' cannot be opened");
  std::string buf(65546, '\0');
  in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
  buf.resize(static_cast<size_t>(in.gcount()));
  return parse_npy_header(buf.data(), buf.size(), path.string());
}

// ---- streaming access (npy_stream.h) -------------------------------------------------------------------

namespace {

std::string size_mismatch(const std::string& what, const NpyHeader& h, size_t need, size_t body, const char* holder) {
  return what + ": array " + shape_str(h.shape) + " of " + dtype_name(h.dtype) + " needs " + std::to_string(need) +
         " bytes but the " + holder + " holds " + std::to_string(body);
}

// Bytes numpy's preamble says the header takes (magic, version, length field and header dict), from
// the first 12 bytes; 0 when they are not an .npy preamble (parse_npy_header then names the fault).
size_t npy_header_end(const unsigned char* p, size_t n) {
  if (n < 10 || std::memcmp(p, "\x93NUMPY", 6) != 0) return 0;
  if (p[6] == 1) return 10 + (p[8] | (p[9] << 8));
  if ((p[6] == 2 || p[6] == 3) && n >= 12)
    return 12 + (p[8] | (p[9] << 8) | (p[10] << 16) | (static_cast<size_t>(p[11]) << 24));
  return 0;
}

// numpy headers are a few hundred bytes; v2/v3 allow more, but never this much for plain arrays.
constexpr size_t kMaxNpyHeader = size_t{1} << 20;

class NpyArrayFile : public ArrayFile {
 public:
  static StatusOr<std::unique_ptr<ArrayFile>> open(const std::filesystem::path& path) {
    std::unique_ptr<NpyArrayFile> f(new NpyArrayFile);
    f->path_ = path;
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return NotFound("array file '" + path.string() + "' does not exist");
    f->in_.open(path, std::ios::binary);
    if (!f->in_) return IoError("array file '" + path.string() + "' cannot be opened for reading");
    const auto file_size = std::filesystem::file_size(path, ec);
    if (ec) return IoError("array file '" + path.string() + "' cannot be opened for reading");
    std::string buf(std::min<size_t>(file_size, 12), '\0');
    f->in_.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const size_t end = npy_header_end(reinterpret_cast<const unsigned char*>(buf.data()), buf.size());
    const size_t have = buf.size();
    if (end > have) {
      buf.resize(std::max(have, std::min<size_t>({end, file_size, kMaxNpyHeader})));
      f->in_.read(buf.data() + have, static_cast<std::streamsize>(buf.size() - have));
    }
    if (!f->in_) return IoError("array file '" + path.string() + "': read error");
    FRUGAL_ASSIGN_OR_RETURN(NpyHeader h, parse_npy_header(buf.data(), buf.size(), path.string()));
    const size_t need = storage_bytes(h.dtype, shape_numel(h.shape));
    const size_t body = static_cast<size_t>(file_size) - h.data_offset;
    if (body < need) return InvalidData(size_mismatch(path.string(), h, need, body, "file"));
    f->arrays_.push_back({"", std::move(h), need});
    return std::unique_ptr<ArrayFile>(f.release());
  }

  Status read(size_t k, size_t offset, size_t size, void* dst) override {
    const Array& a = arrays_.at(k);
    if (offset > a.nbytes || size > a.nbytes - offset)
      return InvalidArgument(path_.string() + ": read past the end of the array");
    in_.clear();
    in_.seekg(static_cast<std::streamoff>(a.header.data_offset + offset));
    in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(size));
    if (!in_ || static_cast<size_t>(in_.gcount()) != size)
      return InvalidData(path_.string() + ": array data is truncated (the file changed after it was opened?)");
    return OkStatus();
  }

 private:
  std::ifstream in_;
};

class NpzArrayFile : public ArrayFile {
 public:
  static StatusOr<std::unique_ptr<ArrayFile>> open(const std::filesystem::path& path) {
    std::unique_ptr<NpzArrayFile> f(new NpzArrayFile);
    f->path_ = path;
    FRUGAL_ASSIGN_OR_RETURN(f->z_, ZipArchive::open(path));
    for (size_t i = 0; i < f->z_->entries().size(); ++i) {
      if (!is_npy_entry(f->z_->entries()[i].name)) continue;
      f->entries_.push_back({i, nullptr});
      FRUGAL_RETURN_IF_ERROR(f->open_entry(f->entries_.back()));
    }
    return std::unique_ptr<ArrayFile>(f.release());
  }

  Status read(size_t k, size_t offset, size_t size, void* dst) override {
    const Array& a = arrays_.at(k);
    Entry& e = entries_.at(k);
    if (offset > a.nbytes || size > a.nbytes - offset)
      return InvalidArgument(path_.string() + ": read past the end of '" + z_->entries()[e.index].name + "'");
    if (!e.r) {
      FRUGAL_ASSIGN_OR_RETURN(e.r, z_->open_entry(e.index));
    }
    FRUGAL_RETURN_IF_ERROR(e.r->seek(a.header.data_offset + offset));
    FRUGAL_RETURN_IF_ERROR(e.r->read_exact(dst, size));
    // At the end of the array, bytes the entry holds after it (none from numpy) are read too, so the
    // entry's CRC and the end of its stream are checked; then the reader is done with.
    if (e.r->pos() == a.header.data_offset + a.nbytes) FRUGAL_RETURN_IF_ERROR(e.r->seek(e.r->entry().size));
    if (e.r->pos() == e.r->entry().size) e.r.reset();
    return OkStatus();
  }

 private:
  struct Entry {
    size_t index = 0;                   // in the archive's entries
    std::unique_ptr<ZipEntryReader> r;  // open while the entry is being read
  };

  NpzArrayFile() = default;

  // Reads and checks entry e's header, leaving its reader at the first data byte.
  Status open_entry(Entry& e) {
    const std::string& name = z_->entries()[e.index].name;
    const std::string stem = name.substr(0, name.size() - 4);
    const std::string what = path_.string() + ":" + stem;
    FRUGAL_ASSIGN_OR_RETURN(e.r, z_->open_entry(e.index));
    ZipEntryReader& r = *e.r;
    const size_t entry_size = static_cast<size_t>(r.entry().size);
    std::string buf(std::min<size_t>(entry_size, 12), '\0');
    FRUGAL_RETURN_IF_ERROR(r.read_exact(buf.data(), buf.size()));
    const size_t end = npy_header_end(reinterpret_cast<const unsigned char*>(buf.data()), buf.size());
    const size_t have = buf.size();
    if (end > have) {
      buf.resize(std::max(have, std::min<size_t>({end, entry_size, kMaxNpyHeader})));
      FRUGAL_RETURN_IF_ERROR(r.read_exact(buf.data() + have, buf.size() - have));
    }
    FRUGAL_ASSIGN_OR_RETURN(NpyHeader h, parse_npy_header(buf.data(), buf.size(), what));
    const size_t need = storage_bytes(h.dtype, shape_numel(h.shape));
    const size_t body = entry_size - h.data_offset;
    if (body < need) return InvalidData(size_mismatch(what, h, need, body, "entry"));
    // A stored entry's extent was checked against the archive when it was opened. Seeking to its end
    // reads a small one through (the reader's rule), so its CRC is checked before the first sample.
    if (r.entry().method == 0) FRUGAL_RETURN_IF_ERROR(r.seek(r.entry().size));
    FRUGAL_RETURN_IF_ERROR(r.seek(h.data_offset));
    arrays_.push_back({stem, std::move(h), need});
    return OkStatus();
  }

  std::unique_ptr<ZipArchive> z_;
  std::vector<Entry> entries_;  // one per array, same order as arrays_
};

}  // namespace

StatusOr<std::unique_ptr<ArrayFile>> ArrayFile::open(const std::filesystem::path& path) {
  if (path.extension() == ".npz") return NpzArrayFile::open(path);
  return NpyArrayFile::open(path);
}

}  // namespace frugal
