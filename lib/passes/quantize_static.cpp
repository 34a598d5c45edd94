// Static QDQ quantization pass (and the weight-only form used by quantize_dynamic).
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <regex>
#include <set>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "frugal/parallel.h"
#include "frugal/quantize.h"
#include "passes/quantize_internal.h"

namespace frugal {

using quant_pass::add_init;
using quant_pass::make_node;
using quant_pass::NameGen;
using quant_pass::zp_tensor;

namespace {

const std::set<std::string> kComputeOps = {"Conv", "ConvTranspose", "Gemm", "MatMul"};
// Ops whose output has the same values as (a subset of) their input: output shares the input's params.
const std::set<std::string> kPassthroughOps = {"Reshape", "Transpose", "MaxPool", "Flatten", "Squeeze", "Unsqueeze"};
// Ops whose input shares the output's params (clipping activations, concatenation).
const std::set<std::string> kShareFromOutputOps = {"Relu", "Clip", "Concat"};
// A Gather table smaller than this stays float: the nodes and scales the int8 form adds would cost
// about as many bytes as it saves.
constexpr int64_t kMinTableValues = 1024;
const std::set<std::string> kNeighbourOps = {"Add", "Mul", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool",
                                             "Concat", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"};

// Which inputs of an op carry activations to quantize (others are shapes, axes, clip bounds).
std::vector<size_t> activation_inputs(const NodeDef& n) {
  if (n.op_type == "Conv" || n.op_type == "ConvTranspose" || n.op_type == "Gemm") return {0};
  if (n.op_type == "MatMul" || n.op_type == "Add" || n.op_type == "Mul") return {0, 1};
  if (n.op_type == "Concat") {
    std::vector<size_t> v(n.inputs.size());
    std::iota(v.begin(), v.end(), 0);
    return v;
  }
  return {0};
}

bool matches(const std::vector<std::string>& pats, const NodeDef& n) {
  for (const auto& p : pats) {
    if (p == n.op_type) return true;
    try {
      if (std::regex_match(n.name, std::regex(p))) return true;
    } catch (const std::regex_error&) {
      if (p == n.name) return true;
    }
  }
  return false;
}

struct UnionFind {
  std::map<std::string, std::string> parent;
  std::string find(const std::string& x) {
    auto it = parent.find(x);
    if (it == parent.end() || it->second == x) return x;
    std::string r = find(it->second);
    parent[x] = r;
    return r;
  }
  void unite(const std::string& a, const std::string& b) {
    std::string ra = find(a), rb = find(b);
    if (ra != rb) parent[std::max(ra, rb)] = std::min(ra, rb);  // deterministic root
  }
};

// Scale and zero-point initializers, one per distinct value (data type, shape and bytes): tensors
// quantized with bit-equal parameters read one initializer instead of a copy each. Names are short
// (prefix + counter, in creation order, so the same model and options give the same names).
class SharedParams {
 public:
  SharedParams(onnx::GraphProto* g, NameGen* names) : g_(g), names_(names) {}
  std::string get(const std::string& prefix, const Tensor& t) {
    onnx::TensorProto p;
    tensor_to_proto(t, &p);
    std::string key = p.SerializeAsString();
    auto it = by_value_.find(key);
    if (it != by_value_.end()) return it->second;
    std::string name = names_->make(prefix + std::to_string(count_[prefix]++));
    p.set_name(name);
    *g_->add_initializer() = std::move(p);
    by_value_.emplace(std::move(key), name);
    return name;
  }

 private:
  onnx::GraphProto* g_;
  NameGen* names_;
  std::map<std::string, std::string> by_value_;
  std::map<std::string, int> count_;
};

// Gives the DequantizeLinear output `from` of each (from, original) pair the name `original` when no
// initializer, graph input or output and no node uses that name any more (the float weight or bias
// was dropped because every reader now reads the int8 copy): consumers then read the name they read
// in the float model, and the long original name is not written a second time under a new suffix. A
// weight dequantized on two axes has two outputs: the first claims the name.
void rename_to_dropped_originals(onnx::GraphProto* g, const std::vector<std::pair<std::string, std::string>>& pairs) {
  std::set<std::string> taken;
  for (const auto& t : g->initializer()) taken.insert(t.name());
  for (const auto& t : g->sparse_initializer()) taken.insert(t.values().name());
  for (const auto& v : g->input()) taken.insert(v.name());
  for (const auto& v : g->output()) taken.insert(v.name());
  for (const auto& n : g->node()) {
    taken.insert(n.input().begin(), n.input().end());
    taken.insert(n.output().begin(), n.output().end());
  }
  std::map<std::string, std::string> to;
  for (const auto& [from, original] : pairs)
    if (taken.insert(original).second) to[from] = original;
  if (to.empty()) return;
  for (auto& n : *g->mutable_node()) {
    for (auto& in : *n.mutable_input()) {
      auto it = to.find(in);
      if (it != to.end()) in = it->second;
    }
    for (auto& out : *n.mutable_output()) {
      auto it = to.find(out);
      if (it != to.end()) out = it->second;
    }
  }
}

// Quantizes `w` straight into the raw bytes of a new int8 initializer `name` of `g` (no int8 copy in
// between: an embedding table alone is tens of MB). The result's `q` stays empty.
QuantizedWeight add_quantized_init(onnx::GraphProto* g, const std::string& name, const Tensor& w, int axis,
                                   quant::QRange range) {
  onnx::TensorProto* p = g->add_initializer();
  p->set_name(name);
  for (int64_t d : w.shape()) p->add_dims(d);
  p->set_data_type(onnx::TensorProto::INT8);
  std::string* raw = p->mutable_raw_data();
  raw->resize(static_cast<size_t>(w.numel()));
  return quantize_weight_to(w, axis, range, reinterpret_cast<int8_t*>(raw->data()));
}

// With `plan` set, only chooses the nodes, assuming every tensor calibration can observe has a range,
// and returns the activation tensors whose ranges the pass would read in *plan (no graph is built).
StatusOr<QuantizeResult> quantize_impl(const Model& model, const CalibrationTable* table, const QuantizeOptions& opts,
                                       std::vector<std::string>* plan = nullptr) {
  if (opts.activation_type != DType::kUInt8 && opts.activation_type != DType::kInt8)
    return InvalidArgument("activation type must be uint8 or int8");
  const bool weight_only = table == nullptr && plan == nullptr;
  FRUGAL_ASSIGN_OR_RETURN(Graph graph, Graph::build(model));
  QuantizeResult res;
  onnx::ModelProto proto;
  FRUGAL_RETURN_IF_ERROR(quant_pass::begin_pass(model, graph, res, proto));
  // Opset: QDQ needs 10, per-channel (axis on DequantizeLinear) needs 13.
  bool per_channel = opts.per_channel;
  int opset = res.opset_before;
  if (opset < 13) {
    Status st = quant_pass::try_raise_to_opset13(proto, opset, "per-channel DequantizeLinear needs 13", res);
    if (!st.ok() && opset >= 10) {
      per_channel = false;
      res.notes.push_back("opset " + std::to_string(opset) + " kept (" + st.message() +
                          "); weights quantized per tensor because per-channel needs opset 13");
    } else if (!st.ok()) {
      return Unsupported("QDQ quantization needs opset >= 10 and the model (opset " + std::to_string(opset) +
                         ") cannot be raised: " + st.message());
    }
  }
  res.opset_after = opset;
  // Rebuild the index on the (possibly upgraded) proto: node names and tensors are unchanged by the
  // upgrade except for added constant inputs, so one index serves both.
  auto work = Model::from_proto(proto, model.base_dir());
  const Graph source_graph = std::move(graph);  // indexes `model`, whose initializers hold the bytes
  FRUGAL_ASSIGN_OR_RETURN(graph, Graph::build(*work));
  auto initializer_value = [&](const std::string& name) {
    return quant_pass::initializer_value(model, source_graph, *work, graph, name);
  };

  std::set<std::string> graph_outputs;
  for (const auto& o : graph.outputs()) graph_outputs.insert(o.name);
  std::set<std::string> observable;  // plan mode: what calibration would record
  if (plan) {
    const auto t = default_calibration_tensors(graph);
    observable.insert(t.begin(), t.end());
  }
  auto has_range = [&](const std::string& name) { return plan ? observable.count(name) > 0 : table->find(name) != nullptr; };
  auto is_float_init = [&](const std::string& name) {
    const onnx::TensorProto* t = graph.initializer(name);
    return t && t->data_type() == onnx::TensorProto::FLOAT;
  };

  // 1. Choose nodes.
  std::vector<bool> quantized(graph.nodes().size(), false);
  std::vector<bool> table_rows(graph.nodes().size(), false);  // Gather from a float table, stored int8
  std::vector<NodeQuantInfo> infos(graph.nodes().size());
  std::set<std::string> act;  // activation tensors to quantize
  for (size_t ni : graph.topo_order()) {
    const NodeDef& n = graph.nodes()[ni];
    NodeQuantInfo& info = infos[ni];
    info.name = n.name;
    info.op_type = n.op_type;
    if (!n.outputs.empty()) info.output_tensor = n.outputs[0];
    const bool compute = kComputeOps.count(n.op_type) > 0;
    const bool neighbour = kNeighbourOps.count(n.op_type) > 0;
    const bool lookup = n.op_type == "Gather" && !n.inputs.empty() && is_float_init(n.inputs[0]);
    if (!compute && !neighbour && !lookup) continue;  // not a candidate: not listed in the report
    auto skip = [&](const std::string& why) { info.reason = why; };
    if (!n.domain.empty()) { skip("not in the default domain"); continue; }
    std::string why;
    if (!quant_pass::selected_by_filters(n, opts, &why)) { skip(why); continue; }
    if (lookup) {
      // A table read by rows (an embedding): stored int8 in every mode; its output stays float and
      // does not draw its readers into quantization (they are usually a sum and a normalisation).
      const onnx::TensorProto* t = graph.initializer(n.inputs[0]);
      const int64_t rank = t->dims_size();
      const int64_t numel = shape_numel(Shape(t->dims().begin(), t->dims().end()));
      const int64_t axis = n.get_int("axis", 0);
      if (rank < 2 || (axis != 0 && axis != -rank)) { skip("Gather does not read whole rows of a table (axis != 0)"); continue; }
      if (n.inputs.size() < 2 || graph.initializer(n.inputs[1])) { skip("Gather indices are constant"); continue; }
      if (numel < kMinTableValues) { skip("table too small to shrink (< " + std::to_string(kMinTableValues) + " values)"); continue; }
      table_rows[ni] = true;
      continue;
    }
    if (weight_only) {
      if (!compute) continue;
      if (n.inputs.size() < 2 || !is_float_init(n.inputs[1])) { skip("weight is not a float initializer"); continue; }
      quantized[ni] = true;
      continue;
    }
    if (neighbour) {
      // Only next to quantized work, so float regions (normalisations, softmax) stay float.
      bool near = false;
      for (const auto& in : n.inputs) {
        const int64_t p = in.empty() ? -1 : graph.producer(in);
        if (p >= 0 && quantized[static_cast<size_t>(p)]) near = true;
      }
      if (!near) { skip("no quantized neighbour"); continue; }
    }
    if ((n.op_type == "Conv" || n.op_type == "ConvTranspose" || n.op_type == "Gemm") &&
        (n.inputs.size() < 2 || !is_float_init(n.inputs[1]))) {
      skip("weight is not a float initializer");
      continue;
    }
    if (n.op_type == "Gemm" && n.get_int("transA", 0) != 0) { skip("Gemm with transA=1"); continue; }
    std::string missing;
    for (size_t k : activation_inputs(n)) {
      if (k >= n.inputs.size() || n.inputs[k].empty()) continue;
      const std::string& in = n.inputs[k];
      if (n.op_type == "MatMul" && k == 1 && is_float_init(in)) continue;  // the weight
      if (graph.initializer(in)) { missing = "input '" + in + "' is a constant"; break; }
      if (!has_range(in)) { missing = "no calibration range for input '" + in + "'"; break; }
    }
    if (!missing.empty()) { skip(missing); continue; }
    quantized[ni] = true;
    for (size_t k : activation_inputs(n)) {
      if (k >= n.inputs.size() || n.inputs[k].empty()) continue;
      if (n.op_type == "MatMul" && k == 1 && is_float_init(n.inputs[k])) continue;
      act.insert(n.inputs[k]);
    }
  }

  if (plan) {
    plan->assign(act.begin(), act.end());
    return res;
  }

  // 2. Activation parameters, with the sharing rules.
  UnionFind uf;
  std::set<std::string> pre_activation;  // inputs of Relu/Clip: their negative tail is clipped anyway
  if (!weight_only) {
    for (size_t ni : graph.topo_order()) {
      if (!quantized[ni]) continue;
      const NodeDef& n = graph.nodes()[ni];
      if (n.outputs.empty() || n.inputs.empty()) continue;
      const std::string& out = n.outputs[0];
      if (!act.count(out) || !table->find(out)) continue;  // output not quantized: nothing to share
      if (kPassthroughOps.count(n.op_type)) uf.unite(n.inputs[0], out);
      if (kShareFromOutputOps.count(n.op_type)) {
        for (size_t k : activation_inputs(n)) {
          if (k >= n.inputs.size()) continue;
          const std::string& in = n.inputs[k];
          if (graph.consumers(in).size() != 1 || graph_outputs.count(in) || !act.count(in)) continue;
          uf.unite(in, out);
          if (n.op_type != "Concat") pre_activation.insert(in);
        }
      }
    }
  }
  std::map<std::string, std::pair<double, double>> group_range;
  std::map<std::string, bool> group_has_post;
  for (const auto& t : act) {
    const std::string r = uf.find(t);
    const bool post = !pre_activation.count(t);
    if (post) group_has_post[r] = true;
  }
  for (const auto& t : act) {
    const std::string r = uf.find(t);
    if (pre_activation.count(t) && group_has_post[r]) continue;
    const TensorRange* tr = table->find(t);
    if (!tr) continue;
    auto it = group_range.find(r);
    if (it == group_range.end()) group_range[r] = {tr->range_min, tr->range_max};
    else it->second = {std::min(it->second.first, tr->range_min), std::max(it->second.second, tr->range_max)};
  }
  std::map<std::string, quant::QParams> act_params;
  for (const auto& t : act) {
    auto it = group_range.find(uf.find(t));
    if (it == group_range.end()) return Internal("no range for activation '" + t + "'");
    act_params[t] = activation_params(it->second.first, it->second.second, opts.activation_type);
  }

  // 3. Build the new graph. Generated names are short (a prefix and a counter): the originals are
  // often long paths, and each generated name is written two to four times (initializer, node
  // inputs and outputs), which on small models costs more bytes than int8 storage saves.
  //   activation t:  t -> Q<i> -> q<i> -> DQ<i> -> dq<i> (nodes Q<i>, DQ<i>; one pair per tensor,
  //                  whatever its readers)
  //   weight w:      wq<j> (int8) -> DQ_w<j> -> w (the original name, once the float initializer has
  //                  no reader left), else wdq<j>; biases likewise with bq<j>, DQ_b<j>, bdq<j>
  //   scales, zero points: scale<k>, zp<k>, one initializer per distinct value (SharedParams)
  onnx::GraphProto* g = proto.mutable_graph();
  NameGen names(*g);
  SharedParams params(g, &names);
  int act_count = 0, weight_count = 0, bias_count = 0;
  std::vector<onnx::NodeProto> front;                     // weight/bias DQ and graph-input QDQ
  std::map<std::string, std::vector<onnx::NodeProto>> after;  // QDQ after the producer of a tensor
  std::map<std::string, std::string> dq_name;              // activation -> its dequantized name
  std::vector<std::pair<std::string, std::string>> rename_back;  // weight/bias DQ output -> original name
  const DType at = opts.activation_type;
  for (const auto& t : act) {
    const quant::QParams p = act_params[t];
    const std::string s = params.get("scale", Tensor::scalar<float>(p.scale));
    const std::string z = params.get("zp", zp_tensor(at, p.zero_point, 1, true));
    const std::string i = std::to_string(act_count++);
    const std::string q = names.make("q" + i), dq = names.make("dq" + i);
    std::vector<onnx::NodeProto> pair = {make_node("QuantizeLinear", names.make("Q" + i), {t, s, z}, {q}),
                                         make_node("DequantizeLinear", names.make("DQ" + i), {q, s, z}, {dq})};
    const int64_t prod = graph.producer(t);
    auto& dst = prod >= 0 ? after[t] : front;
    dst.insert(dst.end(), pair.begin(), pair.end());
    dq_name[t] = dq;
  }

  const quant::QRange wrange = opts.reduce_range ? quant::QRange{-63, 63} : quant::kInt8Symmetric;
  std::map<std::string, std::pair<std::string, QuantizedWeight>> wcache;  // weight name + axis -> DQ output
  std::set<std::string> replaced_inits;
  std::map<size_t, std::map<size_t, std::string>> rewires;  // node -> input index -> new name
  for (size_t ni : graph.topo_order()) {
    if (!quantized[ni]) continue;
    const NodeDef& n = graph.nodes()[ni];
    NodeQuantInfo& info = infos[ni];
    for (size_t k : activation_inputs(n)) {
      if (k >= n.inputs.size()) continue;
      auto it = dq_name.find(n.inputs[k]);
      if (it != dq_name.end()) {
        rewires[ni][k] = it->second;
        if (info.input_tensor.empty()) {
          info.input_tensor = n.inputs[k];
          const TensorRange* tr = table->find(n.inputs[k]);
          if (tr) info.input_min = tr->range_min, info.input_max = tr->range_max, info.has_input_range = true;
        }
      }
    }
    if (!kComputeOps.count(n.op_type) || n.inputs.size() < 2 || !is_float_init(n.inputs[1])) continue;
    const std::string& wname = n.inputs[1];
    FRUGAL_ASSIGN_OR_RETURN(Tensor w, initializer_value(wname));
    int axis = per_channel ? weight_channel_axis(n, w.rank()) : -1;
    if (n.op_type == "ConvTranspose" && n.get_int("group", 1) != 1) axis = -1;  // channels interleave groups
    const std::string key = wname + "#" + std::to_string(axis);
    auto wit = wcache.find(key);
    if (wit == wcache.end()) {
      const std::string j = std::to_string(weight_count++);
      const std::string qn = names.make("wq" + j), dn = names.make("wdq" + j);
      QuantizedWeight qw = add_quantized_init(g, qn, w, axis, wrange);  // the cache keeps scales and range
      const bool scalar = axis < 0;
      const int64_t channels = static_cast<int64_t>(qw.scales.size());
      const std::string sn = params.get(
          "scale", scalar ? Tensor::scalar<float>(qw.scales[0]) : Tensor::from_vector<float>({channels}, qw.scales));
      const std::string zn = params.get("zp", zp_tensor(DType::kInt8, 0, qw.scales.size(), scalar));
      front.push_back(make_node("DequantizeLinear", names.make("DQ_w" + j), {qn, sn, zn}, {dn},
                                scalar ? quant_pass::kNoAxis : axis));
      rename_back.emplace_back(dn, wname);
      wit = wcache.emplace(key, std::make_pair(dn, std::move(qw))).first;
      replaced_inits.insert(wname);
    }
    const QuantizedWeight& qw = wit->second.second;
    rewires[ni][1] = wit->second.first;
    info.weight_axis = qw.axis;
    info.weight_min = qw.min;
    info.weight_max = qw.max;

    // Bias: int32, scale s_x * s_w, zero point 0. Needs the input's scale.
    if (weight_only || n.op_type == "MatMul" || n.inputs.size() < 3 || n.inputs[2].empty() || !is_float_init(n.inputs[2]))
      continue;
    auto pit = act_params.find(n.inputs[0]);
    if (pit == act_params.end()) continue;
    FRUGAL_ASSIGN_OR_RETURN(Tensor b, initializer_value(n.inputs[2]));
    const int64_t channels = static_cast<int64_t>(qw.scales.size());
    if (b.rank() != 1 || (channels > 1 && b.numel() != channels)) continue;  // broadcast Gemm C: stays float
    Tensor bf = b.to_float();
    const float* bv = bf.data<float>();
    std::vector<float> bscale(static_cast<size_t>(channels));
    for (int64_t c = 0; c < channels; ++c) bscale[static_cast<size_t>(c)] = pit->second.scale * qw.scales[static_cast<size_t>(c)];
    std::vector<int32_t> bq(static_cast<size_t>(b.numel()));
    for (int64_t i = 0; i < b.numel(); ++i) {
      const float s = bscale[static_cast<size_t>(channels > 1 ? i : 0)];
      bq[static_cast<size_t>(i)] = quant::quantize_value(bv[i], s, 0, quant::kInt32.lo, quant::kInt32.hi);
    }
    const std::string bname = n.inputs[2];
    const std::string j = std::to_string(bias_count++);
    const std::string qn = names.make("bq" + j), dn = names.make("bdq" + j);
    add_init(g, qn, Tensor::from_vector<int32_t>(b.shape(), bq));
    const bool scalar = channels == 1;
    const std::string sn =
        params.get("scale", scalar ? Tensor::scalar<float>(bscale[0]) : Tensor::from_vector<float>({channels}, bscale));
    const std::string zn = params.get("zp", zp_tensor(DType::kInt32, 0, bscale.size(), scalar));
    front.push_back(make_node("DequantizeLinear", names.make("DQ_b" + j), {qn, sn, zn}, {dn},
                              scalar ? quant_pass::kNoAxis : 0));
    rename_back.emplace_back(dn, bname);
    rewires[ni][2] = dn;
    replaced_inits.insert(bname);
  }

  // Tables read by Gather, stored int8 with one scale per row (or one for the table with --per-tensor):
  //   per row:    Gather(tq<j>, idx) -> int8 rows -> Cast(float) ; Gather(ts<j> [N,1,..], idx) -> scales ;
  //               Mul -> the original output (the scales' trailing 1s broadcast over each row)
  //   per tensor: Gather(tq<j>, idx) -> int8 rows -> DequantizeLinear -> the original output
  // Only the rows an inference reads are widened back to float, never the whole table.
  std::map<size_t, std::vector<onnx::NodeProto>> replaced_nodes;
  struct StoredTable {
    std::string q, scale;  // initializer names: int8 table, scales
    QuantizedWeight w;     // axis, range and scales (its q stays empty)
  };
  std::map<std::string, StoredTable> tcache;  // by float table name
  int table_count = 0, lookup_count = 0;
  for (size_t ni : graph.topo_order()) {
    if (!table_rows[ni]) continue;
    const NodeDef& n = graph.nodes()[ni];
    const std::string& tname = n.inputs[0];
    auto tit = tcache.find(tname);
    if (tit == tcache.end()) {
      FRUGAL_ASSIGN_OR_RETURN(Tensor w, initializer_value(tname));
      const std::string j = std::to_string(table_count++);
      const std::string qn = names.make("tq" + j);
      QuantizedWeight qw = add_quantized_init(g, qn, w, per_channel ? 0 : -1, wrange);
      std::string sn;
      if (per_channel) {
        Shape sshape(static_cast<size_t>(w.rank()), 1);
        sshape[0] = w.dim(0);
        sn = names.make("ts" + j);
        add_init(g, sn, Tensor::from_vector<float>(sshape, qw.scales));
      } else {
        sn = params.get("scale", Tensor::scalar<float>(qw.scales[0]));
      }
      tit = tcache.emplace(tname, StoredTable{qn, sn, std::move(qw)}).first;
      replaced_inits.insert(tname);
    }
    const std::string& qn = tit->second.q;
    const std::string& sn = tit->second.scale;
    const std::string j = std::to_string(lookup_count++);
    const std::string rows = names.make("trows" + j);
    onnx::NodeProto gather = g->node(static_cast<int>(ni));
    gather.set_input(0, qn);
    gather.set_output(0, rows);
    std::vector<onnx::NodeProto> chain = {gather};
    if (per_channel) {
      const std::string rf = names.make("trowsf" + j), rs = names.make("tscales" + j);
      onnx::NodeProto cast = make_node("Cast", names.make("Cast_t" + j), {rows}, {rf});
      quant_pass::set_int_attr(&cast, "to", onnx::TensorProto::FLOAT);
      onnx::NodeProto gs = gather;
      gs.set_name(names.make(n.name + "_scales"));
      gs.set_input(0, sn);
      gs.set_output(0, rs);
      chain.push_back(cast);
      chain.push_back(gs);
      chain.push_back(make_node("Mul", names.make("Mul_t" + j), {rf, rs}, {n.outputs[0]}));
    } else {
      const std::string zn = params.get("zp", zp_tensor(DType::kInt8, 0, 1, true));
      chain.push_back(make_node("DequantizeLinear", names.make("DQ_t" + j), {rows, sn, zn}, {n.outputs[0]}));
    }
    replaced_nodes[ni] = std::move(chain);
    NodeQuantInfo& info = infos[ni];
    info.weight_axis = tit->second.w.axis;
    info.weight_min = tit->second.w.min;
    info.weight_max = tit->second.w.max;
  }

  // Node list: front (weights, graph-input QDQ), then each original node followed by its outputs' QDQ.
  std::vector<onnx::NodeProto> old(g->node().begin(), g->node().end());
  g->clear_node();
  for (auto& n : front) *g->add_node() = std::move(n);
  for (size_t i = 0; i < old.size(); ++i) {
    auto rn = replaced_nodes.find(i);
    if (rn != replaced_nodes.end()) {
      for (auto& nd : rn->second) *g->add_node() = std::move(nd);
    } else {
      onnx::NodeProto n = old[i];
      auto rw = rewires.find(i);
      if (rw != rewires.end())
        for (const auto& [k, name] : rw->second) n.set_input(static_cast<int>(k), name);
      *g->add_node() = std::move(n);
    }
    for (const auto& o : old[i].output()) {
      auto a = after.find(o);
      if (a != after.end())
        for (auto& qn : a->second) *g->add_node() = std::move(qn);
    }
  }
  quant_pass::drop_unread_initializers(g, replaced_inits);
  rename_to_dropped_originals(g, rename_back);

  for (size_t ni = 0; ni < infos.size(); ++ni) {
    infos[ni].quantized = quantized[ni] || table_rows[ni];
    if (quantized[ni]) infos[ni].form = weight_only ? "weight-only" : "qdq";
    if (table_rows[ni]) infos[ni].form = "weight-only";
    if (!infos[ni].op_type.empty() && (infos[ni].quantized || !infos[ni].reason.empty())) res.nodes.push_back(infos[ni]);
  }
  if (!plan) quant_pass::fill_from_source(&proto, model, source_graph);
  res.model = Model::from_proto(std::move(proto), model.base_dir());
  if (!plan) quant_pass::share_source_bytes(*res.model, model);
  return res;
}

}  // namespace

int QuantizeResult::quantized_count() const {
  int c = 0;
  for (const auto& n : nodes) c += n.quantized;
  return c;
}

int weight_channel_axis(const NodeDef& node, int64_t rank) {
  if (rank < 2) return -1;
  if (node.op_type == "Conv") return 0;
  if (node.op_type == "ConvTranspose") return 1;
  if (node.op_type == "Gemm") return node.get_int("transB", 0) != 0 ? 0 : 1;
  if (node.op_type == "MatMul") return static_cast<int>(rank - 1);
  return -1;
}

namespace {

// quant::quantize_value(x, s, 0, lo, hi) for an integer range, written so that the loops below
// vectorize (no libm call): the quotient is clamped first, which gives the same result since
// rounding is monotonic and lo, hi are integers, then rounded half to even by adding and subtracting
// 1.5 * 2^23 (exact for |v| < 2^22 in the default rounding mode). NaN stays NaN through the clamp
// (its comparisons are false) and becomes 0, as saturate() makes it.
inline int8_t round_saturate_i8(float x, float s, float lo, float hi) {
  const float v = x / s;
  float y = v < lo ? lo : v;
  y = y > hi ? hi : y;
  y = (y + 12582912.0f) - 12582912.0f;
  return y == y ? static_cast<int8_t>(static_cast<int32_t>(y)) : int8_t{0};
}

// Folds row[0:n) into *am (largest |v|), *lo and *hi, NaN ignored as std::max(*am, |v|),
// std::min(*lo, v) and std::max(*hi, v) ignore it; eight values per step on SSE2 (MAXPS(v, m) is
// std::max(m, v) exactly: the running value wins ties and NaN).
void range_of_row(const float* __restrict row, int64_t n, float* am, float* lo, float* hi) {
  int64_t i = 0;
  float a = *am, l = *lo, h = *hi;
#if defined(__SSE2__)
  if (n >= 8) {
    const __m128 sign = _mm_set1_ps(-0.0f);
    __m128 a0 = _mm_set1_ps(a), a1 = a0, l0 = _mm_set1_ps(l), l1 = l0, h0 = _mm_set1_ps(h), h1 = h0;
    for (; i + 8 <= n; i += 8) {
      const __m128 v0 = _mm_loadu_ps(row + i), v1 = _mm_loadu_ps(row + i + 4);
      a0 = _mm_max_ps(_mm_andnot_ps(sign, v0), a0);
      a1 = _mm_max_ps(_mm_andnot_ps(sign, v1), a1);
      l0 = _mm_min_ps(v0, l0);
      l1 = _mm_min_ps(v1, l1);
      h0 = _mm_max_ps(v0, h0);
      h1 = _mm_max_ps(v1, h1);
    }
    alignas(16) float t[3][8];
    _mm_store_ps(t[0], a0), _mm_store_ps(t[0] + 4, a1);
    _mm_store_ps(t[1], l0), _mm_store_ps(t[1] + 4, l1);
    _mm_store_ps(t[2], h0), _mm_store_ps(t[2] + 4, h1);
    for (int j = 0; j < 8; ++j) a = std::max(a, t[0][j]), l = std::min(l, t[1][j]), h = std::max(h, t[2][j]);
  }
#endif
  for (; i < n; ++i) {
    a = std::max(a, std::fabs(row[i]));
    l = std::min(l, row[i]);
    h = std::max(h, row[i]);
  }
  *am = a, *lo = l, *hi = h;
}

// The same per channel: am[i] = std::max(am[i], |row[i]|), lo[i] = std::min(lo[i], row[i]),
// hi[i] = std::max(hi[i], row[i]) for i < n (one value per channel: a row of a MatMul [K, N] weight).
void range_of_channels(const float* __restrict row, int64_t n, float* __restrict am, float* __restrict lo,
                       float* __restrict hi) {
  int64_t i = 0;
#if defined(__SSE2__)
  const __m128 sign = _mm_set1_ps(-0.0f);
  for (; i + 4 <= n; i += 4) {
    const __m128 v = _mm_loadu_ps(row + i);
    _mm_storeu_ps(am + i, _mm_max_ps(_mm_andnot_ps(sign, v), _mm_loadu_ps(am + i)));
    _mm_storeu_ps(lo + i, _mm_min_ps(v, _mm_loadu_ps(lo + i)));
    _mm_storeu_ps(hi + i, _mm_max_ps(v, _mm_loadu_ps(hi + i)));
  }
#endif
  for (; i < n; ++i) {
    am[i] = std::max(am[i], std::fabs(row[i]));
    lo[i] = std::min(lo[i], row[i]);
    hi[i] = std::max(hi[i], row[i]);
  }
}

// q[i] = round_saturate_i8(x[i], s[i] or s0): unaliased pointers, so the loops vectorize (int8
// stores may otherwise alias everything the loop reads).
void round_row(const float* __restrict x, float s0, int8_t* __restrict q, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) q[i] = round_saturate_i8(x[i], s0, lo, hi);
}
void round_row_per_channel(const float* __restrict x, const float* __restrict s, int8_t* __restrict q, int64_t n,
                           float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) q[i] = round_saturate_i8(x[i], s[i], lo, hi);
}

}  // namespace

