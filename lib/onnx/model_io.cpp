// Model load and save: protobuf limits raised, external data validated on load and written on save,
// outputs written through a temp file and renamed.
#include <fcntl.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format.h>
#include <google/protobuf/wire_format_lite.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>

#include "frugal/model.h"
#include "frugal/parallel.h"
#include "onnx_util.h"

namespace frugal {

namespace fs = std::filesystem;

namespace {

// Parses a whole ModelProto from `raw` (size bytes) and checks it looks like an ONNX model.
Status parse_model_stream(google::protobuf::io::ZeroCopyInputStream* raw, size_t size, onnx::ModelProto* out,
                          const std::string& what) {
  if (size == 0) return InvalidModel(what + " is empty (0 bytes)");
  if (size > static_cast<size_t>(INT_MAX))
    return InvalidModel(what + " is larger than 2 GB; store its weights as external data");
  google::protobuf::io::CodedInputStream in(raw);
  in.SetTotalBytesLimit(INT_MAX);
  in.SetRecursionLimit(512);
  if (!out->ParseFromCodedStream(&in) || !in.ConsumedEntireMessage())
    return InvalidModel(what + " is not a valid ONNX model (protobuf parse failed: truncated or corrupt)");
  if (!out->has_graph())
    return InvalidModel(what + " is not an ONNX model (no graph)");
  if (out->opset_import_size() == 0 && out->ir_version() == 0)
    return InvalidModel(what + " is not an ONNX model (no IR version and no opset imports)");
  return OkStatus();
}

// A file opened for reading, closed on scope exit.
struct ReadFd {
  int fd = -1;
  explicit ReadFd(const fs::path& p) : fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC)) {}
  ~ReadFd() {
    if (fd >= 0) ::close(fd);
  }
};

// Checks that `path` holds exactly `expected` bytes of well-formed protobuf wire format, streaming
// (constant memory): a truncated or garbled write fails here before the file replaces anything.
Status verify_written_proto(const fs::path& path, size_t expected, const std::string& what) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (ec || size != expected)
    return IoError(what + ": " + std::to_string(ec ? 0 : size) + " bytes on disk, " + std::to_string(expected) +
                   " expected (disk full?)");
  ReadFd f(path);
  if (f.fd < 0) return IoError(what + " cannot be read back: " + std::strerror(errno));
  google::protobuf::io::FileInputStream raw(f.fd, 1 << 20);
  google::protobuf::io::CodedInputStream in(&raw);
  in.SetTotalBytesLimit(INT_MAX);
  in.SetRecursionLimit(512);
  if (!google::protobuf::internal::WireFormatLite::SkipMessage(&in) || !in.ConsumedEntireMessage() ||
      static_cast<uintmax_t>(in.CurrentPosition()) != size)
    return IoError(what + " reads back as corrupt protobuf");
  return OkStatus();
}

}  // namespace

Status parse_model_bytes(const void* data, size_t size, onnx::ModelProto* out, const std::string& what) {
  google::protobuf::io::ArrayInputStream raw(data, static_cast<int>(std::min<size_t>(size, INT_MAX)));
  return parse_model_stream(&raw, size, out, what);
}

