// CostModel: per-node MACs, FLOPs, bytes and weight sparsity; the model walk that gathers shapes.
#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <type_traits>

#include "frugal/energy.h"
#include "frugal/executor.h"

namespace frugal {

namespace {

double numel_d(const Shape& s) {
  double n = 1;
  for (int64_t d : s) n *= static_cast<double>(std::max<int64_t>(d, 0));
  return n;
}

double prod_from(const Shape& s, size_t start) {
  double n = 1;
  for (size_t i = start; i < s.size(); ++i) n *= static_cast<double>(s[i]);
  return n;
}

bool is_8bit(DType t) { return t == DType::kInt8 || t == DType::kUInt8; }

std::string dtype_label(DType t) {
  switch (t) {
    case DType::kFloat: return "fp32";
    case DType::kFloat16: return "fp16";
    case DType::kBFloat16: return "bf16";
    case DType::kDouble: return "fp64";
    case DType::kInt8:
    case DType::kUInt8: return "int8";
    default: return "other";
  }
}

// Arithmetic per output element for elementwise-like ops. Rough but stated in docs/formats/energy.md:
// transcendental functions count a few operations, comparisons and selects one.
const std::map<std::string, double>& elementwise_flops() {
  static const std::map<std::string, double> m = {
      {"Add", 1},        {"Sub", 1},         {"Mul", 1},       {"Div", 1},      {"Max", 1},
      {"Min", 1},        {"Mean", 1},        {"Pow", 1},       {"Neg", 1},      {"Abs", 1},
      {"Sqrt", 1},       {"Reciprocal", 1},  {"Exp", 1},       {"Log", 1},      {"Floor", 1},
      {"Ceil", 1},       {"Round", 1},       {"Sign", 1},      {"Mod", 1},      {"Equal", 1},
      {"Less", 1},       {"Greater", 1},     {"LessOrEqual", 1}, {"GreaterOrEqual", 1},
      {"And", 1},        {"Or", 1},          {"Xor", 1},       {"Not", 1},      {"Where", 1},
      {"Cast", 1},       {"IsNaN", 1},       {"IsInf", 1},     {"BitShift", 1}, {"Sin", 1},
      {"Cos", 1},        {"Erf", 4},         {"Sum", 1},
  };
  return m;
}

const std::map<std::string, double>& activation_flops() {
  static const std::map<std::string, double> m = {
      {"Relu", 1},     {"LeakyRelu", 2},   {"PRelu", 2},      {"Clip", 2},     {"Sigmoid", 4},
      {"Tanh", 4},     {"HardSigmoid", 3}, {"HardSwish", 4},  {"Softplus", 3}, {"Softsign", 3},
      {"Elu", 3},      {"Selu", 3},        {"Celu", 3},       {"ThresholdedRelu", 1},
      {"Gelu", 8},     {"Mish", 6},        {"Swish", 5},      {"Shrink", 2},   {"Softmax", 5},
      {"LogSoftmax", 5}, {"Hardmax", 2},
  };
  return m;
}

const std::set<std::string>& view_ops() {
  static const std::set<std::string> s = {"Reshape", "Flatten",  "Squeeze", "Unsqueeze", "Identity",
                                          "Dropout", "Shape",    "Size",    "Constant",  "ConstantOfShape",
                                          "EyeLike", "Range"};
  return s;
}

const std::set<std::string>& movement_ops() {
  static const std::set<std::string> s = {
      "Transpose", "Concat",      "Split",       "Slice",     "Gather",   "GatherElements", "GatherND",
      "Pad",       "Tile",        "Expand",      "DepthToSpace", "SpaceToDepth", "ScatterND", "ScatterElements",
      "Compress",  "ReverseSequence", "Trilu",   "OneHot",    "NonZero",  "TopK",           "Unique",
      "SplitToSequence", "SequenceAt", "Col2Im", "CenterCropPad"};
  return s;
}

}  // namespace

bool is_2_4_sparse(const Tensor& w, int64_t axis, double zero) {
  if (!w.defined() || w.rank() == 0) return false;
  if (axis < 0) axis += w.rank();
  if (axis < 0 || axis >= w.rank()) return false;
  const int64_t len = w.dim(axis);
  if (len == 0 || len % 4 != 0) return false;
  Tensor f = w.dtype() == DType::kFloat ? w : w.to_float();
  const float* p = f.data<float>();
  const float z = static_cast<float>(zero);
  int64_t inner = 1;
  for (int64_t d = axis + 1; d < w.rank(); ++d) inner *= w.dim(d);
  const int64_t outer = w.numel() / (len * inner);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const float* base = p + o * len * inner + i;
      for (int64_t g = 0; g < len; g += 4) {
        int zeros = 0;
        for (int64_t k = 0; k < 4; ++k) zeros += base[(g + k) * inner] == z;
        if (zeros < 2) return false;
      }
    }
  return true;
}

