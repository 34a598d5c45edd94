// Dataset readers: ONNX test_data_set dirs, .npz/.npy files and folders, synthetic inputs.
// Every sample is checked against the graph's inputs as it is read.
#include "frugal/dataset.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <random>
#include <regex>
#include <set>

#include "frugal/file_util.h"
#include "npy_stream.h"

namespace frugal {

namespace fs = std::filesystem;

StatusOr<Shape> concrete_input_shape(const ValueInfo& vi, const std::map<std::string, int64_t>& dims) {
  if (!vi.has_shape) return InvalidArgument("input '" + vi.name + "' has no declared shape; synthetic data needs one");
  Shape s;
  for (size_t d = 0; d < vi.dims.size(); ++d) {
    int64_t v = vi.dims[d];
    if (v < 0) {
      const std::string& sym = vi.dim_params[d];
      auto it = sym.empty() ? dims.end() : dims.find(sym);
      if (it != dims.end()) v = it->second;
      else if (d == 0) v = 1;  // an unnamed or unset batch dim defaults to 1
      else
        return InvalidArgument("input '" + vi.name + "' dim " + std::to_string(d) + " is symbolic ('" +
                               (sym.empty() ? std::string("?") : sym) + "'); give it with --dims " +
                               (sym.empty() ? std::string("NAME") : sym) + "=VALUE");
    }
    s.push_back(v);
  }
  return s;
}

Status check_inputs(const Graph& graph, const NamedTensors& inputs, const std::map<std::string, int64_t>& dims) {
  std::set<std::string> known;
  for (const auto& vi : graph.inputs()) {
    known.insert(vi.name);
    const Tensor* t = find_named(inputs, vi.name);
    if (!t) return InvalidData("missing input '" + vi.name + "'");
    if (vi.dtype != DType::kUndefined && t->dtype() != vi.dtype)
      return InvalidData("input '" + vi.name + "' has dtype " + dtype_name(t->dtype()) + " but the model expects " +
                         dtype_name(vi.dtype));
    if (!vi.has_shape) continue;
    if (t->rank() != static_cast<int64_t>(vi.dims.size()))
      return InvalidData("input '" + vi.name + "' has shape " + shape_str(t->shape()) + " but the model expects rank " +
                         std::to_string(vi.dims.size()));
    for (size_t d = 0; d < vi.dims.size(); ++d) {
      int64_t want = vi.dims[d];
      if (want < 0 && !vi.dim_params[d].empty()) {
        auto it = dims.find(vi.dim_params[d]);
        if (it != dims.end()) want = it->second;
      }
      if (want >= 0 && t->shape()[d] != want)
        return InvalidData("input '" + vi.name + "' has shape " + shape_str(t->shape()) + " but dim " + std::to_string(d) +
                           " must be " + std::to_string(want));
    }
  }
  for (const auto& kv : inputs)
    if (!known.count(kv.first) && !graph.initializer(kv.first))
      return InvalidData("input '" + kv.first + "' is not an input of the model");
  return OkStatus();
}

namespace {

// Renames stored arrays to graph inputs: kept when every name matches an input, otherwise bound by
// position (unnamed tensors, numpy's arr_0...).
template <typename T>
StatusOr<std::vector<std::pair<std::string, T>>> bind_to_inputs(const Graph& graph,
                                                                 std::vector<std::pair<std::string, T>> raw,
                                                                 const std::string& where) {
  const auto& ins = graph.inputs();
  bool all_named = !raw.empty();
  for (const auto& kv : raw) {
    bool found = false;
    for (const auto& vi : ins) found |= vi.name == kv.first;
    all_named &= found;
  }
  if (all_named) return raw;
  if (raw.size() != ins.size())
    return InvalidData(where + ": holds " + std::to_string(raw.size()) + " tensors whose names do not match the model's " +
                       std::to_string(ins.size()) + " inputs");
  for (size_t i = 0; i < raw.size(); ++i) raw[i].first = ins[i].name;
  return raw;
}

struct SampleLayout {
  size_t count = 1;
  bool stacked = false;
};

// The stacking rule: arrays with one more dim than their input are stacks of samples on axis 0 (all
// with the same count); arrays with the input's rank are one sample.
StatusOr<SampleLayout> sample_layout(const Graph& g, const std::vector<std::pair<std::string, Shape>>& arrays,
                                     const std::string& where) {
  int stacked = -1;
  SampleLayout out;
  for (const auto& [name, shape] : arrays) {
    const ValueInfo* vi = nullptr;
    for (const auto& in : g.inputs())
      if (in.name == name) vi = &in;
    if (!vi) return InvalidData(where + ": array '" + name + "' is not an input of the model");
    if (!vi->has_shape) {
      if (stacked == 1) return InvalidData(where + ": cannot tell samples apart for '" + name + "' (no declared shape)");
      stacked = 0;
      continue;
    }
    const bool s = shape.size() == vi->dims.size() + 1;
    if (stacked >= 0 && stacked != static_cast<int>(s))
      return InvalidData(where + ": some arrays are stacks of samples and some are single samples");
    stacked = s;
    if (s) {
      const size_t n = static_cast<size_t>(shape[0]);
      if (out.count != 1 && n != out.count)
        return InvalidData(where + ": array '" + name + "' holds " + std::to_string(n) + " samples, others " +
                           std::to_string(out.count));
      out.count = n;
    }
  }
  out.stacked = stacked == 1;
  return out;
}

// Sample i of arrays laid out as `layout`, checked against the graph.
StatusOr<NamedTensors> take_sample(const Graph& g, const NamedTensors& arrays, const SampleLayout& layout, size_t i,
                                   const std::map<std::string, int64_t>& dims, const std::string& where) {
  NamedTensors s;
  for (const auto& kv : arrays) {
    if (!layout.stacked) {
      s.emplace_back(kv.first, kv.second);
      continue;
    }
    Shape sub(kv.second.shape().begin() + 1, kv.second.shape().end());
    const size_t bytes = storage_bytes(kv.second.dtype(), shape_numel(sub));
    const char* base = static_cast<const char*>(kv.second.raw()) + bytes * i;
    s.emplace_back(kv.first, Tensor::from_bytes(kv.second.dtype(), sub, base));
  }
  Status st = check_inputs(g, s, dims);
  if (!st.ok()) return st.with_context(where + (layout.stacked ? " sample " + std::to_string(i) : std::string()));
  return s;
}

std::vector<std::pair<std::string, Shape>> shapes_of(const NamedTensors& arrays) {
  std::vector<std::pair<std::string, Shape>> v;
  for (const auto& kv : arrays) v.emplace_back(kv.first, kv.second.shape());
  return v;
}

int trailing_number(const std::string& s) {
  static const std::regex re(R"((\d+)$)");
  std::smatch m;
  return std::regex_search(s, m, re) ? std::stoi(m[1].str()) : -1;
}

std::vector<fs::path> list_sorted(const fs::path& dir, const std::function<bool(const fs::directory_entry&)>& keep) {
  std::vector<fs::path> v;
  for (const auto& e : fs::directory_iterator(dir))
    if (keep(e)) v.push_back(e.path());
  std::sort(v.begin(), v.end(), [](const fs::path& a, const fs::path& b) {
    const std::string sa = a.stem().string(), sb = b.stem().string();
    const int na = trailing_number(sa), nb = trailing_number(sb);
    if (na >= 0 && nb >= 0 && sa.substr(0, sa.size() - std::to_string(na).size()) ==
                                  sb.substr(0, sb.size() - std::to_string(nb).size()))
      return na < nb;
    return sa < sb;
  });
  return v;
}

// A file's sha256, worked out the first time someone asks (a report or a table) and kept: a
// calibration run that shows no fingerprint does not read a large data file twice.
class LazyFileHash {
 public:
  LazyFileHash() = default;
  explicit LazyFileHash(fs::path p) : path_(std::move(p)) {}
  std::string get() const {
    std::call_once(*once_, [this] {
      auto h = sha256_file(path_);
      value_ = h.ok() ? *h : "unreadable";
    });
    return value_;
  }