namespace {

// Every TensorProto stored in the model: initializers and tensor attributes, subgraphs included.
void collect_tensors(onnx::GraphProto* g, std::vector<onnx::TensorProto*>* out);

void collect_node_tensors(onnx::NodeProto* n, std::vector<onnx::TensorProto*>* out) {
  for (auto& a : *n->mutable_attribute()) {
    if (a.has_t()) out->push_back(a.mutable_t());
    for (auto& t : *a.mutable_tensors()) out->push_back(&t);
    if (a.has_g()) collect_tensors(a.mutable_g(), out);
    for (auto& g : *a.mutable_graphs()) collect_tensors(&g, out);
  }
}

void collect_tensors(onnx::GraphProto* g, std::vector<onnx::TensorProto*>* out) {
  for (auto& t : *g->mutable_initializer()) out->push_back(&t);
  for (auto& s : *g->mutable_sparse_initializer()) {
    out->push_back(s.mutable_values());
    out->push_back(s.mutable_indices());
  }
  for (auto& n : *g->mutable_node()) collect_node_tensors(&n, out);
}

std::vector<onnx::TensorProto*> all_tensors(onnx::ModelProto* m) {
  std::vector<onnx::TensorProto*> out;
  collect_tensors(m->mutable_graph(), &out);
  for (auto& f : *m->mutable_functions())
    for (auto& n : *f.mutable_node()) collect_node_tensors(&n, &out);
  return out;
}

// A tensor that stores no values although it has elements: a shell (name, type, shape) of a
// byte-less structure copy.
bool holds_no_data(const onnx::TensorProto& t) {
  if (t.has_raw_data() || is_external(t) || t.float_data_size() || t.int32_data_size() || t.string_data_size() ||
      t.int64_data_size() || t.double_data_size() || t.uint64_data_size())
    return false;
  for (int64_t d : t.dims())
    if (d <= 0) return false;
  return true;
}

bool same_type_and_shape(const onnx::TensorProto& a, const onnx::TensorProto& b) {
  return a.data_type() == b.data_type() && a.dims_size() == b.dims_size() &&
         std::equal(a.dims().begin(), a.dims().end(), b.dims().begin());
}

// Wire-format writing of a model whose graph initializers are written through `resolve` (shared
// tensors in place of their shells), field by field in field-number order as protobuf itself writes
// them, so the file is byte-identical to serializing the materialized model.
using google::protobuf::FieldDescriptor;
using google::protobuf::io::CodedOutputStream;
using google::protobuf::internal::WireFormat;
using google::protobuf::internal::WireFormatLite;
constexpr int kModelGraphField = onnx::ModelProto::kGraphFieldNumber;
constexpr int kGraphInitializerField = onnx::GraphProto::kInitializerFieldNumber;

template <typename Resolve>
size_t graph_wire_size(const onnx::GraphProto& g, const Resolve& resolve) {
  std::vector<const FieldDescriptor*> fields;
  g.GetReflection()->ListFields(g, &fields);
  size_t n = WireFormat::ComputeUnknownFieldsSize(g.GetReflection()->GetUnknownFields(g));
  for (const FieldDescriptor* f : fields) {
    if (f->number() != kGraphInitializerField) {
      n += WireFormat::FieldByteSize(f, g);
      continue;
    }
    for (const auto& t : g.initializer()) {
      const size_t s = resolve(t).ByteSizeLong();
      n += WireFormatLite::TagSize(kGraphInitializerField, WireFormatLite::TYPE_MESSAGE) +
           CodedOutputStream::VarintSize64(s) + s;
    }
  }
  return n;
}

template <typename Resolve>
size_t model_wire_size(const onnx::ModelProto& m, const Resolve& resolve, size_t* graph_size) {
  std::vector<const FieldDescriptor*> fields;
  m.GetReflection()->ListFields(m, &fields);
  size_t n = WireFormat::ComputeUnknownFieldsSize(m.GetReflection()->GetUnknownFields(m));
  for (const FieldDescriptor* f : fields) {
    if (f->number() != kModelGraphField) {
      n += WireFormat::FieldByteSize(f, m);
      continue;
    }
    *graph_size = graph_wire_size(m.graph(), resolve);
    n += WireFormatLite::TagSize(kModelGraphField, WireFormatLite::TYPE_MESSAGE) +
         CodedOutputStream::VarintSize64(*graph_size) + *graph_size;
  }
  return n;
}

// Writes `m` as model_wire_size measured it (sizes are cached by that call).
template <typename Resolve>
void write_model_wire(const onnx::ModelProto& m, const Resolve& resolve, size_t graph_size, CodedOutputStream* out) {
  std::vector<const FieldDescriptor*> fields;
  m.GetReflection()->ListFields(m, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->number() != kModelGraphField) {
      WireFormat::SerializeFieldWithCachedSizes(f, m, out);
      continue;
    }
    WireFormatLite::WriteTag(kModelGraphField, WireFormatLite::WIRETYPE_LENGTH_DELIMITED, out);
    out->WriteVarint64(graph_size);
    const onnx::GraphProto& g = m.graph();
    std::vector<const FieldDescriptor*> gfields;
    g.GetReflection()->ListFields(g, &gfields);
    for (const FieldDescriptor* gf : gfields) {
      if (gf->number() != kGraphInitializerField) {
        WireFormat::SerializeFieldWithCachedSizes(gf, g, out);
        continue;
      }
      for (const auto& t : g.initializer()) {
        const onnx::TensorProto& r = resolve(t);
        WireFormatLite::WriteTag(kGraphInitializerField, WireFormatLite::WIRETYPE_LENGTH_DELIMITED, out);
        out->WriteVarint64(r.GetCachedSize());
        r.SerializeWithCachedSizes(out);
      }
    }
    WireFormat::SerializeUnknownFields(g.GetReflection()->GetUnknownFields(g), out);
  }
  WireFormat::SerializeUnknownFields(m.GetReflection()->GetUnknownFields(m), out);
}