StatusOr<NodeCost> node_cost(const NodeDef& node, const std::vector<CostInput>& inputs,
                             const std::vector<CostOutput>& outputs) {
  NodeCost c;
  c.name = node.name;
  c.op_type = node.op_type;
  const std::string& op = node.op_type;
  auto in = [&](size_t i) -> const CostInput* {
    return i < inputs.size() && inputs[i].dtype != DType::kUndefined ? &inputs[i] : nullptr;
  };
  auto need = [&](size_t i, size_t min_rank) -> StatusOr<const CostInput*> {
    const CostInput* p = in(i);
    if (!p) return node.error(StatusCode::kInvalidModel, "input " + std::to_string(i) + " has no known shape");
    if (p->shape.size() < min_rank)
      return node.error(StatusCode::kInvalidModel, "input " + std::to_string(i) + " has shape " +
                                                       shape_str(p->shape) + ", rank " + std::to_string(min_rank) +
                                                       " or more expected");
    return p;
  };
  const Shape out0 = outputs.empty() ? Shape{} : outputs[0].shape;
  const DType out_dtype = outputs.empty() ? DType::kUndefined : outputs[0].dtype;

  // ---- MAC ops ----
  const CostInput* act = nullptr;  // activation operand of a MAC op
  const CostInput* wt = nullptr;   // weight (second) operand
  int64_t reduction_axis = 0;      // of the weight, for 2:4 detection (recorded by the caller)
  (void)reduction_axis;
  bool integer_op = false;
  if (op == "Conv" || op == "ConvInteger" || op == "QLinearConv") {
    const size_t wi = op == "QLinearConv" ? 3 : 1;
    FRUGAL_ASSIGN_OR_RETURN(act, need(0, 3));
    FRUGAL_ASSIGN_OR_RETURN(wt, need(wi, 3));
    if (out0.size() < 3) return node.error(StatusCode::kInvalidModel, "output shape " + shape_str(out0) + " has rank < 3");
    // N * Cout * prod(out spatial) * (Cin/group) * prod(kernel); W is [Cout, Cin/group, k...].
    c.macs = static_cast<double>(out0[0]) * static_cast<double>(out0[1]) * prod_from(out0, 2) *
             static_cast<double>(wt->shape[1]) * prod_from(wt->shape, 2);
    c.family = "conv";
    integer_op = op != "Conv";
    if (op == "Conv" && in(2)) c.flops += numel_d(out0);  // bias add
  } else if (op == "ConvTranspose") {
    FRUGAL_ASSIGN_OR_RETURN(act, need(0, 3));
    FRUGAL_ASSIGN_OR_RETURN(wt, need(1, 3));
    // N * Cin * prod(in spatial) * (Cout/group) * prod(kernel); W is [Cin, Cout/group, k...].
    c.macs = static_cast<double>(act->shape[0]) * static_cast<double>(act->shape[1]) * prod_from(act->shape, 2) *
             static_cast<double>(wt->shape[1]) * prod_from(wt->shape, 2);
    c.family = "conv";
    if (in(2)) c.flops += numel_d(out0);
  } else if (op == "Gemm") {
    FRUGAL_ASSIGN_OR_RETURN(act, need(0, 2));
    FRUGAL_ASSIGN_OR_RETURN(wt, need(1, 2));
    const int64_t k = node.get_int("transA", 0) ? act->shape[0] : act->shape[1];
    c.macs = numel_d(out0) * static_cast<double>(k);  // M * N * K
    c.family = "matmul";
    if (in(2)) c.flops += numel_d(out0);
  } else if (op == "MatMul" || op == "MatMulInteger" || op == "QLinearMatMul") {
    const size_t bi = op == "QLinearMatMul" ? 3 : 1;
    FRUGAL_ASSIGN_OR_RETURN(act, need(0, 1));
    FRUGAL_ASSIGN_OR_RETURN(wt, need(bi, 1));
    // Per batch M * N * K: every output element is a dot product of length K (broadcast batches
    // included, since the output shape already has them).
    c.macs = numel_d(out0) * static_cast<double>(act->shape.back());
    c.family = "matmul";
    integer_op = op != "MatMul";
  } else if (op == "LSTM" || op == "GRU" || op == "RNN") {
    FRUGAL_ASSIGN_OR_RETURN(act, need(0, 3));
    FRUGAL_ASSIGN_OR_RETURN(wt, need(1, 3));
    FRUGAL_ASSIGN_OR_RETURN(const CostInput* r, need(2, 3));
    // seq * batch * directions * gates*hidden * (input + hidden)
    c.macs = static_cast<double>(act->shape[0]) * static_cast<double>(act->shape[1]) *
             static_cast<double>(wt->shape[0]) * static_cast<double>(wt->shape[1]) *
             static_cast<double>(wt->shape[2] + r->shape[2]);
    c.flops = static_cast<double>(act->shape[0]) * static_cast<double>(act->shape[1]) *
              static_cast<double>(wt->shape[0]) * static_cast<double>(wt->shape[1]) * 6;
    c.family = "rnn";
  }

  if (c.family == "conv" || c.family == "matmul" || c.family == "rnn") {
    if (integer_op) {
      c.compute_dtype = "int8";
    } else {
      auto eight = [](const CostInput* p) {
        return is_8bit(p->quantized_from) || (p->is_weight && is_8bit(p->stored_dtype));
      };
      // QDQ: both operands dequantized from 8 bits -> the runtime runs the op in int8, accumulating in int32.
      c.compute_dtype = eight(act) && eight(wt) ? "int8" : dtype_label(act->dtype);
    }
    const CostInput* w = wt->is_weight ? wt : (act->is_weight ? act : nullptr);
    if (w && w->zeros >= 0 && numel_d(w->shape) > 0) {
      c.weight_zero_fraction = static_cast<double>(w->zeros) / numel_d(w->shape);
      c.pattern_2_4 = w->pattern_2_4;
    }
  } else if (op == "QuantizeLinear" || op == "DequantizeLinear" || op == "DynamicQuantizeLinear") {
    c.family = "quant";
    c.flops = numel_d(out0) * 2;
    c.fused = true;
  } else if (view_ops().count(op)) {
    c.family = "view";
  } else if (movement_ops().count(op)) {
    c.family = "movement";
  } else if (auto it = activation_flops().find(op); it != activation_flops().end()) {
    c.family = "activation";
    c.flops = numel_d(out0) * it->second;
  } else if (auto it2 = elementwise_flops().find(op); it2 != elementwise_flops().end()) {
    c.family = "elementwise";
    double n_in = 0;
    for (const auto& i : inputs) n_in += i.dtype != DType::kUndefined;
    // Variadic Sum/Max/Min/Mean: n-1 operations per element.
    const double per = (op == "Sum" || op == "Max" || op == "Min" || op == "Mean") ? std::max(1.0, n_in - 1) : it2->second;
    c.flops = numel_d(out0) * per;
  } else if (op == "BatchNormalization") {
    c.family = "norm";
    c.flops = numel_d(out0) * 2;  // folded scale and shift at inference
  } else if (op == "LayerNormalization" || op == "InstanceNormalization" || op == "GroupNormalization" ||
             op == "MeanVarianceNormalization" || op == "LpNormalization" || op == "RMSNormalization" ||
             op == "SimplifiedLayerNormalization" || op == "SkipLayerNormalization") {
    c.family = "norm";
    c.flops = numel_d(out0) * 8;
  } else if (op == "LRN") {
    c.family = "norm";
    c.flops = numel_d(out0) * (2.0 * static_cast<double>(node.get_int("size", 1)) + 3);
  } else if (op == "MaxPool" || op == "AveragePool" || op == "LpPool") {
    c.family = "pool";
    auto k = node.get_ints("kernel_shape");
    double kn = 1;
    for (int64_t v : k) kn *= static_cast<double>(v);
    c.flops = numel_d(out0) * kn;
  } else if (op == "GlobalAveragePool" || op == "GlobalMaxPool" || op == "GlobalLpPool") {
    c.family = "pool";
    c.flops = in(0) ? numel_d(in(0)->shape) : 0;
  } else if (op.rfind("Reduce", 0) == 0 || op == "ArgMax" || op == "ArgMin" || op == "CumSum") {
    c.family = "reduce";
    c.flops = in(0) ? numel_d(in(0)->shape) : 0;
  } else if (op == "Resize" || op == "Upsample" || op == "GridSample" || op == "RoiAlign") {
    c.family = "resize";
    c.flops = numel_d(out0) * (node.get_string("mode", "nearest") == "nearest" ? 1 : 4);
  } else if (op == "Einsum") {
    c.family = "matmul";  // contraction size is not derivable from shapes alone; counted as FLOPs
    c.flops = numel_d(out0);
  } else {
    c.family = "other";
    c.flops = numel_d(out0);
  }
  if (c.compute_dtype.empty()) c.compute_dtype = dtype_label(out_dtype != DType::kUndefined ? out_dtype : DType::kFloat);

  // ---- bytes ----
  if (c.family == "view" || c.fused) return c;  // metadata only / fused into the neighbouring ops
  for (size_t k = 0; k < inputs.size(); ++k) {
    const CostInput& i = inputs[k];
    if (i.dtype == DType::kUndefined) continue;
    const double n = numel_d(i.shape);
    if (i.is_weight && k == 0 && c.family == "movement" && !outputs.empty() && dtype_is_float(i.dtype)) {
      // An embedding table (Gather) or a sliced constant: a parameter, but a run reads only the rows it
      // selects, i.e. as many bytes as it writes.
      const DType st = i.stored_dtype != DType::kUndefined ? i.stored_dtype : i.dtype;
      c.params += static_cast<int64_t>(n);
      c.weight_bytes += static_cast<double>(storage_bytes(st, static_cast<int64_t>(numel_d(out0))));
      continue;
    }
    if (i.is_weight) {
      const DType st = i.stored_dtype != DType::kUndefined ? i.stored_dtype : i.dtype;
      c.weight_bytes += static_cast<double>(storage_bytes(st, static_cast<int64_t>(n)));
      // Parameters are numeric operands of computing ops, not shape/index inputs.
      if (c.family != "movement" && st != DType::kInt64) c.params += static_cast<int64_t>(n);
    } else {
      const DType t = is_8bit(i.quantized_from) ? i.quantized_from : i.dtype;
      c.act_read_bytes += static_cast<double>(storage_bytes(t, static_cast<int64_t>(n)));
    }
  }
  for (const auto& o : outputs) {
    if (o.dtype == DType::kUndefined) continue;
    const DType t = o.quantized_consumers ? DType::kInt8 : o.dtype;
    c.act_write_bytes += static_cast<double>(storage_bytes(t, static_cast<int64_t>(numel_d(o.shape))));
  }
  return c;
}