QuantizedWeight quantize_weight(const Tensor& w, int axis, quant::QRange range) {
  Tensor q = Tensor::uninitialized(DType::kInt8, w.shape());
  QuantizedWeight out = quantize_weight_to(w, axis, range, q.mut<int8_t>());
  out.q = std::move(q);
  return out;
}

QuantizedWeight quantize_weight_to(const Tensor& w, int axis, quant::QRange range, int8_t* q) {
  QuantizedWeight out;
  out.axis = axis;
  Tensor f = w.to_float();
  const float* x = f.data<float>();
  const int64_t n = f.numel();
  // Layout [outer, channels, inner]; per-tensor is one channel.
  int64_t channels = 1, inner = n;
  if (axis >= 0) {
    channels = f.dim(axis);
    inner = 1;
    for (int64_t d = axis + 1; d < f.rank(); ++d) inner *= f.dim(d);
  }
  const int64_t outer = channels * inner > 0 ? n / (channels * inner) : 0;
  // Per channel: largest |w|, smallest and largest w (NaN ignored: std::max / std::min keep the
  // running value). Channels are split over threads; with one value per channel and row (a MatMul
  // [K, N] weight) the scan runs along the channels.
  const size_t nc = static_cast<size_t>(channels);
  std::vector<float> absmax(nc, 0.0f), lo(nc, n ? x[0] : 0.0f), hi(nc, n ? x[0] : 0.0f);
  const int64_t per_channel = outer * inner;
  parallel_for(channels, std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(per_channel, 1)),
               [&](int64_t c0, int64_t c1) {
                 float* am = absmax.data();
                 float* l = lo.data();
                 float* h = hi.data();
                 for (int64_t o = 0; o < outer; ++o) {
                   if (inner == 1) {
                     range_of_channels(x + o * channels + c0, c1 - c0, am + c0, l + c0, h + c0);
                     continue;
                   }
                   for (int64_t c = c0; c < c1; ++c)
                     range_of_row(x + (o * channels + c) * inner, inner, &am[c], &l[c], &h[c]);
                 }
               });
  out.min = n ? *std::min_element(lo.begin(), lo.end()) : 0.0f;
  out.max = n ? *std::max_element(hi.begin(), hi.end()) : 0.0f;
  out.scales.resize(nc);
  for (size_t c = 0; c < nc; ++c) out.scales[c] = quant::symmetric_params(absmax[c], range).scale;
  // Rows of `inner` elements share a scale; row r is channel r % channels. Split over threads in
  // row ranges of at least ~64K elements (a BERT-base model has 14 M weights to round).
  const int64_t rows = outer * channels;
  const float* scales = out.scales.data();
  const float qlo = static_cast<float>(range.lo), qhi = static_cast<float>(range.hi);
  if (inner == 1) {
    parallel_for(outer, std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(channels, 1)),
                 [&](int64_t o0, int64_t o1) {
                   for (int64_t o = o0; o < o1; ++o)
                     round_row_per_channel(x + o * channels, scales, q + o * channels, channels, qlo, qhi);
                 });
    return out;
  }
  parallel_for(rows, std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(inner, 1)), [&](int64_t r0, int64_t r1) {
    int64_t c = r0 % channels;
    for (int64_t r = r0; r < r1; ++r) {
      round_row(x + r * inner, scales[c], q + r * inner, inner, qlo, qhi);
      if (++c == channels) c = 0;
    }
  });
  return out;
}