// ---- two-part load ------------------------------------------------------------------------------
//
// A model's bulk is the raw_data of its main graph's initializers. Protobuf copies each of those into
// its string on one thread, growing strings over 50 MB in steps (one more copy of a large embedding),
// and every fresh page of those strings costs a page fault. The two-part load instead
//  1. scans the file's wire format (memory-mapped; only the pages holding field headers are touched)
//     and cuts the large raw_data payloads out of a copy of the rest, the structure;
//  2. parses the structure with protobuf (kilobytes to a few megabytes);
//  3. sizes each cut tensor's raw_data, pre-faults the pages on all threads and reads the payloads
//     from the file into them on all threads.
// The result is the same ModelProto as a full parse. Anything unusual (groups, a repeated graph or
// raw_data field, malformed wire data) falls back to the full parse, which also words the errors.

namespace wire {

// A varint at p (before end), or nullptr when it is malformed or runs past end.
const uint8_t* read_varint(const uint8_t* p, const uint8_t* end, uint64_t* v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64 && p < end; shift += 7) {
    const uint8_t b = *p++;
    x |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = x;
      return p;
    }
  }
  return nullptr;
}

void write_varint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

struct Field {
  uint64_t number = 0;
  int type = 0;
  const uint8_t* start = nullptr;  // the tag
  const uint8_t* body = nullptr;   // length-delimited payload (type 2)
  uint64_t len = 0;
  const uint8_t* end = nullptr;  // past the field
};

// The field at p; false when malformed, past end, or a group (deprecated, not used by ONNX).
bool next_field(const uint8_t* p, const uint8_t* end, Field* f) {
  uint64_t tag = 0;
  f->start = p;
  if (!(p = read_varint(p, end, &tag)) || (tag >> 3) == 0) return false;
  f->number = tag >> 3;
  f->type = static_cast<int>(tag & 7);
  uint64_t v = 0;
  switch (f->type) {
    case 0: p = read_varint(p, end, &v); break;
    case 1: p = end - p >= 8 ? p + 8 : nullptr; break;
    case 5: p = end - p >= 4 ? p + 4 : nullptr; break;
    case 2:
      if (!(p = read_varint(p, end, &f->len)) || static_cast<uint64_t>(end - p) < f->len) return false;
      f->body = p;
      p += f->len;
      break;
    default: return false;
  }
  f->end = p;
  return p != nullptr;
}

}  // namespace wire

// Builds the structure of a serialized ModelProto with large initializer payloads cut out.
class Skeleton {
 public:
  struct Cut {
    int initializer;  // index in graph.initializer
    uint64_t offset;  // of the payload in the file
    uint64_t size;
  };
  static constexpr uint64_t kMinCut = 64 << 10;  // smaller payloads stay in the structure

  explicit Skeleton(const uint8_t* file) : file_(file) {}

  bool model(const uint8_t* p, const uint8_t* end, std::string* out) {
    bool seen_graph = false;
    for (wire::Field f; p < end; p = f.end) {
      if (!wire::next_field(p, end, &f)) return false;
      if (f.number == onnx::ModelProto::kGraphFieldNumber && f.type == 2) {
        if (seen_graph) return false;  // merged by protobuf: not worth handling
        seen_graph = true;
        std::string g;
        if (!graph(f.body, f.body + f.len, &g)) return false;
        nested(f.number, g, out);
      } else {
        out->append(reinterpret_cast<const char*>(f.start), static_cast<size_t>(f.end - f.start));
      }
    }
    return true;
  }
  const std::vector<Cut>& cuts() const { return cuts_; }
  int initializers() const { return initializers_; }