// ---- the model walk --------------------------------------------------------------------------------

namespace {

// Which tensors are constant (initializers, or computed from constants only) and how weights are stored.
struct GraphFacts {
  std::set<std::string> constant;
  std::vector<bool> folded;  // by node index
};

GraphFacts graph_facts(const Graph& g) {
  GraphFacts f;
  for (const auto& kv : g.initializers()) f.constant.insert(kv.first);
  std::set<std::string> inputs;
  for (const auto& vi : g.inputs()) inputs.insert(vi.name);
  f.folded.assign(g.nodes().size(), false);
  for (size_t ni : g.topo_order()) {
    const NodeDef& n = g.nodes()[ni];
    bool all_const = true;
    for (const auto& in : n.inputs)
      if (!in.empty() && !f.constant.count(in)) all_const = false;
    // A node without inputs (Constant) is constant too, except random generators.
    if (n.op_type.rfind("Random", 0) == 0) all_const = false;
    if (all_const) {
      f.folded[ni] = true;
      for (const auto& o : n.outputs)
        if (!o.empty()) f.constant.insert(o);
    }
  }
  return f;
}

int64_t weight_reduction_axis(const NodeDef& n, size_t input_index, int64_t rank) {
  const std::string& op = n.op_type;
  if (op == "Conv" || op == "ConvInteger" || op == "QLinearConv") return 1;
  if (op == "ConvTranspose") return 0;
  if (op == "Gemm") {
    if (input_index == 1) return n.get_int("transB", 0) ? 1 : 0;
    return n.get_int("transA", 0) ? 0 : 1;
  }
  // MatMul: B [.., K, N] reduces over axis -2, A [.., M, K] over -1.
  bool is_b = (op == "QLinearMatMul") ? input_index == 3 : input_index == 1;
  if (is_b) return rank >= 2 ? rank - 2 : 0;
  return rank - 1;
}

class CostBuilder {
 public:
  CostBuilder(const Model& model, const Graph& graph) : model_(model), graph_(graph), facts_(graph_facts(graph)) {}

