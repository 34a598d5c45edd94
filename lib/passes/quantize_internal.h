// Graph-building helpers shared by the quantization passes (quantize_static.cpp, quantize_dynamic.cpp).
// Internal to lib/passes: not part of the public API.
#pragma once

#include <algorithm>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "frugal/quantize.h"
#include "passes/proto_copy.h"

namespace frugal::quant_pass {

using passes::structure_copy;

// Fresh tensor/node names: `base`, else base_1, base_2, ... skipping every name the graph already uses
// (node names, inputs, outputs, initializers, graph inputs) and every name handed out before.
class NameGen {
 public:
  explicit NameGen(const onnx::GraphProto& g) {
    for (const auto& n : g.node()) {
      used_.insert(n.name());
      for (const auto& o : n.output()) used_.insert(o);
      for (const auto& i : n.input()) used_.insert(i);
    }
    for (const auto& t : g.initializer()) used_.insert(t.name());
    for (const auto& v : g.input()) used_.insert(v.name());
    for (const auto& v : g.output()) used_.insert(v.name());
  }
  std::string make(const std::string& base) {
    std::string n = base;
    for (int k = 1; used_.count(n); ++k) n = base + "_" + std::to_string(k);
    used_.insert(n);
    return n;
  }

 private:
  std::set<std::string> used_;
};

inline void add_init(onnx::GraphProto* g, const std::string& name, const Tensor& t) {
  onnx::TensorProto* p = g->add_initializer();
  tensor_to_proto(t, p);
  p->set_name(name);
}

constexpr int kNoAxis = std::numeric_limits<int>::min();

inline onnx::NodeProto make_node(const std::string& op, const std::string& name, std::vector<std::string> in,
                                 std::vector<std::string> out, int axis = kNoAxis) {
  onnx::NodeProto n;
  n.set_op_type(op);
  n.set_name(name);
  for (auto& s : in) n.add_input(s);
  for (auto& s : out) n.add_output(s);
  if (axis != kNoAxis) {
    auto* a = n.add_attribute();
    a->set_name("axis");
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(axis);
  }
  return n;
}

inline void set_int_attr(onnx::NodeProto* n, const std::string& name, int64_t v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

// A zero-point tensor of `count` values `zp` (scalar shape when `scalar`).
inline Tensor zp_tensor(DType t, int32_t zp, size_t count, bool scalar) {
  Shape s = scalar ? Shape{} : Shape{static_cast<int64_t>(count)};
  if (t == DType::kUInt8) return Tensor::from_vector<uint8_t>(s, std::vector<uint8_t>(count, static_cast<uint8_t>(zp)));
  if (t == DType::kInt8) return Tensor::from_vector<int8_t>(s, std::vector<int8_t>(count, static_cast<int8_t>(zp)));
  return Tensor::from_vector<int32_t>(s, std::vector<int32_t>(count, zp));
}

// Removes the initializers in `replaced` that no node and no graph output reads any more, also from
// graph.input (where old IR versions list initializers).
inline void drop_unread_initializers(onnx::GraphProto* g, const std::set<std::string>& replaced) {
  std::set<std::string> still_used;
  for (const auto& n : g->node())
    for (const auto& in : n.input()) still_used.insert(in);
  for (const auto& o : g->output()) still_used.insert(o.name());
  std::set<std::string> dropped;
  for (const auto& name : replaced)
    if (!still_used.count(name)) dropped.insert(name);
  auto* inits = g->mutable_initializer();
  inits->erase(std::remove_if(inits->begin(), inits->end(), [&](const onnx::TensorProto& t) { return dropped.count(t.name()) > 0; }),
               inits->end());
  auto* ins = g->mutable_input();
  ins->erase(std::remove_if(ins->begin(), ins->end(), [&](const onnx::ValueInfoProto& v) { return dropped.count(v.name()) > 0; }),
             ins->end());
}

// Raises `proto`'s default-domain opset from `opset` to 13 on a trial copy, keeping it only if the
// upgrade succeeds (then `opset` is 13 and `res` gets the upgrade's notes plus one saying `why`).
// Returns the upgrade's status; the caller decides what a failure means for its form.
inline Status try_raise_to_opset13(onnx::ModelProto& proto, int& opset, const std::string& why, QuantizeResult& res) {
  onnx::ModelProto trial = proto;
  std::vector<std::string> notes;
  Status st = upgrade_default_opset(trial, 13, &notes);
  if (!st.ok()) return st;
  proto = std::move(trial);
  res.notes.insert(res.notes.end(), notes.begin(), notes.end());
  res.notes.push_back("default-domain opset raised from " + std::to_string(opset) + " to 13 (" + why + ")");
  opset = 13;
  return st;
}

// The initializers of `proto` (a structure copy of `source`, transformed) that are still byte-less
// shells of source tensors get their data back. Inline dense initializers stay shells when `source`
// is held by a shared_ptr: share_source_bytes then lets the output read the source's bytes in place
// (an untouched embedding is not copied). Everything else is copied (generated names never collide
// with source names).
inline void fill_from_source(onnx::ModelProto* proto, const Model& source, const Graph& source_graph) {
  const bool can_share = static_cast<bool>(source.weak_from_this().lock());
  for (auto& t : *proto->mutable_graph()->mutable_initializer()) {
    const onnx::TensorProto* src = source_graph.initializer(t.name());
    if (!src) continue;
    if (can_share && src->has_raw_data() && !src->raw_data().empty() && !is_external(*src)) continue;
    t = *src;
  }
  for (auto& sp : *proto->mutable_graph()->mutable_sparse_initializer()) {
    auto it = source_graph.sparse_initializers().find(sp.values().name());
    if (it != source_graph.sparse_initializers().end()) sp = *it->second;
  }
}

// The second half of fill_from_source, once the output Model exists.
inline void share_source_bytes(Model& out, const Model& source) {
  if (auto src = source.weak_from_this().lock()) out.share_initializer_bytes(std::move(src));
}

// Names every unnamed node "#i" (its index), as the graph index reports it, unless a node already
// carries that name (then "#i_1", ...).
inline void name_unnamed_nodes(onnx::GraphProto* g) {
  std::set<std::string> used;
  for (const auto& n : g->node()) used.insert(n.name());
  for (int i = 0; i < g->node_size(); ++i) {
    onnx::NodeProto* n = g->mutable_node(i);
    if (!n->name().empty()) continue;
    std::string name = "#" + std::to_string(i);
    for (int k = 1; used.count(name); ++k) name = "#" + std::to_string(i) + "_" + std::to_string(k);
    used.insert(name);
    n->set_name(name);
  }
}

// The start every quantization pass shares: the checks on `model` (indexed by `graph`), then the
// working copy without the weights' bytes (names, types and shapes are all a pass reads; weights are
// read from `model` where they are quantized, and the rest share `model`'s bytes at the end), with
// unnamed nodes named as the graph index reports them ("#i") before an opset upgrade can insert
// nodes and shift the indices: --max-drop and the filters then find the same node every run.
inline Status begin_pass(const Model& model, const Graph& graph, QuantizeResult& res, onnx::ModelProto& proto) {
  res.opset_before = model.opset("");
  if (res.opset_before == 0) return InvalidModel("the model does not import the default ONNX domain");
  if (!graph.nodes_with_subgraphs().empty())
    return Unsupported("models with control flow (If/Loop/Scan) cannot be quantized yet (node '" +
                       graph.nodes()[graph.nodes_with_subgraphs().front()].name + "')");
  proto = structure_copy(model.proto());
  name_unnamed_nodes(proto.mutable_graph());
  return OkStatus();
}

// An initializer's value during a pass: from the source model (`source_graph` indexes it), which
// holds the bytes, or from the working copy (`work`, indexed by `work_graph`) for the constants an
// opset upgrade added, which carry theirs. Inline raw bytes come back as a view into that model (no
// copy of, say, 57 MB of weights): both models outlive the pass, which must not keep the value.
inline StatusOr<Tensor> initializer_value(const Model& source, const Graph& source_graph, const Model& work,
                                          const Graph& work_graph, const std::string& name) {
  const onnx::TensorProto* t = source_graph.initializer(name);
  const Model& m = t ? source : work;
  if (!t) t = work_graph.initializer(name);
  if (auto v = tensor_view_of_proto(m.resolve(*t), nullptr)) return std::move(*v);
  return m.initializer(*t);
}

// Whether a node passes the user's node filters (--include, --exclude, --max-drop's keep_float);
// `why` gets the reason when it does not.
bool selected_by_filters(const NodeDef& n, const QuantizeOptions& opts, std::string* why);

// The weight-only form (int8 weights behind DequantizeLinear), defined in quantize_static.cpp.
StatusOr<QuantizeResult> quantize_weight_only(const Model& model, const QuantizeOptions& opts);

}  // namespace frugal::quant_pass
