// Quantization: per-channel axis choice, scale / zero-point math, QDQ graph structure.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>

#include "frugal/quantize.h"

#include "test_util.h"

using namespace frugal;
using namespace frugal::testing;

namespace {

NodeDef node(const std::string& op, int64_t trans_b = -1) {
  NodeDef n;
  n.op_type = op;
  if (trans_b >= 0) {
    Attribute a;
    a.kind = Attribute::Kind::kInt;
    a.i = trans_b;
    n.attrs["transB"] = a;
  }
  return n;
}

const onnx::TensorProto* init(const onnx::ModelProto& m, const std::string& name) {
  for (const auto& t : m.graph().initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

const onnx::NodeProto* producer(const onnx::ModelProto& m, const std::string& out) {
  for (const auto& n : m.graph().node())
    for (const auto& o : n.output())
      if (o == out) return &n;
  return nullptr;
}

}  // namespace

TEST_CASE("per-channel axis follows the op", "[quantize]") {
  CHECK(weight_channel_axis(node("Conv"), 4) == 0);
  CHECK(weight_channel_axis(node("ConvTranspose"), 4) == 1);
  CHECK(weight_channel_axis(node("MatMul"), 2) == 1);  // [K, N]
  CHECK(weight_channel_axis(node("MatMul"), 3) == 2);
  CHECK(weight_channel_axis(node("Gemm", 1), 2) == 0);  // B is [N, K]
  CHECK(weight_channel_axis(node("Gemm", 0), 2) == 1);  // B is [K, N]
  CHECK(weight_channel_axis(node("Gemm"), 2) == 1);     // transB defaults to 0
  CHECK(weight_channel_axis(node("MatMul"), 1) == -1);
}

TEST_CASE("symmetric per-channel weight quantization, hand-derived", "[quantize]") {
  // rows (axis 0): absmax 2 and 0.5 -> scales 2/127, 0.5/127.
  // row 0: 1 / (2/127) = 63.5 -> 64 (half to even), -2 -> -127; row 1: 0.5 -> 127, 0.25 -> 63.5 -> 64.
  Tensor w = Tensor::from_vector<float>({2, 2}, {1.0f, -2.0f, 0.5f, 0.25f});
  QuantizedWeight q = quantize_weight(w, 0, quant::kInt8Symmetric);
  REQUIRE(q.scales.size() == 2);
  CHECK(q.scales[0] == Approx(2.0 / 127));
  CHECK(q.scales[1] == Approx(0.5 / 127));
  std::vector<int8_t> got(q.q.data<int8_t>(), q.q.data<int8_t>() + 4);
  CHECK(got == std::vector<int8_t>{64, -127, 127, 64});
  CHECK(q.min == -2.0);
  CHECK(q.max == 1.0);
  // axis 1 (columns): absmax 1 and 2.
  QuantizedWeight c = quantize_weight(w, 1, quant::kInt8Symmetric);
  CHECK(c.scales[0] == Approx(1.0 / 127));
  CHECK(c.scales[1] == Approx(2.0 / 127));
  // per tensor, 7-bit: one scale 2/63.
  QuantizedWeight t = quantize_weight(w, -1, quant::QRange{-63, 63});
  REQUIRE(t.scales.size() == 1);
  CHECK(t.scales[0] == Approx(2.0 / 63));
  CHECK(t.q.data<int8_t>()[1] == -63);
}

TEST_CASE("weight rounding equals quantize_value element by element on every layout", "[quantize]") {
  // Shapes that put the channels last (MatMul [K, N]: one value per channel and row), first with an
  // inner run that is not a multiple of 16 (Conv), in the middle (ConvTranspose), and per tensor.
  // Values include exact halves of the scale (ties to even), NaN, infinities and values far past the
  // range; the reference is the scalar quant::quantize_value with the scales the pass chose.
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  struct Case {
    std::vector<int64_t> shape;
    int axis;
    quant::QRange range;
  };
  for (const Case& cs : {Case{{67, 45}, 1, quant::kInt8Symmetric}, Case{{13, 3, 5, 7}, 0, quant::kInt8Symmetric},
                         Case{{4, 6, 3, 3}, 1, quant::QRange{-63, 63}}, Case{{9, 31}, -1, quant::kInt8Symmetric},
                         Case{{5, 40, 2}, 2, quant::kInt8}}) {
    int64_t n = 1;
    for (int64_t d : cs.shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = nd(rng);
    // one large value per tensor sets the scales; the rest are then checked at exact ties too
    v[0] = 4.0f;
    Tensor w = Tensor::from_vector<float>(cs.shape, v);
    const QuantizedWeight first = quantize_weight(w, cs.axis, cs.range);
    const int64_t ch = cs.axis >= 0 ? cs.shape[static_cast<size_t>(cs.axis)] : 1;
    int64_t inner = 1;
    if (cs.axis >= 0)
      for (size_t d = static_cast<size_t>(cs.axis) + 1; d < cs.shape.size(); ++d) inner *= cs.shape[d];
    else
      inner = n;
    auto channel = [&](int64_t i) { return (i / inner) % ch; };
    for (int64_t i = 1; i < n; i += 3) {
      const float s = first.scales[static_cast<size_t>(channel(i))];
      v[static_cast<size_t>(i)] = (std::floor(v[static_cast<size_t>(i)] / s) + 0.5f) * s;  // a tie
    }
    v[static_cast<size_t>(n / 2)] = std::numeric_limits<float>::quiet_NaN();
    v[static_cast<size_t>(n / 3)] = std::numeric_limits<float>::infinity();
    v[static_cast<size_t>(n / 4)] = -std::numeric_limits<float>::infinity();
    v[static_cast<size_t>(n - 1)] = -1e30f;
    Tensor w2 = Tensor::from_vector<float>(cs.shape, v);
    const QuantizedWeight q = quantize_weight(w2, cs.axis, cs.range);
    REQUIRE(q.scales.size() == static_cast<size_t>(ch));
    int64_t mismatches = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float s = q.scales[static_cast<size_t>(channel(i))];
      const int32_t want = quant::quantize_value(v[static_cast<size_t>(i)], s, 0, cs.range.lo, cs.range.hi);
      mismatches += q.q.data<int8_t>()[i] != want;
    }
    CHECK(mismatches == 0);
    CHECK((std::isinf(q.min) && q.min < 0));  // NaN ignored, infinities kept
    CHECK((std::isinf(q.max) && q.max > 0));
  }
}

TEST_CASE("weight quantization of an empty weight", "[quantize]") {
  // A zero-size axis after the channel axis (no values per channel): scales from absmax 0, no values.
  const QuantizedWeight q = quantize_weight(Tensor::zeros(DType::kFloat, {3, 0}), 0, quant::kInt8Symmetric);
  CHECK(q.scales.size() == 3);
  CHECK(q.q.numel() == 0);
  const QuantizedWeight r = quantize_weight(Tensor::zeros(DType::kFloat, {0, 4}), 1, quant::kInt8Symmetric);
  CHECK(r.scales.size() == 4);
  CHECK(r.q.numel() == 0);
}

TEST_CASE("activation scale and zero point, hand-derived", "[quantize]") {
  // uint8 over [-1, 3]: scale 4/255, zp = round(0 - (-1) / (4/255)) = round(63.75) = 64.
  auto u = activation_params(-1.0, 3.0, DType::kUInt8);
  CHECK(u.scale == Approx(4.0 / 255));
  CHECK(u.zero_point == 64);
  // a range that excludes 0 is widened to include it: [2, 5] -> [0, 5], zp 0.
  auto p = activation_params(2.0, 5.0, DType::kUInt8);
  CHECK(p.scale == Approx(5.0 / 255));
  CHECK(p.zero_point == 0);
  // int8 symmetric: absmax 3 -> scale 3/127, zp 0.
  auto s = activation_params(-1.0, 3.0, DType::kInt8);
  CHECK(s.scale == Approx(3.0 / 127));
  CHECK(s.zero_point == 0);
}

TEST_CASE("static QDQ graph: Conv + Relu + Gemm", "[quantize]") {
  auto model = parse_model(R"(
    <ir_version: 7, opset_import: ["" : 11]>
    g (float[1, 2, 3, 3] x) => (float[1, 2] y) {
      c = Conv (x, W, B)
      r = Relu (c)
      f = Flatten (r)
      y = Gemm <transB = 1> (f, FW, FB)
    })",
                           {{"W", Tensor::from_vector<float>({2, 2, 1, 1}, {1.0f, -0.5f, 0.25f, 0.125f})},
                            {"B", Tensor::from_vector<float>({2}, {0.1f, -0.2f})},
                            {"FW", Tensor::from_vector<float>({2, 18}, std::vector<float>(36, 0.5f))},
                            {"FB", Tensor::from_vector<float>({2}, {0.0f, 1.0f})}});
  CalibrationTable t;
  t.method = "minmax";
  t.tensors["x"] = TensorRange{-1, 3, -1, 3, 18};
  t.tensors["c"] = TensorRange{-2, 3, -2, 3, 18};
  t.tensors["r"] = TensorRange{0, 3, 0, 3, 18};
  t.tensors["f"] = TensorRange{0, 3, 0, 3, 18};
  QuantizeOptions o;
  auto r = quantize_static(*model, t, o);
  REQUIRE(r.ok());
  const onnx::ModelProto& m = r->model->proto();
  CHECK(r->opset_before == 11);
  CHECK(r->opset_after == 13);
  CHECK(r->quantized_count() == 4);  // Conv, Relu, Flatten, Gemm

  // Conv weight: int8, per-channel axis 0 behind a DequantizeLinear.
  const onnx::NodeProto* conv = nullptr;
  for (const auto& n : m.graph().node())
    if (n.op_type() == "Conv") conv = &n;
  REQUIRE(conv);
  const onnx::NodeProto* wdq = producer(m, conv->input(1));
  REQUIRE(wdq);
  CHECK(wdq->op_type() == "DequantizeLinear");
  REQUIRE(wdq->attribute_size() == 1);
  CHECK(wdq->attribute(0).i() == 0);
  CHECK(init(m, wdq->input(0))->data_type() == onnx::TensorProto::INT8);
  CHECK(init(m, "W") == nullptr);  // the float weight is gone

  // Conv input x: Q -> DQ with uint8 params of [-1, 3]: scale 4/255, zp round(63.75) = 64.
  const onnx::NodeProto* xdq = producer(m, conv->input(0));
  REQUIRE(xdq);
  CHECK(xdq->op_type() == "DequantizeLinear");
  auto xs = tensor_from_proto(*init(m, xdq->input(1)));
  auto xz = tensor_from_proto(*init(m, xdq->input(2)));
  REQUIRE(xs.ok());
  REQUIRE(xz.ok());
  const float sx = xs->data<float>()[0];
  CHECK(sx == Approx(4.0 / 255));
  CHECK(xz->dtype() == DType::kUInt8);
  CHECK(static_cast<int>(xz->data<uint8_t>()[0]) == 64);

  // Bias: int32 with scale s_x * s_w per channel, zero point 0.
  const onnx::NodeProto* bdq = producer(m, conv->input(2));
  REQUIRE(bdq);
  auto bq = tensor_from_proto(*init(m, bdq->input(0)));
  auto bs = tensor_from_proto(*init(m, bdq->input(1)));
  REQUIRE(bq.ok());
  REQUIRE(bs.ok());
  CHECK(bq->dtype() == DType::kInt32);
  const float sw0 = 1.0f / 127, sw1 = 0.25f / 127;
  CHECK(bs->data<float>()[0] == Approx(sx * sw0));
  CHECK(bs->data<float>()[1] == Approx(sx * sw1));
  CHECK(bq->data<int32_t>()[0] == static_cast<int32_t>(std::nearbyint(0.1f / (sx * sw0))));
  CHECK(bq->data<int32_t>()[1] == static_cast<int32_t>(std::nearbyint(-0.2f / (sx * sw1))));

  // Relu input c shares Relu output r's params ([0, 3]: scale 3/255, zp 0); Flatten output f shares r's.
  auto params_of = [&](const std::string& tensor) {
    for (const auto& n : m.graph().node())
      if (n.op_type() == "QuantizeLinear" && n.input(0) == tensor)
        return std::make_pair(tensor_from_proto(*init(m, n.input(1)))->data<float>()[0],
                              static_cast<int>(tensor_from_proto(*init(m, n.input(2)))->data<uint8_t>()[0]));
    return std::make_pair(-1.0f, -1);
  };
  CHECK(params_of("c").first == Approx(3.0 / 255));
  CHECK(params_of("c").second == 0);
  CHECK(params_of("r") == params_of("c"));
  CHECK(params_of("f") == params_of("r"));

  // Gemm transB=1: per-channel axis 0.
  const onnx::NodeProto* gemm = nullptr;
  for (const auto& n : m.graph().node())
    if (n.op_type() == "Gemm") gemm = &n;
  REQUIRE(gemm);
  const onnx::NodeProto* gdq = producer(m, gemm->input(1));
  REQUIRE(gdq);
  CHECK(gdq->attribute(0).i() == 0);
  // The graph output stays float and keeps its name.
  CHECK(gemm->output(0) == "y");

  // Nodes are topologically ordered: every input is produced earlier, an initializer or a graph input.
  std::set<std::string> known = {"x"};
  for (const auto& i : m.graph().initializer()) known.insert(i.name());
  for (const auto& n : m.graph().node()) {
    for (const auto& in : n.input()) CHECK((in.empty() || known.count(in)));
    for (const auto& o2 : n.output()) known.insert(o2);
  }

  // --per-tensor: scalar weight scales and no axis attribute; --exclude by op type.
  QuantizeOptions pt;
  pt.per_channel = false;
  pt.exclude = {"Gemm"};
  auto r2 = quantize_static(*model, t, pt);
  REQUIRE(r2.ok());
  for (const auto& n : r2->model->proto().graph().node()) {
    if (n.op_type() == "Gemm") CHECK(n.input(1) == "FW");
    if (n.op_type() == "DequantizeLinear") CHECK(n.attribute_size() == 0);
  }
}

TEST_CASE("opset upgrade rewrites Clip and Unsqueeze; unconvertible ops are refused", "[quantize]") {
  auto model = parse_model(R"(
    <ir_version: 6, opset_import: ["" : 10]>
    g (float[2, 3] x) => (float[1, 2, 3] y) {
      c = Clip <min = 0.0, max = 6.0> (x)
      y = Unsqueeze <axes = [0]> (c)
    })",
                           {});
  onnx::ModelProto p = model->proto();
  std::vector<std::string> notes;
  REQUIRE(upgrade_default_opset(p, 13, &notes).ok());
  CHECK(p.opset_import(0).version() == 13);
  CHECK(p.ir_version() >= 7);
  CHECK(p.graph().node(0).input_size() == 3);
  CHECK(p.graph().node(0).attribute_size() == 0);
  CHECK(p.graph().node(1).input_size() == 2);