  void record(const std::string& name, const Shape& s, DType t) { shapes_[name] = {s, t}; }

  DType stored_dtype(const std::string& name) const {
    if (const auto* init = graph_.initializer(name)) return static_cast<DType>(init->data_type());
    int64_t p = graph_.producer(name);
    if (p >= 0) {
      const NodeDef& n = graph_.nodes()[static_cast<size_t>(p)];
      static const std::set<std::string> pass = {"DequantizeLinear", "Identity", "Reshape", "Transpose",
                                                 "Squeeze", "Unsqueeze", "Flatten"};
      if (pass.count(n.op_type) && !n.inputs.empty() && facts_.constant.count(n.inputs[0]))
        return stored_dtype(n.inputs[0]);
    }
    auto it = shapes_.find(name);
    return it != shapes_.end() ? it->second.second : DType::kUndefined;
  }

  DType quantized_from(const std::string& name) const {
    int64_t p = graph_.producer(name);
    if (p < 0) return DType::kUndefined;
    const NodeDef& n = graph_.nodes()[static_cast<size_t>(p)];
    if (n.op_type != "DequantizeLinear" || n.inputs.empty()) return DType::kUndefined;
    auto it = shapes_.find(n.inputs[0]);
    DType t = it != shapes_.end() ? it->second.second : DType::kUndefined;
    return is_8bit(t) ? t : DType::kUndefined;
  }

