// Graph index over a ModelProto's main graph: NodeDefs, producers, consumers, topological order.
#include <deque>
#include <functional>
#include <queue>
#include <set>

#include "frugal/model.h"
#include "onnx_util.h"

namespace frugal {

ValueInfo value_info_from_proto(const onnx::ValueInfoProto& v) {
  ValueInfo vi;
  vi.name = v.name();
  if (v.has_type() && v.type().has_tensor_type()) {
    const auto& tt = v.type().tensor_type();
    vi.dtype = static_cast<DType>(tt.elem_type());
    if (tt.has_shape()) {
      vi.has_shape = true;
      for (const auto& d : tt.shape().dim()) {
        // Some exporters store unknown dims as dim_value -1 (or 2^64-1 read as unsigned).
        vi.dims.push_back(d.has_dim_value() && d.dim_value() >= 0 ? d.dim_value() : -1);
        vi.dim_params.push_back(d.has_dim_param() ? d.dim_param() : std::string());
      }
    }
  }
  return vi;
}

StatusOr<Attribute> attribute_from_proto(const onnx::AttributeProto& a) {
  Attribute out;
  using A = onnx::AttributeProto;
  // Old models may omit `type`; infer it from which field is set.
  A::AttributeType type = a.type();
  if (type == A::UNDEFINED) {
    if (a.has_f()) type = A::FLOAT;
    else if (a.has_i()) type = A::INT;
    else if (a.has_s()) type = A::STRING;
    else if (a.has_t()) type = A::TENSOR;
    else if (a.has_g()) type = A::GRAPH;
    else if (a.floats_size()) type = A::FLOATS;
    else if (a.ints_size()) type = A::INTS;
    else if (a.strings_size()) type = A::STRINGS;
  }
  switch (type) {
    case A::FLOAT: out.kind = Attribute::Kind::kFloat; out.f = a.f(); break;
    case A::INT: out.kind = Attribute::Kind::kInt; out.i = a.i(); break;
    case A::STRING: out.kind = Attribute::Kind::kString; out.s = a.s(); break;
    case A::TENSOR: {
      out.kind = Attribute::Kind::kTensor;
      if (static_cast<DType>(a.t().data_type()) != DType::kString) {
        FRUGAL_ASSIGN_OR_RETURN(out.t, tensor_from_proto(a.t(), nullptr));
      }
      break;
    }
    case A::FLOATS: out.kind = Attribute::Kind::kFloats; out.floats.assign(a.floats().begin(), a.floats().end()); break;
    case A::INTS: out.kind = Attribute::Kind::kInts; out.ints.assign(a.ints().begin(), a.ints().end()); break;
    case A::STRINGS: out.kind = Attribute::Kind::kStrings; out.strings.assign(a.strings().begin(), a.strings().end()); break;
    case A::GRAPH: case A::GRAPHS: out.kind = Attribute::Kind::kGraph; break;
    default: out.kind = Attribute::Kind::kOther; break;
  }
  return out;
}

StatusOr<NodeDef> node_from_proto(const onnx::NodeProto& n, const Model& model) {
  NodeDef d;
  d.name = n.name();
  d.op_type = n.op_type();
  d.domain = n.domain() == "ai.onnx" ? "" : n.domain();
  d.opset = model.opset(d.domain);
  d.inputs.assign(n.input().begin(), n.input().end());
  d.outputs.assign(n.output().begin(), n.output().end());
  for (const auto& a : n.attribute()) {
    if (!a.ref_attr_name().empty()) continue;  // only meaningful inside function bodies
    if (a.type() == onnx::AttributeProto::TENSOR && is_external(a.t())) {
      Attribute at;
      at.kind = Attribute::Kind::kTensor;
      FRUGAL_ASSIGN_OR_RETURN(at.t, tensor_from_proto(a.t(), model.resolver()));
      d.attrs[a.name()] = std::move(at);
      continue;
    }
    auto at = attribute_from_proto(a);
    if (!at.ok()) return at.status().with_context(d.label() + " attribute '" + a.name() + "'");
    d.attrs[a.name()] = std::move(at).value();
  }
  return d;
}

StatusOr<Graph> Graph::build(const Model& model) {
  Graph g;
  const auto& gp = model.proto().graph();
  for (const auto& t : gp.initializer()) g.inits_[t.name()] = &model.resolve(t);
  for (const auto& t : gp.sparse_initializer()) g.sparse_inits_[t.values().name()] = &t;
  for (const auto& v : gp.input()) {
    ValueInfo vi = value_info_from_proto(v);
    g.value_infos_[vi.name] = vi;
    if (!g.inits_.count(v.name()) && !g.sparse_inits_.count(v.name())) g.inputs_.push_back(std::move(vi));
  }
  for (const auto& v : gp.output()) {
    ValueInfo vi = value_info_from_proto(v);
    g.value_infos_[vi.name] = vi;
    g.outputs_.push_back(std::move(vi));
  }
  for (const auto& v : gp.value_info()) g.value_infos_.emplace(v.name(), value_info_from_proto(v));

  g.nodes_.reserve(static_cast<size_t>(gp.node_size()));
  for (int i = 0; i < gp.node_size(); ++i) {
    const auto& np = gp.node(i);
    FRUGAL_ASSIGN_OR_RETURN(NodeDef nd, node_from_proto(np, model));
    if (nd.name.empty()) nd.name = "#" + std::to_string(i);
    for (const auto& a : np.attribute())
      if (a.has_g() || a.graphs_size()) {
        g.subgraph_nodes_.push_back(static_cast<size_t>(i));
        break;
      }
    for (const auto& o : nd.outputs) {
      if (o.empty()) continue;
      if (g.producer_.count(o))
        return InvalidModel(nd.label() + ": output '" + o + "' is also produced by another node");
      g.producer_[o] = i;
    }
    g.nodes_.push_back(std::move(nd));
  }

  // Kahn's algorithm.
  std::set<std::string> available;
  for (const auto& v : gp.input()) available.insert(v.name());
  for (const auto& kv : g.inits_) available.insert(kv.first);
  for (const auto& kv : g.sparse_inits_) available.insert(kv.first);
  std::vector<int> pending(g.nodes_.size(), 0);
  for (size_t i = 0; i < g.nodes_.size(); ++i) {
    for (const auto& in : g.nodes_[i].inputs) {
      if (in.empty()) continue;
      g.consumers_[in].push_back(i);
      if (available.count(in)) continue;
      if (!g.producer_.count(in))
        return InvalidModel(g.nodes_[i].label() + ": input '" + in +
                            "' is not a graph input, an initializer or any node's output");
      ++pending[i];
    }
  }
  // Always the ready node that comes first in the file: a file in topological order (as ONNX asks)
  // runs in file order, so a weight's DequantizeLinear placed before its consumer runs there instead
  // of with every other weight at the start, and the executor holds one dequantized weight at a time.
  std::priority_queue<size_t, std::vector<size_t>, std::greater<size_t>> ready;
  for (size_t i = 0; i < g.nodes_.size(); ++i)
    if (pending[i] == 0) ready.push(i);
  std::vector<bool> done(g.nodes_.size(), false);
  while (!ready.empty()) {
    const size_t i = ready.top();
    ready.pop();
    g.topo_.push_back(i);
    done[i] = true;
    for (const auto& o : g.nodes_[i].outputs) {
      if (o.empty()) continue;
      auto it = g.consumers_.find(o);
      if (it == g.consumers_.end()) continue;
      for (size_t c : it->second)
        if (--pending[c] == 0) ready.push(c);
    }
  }
  if (g.topo_.size() != g.nodes_.size()) {
    for (size_t i = 0; i < g.nodes_.size(); ++i)
      if (!done[i]) return InvalidModel(g.nodes_[i].label() + " is part of a cycle");
  }
  for (const auto& o : g.outputs_)
    if (!g.producer_.count(o.name) && !available.count(o.name))
      return InvalidModel("graph output '" + o.name + "' is produced by no node");
  g.defer_constant_nodes();
  return g;
}

void Graph::defer_constant_nodes() {
  // A constant node reads only initializers and other constant nodes' outputs (a weight's
  // DequantizeLinear, a Constant, a Reshape of a weight). Quantizers write every weight's
  // DequantizeLinear at the top of the file; run in that order, the executor would hold every
  // dequantized float weight at once (57 MB on a BERT-base-width encoder). Each constant node runs
  // instead just before its first consumer, and its output is freed after its last.
  // Subgraphs read outer tensors without naming them as inputs: such graphs keep the plain order.
  if (!subgraph_nodes_.empty()) return;
  const size_t n = nodes_.size();
  std::vector<char> is_const(n, 0), emitted(n, 0);
  for (size_t i : topo_) {
    bool c = true;
    for (const auto& in : nodes_[i].inputs) {
      if (in.empty() || inits_.count(in) || sparse_inits_.count(in)) continue;
      auto p = producer_.find(in);
      if (p != producer_.end() && is_const[p->second]) continue;
      c = false;
      break;
    }
    is_const[i] = c;
  }
  std::vector<size_t> order;
  order.reserve(n);
  // Emits constant node `i` after the constant nodes it reads (depth is that of a constant chain).
  std::function<void(size_t)> emit_const = [&](size_t i) {
    if (emitted[i]) return;
    emitted[i] = 1;
    for (const auto& in : nodes_[i].inputs) {
      auto p = in.empty() ? producer_.end() : producer_.find(in);
      if (p != producer_.end()) emit_const(p->second);
    }
    order.push_back(i);
  };
  for (size_t i : topo_) {
    if (is_const[i]) continue;
    for (const auto& in : nodes_[i].inputs) {
      auto p = in.empty() ? producer_.end() : producer_.find(in);
      if (p != producer_.end() && is_const[p->second]) emit_const(p->second);
    }
    order.push_back(i);
    emitted[i] = 1;
  }
  for (size_t i : topo_)
    if (!emitted[i]) emit_const(i);  // constants only graph outputs read, or nothing
  topo_ = std::move(order);
}

int64_t Graph::producer(const std::string& tensor) const {
  auto it = producer_.find(tensor);
  return it == producer_.end() ? -1 : it->second;
}

const std::vector<size_t>& Graph::consumers(const std::string& tensor) const {
  static const std::vector<size_t> kNone;
  auto it = consumers_.find(tensor);
  return it == consumers_.end() ? kNone : it->second;
}

const onnx::TensorProto* Graph::initializer(const std::string& name) const {
  auto it = inits_.find(name);
  return it == inits_.end() ? nullptr : it->second;
}

const ValueInfo* Graph::value_info(const std::string& name) const {
  auto it = value_infos_.find(name);
  return it == value_infos_.end() ? nullptr : &it->second;
}

}  // namespace frugal