 private:
  static void nested(uint64_t number, const std::string& body, std::string* out) {
    wire::write_varint(number << 3 | 2, out);
    wire::write_varint(body.size(), out);
    out->append(body);
  }

  bool graph(const uint8_t* p, const uint8_t* end, std::string* out) {
    for (wire::Field f; p < end; p = f.end) {
      if (!wire::next_field(p, end, &f)) return false;
      if (f.number == onnx::GraphProto::kInitializerFieldNumber && f.type == 2) {
        std::string t;
        if (!tensor(f.body, f.body + f.len, &t)) return false;
        nested(f.number, t, out);
        ++initializers_;
      } else {
        out->append(reinterpret_cast<const char*>(f.start), static_cast<size_t>(f.end - f.start));
      }
    }
    return true;
  }

  bool tensor(const uint8_t* p, const uint8_t* end, std::string* out) {
    bool seen_raw = false;
    for (wire::Field f; p < end; p = f.end) {
      if (!wire::next_field(p, end, &f)) return false;
      if (f.number == onnx::TensorProto::kRawDataFieldNumber && f.type == 2) {
        if (seen_raw) return false;  // the last one would win: leave that to protobuf
        seen_raw = true;
        if (f.len >= kMinCut) {
          cuts_.push_back({initializers_, static_cast<uint64_t>(f.body - file_), f.len});
          continue;
        }
      }
      out->append(reinterpret_cast<const char*>(f.start), static_cast<size_t>(f.end - f.start));
    }
    return true;
  }

  const uint8_t* file_;
  std::vector<Cut> cuts_;
  int initializers_ = 0;
};

// A read-only private mapping, unmapped on scope exit.
struct FileMap {
  void* addr = MAP_FAILED;
  size_t size = 0;
  FileMap(int fd, size_t n) : size(n) { addr = n ? mmap(nullptr, n, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED; }
  ~FileMap() {
    if (addr != MAP_FAILED) munmap(addr, size);
  }
};

// Loads `fd` (size bytes) in two parts when it holds large initializer payloads. Returns false when
// it did not (small model, nothing to cut, or unusual wire data): the caller then parses the file
// whole. An error only for a read failing part way.
StatusOr<bool> load_split(int fd, size_t size, onnx::ModelProto* out, const std::string& what) {
  constexpr size_t kMinFile = 1 << 20;
  if (size < kMinFile || size > static_cast<size_t>(INT_MAX)) return false;
  std::string structure;
  std::vector<Skeleton::Cut> cuts;
  int initializers = 0;
  {
    FileMap map(fd, size);
    if (map.addr == MAP_FAILED) return false;
    const auto* base = static_cast<const uint8_t*>(map.addr);
    Skeleton sk(base);
    if (!sk.model(base, base + size, &structure) || sk.cuts().empty()) return false;
    cuts = sk.cuts();
    initializers = sk.initializers();
  }
  if (!parse_model_bytes(structure.data(), structure.size(), out, what).ok()) return false;
  structure = std::string();
  auto* inits = out->mutable_graph()->mutable_initializer();
  if (inits->size() != initializers) return false;
  // Pieces of at most 4 MiB: pre-faulted, then read, on all threads.
  struct Piece {
    char* dst;
    uint64_t offset, size;
  };
  constexpr uint64_t kPiece = 4 << 20;
  std::vector<Piece> pieces;
  for (const auto& c : cuts) {
    std::string* s = inits->Mutable(c.initializer)->mutable_raw_data();
    if (!s->empty()) return false;
    s->reserve(c.size);
    for (uint64_t o = 0; o < c.size; o += kPiece)
      pieces.push_back({s->data() + o, c.offset + o, std::min(kPiece, c.size - o)});
  }
  const auto n_pieces = static_cast<int64_t>(pieces.size());
  // Fresh pages fault one at a time when first written; pre-faulting them (contents untouched) is
  // the part that parallelises. Only a hint: kernels before 5.14 refuse it and nothing changes.
  parallel_for(n_pieces, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const auto lo = (reinterpret_cast<uintptr_t>(pieces[static_cast<size_t>(i)].dst) + 4095) & ~uintptr_t{4095};
      const auto hi = (reinterpret_cast<uintptr_t>(pieces[static_cast<size_t>(i)].dst) +
                       pieces[static_cast<size_t>(i)].size) & ~uintptr_t{4095};
      if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_WRITE);
    }
  });
  for (const auto& c : cuts) inits->Mutable(c.initializer)->mutable_raw_data()->resize(c.size);
  std::atomic<int> read_errno{0};
  parallel_for(n_pieces, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e && read_errno.load() == 0; ++i) {
      const Piece& p = pieces[static_cast<size_t>(i)];
      for (uint64_t done = 0; done < p.size;) {
        const ssize_t r = pread(fd, p.dst + done, p.size - done, static_cast<off_t>(p.offset + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
          read_errno.store(r < 0 ? errno : EIO);  // 0: the file shrank while being read
          break;
        }
        done += static_cast<uint64_t>(r);
      }
    }
  });
  if (read_errno.load() != 0) return IoError(what + ": read failed: " + std::strerror(read_errno.load()));
  return true;
}

}  // namespace

