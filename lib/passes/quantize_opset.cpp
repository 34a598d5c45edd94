// Raising the default-domain opset for quantization (per-channel DequantizeLinear needs 13). Only the
// ops whose inputs or semantics changed between the model's opset and 13 are rewritten; anything
// with a change we do not convert makes the upgrade fail, and the caller falls back to per-tensor.
#include <limits>
#include <map>
#include <set>

#include "frugal/quantize.h"

namespace frugal {

namespace {

const onnx::AttributeProto* find_attr(const onnx::NodeProto& n, const std::string& name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

void remove_attr(onnx::NodeProto& n, const std::string& name) {
  auto* attrs = n.mutable_attribute();
  for (int i = 0; i < attrs->size(); ++i)
    if (attrs->Get(i).name() == name) {
      attrs->DeleteSubrange(i, 1);
      return;
    }
}

struct Ctx {
  onnx::GraphProto* g;
  std::set<std::string> used;
  std::map<std::string, std::string> const_by_value;  // serialized tensor -> initializer name
  std::map<std::string, int> const_count;             // per kind
  std::string fresh(const std::string& base) {
    std::string n = base;
    for (int k = 1; used.count(n); ++k) n = base + "_" + std::to_string(k);
    used.insert(n);
    return n;
  }
  // The attribute values moved to inputs: one initializer per distinct value (every Unsqueeze with
  // axes [0] reads the same one), named `kind` and a counter rather than after the node, whose name
  // can be long and would be written once per node.
  std::string const_init(const std::string& kind, const Tensor& t) {
    onnx::TensorProto p;
    tensor_to_proto(t, &p);
    std::string key = kind + '\0' + p.SerializeAsString();
    auto it = const_by_value.find(key);
    if (it != const_by_value.end()) return it->second;
    std::string name = fresh(kind + std::to_string(const_count[kind]++));
    p.set_name(name);
    *g->add_initializer() = std::move(p);
    const_by_value.emplace(std::move(key), name);
    return name;
  }
};

// Softmax-family before 13 flattens to 2-D at `axis`; from 13 it works on one axis. Equal when the
// axis is the last one; otherwise rewrite as Flatten -> op(axis=-1) -> Reshape(Shape(x)).
int softmax_rank(const onnx::GraphProto& g, const std::string& tensor) {
  auto rank_of = [&](const auto& vis) -> int {
    for (const auto& v : vis)
      if (v.name() == tensor && v.type().tensor_type().has_shape()) return v.type().tensor_type().shape().dim_size();
    return -1;
  };
  int r = rank_of(g.value_info());
  if (r < 0) r = rank_of(g.input());
  if (r < 0) r = rank_of(g.output());
  return r;
}

}  // namespace

Status upgrade_default_opset(onnx::ModelProto& proto, int target, std::vector<std::string>* notes) {
  int from = 0;
  onnx::OperatorSetIdProto* imp = nullptr;
  for (auto& o : *proto.mutable_opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") from = static_cast<int>(o.version()), imp = &o;
  if (!imp) return InvalidModel("the model does not import the default ONNX domain");
  if (from >= target) return OkStatus();
  onnx::ModelProto out = proto;
  Ctx c{out.mutable_graph(), {}, {}, {}};
  for (const auto& n : out.graph().node()) {
    c.used.insert(n.name());
    for (const auto& s : n.output()) c.used.insert(s);
    for (const auto& s : n.input()) c.used.insert(s);
  }
  for (const auto& t : out.graph().initializer()) c.used.insert(t.name());
  for (const auto& t : out.graph().input()) c.used.insert(t.name());
  std::vector<onnx::NodeProto> nodes(out.graph().node().begin(), out.graph().node().end());
  std::vector<onnx::NodeProto> result;
  int converted = 0, softmax_count = 0;
  for (auto& n : nodes) {
    if (!(n.domain().empty() || n.domain() == "ai.onnx")) {
      result.push_back(n);
      continue;
    }
    for (const auto& a : n.attribute())
      if (a.type() == onnx::AttributeProto::GRAPH || a.type() == onnx::AttributeProto::GRAPHS)
        return Unsupported("node '" + n.name() + "' (" + n.op_type() + ") has a subgraph; opset not raised");
    const std::string& op = n.op_type();
    static const std::set<std::string> refused = {"Upsample", "Scatter", "ImageScaler", "Crop", "Slice", "TopK", "Pad",
                                                  "Resize"};
    if (op == "Clip" && from < 11) {
      const auto* mn = find_attr(n, "min");
      const auto* mx = find_attr(n, "max");
      std::string smin = mn ? c.const_init("clip_min", Tensor::scalar<float>(mn->f())) : "";
      std::string smax = mx ? c.const_init("clip_max", Tensor::scalar<float>(mx->f())) : "";
      remove_attr(n, "min");
      remove_attr(n, "max");
      n.add_input(smin);
      n.add_input(smax);
      while (n.input_size() > 1 && n.input(n.input_size() - 1).empty()) n.mutable_input()->RemoveLast();
      ++converted;
    } else if ((op == "Squeeze" || op == "Unsqueeze" || op == "ReduceSum") && from < 13) {
      const auto* ax = find_attr(n, "axes");
      if (ax) {
        std::vector<int64_t> v(ax->ints().begin(), ax->ints().end());
        std::string name = c.const_init("axes", Tensor::from_vector<int64_t>({static_cast<int64_t>(v.size())}, v));
        remove_attr(n, "axes");
        if (n.input_size() < 1) return InvalidModel("node '" + n.name() + "' has no input");
        n.add_input(name);
        ++converted;
      }
    } else if (op == "Split" && from < 13) {
      const auto* sp = find_attr(n, "split");
      if (sp) {
        std::vector<int64_t> v(sp->ints().begin(), sp->ints().end());
        std::string name = c.const_init("split", Tensor::from_vector<int64_t>({static_cast<int64_t>(v.size())}, v));
        remove_attr(n, "split");
        n.add_input(name);
        ++converted;
      }
    } else if ((op == "Softmax" || op == "LogSoftmax" || op == "Hardmax") && from < 13) {
      const auto* ax = find_attr(n, "axis");
      int64_t axis = ax ? ax->i() : 1;
      const int rank = softmax_rank(out.graph(), n.input(0));
      if (rank > 0 && (axis == rank - 1 || axis == -1)) {
        // Same result at 13 (a single axis, the last one).
      } else {
        // New tensors get short names (the originals are often long paths, and each is written
        // twice); the new nodes are named after the Softmax so that node filters still match them.
        const std::string k = std::to_string(softmax_count++);
        const std::string flat = c.fresh("softmax_in_2d" + k), shp = c.fresh("softmax_shape" + k);
        const std::string y2 = c.fresh("softmax_out_2d" + k);
        onnx::NodeProto f;
        f.set_op_type("Flatten");
        f.set_name(c.fresh(n.name() + "_flatten"));
        f.add_input(n.input(0));
        f.add_output(flat);
        auto* fa = f.add_attribute();
        fa->set_name("axis");
        fa->set_type(onnx::AttributeProto::INT);
        fa->set_i(axis);
        onnx::NodeProto s;
        s.set_op_type("Shape");
        s.set_name(c.fresh(n.name() + "_shape"));
        s.add_input(n.input(0));
        s.add_output(shp);
        onnx::NodeProto r;
        r.set_op_type("Reshape");
        r.set_name(c.fresh(n.name() + "_reshape"));
        r.add_input(y2);
        r.add_input(shp);
        r.add_output(n.output(0));
        remove_attr(n, "axis");
        auto* na = n.add_attribute();
        na->set_name("axis");
        na->set_type(onnx::AttributeProto::INT);
        na->set_i(-1);
        n.set_input(0, flat);
        n.set_output(0, y2);
        result.push_back(f);
        result.push_back(s);
        result.push_back(n);
        result.push_back(r);
        ++converted;
        continue;
      }
    } else if (op == "BatchNormalization" && from < 9) {
      const auto* sp = find_attr(n, "spatial");
      if (sp && sp->i() == 0) return Unsupported("node '" + n.name() + "' (BatchNormalization spatial=0) cannot be raised to opset 9+");
      remove_attr(n, "spatial");
      remove_attr(n, "is_test");
      remove_attr(n, "consumed_inputs");
      ++converted;
    } else if (op == "Dropout" && from < 12) {
      // Inference ignores the ratio; only a used mask output would differ (its type changed at 10).
      if (n.output_size() > 1 && !n.output(1).empty())
        return Unsupported("node '" + n.name() + "' (Dropout with a mask output) is not converted to opset 12+");
      remove_attr(n, "ratio");
      remove_attr(n, "is_test");
      ++converted;
    } else if (refused.count(op)) {
      const std::map<std::string, int> changed_at = {{"Upsample", 1000}, {"Scatter", 1000}, {"ImageScaler", 1000},
                                                      {"Crop", 1000},     {"Slice", 10},      {"TopK", 10},
                                                      {"Pad", 11},        {"Resize", 11}};
      if (from < changed_at.at(op))
        return Unsupported("node '" + n.name() + "' (" + op + ") changed between opset " + std::to_string(from) + " and " +
                           std::to_string(target) + " and is not converted");
    }
    result.push_back(n);
  }
  out.mutable_graph()->clear_node();
  for (auto& n : result) *out.mutable_graph()->add_node() = std::move(n);
  for (auto& o : *out.mutable_opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") o.set_version(target);
  if (out.ir_version() < 7) out.set_ir_version(7);
  if (notes && converted) notes->push_back(std::to_string(converted) + " node(s) rewritten for opset " + std::to_string(target));
  proto = std::move(out);
  return OkStatus();
}

}  // namespace frugal
