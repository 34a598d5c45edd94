// Dynamic quantization (no calibration), in one of two forms.
//
// Weight-only (default): int8 weights behind DequantizeLinear, activations stay float. The model
// shrinks about 4x in weights; runtimes fold or fuse the DequantizeLinear as they can.
//
// Integer (the form onnxruntime's quantize_dynamic writes): each MatMul with a constant float [K, N]
// weight, and each Gemm with a constant B (transA=0; alpha folded into the scale, beta into C), becomes
//   DynamicQuantizeLinear(x) -> x_q (uint8), x_scale, x_zp          (one per activation tensor)
//   MatMulInteger(x_q, W_q int8 [K, N], x_zp, w_zp) -> int32       (w_zp: 0, scalar or [N])
//   Cast(to float) ; Mul by (x_scale * w_scale)                    (w_scale: scalar or [N], last axis)
//   [Add C]                                                        (Gemm with a bias)
// so the products run in integers on the activation's own range of each run. Weights are int8
// symmetric (zero point 0, 7-bit with reduce_range), per column of W (axis N) unless per-tensor. The
// compute ops this form does not rewrite (Conv, ConvTranspose, a Gemm or MatMul that does not fit)
// then take the weight-only form, and their node report says why.
#include <algorithm>
#include <array>
#include <map>
#include <set>

#include "frugal/quantize.h"
#include "passes/quantize_internal.h"