quant::QParams activation_params(double range_min, double range_max, DType activation_type) {
  if (activation_type == DType::kInt8)
    return quant::symmetric_params(static_cast<float>(std::max(std::fabs(range_min), std::fabs(range_max))),
                                   quant::kInt8Symmetric);
  return quant::asymmetric_params(static_cast<float>(range_min), static_cast<float>(range_max), quant::kUInt8);
}

StatusOr<QuantizeResult> quantize_static(const Model& model, const CalibrationTable& table, const QuantizeOptions& opts) {
  return quantize_impl(model, &table, opts);
}

StatusOr<std::vector<std::string>> static_quantization_tensors(const Model& model, const QuantizeOptions& opts) {
  std::vector<std::string> tensors;
  FRUGAL_RETURN_IF_ERROR(quantize_impl(model, nullptr, opts, &tensors).status());
  return tensors;
}

namespace quant_pass {

bool selected_by_filters(const NodeDef& n, const QuantizeOptions& opts, std::string* why) {
  if (opts.keep_float.count(n.name)) *why = "kept in float by --max-drop";
  else if (!opts.include.empty() && !matches(opts.include, n)) *why = "not matched by --include";
  else if (matches(opts.exclude, n)) *why = "matched by --exclude";
  else return true;
  return false;
}

StatusOr<QuantizeResult> quantize_weight_only(const Model& model, const QuantizeOptions& opts) {
  return quantize_impl(model, nullptr, opts);
}

}  // namespace quant_pass

}  // namespace frugal