 private:
  fs::path path_;
  std::unique_ptr<std::once_flag> once_ = std::make_unique<std::once_flag>();
  mutable std::string value_;
};

StatusOr<std::string> fingerprint_files(const std::vector<fs::path>& files, const fs::path& root) {
  std::string acc;
  for (const auto& f : files) {
    FRUGAL_ASSIGN_OR_RETURN(std::string h, sha256_file(f));
    acc += fs::relative(f, root).string() + ":" + h + "\n";
  }
  return sha256_hex(acc.data(), acc.size());
}

// ---- ONNX test_data_set_N dirs ------------------------------------------------------------------------

class TestDataSetDataset : public Dataset {
 public:
  TestDataSetDataset(const Graph& g, std::vector<fs::path> dirs, fs::path root, std::map<std::string, int64_t> dims)
      : graph_(g), dirs_(std::move(dirs)), root_(std::move(root)), dims_(std::move(dims)) {}
  size_t size() const override { return dirs_.size(); }
  std::string describe() const override {
    return std::to_string(dirs_.size()) + " test_data_set dir(s) under " + root_.string();
  }
  std::string fingerprint() const override {
    std::vector<fs::path> files;
    for (const auto& d : dirs_)
      for (const auto& f : list_sorted(d, [](const auto& e) { return e.path().extension() == ".pb"; })) files.push_back(f);
    auto fp = fingerprint_files(files, root_);
    return fp.ok() ? *fp : "unreadable";
  }
  StatusOr<NamedTensors> get(size_t i) override {
    FRUGAL_ASSIGN_OR_RETURN(NamedTensors raw, read_prefix(dirs_[i], "input_"));
    FRUGAL_ASSIGN_OR_RETURN(NamedTensors bound, bind_to_inputs(graph_, std::move(raw), dirs_[i].string()));
    Status st = check_inputs(graph_, bound, dims_);
    if (!st.ok()) return st.with_context(dirs_[i].string());
    return bound;
  }
  StatusOr<NamedTensors> expected(size_t i) override {
    FRUGAL_ASSIGN_OR_RETURN(NamedTensors raw, read_prefix(dirs_[i], "output_"));
    const auto& outs = graph_.outputs();
    bool by_name = true;
    for (const auto& kv : raw) {
      bool found = false;
      for (const auto& o : outs) found |= o.name == kv.first;
      by_name &= found;
    }
    if (!by_name)
      for (size_t k = 0; k < raw.size() && k < outs.size(); ++k) raw[k].first = outs[k].name;
    return raw;
  }

