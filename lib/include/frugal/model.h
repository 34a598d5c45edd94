// Model I/O. The ModelProto is the source of truth: passes change what they own and everything else
// (unknown domains, metadata, doc strings, value_info, functions, fields newer than ONNX 1.12's schema,
// which protobuf keeps as unknown fields) passes through untouched.
//
// External data (location/offset/length) is resolved against the model's directory and memory-mapped;
// a location that is absolute or escapes that directory is rejected.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <onnx/onnx_pb.h>

#include "frugal/kernel.h"
#include "frugal/status.h"
#include "frugal/tensor.h"

namespace frugal {

// ---- TensorProto <-> Tensor -------------------------------------------------------------------

// Resolves external data for tensors of one model. Keeps mmaps alive as long as tensors use them.
class ExternalDataResolver {
 public:
  explicit ExternalDataResolver(std::filesystem::path base_dir) : base_dir_(std::move(base_dir)) {}
  // The bytes of an external tensor, checked to lie inside the model directory and inside the file.
  StatusOr<std::pair<std::shared_ptr<const void>, const void*>> bytes(const onnx::TensorProto& t,
                                                                       size_t expected_bytes);
  const std::filesystem::path& base_dir() const { return base_dir_; }

 private:
  struct Mapping;
  std::filesystem::path base_dir_;
  std::map<std::string, std::shared_ptr<Mapping>> maps_;
};

// Converts a TensorProto (raw_data, typed fields, or external) to a Tensor, checking that the bytes
// present match the declared dims. `resolver` may be null when external data is not expected.
StatusOr<Tensor> tensor_from_proto(const onnx::TensorProto& t, ExternalDataResolver* resolver = nullptr);
// Expands a SparseTensorProto (values + linear [NNZ] or coordinate [NNZ, rank] indices) into a dense
// Tensor, checking every index against the dims.
StatusOr<Tensor> tensor_from_sparse_proto(const onnx::SparseTensorProto& s, ExternalDataResolver* resolver = nullptr);
// Writes a Tensor into a TensorProto as raw_data (name kept if set).
void tensor_to_proto(const Tensor& t, onnx::TensorProto* out);
// Reads a serialized TensorProto file (input_0.pb). Returns the tensor and its name.
StatusOr<std::pair<std::string, Tensor>> read_tensor_pb(const std::filesystem::path& path);
Status write_tensor_pb(const std::filesystem::path& path, const std::string& name, const Tensor& t);

// Whether a tensor proto's data lives in an external file.
bool is_external(const onnx::TensorProto& t);

// A tensor proto stored inline as raw_data, used in place: a read-only view that holds `keepalive`
// (whatever owns the proto; may be null when the caller outlives the view). Kernels take any
// element-aligned input. nullopt for anything else (typed fields, external data, sub-byte or
// misaligned storage): the caller then decodes a copy with tensor_from_proto.
std::optional<Tensor> tensor_view_of_proto(const onnx::TensorProto& t, std::shared_ptr<const void> keepalive);

// ---- Model ------------------------------------------------------------------------------------

struct LoadOptions {
  // Resolve external data eagerly into the proto (inline). Default: keep it external and map lazily.
  bool inline_external_data = false;
};

struct SaveOptions {
  // Write tensors of at least `external_threshold` bytes to `<output>.data` when external data is
  // requested, or automatically when the serialized model would pass protobuf's 2 GB limit.
  bool external_data = false;
  // Keep external data external when the source model had it (false re-inlines it, if under 2 GB).
  bool keep_external = true;
  size_t external_threshold = 1024;
  std::string external_file;  // default: output file name + ".data"
  bool allow_overwrite_input = false;  // --in-place
  std::filesystem::path input_path;    // the model this output was derived from (guards in-place)
};

class Model : public std::enable_shared_from_this<Model> {
 public:
  static StatusOr<std::shared_ptr<Model>> load(const std::filesystem::path& path, const LoadOptions& opts = {});
  // A model from an in-memory proto (tests, passes). External data resolves against `base_dir`.
  static std::shared_ptr<Model> from_proto(onnx::ModelProto proto, std::filesystem::path base_dir = ".");

  const onnx::ModelProto& proto() const { return proto_; }
  onnx::ModelProto& mutable_proto() { return proto_; }
  const std::filesystem::path& path() const { return path_; }
  const std::filesystem::path& base_dir() const { return resolver_->base_dir(); }
  ExternalDataResolver* resolver() const { return resolver_.get(); }
  uintmax_t file_size() const { return file_size_; }

  // The opset imported for a domain ("" and "ai.onnx" are the same); 0 if not imported.
  int opset(const std::string& domain = "") const;
  // A Tensor for an initializer (external data mapped, not copied where possible).
  StatusOr<Tensor> initializer(const onnx::TensorProto& t) const;

