// Dynamic quantization, integer form: graph structure (DynamicQuantizeLinear shared per activation,
// MatMulInteger with int8 [K, N] weights and per-column zero points, Cast, scale Mul, Gemm bias Add),
// fallbacks to the weight-only form with their reasons, and the executor's numbers against a reference
// written here from the ONNX operator definitions (hand-derived values where small).
#include <cmath>
#include <map>
#include <set>

#include <catch2/catch.hpp>

#include "frugal/executor.h"
#include "frugal/quantize.h"

#include "test_util.h"

using namespace frugal;
using namespace frugal::testing;

namespace {

const onnx::TensorProto* init(const onnx::ModelProto& m, const std::string& name) {
  for (const auto& t : m.graph().initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

// Through the Model: an initializer the pass left untouched may share the source model's bytes.
Tensor init_tensor(const Model& model, const std::string& name) {
  const onnx::TensorProto* t = init(model.proto(), name);
  REQUIRE(t);
  auto r = model.initializer(*t);
  REQUIRE(r.ok());
  return *r;
}

const onnx::NodeProto* producer(const onnx::ModelProto& m, const std::string& out) {
  for (const auto& n : m.graph().node())
    for (const auto& o : n.output())
      if (o == out) return &n;
  return nullptr;
}

std::vector<const onnx::NodeProto*> nodes_of(const onnx::ModelProto& m, const std::string& op) {
  std::vector<const onnx::NodeProto*> v;
  for (const auto& n : m.graph().node())
    if (n.op_type() == op) v.push_back(&n);
  return v;
}

// ONNX DynamicQuantizeLinear, from its definition: range extended to 0, scale (max - min) / 255,
// zero point round(0 - min / scale) saturated to [0, 255], q = saturate(round(x / scale) + zp), rounding
// half to even.
struct Dql {
  float scale;
  int zp;
  std::vector<int> q;
};
Dql ref_dql(const std::vector<float>& x) {
  float lo = 0, hi = 0;
  for (float v : x) lo = std::min(lo, v), hi = std::max(hi, v);
  Dql d;
  d.scale = (hi - lo) / 255.0f;
  d.zp = static_cast<int>(std::clamp(std::nearbyint(0.0f - lo / d.scale), 0.0f, 255.0f));
  for (float v : x) d.q.push_back(static_cast<int>(std::clamp(std::nearbyint(v / d.scale) + d.zp, 0.0f, 255.0f)));
  return d;
}

// Symmetric int8 per column of a row-major [K, N] weight: scale absmax / 127 (or / 63 with reduce range).
std::pair<std::vector<int>, std::vector<float>> ref_weight(const std::vector<float>& w, int64_t K, int64_t N, float qmax,
                                                           bool per_column) {
  std::vector<float> amax(static_cast<size_t>(N), 0.0f);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) {
      float& a = amax[static_cast<size_t>(per_column ? n : 0)];
      a = std::max(a, std::fabs(w[static_cast<size_t>(k * N + n)]));
    }
  if (!per_column) std::fill(amax.begin(), amax.end(), amax[0]);
  std::vector<float> s(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) s[static_cast<size_t>(n)] = amax[static_cast<size_t>(n)] / qmax;
  std::vector<int> q(w.size());
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) {
      const size_t i = static_cast<size_t>(k * N + n);
      q[i] = static_cast<int>(std::clamp(std::nearbyint(w[i] / s[static_cast<size_t>(n)]), -qmax, qmax));
    }
  return {q, s};
}

// The integer pipeline: (x_q - x_zp) x W_q in integers, times x_scale * w_scale[n] * alpha, plus bias.
std::vector<float> ref_integer_matmul(const std::vector<float>& x, int64_t M, int64_t K, const std::vector<float>& w_kn,
                                      int64_t N, float qmax, bool per_column, float alpha = 1.0f,
                                      const std::vector<float>& bias = {}) {
  const Dql d = ref_dql(x);
  const auto [wq, ws] = ref_weight(w_kn, K, N, qmax, per_column);
  std::vector<float> y(static_cast<size_t>(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      int64_t acc = 0;
      for (int64_t k = 0; k < K; ++k)
        acc += static_cast<int64_t>(d.q[static_cast<size_t>(m * K + k)] - d.zp) * wq[static_cast<size_t>(k * N + n)];
      float v = static_cast<float>(acc) * (d.scale * (ws[static_cast<size_t>(n)] * alpha));
      if (!bias.empty()) v += bias[static_cast<size_t>(n % static_cast<int64_t>(bias.size()))];
      y[static_cast<size_t>(m * N + n)] = v;
    }
  return y;
}

std::map<std::string, Tensor> run_model(std::shared_ptr<const Model> m, const NamedTensors& in,
                                        const std::vector<std::string>& extra = {}) {
  auto ex = Executor::create(m);
  REQUIRE(ex.ok());
  auto out = (*ex)->run_with_extra(in, extra);
  INFO(out.status().message());
  REQUIRE(out.ok());
  std::map<std::string, Tensor> r;
  for (auto& [k, v] : *out) r[k] = v;
  return r;
}

const char* kModel = R"(
    <ir_version: 7, opset_import: ["" : 13]>
    g (float[2, 3] x, float[1, 1, 2, 2] img) => (float[2, 2] y1, float[2, 2] y2, float[2, 4] y3, float[1, 2, 2, 2] c) {
      y1 = MatMul (x, W)
      y2 = MatMul (x, W2)
      y3 = Gemm <transB = 1, alpha = 0.5, beta = 2.0> (x, B, C)
      c = Conv (img, CW)
    })";

// W [3, 2]: column absmax 1 and 2.
const std::vector<float> kW = {1.0f, -2.0f, 0.5f, 1.0f, -0.25f, 0.5f};
const std::vector<float> kW2 = {0.1f, 0.2f, -0.3f, 0.4f, 0.5f, -0.6f};
// B [4, 3] (transB = 1): rows are output columns.
const std::vector<float> kB = {0.3f, -0.1f, 0.2f, 1.0f, 0.0f, -1.0f, 0.05f, 0.07f, -0.02f, 2.0f, 1.5f, -0.5f};
const std::vector<float> kC = {0.1f, -0.2f, 0.3f, -0.4f};
const std::vector<float> kX = {1.0f, -1.0f, 0.5f, 2.0f, 0.0f, -0.25f};

std::shared_ptr<Model> test_model() {
  return parse_model(kModel, {{"W", Tensor::from_vector<float>({3, 2}, kW)},
                              {"W2", Tensor::from_vector<float>({3, 2}, kW2)},
                              {"B", Tensor::from_vector<float>({4, 3}, kB)},
                              {"C", Tensor::from_vector<float>({4}, kC)},
                              {"CW", Tensor::from_vector<float>({2, 1, 1, 1}, {0.5f, -1.0f})}});
}

std::vector<float> transpose(const std::vector<float>& a, int64_t rows, int64_t cols) {
  std::vector<float> t(a.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[static_cast<size_t>(c * rows + r)] = a[static_cast<size_t>(r * cols + c)];
  return t;
}

}  // namespace

TEST_CASE("integer dynamic form: graph structure, hand-derived weights and scales", "[quantize]") {
  auto model = test_model();
  QuantizeOptions o;
  o.dynamic_form = DynamicForm::kInteger;
  auto r = quantize_dynamic(*model, o);
  INFO(r.status().message());
  REQUIRE(r.ok());
  const onnx::ModelProto& m = r->model->proto();

  // One DynamicQuantizeLinear for x, read by all three MatMulInteger; no float MatMul/Gemm left.
  auto dqls = nodes_of(m, "DynamicQuantizeLinear");
  REQUIRE(dqls.size() == 1);
  CHECK(dqls[0]->input(0) == "x");
  auto mmis = nodes_of(m, "MatMulInteger");
  REQUIRE(mmis.size() == 3);
  for (const auto* n : mmis) {
    CHECK(n->input(0) == dqls[0]->output(0));
    CHECK(n->input(2) == dqls[0]->output(2));
  }
  CHECK(nodes_of(m, "MatMul").empty());
  CHECK(nodes_of(m, "Gemm").empty());
  CHECK(init(m, "W") == nullptr);  // float weights gone
  CHECK(init(m, "B") == nullptr);

  // y1 = Mul(Cast(MatMulInteger), Mul(x_scale, w_scale)).
  const onnx::NodeProto* y1 = producer(m, "y1");
  REQUIRE(y1);
  CHECK(y1->op_type() == "Mul");
  const onnx::NodeProto* cast = producer(m, y1->input(0));
  REQUIRE(cast);
  CHECK(cast->op_type() == "Cast");
  REQUIRE(cast->attribute_size() == 1);
  CHECK(cast->attribute(0).i() == onnx::TensorProto::FLOAT);
  const onnx::NodeProto* mmi = producer(m, cast->input(0));
  REQUIRE(mmi);
  CHECK(mmi->op_type() == "MatMulInteger");
  const onnx::NodeProto* smul = producer(m, y1->input(1));
  REQUIRE(smul);
  CHECK(smul->op_type() == "Mul");
  CHECK(smul->input(0) == dqls[0]->output(1));
  // W per column: scales 1/127, 2/127; q col 0: 127, 63.5 -> 64, -31.75 -> -32; col 1: -127, 64, 32.
  Tensor wq = init_tensor(*r->model, mmi->input(1));
  CHECK(wq.dtype() == DType::kInt8);
  CHECK(wq.shape() == Shape{3, 2});
  std::vector<int8_t> got(wq.data<int8_t>(), wq.data<int8_t>() + 6);
  CHECK(got == std::vector<int8_t>{127, -127, 64, 64, -32, 32});
  Tensor ws = init_tensor(*r->model, smul->input(1));
  REQUIRE(ws.shape() == Shape{2});
  CHECK(ws.data<float>()[0] == Approx(1.0 / 127));
  CHECK(ws.data<float>()[1] == Approx(2.0 / 127));
  Tensor wz = init_tensor(*r->model, mmi->input(3));
  CHECK(wz.dtype() == DType::kInt8);
  CHECK(wz.shape() == Shape{2});  // per-column zero point vector, all 0
  CHECK(wz.data<int8_t>()[0] == 0);
  CHECK(wz.data<int8_t>()[1] == 0);

  // Gemm transB=1: B transposed to [3, 4]; alpha 0.5 in the weight scale; beta 2 in C.
  const onnx::NodeProto* y3 = producer(m, "y3");
  REQUIRE(y3);
  CHECK(y3->op_type() == "Add");
  Tensor cb = init_tensor(*r->model, y3->input(1));
  REQUIRE(cb.numel() == 4);
  for (int i = 0; i < 4; ++i) CHECK(cb.data<float>()[i] == Approx(2.0f * kC[static_cast<size_t>(i)]));
  const onnx::NodeProto* gmul = producer(m, y3->input(0));
  REQUIRE(gmul);
  const onnx::NodeProto* gmmi = producer(m, producer(m, gmul->input(0))->input(0));
  REQUIRE(gmmi);
  CHECK(gmmi->op_type() == "MatMulInteger");
  CHECK(init_tensor(*r->model, gmmi->input(1)).shape() == Shape{3, 4});
  Tensor gs = init_tensor(*r->model, producer(m, gmul->input(1))->input(1));
  REQUIRE(gs.numel() == 4);
  CHECK(gs.data<float>()[0] == Approx(0.5 * 0.3 / 127));  // row 0 of B: absmax 0.3
  CHECK(gs.data<float>()[3] == Approx(0.5 * 2.0 / 127));

  // Conv stays weight-only and says so.
  auto convs = nodes_of(m, "Conv");
  REQUIRE(convs.size() == 1);
  const onnx::NodeProto* cdq = producer(m, convs[0]->input(1));
  REQUIRE(cdq);
  CHECK(cdq->op_type() == "DequantizeLinear");
  REQUIRE(r->nodes.size() == 4);
  const NodeQuantInfo* ci = nullptr;
  for (const auto& n : r->nodes) {
    CHECK(n.quantized);
    if (n.op_type == "Conv") ci = &n;
    else CHECK(n.form == "integer");
  }
  REQUIRE(ci);
  CHECK(ci->form == "weight-only");
  CHECK(ci->reason.find("weight-only") != std::string::npos);
  CHECK(r->nodes[2].op_type == "Gemm");
  CHECK(r->nodes[2].weight_axis == 0);  // axis of the original [N, K] B

  // Names are unique and the result is deterministic.
  std::set<std::string> node_names, outputs;
  for (const auto& n : m.graph().node()) {
    CHECK(node_names.insert(n.name()).second);
    for (const auto& out : n.output()) CHECK(outputs.insert(out).second);
  }
  std::set<std::string> init_names;
  for (const auto& t : m.graph().initializer()) CHECK(init_names.insert(t.name()).second);
  auto r2 = quantize_dynamic(*model, o);
  REQUIRE(r2.ok());
  CHECK(r2->model->proto().SerializeAsString() == m.SerializeAsString());

  // Topological order.
  std::set<std::string> known = {"x", "img"};
  for (const auto& i : m.graph().initializer()) known.insert(i.name());
  for (const auto& n : m.graph().node()) {
    for (const auto& in : n.input()) CHECK((in.empty() || known.count(in)));
    for (const auto& out : n.output()) known.insert(out);
  }
}

TEST_CASE("integer dynamic form: executor matches the integer reference", "[quantize]") {
  auto model = test_model();
  QuantizeOptions o;
  o.dynamic_form = DynamicForm::kInteger;
  auto r = quantize_dynamic(*model, o);
  REQUIRE(r.ok());
  const onnx::ModelProto& m = r->model->proto();
  const std::string xs = nodes_of(m, "DynamicQuantizeLinear")[0]->output(1);
  const std::string xz = nodes_of(m, "DynamicQuantizeLinear")[0]->output(2);
  NamedTensors in = {{"x", Tensor::from_vector<float>({2, 3}, kX)},
                     {"img", Tensor::from_vector<float>({1, 1, 2, 2}, {1.0f, 2.0f, -3.0f, 4.0f})}};
  auto out = run_model(r->model, in, {xs, xz});
  // x in [-1, 2]: scale 3/255, zero point round(1 / (3/255)) = 85.
  CHECK(out[xs].data<float>()[0] == Approx(3.0 / 255));
  CHECK(static_cast<int>(out[xz].data<uint8_t>()[0]) == 85);

  auto check = [&](const std::string& name, const std::vector<float>& expect) {
    const Tensor& t = out[name];
    REQUIRE(t.numel() == static_cast<int64_t>(expect.size()));
    for (size_t i = 0; i < expect.size(); ++i) {
      INFO(name << "[" << i << "]");
      CHECK(t.data<float>()[i] == Approx(expect[i]).epsilon(1e-6).margin(1e-6));
    }
  };
  check("y1", ref_integer_matmul(kX, 2, 3, kW, 2, 127, true));
  check("y2", ref_integer_matmul(kX, 2, 3, kW2, 2, 127, true));
  std::vector<float> c2(kC);
  for (float& v : c2) v *= 2;
  check("y3", ref_integer_matmul(kX, 2, 3, transpose(kB, 4, 3), 4, 127, true, 0.5f, c2));

  // And within quantization error of the float model.
  auto fout = run_model(model, in);
  for (const char* y : {"y1", "y2", "y3", "c"}) {
    const Tensor& a = fout[y];
    const Tensor& b = out[y];
    REQUIRE(a.numel() == b.numel());
    for (int64_t i = 0; i < a.numel(); ++i) CHECK(std::fabs(a.data<float>()[i] - b.data<float>()[i]) < 0.05);
  }
}

TEST_CASE("integer dynamic form: per-tensor, reduce range, fallbacks and filters", "[quantize]") {
  auto model = parse_model(R"(
    <ir_version: 7, opset_import: ["" : 13]>
    g (float[2, 3] x, float[3, 2] xt) => (float[2, 2] y1, float[2, 2] y2, float[2, 4] y3, float[2, 2, 2] y4, float[2, 2] y5) {
      Wd = Identity (W2)
      y1 = MatMul (x, W)
      y2 = MatMul (x, W2)
      y3 = Gemm <transA = 1, transB = 1> (xt, B, C)
      y4 = MatMul (x, W3)
      y5 = MatMul (x, Wd)
    })",
                           {{"W", Tensor::from_vector<float>({3, 2}, kW)},
                            {"W2", Tensor::from_vector<float>({3, 2}, kW2)},
                            {"B", Tensor::from_vector<float>({4, 3}, kB)},
                            {"C", Tensor::from_vector<float>({4}, kC)},
                            {"W3", Tensor::from_vector<float>({2, 3, 2}, std::vector<float>(12, 0.25f))}});
  QuantizeOptions o;
  o.dynamic_form = DynamicForm::kInteger;
  o.per_channel = false;
  o.reduce_range = true;
  auto r = quantize_dynamic(*model, o);
  INFO(r.status().message());
  REQUIRE(r.ok());
  const onnx::ModelProto& m = r->model->proto();
  auto mmis = nodes_of(m, "MatMulInteger");
  REQUIRE(mmis.size() == 2);  // y1, y2
  for (const auto* n : mmis) {
    Tensor q = init_tensor(*r->model, n->input(1));
    for (int64_t i = 0; i < q.numel(); ++i) CHECK(std::abs(q.data<int8_t>()[i]) <= 63);
    CHECK(init_tensor(*r->model, n->input(3)).rank() == 0);  // scalar zero point
  }
  // Per tensor, 7 bits: W absmax 2 -> one scale 2/63.
  const onnx::NodeProto* smul = producer(m, producer(m, "y1")->input(1));
  Tensor s = init_tensor(*r->model, smul->input(1));
  CHECK(s.rank() == 0);
  CHECK(s.data<float>()[0] == Approx(2.0 / 63));
  std::map<std::string, const NodeQuantInfo*> by_out;
  for (const auto& n : r->nodes) by_out[n.output_tensor] = &n;
  REQUIRE(by_out.count("y3"));
  CHECK(by_out["y3"]->form == "weight-only");
  CHECK(by_out["y3"]->reason.find("transA") != std::string::npos);
  REQUIRE(by_out.count("y4"));
  CHECK(by_out["y4"]->form == "weight-only");
  CHECK(by_out["y4"]->reason.find("rank 3") != std::string::npos);
  REQUIRE(by_out.count("y5"));
  CHECK_FALSE(by_out["y5"]->quantized);  // computed weight: stays float
  CHECK(producer(m, "y5")->op_type() == "MatMul");
  CHECK(producer(m, "y4")->op_type() == "MatMul");  // weight-only: float MatMul on a DequantizeLinear
  CHECK(producer(m, producer(m, "y4")->input(1))->op_type() == "DequantizeLinear");