  bool quantized_consumers(const std::string& name) const {
    const auto& cons = graph_.consumers(name);
    if (cons.empty()) return false;
    for (size_t ci : cons) {
      const NodeDef& n = graph_.nodes()[ci];
      if (n.op_type != "QuantizeLinear") return false;
    }
    return true;
  }

  // An initializer's values: in place when its bytes are inline raw_data (the model outlives the
  // builder), else a decoded copy. Undefined when it cannot be read.
  Tensor initializer_value(const onnx::TensorProto& proto) const {
    if (auto v = tensor_view_of_proto(proto, nullptr)) return std::move(*v);
    auto c = model_.initializer(proto);
    return c.ok() ? std::move(c).value() : Tensor();
  }

  // Without a run, the value of a constant tensor as far as sparsity counts need it: initializers,
  // Constant nodes' tensors, DequantizeLinear of integer initializers (its zero pattern, below), and
  // those reshaped by Reshape/Flatten/Squeeze/Unsqueeze/Identity. Undefined otherwise.
  Tensor constant_value(const std::string& name, int depth = 0) const {
    if (const auto* init = graph_.initializer(name)) return initializer_value(*init);
    const int64_t p = graph_.producer(name);
    if (p < 0 || depth > 8) return {};
    const NodeDef& n = graph_.nodes()[static_cast<size_t>(p)];
    if (n.op_type == "Constant") {
      auto it = n.attrs.find("value");
      return it != n.attrs.end() && it->second.kind == Attribute::Kind::kTensor ? it->second.t : Tensor();
    }
    if (n.op_type == "DequantizeLinear") return dequantized_zero_pattern(n);
    static const std::set<std::string> reshapes = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"};
    if (reshapes.count(n.op_type) && !n.inputs.empty()) {
      Tensor in = constant_value(n.inputs[0], depth + 1);
      auto it = shapes_.find(name);
      if (in.defined() && it != shapes_.end() && shape_numel(it->second.first) == in.numel())
        return in.reshaped(it->second.first);
    }
    return {};
  }

  // Without a run, a weight computed by DequantizeLinear (node n) from integer initializers has no value; its
  // zeros are where q == zero point (or the scale is 0). Returns a uint8 tensor with that zero pattern
  // (1 elsewhere), which is all the sparsity counts read; undefined when the form is not covered
  // (blocked quantization, non-initializer operands).
  Tensor dequantized_zero_pattern(const NodeDef& n) const {
    if (n.inputs.size() < 2 || n.get_int("block_size", 0) != 0) return {};
    auto value_of = [&](size_t k) -> Tensor {
      if (k >= n.inputs.size() || n.inputs[k].empty()) return {};
      const auto* init = graph_.initializer(n.inputs[k]);
      return init ? initializer_value(*init) : Tensor();
    };
    const Tensor q = value_of(0), scale = value_of(1), zp = value_of(2);
    if (!q.defined() || !scale.defined() || !dtype_is_integer(q.dtype())) return {};
    if (n.inputs.size() > 2 && !n.inputs[2].empty() && !zp.defined()) return {};
    const std::vector<double> sv = scale.to_double_vector();
    const std::vector<double> zv = zp.defined() ? zp.to_double_vector() : std::vector<double>{0.0};
    // Per-axis parameters run along `axis`; a single value applies everywhere.
    int64_t axis = n.get_int("axis", 1);
    if (axis < 0) axis += q.rank();
    int64_t inner = 1, dim = 1;
    if (sv.size() > 1 || zv.size() > 1) {
      if (axis < 0 || axis >= q.rank()) return {};
      dim = q.dim(axis);
      for (int64_t d = axis + 1; d < q.rank(); ++d) inner *= q.dim(d);
      if ((sv.size() != 1 && static_cast<int64_t>(sv.size()) != dim) ||
          (zv.size() != 1 && static_cast<int64_t>(zv.size()) != dim))
        return {};
    }
    Tensor out = Tensor::uninitialized(DType::kUInt8, q.shape());  // 0 or 1: a quarter of a float copy
    uint8_t* o = out.mut<uint8_t>();
    const int64_t count = q.numel();
    if (sv.size() == 1 && zv.size() == 1) inner = std::max<int64_t>(count, 1);
    // The axis is [outer, dim, inner].
    const int64_t outer = count / (inner * dim);
    auto fill = [&](auto* qp) {
      using Q = std::remove_cv_t<std::remove_pointer_t<decltype(qp)>>;
      // Per channel: the zero point as the stored type's value, whether any stored value equals it
      // (cmp; never where the scale is 0) and what every other value gives (keep: 0 where the scale
      // is 0, the whole channel being zeros).
      const size_t nd = static_cast<size_t>(dim);
      std::vector<Q> zq(nd);
      std::vector<uint8_t> keep(nd), cmp(nd);
      for (size_t c = 0; c < nd; ++c) {
        const double sc = sv.size() == 1 ? sv[0] : sv[c];
        const double z = zv.size() == 1 ? zv[0] : zv[c];
        zq[c] = static_cast<Q>(z);
        keep[c] = sc == 0.0 ? 0 : 1;
        cmp[c] = sc != 0.0 && static_cast<double>(zq[c]) == z;
      }
      if (inner == 1) {
        // One value per channel and row (a MatMul [K, N] weight): along the rows.
        for (int64_t ou = 0; ou < outer; ++ou) {
          const Q* qr = qp + ou * dim;
          uint8_t* orow = o + ou * dim;
          for (size_t c = 0; c < nd; ++c) orow[c] = (cmp[c] && qr[c] == zq[c]) ? 0 : keep[c];
        }
        return;
      }
      for (size_t c = 0; c < nd; ++c)
        for (int64_t ou = 0; ou < outer; ++ou) {
          const int64_t base = (ou * dim + static_cast<int64_t>(c)) * inner;
          for (int64_t i = 0; i < inner; ++i) o[base + i] = (cmp[c] && qp[base + i] == zq[c]) ? 0 : keep[c];
        }
    };
    switch (q.dtype()) {
      case DType::kInt8: fill(q.data<int8_t>()); break;
      case DType::kUInt8: fill(q.data<uint8_t>()); break;
      default: {
        const std::vector<double> qv = q.to_double_vector();
        fill(qv.data());
      }
    }
    return out;
  }