  // Writes to a temp file beside `path`, checks it parses, renames over `path`. External data is
  // re-inlined or re-externalised as `opts` says.
  Status save(const std::filesystem::path& path, const SaveOptions& opts = {}) const;

  // Shared weights. A pass that leaves most weights untouched (the embedding of a transformer under
  // quantization) builds its output from a byte-less copy of the graph and calls this: every main-graph
  // initializer here that holds no data (a shell: name, type, shape) and names an inline initializer
  // of `source` with the same type and shape reads that one's bytes instead of a copy; shells whose
  // source data is elsewhere (external, typed fields) get a copy of the source tensor. The source is
  // kept alive by this model. Returns how many tensors are shared.
  size_t share_initializer_bytes(std::shared_ptr<const Model> source);
  // `t` itself, or the source initializer whose bytes it shares. Readers of initializer data go
  // through this (Graph::build does, so executors and passes see full tensors).
  const onnx::TensorProto& resolve(const onnx::TensorProto& t) const;
  bool shares_bytes() const { return !shared_.empty(); }
  // The size of the serialized model, shared bytes included.
  size_t serialized_size() const;
  // Whether any tensor (initializers, Constant attributes, subgraphs) keeps its data in an external file.
  bool has_external_data() const;

 private:
  onnx::ModelProto proto_;
  std::shared_ptr<const Model> bytes_source_;
  std::map<std::string, const onnx::TensorProto*> shared_;  // shell name -> source initializer
  std::filesystem::path path_;
  std::shared_ptr<ExternalDataResolver> resolver_;
  uintmax_t file_size_ = 0;
};

// The two-part load Model::load uses for regular files with large weights (structure parsed by
// protobuf, initializer payloads read into place on all threads), on its own for tests: true when
// `path` was loaded that way into `out`, false when the file does not suit it (under 1 MiB, no
// payload of 64 KiB or more, or wire data it leaves to protobuf: groups, a repeated graph or raw_data).
StatusOr<bool> load_model_in_parts(const std::filesystem::path& path, onnx::ModelProto* out);

// Parses a model from bytes with protobuf's size limits raised (models up to 2 GB inline).
Status parse_model_bytes(const void* data, size_t size, onnx::ModelProto* out, const std::string& what);

// ---- Graph index ------------------------------------------------------------------------------

struct ValueInfo {
  std::string name;
  DType dtype = DType::kUndefined;
  std::vector<int64_t> dims;             // -1 where symbolic or unknown
  std::vector<std::string> dim_params;   // the symbolic name where there is one
  bool has_shape = false;
};

class Graph {
 public:
  // Indexes the main graph of `model`. Fails on dangling inputs or cycles.
  static StatusOr<Graph> build(const Model& model);

  const std::vector<NodeDef>& nodes() const { return nodes_; }
  // Node indices in a topological order.
  const std::vector<size_t>& topo_order() const { return topo_; }
  // Graph inputs that are not initializers, in declaration order.
  const std::vector<ValueInfo>& inputs() const { return inputs_; }
  const std::vector<ValueInfo>& outputs() const { return outputs_; }
  // Producer node index of a tensor, -1 for graph inputs / initializers / unknown.
  int64_t producer(const std::string& tensor) const;
  const std::vector<size_t>& consumers(const std::string& tensor) const;
  // Initializer protos by name (the Model keeps them).
  const onnx::TensorProto* initializer(const std::string& name) const;
  const std::map<std::string, const onnx::TensorProto*>& initializers() const { return inits_; }
  // sparse_initializer entries by name (their values tensor's name).
  const std::map<std::string, const onnx::SparseTensorProto*>& sparse_initializers() const { return sparse_inits_; }
  // Declared value_info (inputs, outputs, value_info) by name.
  const ValueInfo* value_info(const std::string& name) const;
  // Nodes that carry subgraph attributes (If, Loop, Scan, ...).
  const std::vector<size_t>& nodes_with_subgraphs() const { return subgraph_nodes_; }

 private:
  void defer_constant_nodes();  // part of build: constant nodes run just before their first consumer
  std::vector<NodeDef> nodes_;
  std::vector<size_t> topo_;
  std::vector<ValueInfo> inputs_, outputs_;
  std::map<std::string, int64_t> producer_;
  std::map<std::string, std::vector<size_t>> consumers_;
  std::map<std::string, const onnx::TensorProto*> inits_;
  std::map<std::string, const onnx::SparseTensorProto*> sparse_inits_;
  std::map<std::string, ValueInfo> value_infos_;
  std::vector<size_t> subgraph_nodes_;
};

ValueInfo value_info_from_proto(const onnx::ValueInfoProto& v);
StatusOr<Attribute> attribute_from_proto(const onnx::AttributeProto& a);
StatusOr<NodeDef> node_from_proto(const onnx::NodeProto& n, const Model& model);

}  // namespace frugal