 private:
  StatusOr<NamedTensors> read_prefix(const fs::path& dir, const std::string& prefix) {
    NamedTensors out;
    auto files = list_sorted(dir, [&](const auto& e) {
      const std::string n = e.path().filename().string();
      return e.is_regular_file() && n.rfind(prefix, 0) == 0 && e.path().extension() == ".pb";
    });
    for (const auto& f : files) {
      FRUGAL_ASSIGN_OR_RETURN(auto t, read_tensor_pb(f));
      out.emplace_back(t.first, std::move(t.second));
    }
    return out;
  }
  const Graph& graph_;
  std::vector<fs::path> dirs_;
  fs::path root_;
  std::map<std::string, int64_t> dims_;
};

// ---- in-memory samples from one .pb -------------------------------------------------------------------

class StackedDataset : public Dataset {
 public:
  StackedDataset(const Graph& g, NamedTensors arrays, SampleLayout layout, std::string what, LazyFileHash fp,
                 std::map<std::string, int64_t> dims)
      : graph_(g), arrays_(std::move(arrays)), layout_(layout), what_(std::move(what)), fp_(std::move(fp)),
        dims_(std::move(dims)) {}
  size_t size() const override { return layout_.count; }
  std::string describe() const override { return std::to_string(layout_.count) + " sample(s) from " + what_; }
  std::string fingerprint() const override { return fp_.get(); }
  StatusOr<NamedTensors> get(size_t i) override { return take_sample(graph_, arrays_, layout_, i, dims_, what_); }