  const std::map<std::string, std::pair<Shape, DType>>& shapes() const { return shapes_; }
  void require_weight_values() { strict_values_ = true; }

  // Builds the cost of node `ni`; `values` (may be null) gives weight tensors for sparsity.
  Status add_node(size_t ni, const std::vector<const Tensor*>* values) {
    const NodeDef& n = graph_.nodes()[ni];
    std::vector<CostInput> ins(n.inputs.size());
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      const std::string& name = n.inputs[k];
      if (name.empty()) continue;
      auto it = shapes_.find(name);
      CostInput& ci = ins[k];
      const Tensor* v = values && k < values->size() ? (*values)[k] : nullptr;
      if (it != shapes_.end()) {
        ci.shape = it->second.first;
        ci.dtype = it->second.second;
      } else if (v) {
        ci.shape = v->shape();
        ci.dtype = v->dtype();
      } else if (const auto* init = graph_.initializer(name)) {
        ci.shape.assign(init->dims().begin(), init->dims().end());
        ci.dtype = static_cast<DType>(init->data_type());
      } else {
        continue;
      }
      ci.is_weight = facts_.constant.count(name) != 0;
      ci.zeros = -1;
      if (ci.is_weight) {
        ci.stored_dtype = stored_dtype(name);
        Tensor value;
        if (v) {
          value = *v;
        } else {
          value = constant_value(name);
          // Without a run, a float weight whose value cannot be derived would drop out of the
          // sparsity counts: model_cost_derived says so instead (its caller then runs the model).
          if (!value.defined() && strict_values_ && dtype_is_float(ci.dtype))
            return NotFound("the value of constant '" + name + "' needs a run");
        }
        if (value.defined() && (dtype_is_float(value.dtype()) || dtype_is_integer(value.dtype())) &&
            value.numel() > 0 && !facts_.folded[ni]) {
          const int64_t z = count_zeros(value);
          ci.zeros = z;
          if (z * 2 >= value.numel()) {
            const Tensor f = value.dtype() == DType::kFloat ? value : value.to_float();
            ci.pattern_2_4 = is_2_4_sparse(f, weight_reduction_axis(n, k, f.rank()));
          }
        }
      } else {
        ci.quantized_from = quantized_from(name);
      }
    }
    std::vector<CostOutput> outs(n.outputs.size());
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      auto it = shapes_.find(n.outputs[k]);
      if (n.outputs[k].empty() || it == shapes_.end()) continue;
      outs[k].shape = it->second.first;
      outs[k].dtype = it->second.second;
      outs[k].quantized_consumers = quantized_consumers(n.outputs[k]);
    }
    FRUGAL_ASSIGN_OR_RETURN(NodeCost c, node_cost(n, ins, outs));
    c.folded = facts_.folded[ni];
    cost_.nodes.push_back(std::move(c));
    return OkStatus();
  }

  ModelCost finish() {
    ModelCost& m = cost_;
    m.file_bytes = model_.file_size();
    m.model_path = model_.path().string();
    for (const auto& c : m.nodes) {
      if (c.folded) continue;
      m.macs += c.macs;
      m.flops += c.flops;
      m.weight_bytes += c.weight_bytes;
      m.act_read_bytes += c.act_read_bytes;
      m.act_write_bytes += c.act_write_bytes;
      m.params += c.params;
      if (c.macs > 0) m.macs_by_dtype[c.compute_dtype] += c.macs;
      if (c.pattern_2_4) m.macs_2_4 += c.macs;
      m.macs_zero_weights += c.macs * c.weight_zero_fraction;
    }
    return std::move(m);
  }

  ModelCost cost_;
  const Model& model_;
  const Graph& graph_;
  GraphFacts facts_;
  std::map<std::string, std::pair<Shape, DType>> shapes_;
  bool strict_values_ = false;
};