StatusOr<bool> load_model_in_parts(const fs::path& path, onnx::ModelProto* out) {
  ReadFd f(path);
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (f.fd < 0 || ec) return IoError("model '" + path.string() + "' cannot be read");
  return load_split(f.fd, static_cast<size_t>(size), out, "model '" + path.string() + "'");
}

StatusOr<std::shared_ptr<Model>> Model::load(const fs::path& path, const LoadOptions& opts) {
  // Regular files holding large weights load in two parts (load_split below). Otherwise the model is
  // parsed straight from the file in 1 MiB blocks: the file's bytes are never held whole next to
  // the parsed model (for a 1 GB model that is 1 GB less at peak).
  // Pipes and other files of unknown size are read whole first.
  auto m = std::make_shared<Model>();
  const std::string what = "model '" + path.string() + "'";
  std::error_code ec;
  size_t size = 0;
  if (fs::is_regular_file(path, ec)) {
    ReadFd f(path);
    if (f.fd < 0) return IoError(what + " cannot be opened for reading: " + std::strerror(errno));
    size = static_cast<size_t>(fs::file_size(path, ec));
    if (ec) return IoError(what + " cannot be sized: " + ec.message());
    FRUGAL_ASSIGN_OR_RETURN(const bool split, load_split(f.fd, size, &m->proto_, what));
    if (!split) {
      m->proto_.Clear();
      google::protobuf::io::FileInputStream raw(f.fd, 1 << 20);
      Status st = parse_model_stream(&raw, size, &m->proto_, what);
      if (raw.GetErrno() != 0) return IoError(what + ": read failed: " + std::strerror(raw.GetErrno()));
      FRUGAL_RETURN_IF_ERROR(st);
    }
  } else {
    FRUGAL_ASSIGN_OR_RETURN(std::string bytes, read_file_bytes(path, "model"));
    size = bytes.size();
    FRUGAL_RETURN_IF_ERROR(parse_model_bytes(bytes.data(), bytes.size(), &m->proto_, what));
  }
  m->path_ = path;
  m->file_size_ = size;
  m->resolver_ = std::make_shared<ExternalDataResolver>(path.has_parent_path() ? path.parent_path() : fs::path("."));
  // Validate every stored tensor up front: dims against bytes, external ranges and paths.
  for (onnx::TensorProto* t : all_tensors(&m->proto_)) {
    Status s = check_tensor_proto(*t, m->resolver_.get());
    if (!s.ok() && s.code() != StatusCode::kUnsupported) return s.with_context(what);
    if (s.ok() && opts.inline_external_data && is_external(*t)) {
      FRUGAL_ASSIGN_OR_RETURN(Tensor v, tensor_from_proto(*t, m->resolver_.get()));
      const std::string name = t->name();
      tensor_to_proto(v, t);
      t->set_name(name);
    }
  }
  return m;
}