  auto bad = parse_model(R"(
    <ir_version: 6, opset_import: ["" : 9]>
    g (float[2, 3] x) => (float[4, 6] y) {
      y = Upsample <mode = "nearest"> (x, s)
    })",
                         {{"s", Tensor::from_vector<float>({2}, {2.0f, 2.0f})}});
  onnx::ModelProto q = bad->proto();
  auto st = upgrade_default_opset(q, 13, nullptr);
  CHECK(st.code() == StatusCode::kUnsupported);
  CHECK(q.opset_import(0).version() == 9);  // unchanged
}

TEST_CASE("max-drop bound parsing", "[quantize]") {
  auto a = parse_max_drop("top1=0.5%");
  REQUIRE(a.ok());
  CHECK(a->metric == "top1");
  CHECK(a->value == Approx(0.005));
  auto b = parse_max_drop("cosine=0.999");
  REQUIRE(b.ok());
  CHECK(b->value == 0.999);
  CHECK_FALSE(parse_max_drop("top5=1").ok());
  CHECK_FALSE(parse_max_drop("cosine").ok());
  Fidelity f;
  OutputFidelity o;
  o.cosine = 0.9995;
  o.top1_agreement = 0.996;
  f.outputs.push_back(o);
  CHECK(a->holds(f));   // drop 0.4% <= 0.5%
  CHECK(b->holds(f));
  o.top1_agreement = 0.99;
  f.outputs[0] = o;
  CHECK_FALSE(a->holds(f));
}