class ShapeObserver : public Observer {
 public:
  explicit ShapeObserver(CostBuilder& b) : b_(b) {}
  Status on_inputs(const NamedTensors& inputs) override {
    for (const auto& kv : inputs) b_.record(kv.first, kv.second.shape(), kv.second.dtype());
    return OkStatus();
  }
  Status on_node(const NodeEvent& ev) override {
    for (size_t k = 0; k < ev.outputs.size() && k < ev.node.outputs.size(); ++k)
      if (!ev.node.outputs[k].empty()) b_.record(ev.node.outputs[k], ev.outputs[k].shape(), ev.outputs[k].dtype());
    // Weights computed by constant nodes (ConstantOfShape, DequantizeLinear of an initializer) are
    // only seen here, so the node's cost is taken now, with the input values at hand.
    std::vector<const Tensor*> vals(ev.inputs.begin(), ev.inputs.end());
    for (size_t k = 0; k < vals.size() && k < ev.node.inputs.size(); ++k)
      if (vals[k] && !ev.node.inputs[k].empty()) b_.record(ev.node.inputs[k], vals[k]->shape(), vals[k]->dtype());
    return b_.add_node(ev.node_index, &vals);
  }

 private:
  CostBuilder& b_;
};

// The executor-free walk: every node costed from recorded shapes, weights read from the model.
StatusOr<ModelCost> cost_from_shapes(const Model& model, const Graph& g,
                                     const std::map<std::string, std::pair<Shape, DType>>& shapes,
                                     bool require_weight_values) {
  CostBuilder b(model, g);
  if (require_weight_values) b.require_weight_values();
  for (const auto& kv : shapes) b.record(kv.first, kv.second.first, kv.second.second);
  for (size_t ni : g.topo_order()) FRUGAL_RETURN_IF_ERROR(b.add_node(ni, nullptr));
  ModelCost c = b.finish();
  for (const auto& vi : g.inputs()) {
    auto it = shapes.find(vi.name);
    if (it != shapes.end()) c.input_shapes.emplace_back(vi.name, it->second.first);
  }
  return c;
}

}  // namespace

StatusOr<std::vector<std::pair<std::string, Shape>>> cost_input_shapes(const Graph& g, const CostOptions& opts) {
  std::vector<std::pair<std::string, Shape>> used;
  for (const auto& vi : g.inputs()) {
    Shape s;
    if (!vi.has_shape) return InvalidModel("input '" + vi.name + "' has no declared shape; cannot size it");
    for (size_t d = 0; d < vi.dims.size(); ++d) {
      int64_t v = vi.dims[d];
      if (v < 0) {
        const std::string& p = d < vi.dim_params.size() ? vi.dim_params[d] : std::string();
        auto it = p.empty() ? opts.dims.end() : opts.dims.find(p);
        v = it != opts.dims.end() ? it->second : 1;  // unset symbolic dims default to 1 (reported)
      }
      s.push_back(v);
    }
    used.emplace_back(vi.name, s);
  }
  return used;
}

struct CostRecorder::Impl {
  Impl(const Model& m, const Graph& g) : builder(m, g), obs(builder) {}
  CostBuilder builder;
  ShapeObserver obs;
  std::vector<std::pair<std::string, Shape>> inputs;
  bool ran = false;
};

CostRecorder::CostRecorder(const Model& model, const Graph& graph) : impl_(std::make_unique<Impl>(model, graph)) {}
CostRecorder::~CostRecorder() = default;