std::shared_ptr<Model> Model::from_proto(onnx::ModelProto proto, fs::path base_dir) {
  auto m = std::make_shared<Model>();
  m->proto_ = std::move(proto);
  m->resolver_ = std::make_shared<ExternalDataResolver>(std::move(base_dir));
  return m;
}

int Model::opset(const std::string& domain) const {
  const std::string d = domain == "ai.onnx" ? "" : domain;
  for (const auto& o : proto_.opset_import()) {
    const std::string od = o.domain() == "ai.onnx" ? "" : o.domain();
    if (od == d) return static_cast<int>(o.version());
  }
  return 0;
}

StatusOr<Tensor> Model::initializer(const onnx::TensorProto& t) const {
  return tensor_from_proto(resolve(t), resolver_.get());
}

size_t Model::share_initializer_bytes(std::shared_ptr<const Model> source) {
  if (!source || source.get() == this) return 0;
  std::map<std::string, const onnx::TensorProto*> by_name;
  for (const auto& t : source->proto().graph().initializer()) by_name[t.name()] = &source->resolve(t);
  size_t n = 0;
  for (auto& t : *proto_.mutable_graph()->mutable_initializer()) {
    if (!holds_no_data(t)) continue;
    auto it = by_name.find(t.name());
    if (it == by_name.end() || !same_type_and_shape(t, *it->second)) continue;
    const onnx::TensorProto& s = *it->second;
    if (s.has_raw_data() && !is_external(s)) {
      shared_[t.name()] = &s;
      ++n;
    } else {
      t = s;  // typed fields or external data: small or already mapped, copied as before
    }
  }
  if (n) bytes_source_ = std::move(source);
  return n;
}

const onnx::TensorProto& Model::resolve(const onnx::TensorProto& t) const {
  if (shared_.empty() || !holds_no_data(t)) return t;
  auto it = shared_.find(t.name());
  return it != shared_.end() && same_type_and_shape(t, *it->second) ? *it->second : t;
}

bool Model::has_external_data() const {
  for (auto* t : all_tensors(const_cast<onnx::ModelProto*>(&proto_)))
    if (is_external(*t)) return true;
  return false;
}

size_t Model::serialized_size() const {
  if (shared_.empty()) return proto_.ByteSizeLong();
  size_t graph_size = 0;
  return model_wire_size(proto_, [this](const onnx::TensorProto& t) -> const onnx::TensorProto& { return resolve(t); },
                         &graph_size);
}