  NamedTensors in = {{"x", Tensor::from_vector<float>({2, 3}, kX)}, {"xt", Tensor::from_vector<float>({3, 2}, transpose(kX, 2, 3))}};
  auto out = run_model(r->model, in);
  const std::vector<float> expect = ref_integer_matmul(kX, 2, 3, kW, 2, 63, false);
  for (size_t i = 0; i < expect.size(); ++i) CHECK(out["y1"].data<float>()[i] == Approx(expect[i]).epsilon(1e-6).margin(1e-6));

  // --exclude by name keeps a MatMul float and reports why.
  QuantizeOptions ex = o;
  ex.exclude = {"MatMul"};
  auto r3 = quantize_dynamic(*model, ex);
  REQUIRE(r3.ok());
  CHECK(nodes_of(r3->model->proto(), "MatMulInteger").empty());
  for (const auto& n : r3->nodes)
    if (n.op_type == "MatMul") {
      CHECK_FALSE(n.quantized);
      CHECK(n.reason == "matched by --exclude");
    }
}

TEST_CASE("integer dynamic form raises opset 10 to 13", "[quantize]") {
  auto model = parse_model(R"(
    <ir_version: 5, opset_import: ["" : 10]>
    g (float[2, 3] x) => (float[2, 2] y) {
      y = MatMul (x, W)
    })",
                           {{"W", Tensor::from_vector<float>({3, 2}, kW)}});
  QuantizeOptions o;
  o.dynamic_form = DynamicForm::kInteger;
  auto r = quantize_dynamic(*model, o);
  REQUIRE(r.ok());
  CHECK(r->opset_before == 10);
  CHECK(r->opset_after == 13);
  CHECK(r->model->opset("") == 13);
  auto out = run_model(r->model, {{"x", Tensor::from_vector<float>({2, 3}, kX)}});
  const std::vector<float> expect = ref_integer_matmul(kX, 2, 3, kW, 2, 127, true);
  for (size_t i = 0; i < expect.size(); ++i) CHECK(out["y"].data<float>()[i] == Approx(expect[i]).epsilon(1e-6).margin(1e-6));
}