namespace frugal {

using quant_pass::add_init;
using quant_pass::make_node;
using quant_pass::NameGen;
using quant_pass::zp_tensor;

namespace {

constexpr const char* kConvReason = "Conv stays weight-only in the integer form (no ConvInteger rewrite)";
constexpr const char* kConvTransposeReason = "ConvTranspose stays weight-only in the integer form (no integer kernel in ONNX)";

// A float [K, N] weight for MatMulInteger: the initializer itself, or B transposed for Gemm transB=1.
Tensor as_k_by_n(const Tensor& w, bool transposed) {
  Tensor f = w.to_float();
  if (!transposed) return f;
  const int64_t n = f.dim(0), k = f.dim(1);
  const float* src = f.data<float>();
  std::vector<float> t(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) t[static_cast<size_t>(j * n + i)] = src[i * k + j];
  return Tensor::from_vector<float>({k, n}, t);
}

struct Plan {
  std::string weight;       // float initializer B
  bool transposed = false;  // Gemm transB=1: B is [N, K]
  float alpha = 1.0f;       // Gemm alpha, folded into the weight scale
  std::string bias;         // tensor added after the scale (Gemm C), empty for none
  float beta = 1.0f;        // Gemm beta; != 1 only when C is a float initializer (scaled copy)
};

// Rewrites the MatMul/Gemm nodes that fit into the integer form. `converted` gets their first outputs,
// `fallback` the reason (by first output tensor) for compute nodes left to the weight-only form.
StatusOr<QuantizeResult> rewrite_integer(const Model& model, const QuantizeOptions& opts, std::set<std::string>& converted,
                                         std::map<std::string, std::string>& fallback) {
  FRUGAL_ASSIGN_OR_RETURN(Graph graph, Graph::build(model));
  QuantizeResult res;
  onnx::ModelProto proto;
  FRUGAL_RETURN_IF_ERROR(quant_pass::begin_pass(model, graph, res, proto));
  // Opset: DynamicQuantizeLinear needs 11; raise to 13 as the weight-only form does (per-channel
  // DequantizeLinear for the Conv weights it keeps).
  int opset = res.opset_before;
  if (opset < 13) {
    Status st = quant_pass::try_raise_to_opset13(proto, opset, "DynamicQuantizeLinear needs 11, per-channel DequantizeLinear 13", res);
    if (!st.ok() && opset < 11) {
      return Unsupported("the integer dynamic form needs opset >= 11 (DynamicQuantizeLinear) and the model (opset " +
                         std::to_string(opset) + ") cannot be raised: " + st.message() +
                         "; use --dynamic-form weight-only");
    }
  }
  res.opset_after = opset;
  auto work = Model::from_proto(proto, model.base_dir());
  const Graph source_graph = std::move(graph);  // indexes `model`, whose initializers hold the bytes
  FRUGAL_ASSIGN_OR_RETURN(graph, Graph::build(*work));
  auto initializer_value = [&](const std::string& name) {
    return quant_pass::initializer_value(model, source_graph, *work, graph, name);
  };
  auto float_init = [&](const std::string& name) -> const onnx::TensorProto* {
    const onnx::TensorProto* t = name.empty() ? nullptr : graph.initializer(name);
    return t && t->data_type() == onnx::TensorProto::FLOAT ? t : nullptr;
  };

  // 1. Choose nodes.
  std::map<size_t, Plan> plans;
  for (size_t ni : graph.topo_order()) {
    const NodeDef& n = graph.nodes()[ni];
    if (!n.domain.empty() || n.outputs.empty()) continue;
    std::string why;
    if (!quant_pass::selected_by_filters(n, opts, &why)) continue;  // the weight-only pass reports it
    const std::string& out = n.outputs[0];
    if (n.op_type == "Conv") { fallback[out] = kConvReason; continue; }
    if (n.op_type == "ConvTranspose") { fallback[out] = kConvTransposeReason; continue; }
    if (n.op_type != "MatMul" && n.op_type != "Gemm") continue;
    if (n.inputs.size() < 2 || n.inputs[0].empty()) continue;
    const onnx::TensorProto* w = float_init(n.inputs[1]);
    if (!w) continue;  // not a constant weight: the weight-only pass reports it
    const std::string kind = n.op_type;
    if (w->dims_size() != 2) {
      fallback[out] = kind + " weight of rank " + std::to_string(w->dims_size()) +
                      ": the integer form takes [K, N] weights only; weight-only instead";
      continue;
    }
    if (graph.initializer(n.inputs[0])) {
      fallback[out] = kind + " on two constants: weight-only instead of the integer form";
      continue;
    }
    Plan p;
    p.weight = n.inputs[1];
    if (n.op_type == "Gemm") {
      if (n.get_int("transA", 0) != 0) {
        fallback[out] = "Gemm with transA=1 stays weight-only (MatMulInteger has no transpose)";
        continue;
      }
      p.transposed = n.get_int("transB", 0) != 0;
      p.alpha = n.get_float("alpha", 1.0f);
      const std::string c = n.inputs.size() > 2 ? n.inputs[2] : "";
      const float beta = n.get_float("beta", 1.0f);
      if (!c.empty() && beta != 0.0f) {
        if (beta != 1.0f && !float_init(c)) {
          fallback[out] = "Gemm with beta != 1 on a computed or non-float C stays weight-only";
          continue;
        }
        p.bias = c;
        p.beta = beta;
      }
    }
    plans[ni] = p;
  }

  // 2. Build the new nodes.
  onnx::GraphProto* g = proto.mutable_graph();
  NameGen names(*g);
  const quant::QRange wrange = opts.reduce_range ? quant::QRange{-63, 63} : quant::kInt8Symmetric;
  struct QW {
    std::string q, scale, zp;
    QuantizedWeight w;
  };
  std::map<std::string, QW> wcache;                            // weight name + layout -> its int8 form
  std::map<std::string, std::array<std::string, 3>> dql;       // activation -> (x_q, x_scale, x_zp)
  std::map<size_t, std::vector<onnx::NodeProto>> replacement;  // node index -> nodes written in its place
  std::set<std::string> replaced_inits;
  std::vector<NodeQuantInfo> infos;
  for (const auto& [ni, p] : plans) {
    const NodeDef& n = graph.nodes()[ni];
    std::vector<onnx::NodeProto>& dst = replacement[ni];
    const std::string& x = n.inputs[0];
    const std::string& out = n.outputs[0];
    const std::string base = n.name.empty() ? out : n.name;

    // Activation: one DynamicQuantizeLinear per tensor, written before its first converted reader
    // (plans iterate in node order, which is topological).
    auto dit = dql.find(x);
    if (dit == dql.end()) {
      std::array<std::string, 3> o = {names.make(x + "_quantized"), names.make(x + "_scale"),
                                       names.make(x + "_zero_point")};
      dst.push_back(make_node("DynamicQuantizeLinear", names.make(x + "_DynamicQuantizeLinear"), {x},
                              {o[0], o[1], o[2]}));
      dit = dql.emplace(x, o).first;
    }
    const auto& [xq, xs, xz] = dit->second;

    // Weight: int8 [K, N], per column (axis 1) or per tensor.
    const int axis = opts.per_channel ? 1 : -1;
    const std::string key = p.weight + (p.transposed ? "#T" : "#") + std::to_string(axis);
    auto wit = wcache.find(key);
    if (wit == wcache.end()) {
      FRUGAL_ASSIGN_OR_RETURN(Tensor w, initializer_value(p.weight));
      QW qw;
      qw.w = quantize_weight(as_k_by_n(w, p.transposed), axis, wrange);
      const std::string stem = p.weight + (p.transposed ? "_transposed" : "");
      qw.q = names.make(stem + "_quantized");
      qw.scale = names.make(stem + "_scale");
      qw.zp = names.make(stem + "_zero_point");
      const bool scalar = axis < 0;
      const int64_t cols = static_cast<int64_t>(qw.w.scales.size());
      add_init(g, qw.q, qw.w.q);
      add_init(g, qw.scale, scalar ? Tensor::scalar<float>(qw.w.scales[0]) : Tensor::from_vector<float>({cols}, qw.w.scales));
      add_init(g, qw.zp, zp_tensor(DType::kInt8, 0, qw.w.scales.size(), scalar));
      wit = wcache.emplace(key, std::move(qw)).first;
      replaced_inits.insert(p.weight);
    }
    const QW& qw = wit->second;
    std::string wscale = qw.scale;
    if (p.alpha != 1.0f) {  // Gemm alpha: a scaled copy of the weight scale for this node
      std::vector<float> s = qw.w.scales;
      for (float& v : s) v *= p.alpha;
      wscale = names.make(base + "_alpha_scale");
      add_init(g, wscale, s.size() == 1 && axis < 0 ? Tensor::scalar<float>(s[0])
                                                    : Tensor::from_vector<float>({static_cast<int64_t>(s.size())}, s));
    }

    const std::string acc = names.make(out + "_int32"), accf = names.make(out + "_int32_float");
    const std::string scale = names.make(out + "_scale");
    dst.push_back(make_node("MatMulInteger", names.make(base + "_MatMulInteger"), {xq, qw.q, xz, qw.zp}, {acc}));
    onnx::NodeProto cast = make_node("Cast", names.make(base + "_Cast"), {acc}, {accf});
    quant_pass::set_int_attr(&cast, "to", onnx::TensorProto::FLOAT);
    dst.push_back(std::move(cast));
    dst.push_back(make_node("Mul", names.make(base + "_scale_Mul"), {xs, wscale}, {scale}));
    if (p.bias.empty()) {
      dst.push_back(make_node("Mul", names.make(base + "_Mul"), {accf, scale}, {out}));
    } else {
      const std::string scaled = names.make(out + "_unbiased");
      dst.push_back(make_node("Mul", names.make(base + "_Mul"), {accf, scale}, {scaled}));
      std::string c = p.bias;
      if (p.beta != 1.0f) {  // beta * C folded into a new initializer (C is a float initializer here)
        FRUGAL_ASSIGN_OR_RETURN(Tensor ct, initializer_value(p.bias));
        Tensor cf = ct.to_float();
        std::vector<float> v(cf.data<float>(), cf.data<float>() + cf.numel());
        for (float& e : v) e *= p.beta;
        c = names.make(p.bias + "_beta");
        add_init(g, c, Tensor::from_vector<float>(cf.shape(), v));
        replaced_inits.insert(p.bias);
      }
      dst.push_back(make_node("Add", names.make(base + "_bias_Add"), {scaled, c}, {out}));
    }

    NodeQuantInfo info;
    info.name = n.name;
    info.op_type = n.op_type;
    info.quantized = true;
    info.form = "integer";
    info.weight_axis = axis < 0 ? -1 : (p.transposed ? 0 : 1);  // axis of the original weight
    info.weight_min = qw.w.min;
    info.weight_max = qw.w.max;
    info.input_tensor = x;
    info.output_tensor = out;
    infos.push_back(info);
    converted.insert(out);
  }

  // 3. Node list: each converted node replaced in place by its chain (DynamicQuantizeLinear first).
  std::vector<onnx::NodeProto> old(g->node().begin(), g->node().end());
  g->clear_node();
  for (size_t i = 0; i < old.size(); ++i) {
    auto r = replacement.find(i);
    if (r == replacement.end()) {
      *g->add_node() = std::move(old[i]);
      continue;
    }
    for (auto& nd : r->second) *g->add_node() = std::move(nd);
  }
  quant_pass::drop_unread_initializers(g, replaced_inits);

  res.nodes = std::move(infos);
  quant_pass::fill_from_source(&proto, model, source_graph);
  res.model = Model::from_proto(std::move(proto), model.base_dir());
  quant_pass::share_source_bytes(*res.model, model);
  return res;
}

StatusOr<QuantizeResult> quantize_integer(const Model& model, const QuantizeOptions& opts) {
  FRUGAL_ASSIGN_OR_RETURN(Graph orig, Graph::build(model));
  std::set<std::string> converted;  // first outputs of the rewritten nodes (unchanged by the opset upgrade)
  std::map<std::string, std::string> fallback;
  FRUGAL_ASSIGN_OR_RETURN(QuantizeResult r1, rewrite_integer(model, opts, converted, fallback));
  // The rest (Conv, excluded nodes, what did not fit) goes through the weight-only pass, which also
  // reports the nodes it skips. Node outputs are unique, so its report maps back by output tensor.
  FRUGAL_ASSIGN_OR_RETURN(QuantizeResult r2, quant_pass::quantize_weight_only(*r1.model, opts));

  std::map<std::string, size_t> position;  // first output -> topological position in the original
  for (size_t k = 0; k < orig.topo_order().size(); ++k) {
    const NodeDef& n = orig.nodes()[orig.topo_order()[k]];
    if (!n.outputs.empty()) position[n.outputs[0]] = k;
  }
  std::vector<std::pair<size_t, NodeQuantInfo>> merged;
  for (auto& n : r1.nodes) merged.emplace_back(position.at(n.output_tensor), std::move(n));
  int weight_only = 0;
  for (auto& n : r2.nodes) {
    auto pit = position.find(n.output_tensor);
    if (pit == position.end() || converted.count(n.output_tensor)) continue;  // nodes this pass wrote
    if (n.quantized) {
      ++weight_only;
      auto f = fallback.find(n.output_tensor);
      if (f != fallback.end()) n.reason = f->second;
    }
    merged.emplace_back(pit->second, std::move(n));
  }
  std::stable_sort(merged.begin(), merged.end(), [](const auto& a, const auto& b) { return a.first < b.first; });

  QuantizeResult res;
  res.model = r2.model;
  for (auto& [pos, n] : merged) res.nodes.push_back(std::move(n));
  res.opset_before = r1.opset_before;
  res.opset_after = r2.opset_after;
  res.notes = r1.notes;
  res.notes.insert(res.notes.end(), r2.notes.begin(), r2.notes.end());
  res.notes.push_back("dynamic, integer form: " + std::to_string(converted.size()) +
                      " MatMul/Gemm as DynamicQuantizeLinear + MatMulInteger (activations quantized per run), " +
                      std::to_string(weight_only) + " node(s) weight-only");
  return res;
}

}  // namespace

const char* dynamic_form_name(DynamicForm f) { return f == DynamicForm::kInteger ? "integer" : "weight-only"; }

StatusOr<QuantizeResult> quantize_dynamic(const Model& model, const QuantizeOptions& opts) {
  QuantizeOptions o = opts;
  o.dynamic = true;
  if (o.dynamic_form == DynamicForm::kInteger) return quantize_integer(model, o);
  FRUGAL_ASSIGN_OR_RETURN(QuantizeResult r, quant_pass::quantize_weight_only(model, o));
  r.notes.push_back("dynamic: weight-only int8 (DequantizeLinear on weights); activations stay float");
  return r;
}

}  // namespace frugal