Status CostRecorder::on_inputs(const NamedTensors& inputs) {
  if (impl_->ran) return Internal("a cost recorder observes one run");
  impl_->ran = true;
  for (const auto& kv : inputs) impl_->inputs.emplace_back(kv.first, kv.second.shape());
  return impl_->obs.on_inputs(inputs);
}

Status CostRecorder::on_node(const NodeEvent& ev) { return impl_->obs.on_node(ev); }

const std::vector<std::pair<std::string, Shape>>& CostRecorder::input_shapes() const { return impl_->inputs; }

const std::map<std::string, std::pair<Shape, DType>>& CostRecorder::shapes() const { return impl_->builder.shapes(); }

StatusOr<ModelCost> CostRecorder::finish() {
  if (!impl_->ran) return Internal("the cost recorder saw no run");
  ModelCost c = impl_->builder.finish();
  c.input_shapes = impl_->inputs;
  return c;
}

StatusOr<ModelCost> model_cost(std::shared_ptr<const Model> model, const CostOptions& opts) {
  ExecOptions eo;
  eo.dims = opts.dims;
  auto ex_or = Executor::create(model, eo);
  if (!ex_or.ok()) return ex_or.status().with_context("cost model needs shapes from one run");
  auto& ex = *ex_or.value();
  const Graph& g = ex.graph();
  FRUGAL_ASSIGN_OR_RETURN(auto used, cost_input_shapes(g, opts));
  NamedTensors inputs;
  for (size_t i = 0; i < used.size(); ++i) {
    const DType t = g.inputs()[i].dtype == DType::kUndefined ? DType::kFloat : g.inputs()[i].dtype;
    inputs.emplace_back(used[i].first, Tensor::zeros(t, used[i].second));
  }
  CostRecorder rec(*model, g);
  auto r = ex.run(inputs, &rec);
  if (!r.ok()) return r.status();
  return rec.finish();
}

StatusOr<ModelCost> model_cost_derived(const Model& model, const std::map<std::string, std::pair<Shape, DType>>& known) {
  FRUGAL_ASSIGN_OR_RETURN(Graph g, Graph::build(model));
  std::map<std::string, std::pair<Shape, DType>> shapes;
  for (const auto& vi : g.inputs()) {
    auto it = known.find(vi.name);
    if (it == known.end()) return NotFound("no shape known for input '" + vi.name + "'");
    shapes[vi.name] = it->second;
  }
  for (const auto& kv : g.initializers())
    shapes[kv.first] = {Shape(kv.second->dims().begin(), kv.second->dims().end()), static_cast<DType>(kv.second->data_type())};
  auto shape_of = [&](const std::string& name) -> const std::pair<Shape, DType>* {
    auto it = shapes.find(name);
    return it != shapes.end() ? &it->second : nullptr;
  };
  for (size_t ni : g.topo_order()) {
    const NodeDef& n = g.nodes()[ni];
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      const std::string& o = n.outputs[k];
      if (o.empty()) continue;
      if (auto it = known.find(o); it != known.end()) {
        shapes[o] = it->second;
        continue;
      }
      // Outputs the source run never had: only the element-preserving forms a quantizer inserts.
      const auto* in = !n.inputs.empty() && !n.inputs[0].empty() ? shape_of(n.inputs[0]) : nullptr;
      if (!in || k != 0) return NotFound("no shape for '" + o + "' (" + n.op_type + ")");
      DType t;
      if (n.op_type == "QuantizeLinear") {
        const auto* zp = n.inputs.size() > 2 && !n.inputs[2].empty() ? shape_of(n.inputs[2]) : nullptr;
        t = n.has("output_dtype") ? static_cast<DType>(n.get_int("output_dtype", 0)) : zp ? zp->second : DType::kUInt8;
      } else if (n.op_type == "DequantizeLinear") {
        const auto* sc = n.inputs.size() > 1 ? shape_of(n.inputs[1]) : nullptr;
        t = sc ? sc->second : DType::kFloat;
      } else if (n.op_type == "Identity") {
        t = in->second;
      } else if (n.op_type == "Cast") {
        t = static_cast<DType>(n.get_int("to", 0));
      } else {
        return NotFound("no shape for '" + o + "' (" + n.op_type + ")");
      }
      shapes[o] = {in->first, t};
    }
  }
  return cost_from_shapes(model, g, shapes, /*require_weight_values=*/true);
}

StatusOr<ModelCost> model_cost_from_shapes(const Model& model,
                                           const std::map<std::string, std::pair<Shape, DType>>& shapes) {
  FRUGAL_ASSIGN_OR_RETURN(Graph g, Graph::build(model));
  return cost_from_shapes(model, g, shapes, /*require_weight_values=*/false);
}

}  // namespace frugal