 private:
  const Graph& graph_;
  NamedTensors arrays_;
  SampleLayout layout_;
  std::string what_;
  LazyFileHash fp_;
  std::map<std::string, int64_t> dims_;
};

StatusOr<std::unique_ptr<Dataset>> stacked_from_arrays(const Graph& g, NamedTensors raw, const fs::path& path,
                                                       const DatasetOptions& opts) {
  FRUGAL_ASSIGN_OR_RETURN(NamedTensors arrays, bind_to_inputs(g, std::move(raw), path.string()));
  FRUGAL_ASSIGN_OR_RETURN(SampleLayout layout, sample_layout(g, shapes_of(arrays), path.string()));
  return std::unique_ptr<Dataset>(
      new StackedDataset(g, std::move(arrays), layout, path.string(), LazyFileHash(path), opts.dims));
}

// ---- .npz / .npy files, streamed -------------------------------------------------------------------------

// One .npz or .npy opened for streaming, its arrays bound to graph inputs (input name, array index).
struct BoundArrayFile {
  std::unique_ptr<ArrayFile> file;
  std::vector<std::pair<std::string, size_t>> bound;
  SampleLayout layout;
};

StatusOr<BoundArrayFile> open_bound(const Graph& g, const fs::path& path, bool need_arrays = false) {
  BoundArrayFile b;
  FRUGAL_ASSIGN_OR_RETURN(b.file, ArrayFile::open(path));
  if (need_arrays && b.file->arrays().empty()) return InvalidData("'" + path.string() + "' holds no arrays");
  std::vector<std::pair<std::string, size_t>> raw;
  std::vector<std::pair<std::string, Shape>> shapes;
  for (size_t k = 0; k < b.file->arrays().size(); ++k) raw.emplace_back(b.file->arrays()[k].name, k);
  FRUGAL_ASSIGN_OR_RETURN(b.bound, bind_to_inputs(g, std::move(raw), path.string()));
  for (const auto& [name, k] : b.bound) shapes.emplace_back(name, b.file->arrays()[k].header.shape);
  FRUGAL_ASSIGN_OR_RETURN(b.layout, sample_layout(g, shapes, path.string()));
  return b;
}

// Sample i of a bound file: only its rows are read from disk; checked against the graph.
StatusOr<NamedTensors> read_sample(const Graph& g, BoundArrayFile& b, size_t i, const std::map<std::string, int64_t>& dims,
                                   const std::string& where) {
  if (i >= b.layout.count) return InvalidArgument(where + ": sample " + std::to_string(i) + " out of range");
  NamedTensors s;
  for (const auto& [name, k] : b.bound) {
    const ArrayFile::Array& a = b.file->arrays()[k];
    Shape sub = a.header.shape;
    if (b.layout.stacked) sub.erase(sub.begin());
    const size_t bytes = storage_bytes(a.header.dtype, shape_numel(sub));
    Tensor t = Tensor::uninitialized(a.header.dtype, sub);
    FRUGAL_RETURN_IF_ERROR(b.file->read(k, b.layout.stacked ? bytes * i : 0, bytes, t.raw_mut()));
    s.emplace_back(name, std::move(t));
  }
  Status st = check_inputs(g, s, dims);
  if (!st.ok()) return st.with_context(where + (b.layout.stacked ? " sample " + std::to_string(i) : std::string()));
  return s;
}

// .npz (or .npy) files, each one sample or a stack of samples along axis 0, taken file by file: a folder
// of them, or one file. Headers (and data sizes) of every file are checked up front; get(i) then reads
// sample i's rows alone, keeping only the current file open, so memory does not grow with the data.
class ArrayFilesDataset : public Dataset {
 public:
  // `single`: one file given directly (described by its path, fingerprinted by its sha256).
  static StatusOr<std::unique_ptr<Dataset>> open(const Graph& g, std::vector<fs::path> files, fs::path root,
                                                 std::map<std::string, int64_t> dims, bool single) {
    std::unique_ptr<ArrayFilesDataset> d(new ArrayFilesDataset(g, std::move(files), std::move(root), std::move(dims)));
    d->single_ = single;
    size_t total = 0;
    for (const auto& f : d->files_) {
      FRUGAL_ASSIGN_OR_RETURN(BoundArrayFile b, open_bound(g, f, single));
      total += b.layout.count;
      d->ends_.push_back(total);
      if (single) {
        d->current_ = std::move(b);
        d->loaded_ = 0;
      }
    }
    if (single) d->fp_ = LazyFileHash(d->files_[0]);
    return std::unique_ptr<Dataset>(d.release());
  }
  size_t size() const override { return ends_.empty() ? 0 : ends_.back(); }
  std::string describe() const override {
    if (single_) return std::to_string(size()) + " sample(s) from " + files_[0].string();
    return std::to_string(size()) + " sample(s) in " + std::to_string(files_.size()) + " file(s) in " + root_.string();
  }
  std::string fingerprint() const override {
    if (single_) return fp_.get();
    auto fp = fingerprint_files(files_, root_);
    return fp.ok() ? *fp : "unreadable";
  }
  StatusOr<NamedTensors> get(size_t i) override {
    const size_t k = static_cast<size_t>(std::upper_bound(ends_.begin(), ends_.end(), i) - ends_.begin());
    if (k >= files_.size()) return InvalidArgument("sample " + std::to_string(i) + " out of range");
    const fs::path& f = files_[k];
    std::lock_guard<std::mutex> lock(mu_);  // the open file's read positions are shared state
    if (loaded_ != k) {
      loaded_ = SIZE_MAX;
      current_ = BoundArrayFile{};
      FRUGAL_ASSIGN_OR_RETURN(current_, open_bound(graph_, f));
      if (current_.layout.count != ends_[k] - (k == 0 ? 0 : ends_[k - 1]))
        return InvalidData(f.string() + ": the file changed while it was being read");
      loaded_ = k;
    }
    const size_t first = k == 0 ? 0 : ends_[k - 1];
    return read_sample(graph_, current_, i - first, dims_, f.string());
  }