Status Model::save(const fs::path& path, const SaveOptions& opts) const {
  if (!opts.allow_overwrite_input) {
    if ((!opts.input_path.empty() && same_file(path, opts.input_path)) || (!path_.empty() && same_file(path, path_)))
      return InvalidArgument("refusing to overwrite the input model '" + path.string() + "' (write to another path)");
  }
  const size_t kProtoLimit = static_cast<size_t>(INT_MAX) - (64u << 20);  // headroom for the graph itself
  auto write_model = [&](const onnx::ModelProto& m, AtomicFile& model_file) -> Status {
    const size_t expected = m.ByteSizeLong();
    if (expected > static_cast<size_t>(INT_MAX))
      return Unsupported("model '" + path.string() + "' exceeds 2 GB even with external data");
    std::ofstream f(model_file.temp_path(), std::ios::binary | std::ios::trunc);
    if (!f) return IoError("cannot write '" + path.string() + "' (directory missing or not writable)");
    if (!m.SerializeToOstream(&f)) return IoError("serialising model to '" + path.string() + "' failed");
    f.flush();
    if (!f) return IoError("write to '" + path.string() + "' failed (disk full?)");
    f.close();
    // Read back what was written before it replaces anything.
    return verify_written_proto(model_file.temp_path(), expected, "written model '" + path.string() + "'");
  };
  // Nothing external and nothing to externalise: the model is written as it is, without a copy
  // (shared tensors are written from their source in place of their shells).
  if (!has_external_data() && !opts.external_data && serialized_size() <= kProtoLimit) {
    AtomicFile model_file(path);
    if (shared_.empty()) {
      FRUGAL_RETURN_IF_ERROR(write_model(proto_, model_file));
    } else {
      auto resolve_fn = [this](const onnx::TensorProto& t) -> const onnx::TensorProto& { return resolve(t); };
      size_t graph_size = 0;
      const size_t expected = model_wire_size(proto_, resolve_fn, &graph_size);
      {
        std::ofstream f(model_file.temp_path(), std::ios::binary | std::ios::trunc);
        if (!f) return IoError("cannot write '" + path.string() + "' (directory missing or not writable)");
        {
          google::protobuf::io::OstreamOutputStream os(&f, 1 << 20);
          CodedOutputStream out(&os);
          write_model_wire(proto_, resolve_fn, graph_size, &out);
          if (out.HadError()) return IoError("serialising model to '" + path.string() + "' failed");
        }
        f.flush();
        if (!f) return IoError("write to '" + path.string() + "' failed (disk full?)");
      }
      FRUGAL_RETURN_IF_ERROR(verify_written_proto(model_file.temp_path(), expected, "written model '" + path.string() + "'"));
    }
    return model_file.commit();
  }

  onnx::ModelProto out = proto_;
  for (auto& t : *out.mutable_graph()->mutable_initializer()) {
    const onnx::TensorProto& r = resolve(t);
    if (&r != &t) t = r;  // shared tensors materialized: this path rewrites every tensor anyway
  }
  auto tensors = all_tensors(&out);
  bool has_external = false;
  for (auto* t : tensors) has_external |= is_external(*t);

  // Re-inline every external tensor first; whatever goes out again is written to the new data file.
  for (auto* t : tensors) {
    if (!is_external(*t)) continue;
    FRUGAL_ASSIGN_OR_RETURN(Tensor v, tensor_from_proto(*t, resolver_.get()));
    const std::string name = t->name();
    tensor_to_proto(v, t);
    t->set_name(name);
  }
  bool externalise = opts.external_data || (has_external && opts.keep_external) || out.ByteSizeLong() > kProtoLimit;

  std::unique_ptr<AtomicFile> data_file;
  if (externalise) {
    const std::string data_name = opts.external_file.empty() ? path.filename().string() + ".data" : opts.external_file;
    data_file = std::make_unique<AtomicFile>(path.parent_path() / data_name);
    std::ofstream data(data_file->temp_path(), std::ios::binary | std::ios::trunc);
    if (!data) return IoError("cannot write external data file '" + data_file->target().string() + "'");
    uint64_t offset = 0;
    for (auto* t : tensors) {
      if (static_cast<DType>(t->data_type()) == DType::kString) continue;
      FRUGAL_ASSIGN_OR_RETURN(Tensor v, tensor_from_proto(*t, nullptr));
      if (v.nbytes() < opts.external_threshold) continue;
      const uint64_t aligned = (offset + 4095) / 4096 * 4096;  // page alignment lets readers mmap views
      if (aligned > offset) {
        std::string pad(aligned - offset, '\0');
        data.write(pad.data(), static_cast<std::streamsize>(pad.size()));
      }
      data.write(static_cast<const char*>(v.raw()), static_cast<std::streamsize>(v.nbytes()));
      const std::string name = t->name();
      tensor_to_proto(v, t);
      t->set_name(name);
      t->clear_raw_data();
      t->set_data_location(onnx::TensorProto_DataLocation_EXTERNAL);
      auto* kv = t->add_external_data();
      kv->set_key("location");
      kv->set_value(data_name);
      kv = t->add_external_data();
      kv->set_key("offset");
      kv->set_value(std::to_string(aligned));
      kv = t->add_external_data();
      kv->set_key("length");
      kv->set_value(std::to_string(v.nbytes()));
      offset = aligned + v.nbytes();
    }
    data.flush();
    if (!data) return IoError("write to external data file '" + data_file->target().string() + "' failed");
  }
  AtomicFile model_file(path);
  FRUGAL_RETURN_IF_ERROR(write_model(out, model_file));
  if (data_file) FRUGAL_RETURN_IF_ERROR(data_file->commit());
  return model_file.commit();
}

}  // namespace frugal