 private:
  ArrayFilesDataset(const Graph& g, std::vector<fs::path> files, fs::path root, std::map<std::string, int64_t> dims)
      : graph_(g), files_(std::move(files)), root_(std::move(root)), dims_(std::move(dims)) {}
  const Graph& graph_;
  std::vector<fs::path> files_;
  fs::path root_;
  std::map<std::string, int64_t> dims_;
  bool single_ = false;
  LazyFileHash fp_;
  std::vector<size_t> ends_;  // cumulative sample counts
  std::mutex mu_;
  size_t loaded_ = SIZE_MAX;
  BoundArrayFile current_;
};

// ---- synthetic ------------------------------------------------------------------------------------------

class SyntheticDataset : public Dataset {
 public:
  SyntheticDataset(const Graph& g, std::vector<std::pair<ValueInfo, Shape>> specs, size_t n, uint64_t seed)
      : graph_(g), specs_(std::move(specs)), n_(n), seed_(seed) {}
  size_t size() const override { return n_; }
  std::string describe() const override { return std::to_string(n_) + " synthetic sample(s), seed " + std::to_string(seed_); }
  std::string fingerprint() const override {
    std::string recipe = "synthetic:" + std::to_string(seed_) + ":" + std::to_string(n_);
    for (const auto& s : specs_) recipe += ":" + s.first.name + shape_str(s.second);
    return sha256_hex(recipe.data(), recipe.size());
  }
  // Floats: uniform [0, 1) (image-like, non-negative); integers and bools: 0, a valid index and mask
  // value for every model we know (token ids, attention masks, segment ids).
  StatusOr<NamedTensors> get(size_t i) override {
    std::mt19937_64 rng(seed_ * 1000003ULL + i);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    NamedTensors out;
    for (const auto& [vi, shape] : specs_) {
      const DType dt = vi.dtype == DType::kUndefined ? DType::kFloat : vi.dtype;
      if (!dtype_is_supported(dt)) return Unsupported("input '" + vi.name + "' has dtype " + dtype_name(dt));
      Tensor t = Tensor::zeros(dt, shape);
      const int64_t n = t.numel();
      if (dt == DType::kFloat) {
        float* p = t.mut<float>();
        for (int64_t k = 0; k < n; ++k) p[k] = u(rng);
      } else if (dt == DType::kDouble) {
        double* p = t.mut<double>();
        for (int64_t k = 0; k < n; ++k) p[k] = u(rng);
      } else if (dt == DType::kFloat16) {
        uint16_t* p = t.mut<uint16_t>();
        for (int64_t k = 0; k < n; ++k) p[k] = float_to_half(u(rng));
      } else if (dt == DType::kBFloat16) {
        uint16_t* p = t.mut<uint16_t>();
        for (int64_t k = 0; k < n; ++k) p[k] = float_to_bf16(u(rng));
      }
      out.emplace_back(vi.name, std::move(t));
    }
    return out;
  }

 private:
  const Graph& graph_;
  std::vector<std::pair<ValueInfo, Shape>> specs_;
  size_t n_;
  uint64_t seed_;
};

}  // namespace

StatusOr<NamedTensors> read_reference_outputs(const Graph& graph, const fs::path& dir, size_t sample) {
  fs::path set = dir / ("test_data_set_" + std::to_string(sample));
  if (!fs::is_directory(set)) {
    if (sample == 0 && fs::exists(dir / "output_0.pb")) set = dir;
    else return NotFound("no reference outputs for sample " + std::to_string(sample) + " in '" + dir.string() + "'");
  }
  TestDataSetDataset reader(graph, {set}, dir, {});
  FRUGAL_ASSIGN_OR_RETURN(NamedTensors out, reader.expected(0));
  if (out.empty()) return NotFound("no output_K.pb files in '" + set.string() + "'");
  return out;
}

StatusOr<std::unique_ptr<Dataset>> synthetic_dataset(const Graph& graph, const DatasetOptions& opts) {
  std::vector<std::pair<ValueInfo, Shape>> specs;
  for (const auto& vi : graph.inputs()) {
    FRUGAL_ASSIGN_OR_RETURN(Shape s, concrete_input_shape(vi, opts.dims));
    specs.emplace_back(vi, std::move(s));
  }
  return std::unique_ptr<Dataset>(new SyntheticDataset(graph, std::move(specs), std::max<size_t>(opts.synthetic_count, 1), opts.seed));
}

StatusOr<std::unique_ptr<Dataset>> open_dataset(const Graph& graph, const fs::path& path, const DatasetOptions& opts) {
  if (opts.synthetic_count > 0 && path.empty()) return synthetic_dataset(graph, opts);
  std::error_code ec;
  if (!fs::exists(path, ec)) return NotFound("data '" + path.string() + "' does not exist");
  if (fs::is_regular_file(path)) {
    const auto ext = path.extension();
    if (ext == ".npz" || ext == ".npy") return ArrayFilesDataset::open(graph, {path}, path.parent_path(), opts.dims, true);
    if (ext == ".pb") {
      FRUGAL_ASSIGN_OR_RETURN(auto t, read_tensor_pb(path));
      NamedTensors arrays;
      arrays.emplace_back(t.first, std::move(t.second));
      return stacked_from_arrays(graph, std::move(arrays), path, opts);
    }
    return InvalidArgument("data file '" + path.string() + "' is not .npz, .npy or .pb");
  }
  if (!fs::is_directory(path)) return InvalidArgument("data '" + path.string() + "' is neither a file nor a directory");
  // One test_data_set dir?
  if (fs::exists(path / "input_0.pb"))
    return std::unique_ptr<Dataset>(new TestDataSetDataset(graph, {path}, path, opts.dims));
  auto sets = list_sorted(path, [](const auto& e) {
    return e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0;
  });
  if (!sets.empty()) return std::unique_ptr<Dataset>(new TestDataSetDataset(graph, sets, path, opts.dims));
  auto npz = list_sorted(path, [](const auto& e) { return e.is_regular_file() && e.path().extension() == ".npz"; });
  if (!npz.empty()) return ArrayFilesDataset::open(graph, npz, path, opts.dims, false);
  auto npy = list_sorted(path, [](const auto& e) { return e.is_regular_file() && e.path().extension() == ".npy"; });
  if (!npy.empty()) {
    if (graph.inputs().size() != 1)
      return InvalidData("'" + path.string() + "' holds .npy files, which only serve single-input models; this model has " +
                         std::to_string(graph.inputs().size()) + " inputs (use .npz)");
    return ArrayFilesDataset::open(graph, npy, path, opts.dims, false);
  }
  return InvalidData("no samples found in '" + path.string() +
                     "' (expected test_data_set_N/ folders, input_K.pb files, .npz or .npy files)");
}

}  // namespace frugal
