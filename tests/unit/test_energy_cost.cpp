// Cost model: per-node MAC/FLOP/byte formulas against hand-derived counts, the model walk on small
// graphs (executor shapes, QDQ int8 detection, 2:4 sparsity), and whole architectures against
// published totals.
#include <catch2/catch.hpp>

#include <filesystem>

#include "frugal/embedded_data.h"
#include "frugal/energy.h"
#include "frugal/executor.h"

#include "test_util.h"

using namespace frugal;
using namespace frugal::testing;
namespace fs = std::filesystem;

namespace {

const fs::path kLight = fs::path(FRUGAL_TESTDATA_DIR) / "onnx-onnx/onnx/backend/test/data/light";

NodeDef make_node(const std::string& op, std::map<std::string, std::vector<int64_t>> ints = {},
                  std::map<std::string, int64_t> scalars = {}) {
  NodeDef n;
  n.name = "n";
  n.op_type = op;
  n.opset = 13;
  for (auto& kv : ints) {
    Attribute a;
    a.kind = Attribute::Kind::kInts;
    a.ints = kv.second;
    n.attrs[kv.first] = a;
  }
  for (auto& kv : scalars) {
    Attribute a;
    a.kind = Attribute::Kind::kInt;
    a.i = kv.second;
    n.attrs[kv.first] = a;
  }
  return n;
}

CostInput act(Shape s, DType t = DType::kFloat) {
  CostInput c;
  c.shape = std::move(s);
  c.dtype = t;
  return c;
}

CostInput weight(Shape s, DType stored = DType::kFloat) {
  CostInput c = act(std::move(s));
  c.is_weight = true;
  c.stored_dtype = stored;
  c.zeros = 0;
  return c;
}

CostOutput out(Shape s, DType t = DType::kFloat) {
  CostOutput o;
  o.shape = std::move(s);
  o.dtype = t;
  return o;
}

const NodeCost* find_op(const ModelCost& m, const std::string& op) {
  for (const auto& n : m.nodes)
    if (n.op_type == op && !n.folded) return &n;
  return nullptr;
}

}  // namespace

TEST_CASE("Conv MACs with groups, strides, dilations and pads", "[energy]") {
  // X [2, 8, 15, 17], W [12, 4, 3, 5], group 2, strides [2, 3], dilations [2, 1], pads [1, 2, 1, 2].
  // H_out = floor((15 + 1 + 1 - (2*(3-1) + 1)) / 2) + 1 = 7;  W_out = floor((17 + 2 + 2 - 5) / 3) + 1 = 6.
  // MACs = N * Cout * H_out * W_out * (Cin/group) * kh * kw = 2 * 12 * 7 * 6 * 4 * 3 * 5 = 60480.
  auto n = make_node("Conv", {{"strides", {2, 3}}, {"dilations", {2, 1}}, {"pads", {1, 2, 1, 2}}}, {{"group", 2}});
  auto c = node_cost(n, {act({2, 8, 15, 17}), weight({12, 4, 3, 5}), weight({12})}, {out({2, 12, 7, 6})});
  REQUIRE(c.ok());
  CHECK(c->macs == 60480);
  CHECK(c->flops == 2 * 12 * 7 * 6);  // bias add
  CHECK(c->params == 12 * 4 * 3 * 5 + 12);
  CHECK(c->weight_bytes == (12 * 4 * 3 * 5 + 12) * 4);
  CHECK(c->act_read_bytes == 2 * 8 * 15 * 17 * 4);
  CHECK(c->act_write_bytes == 2 * 12 * 7 * 6 * 4);
  CHECK(c->compute_dtype == "fp32");
  CHECK(c->family == "conv");

  // Depthwise: group = C = 32, W [32, 1, 3, 3], out [1, 32, 56, 56]: 32 * 56 * 56 * 9 = 903168.
  auto d = node_cost(make_node("Conv", {}, {{"group", 32}}), {act({1, 32, 56, 56}), weight({32, 1, 3, 3})},
                     {out({1, 32, 56, 56})});
  REQUIRE(d.ok());
  CHECK(d->macs == 903168);
}

TEST_CASE("Conv shapes from the executor give the hand-derived count", "[energy]") {
  auto model = parse_model(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2, 8, 15, 17] X) => (float[2, 12, 7, 6] Y) {
      Y = Conv <group = 2, strides = [2, 3], dilations = [2, 1], pads = [1, 2, 1, 2]> (X, W)
    })",
                           {{"W", Tensor::zeros(DType::kFloat, {12, 4, 3, 5})}});
  auto c = model_cost(model);
  REQUIRE(c.ok());
  CHECK(c->macs == 60480);
  CHECK(c->params == 720);
  REQUIRE(c->nodes.size() == 1);
  CHECK(c->nodes[0].weight_zero_fraction == 1.0);  // all-zero weight
}

TEST_CASE("ConvTranspose MACs", "[energy]") {
  // X [1, 6, 5, 7], W [6, 4, 3, 3], group 2 -> Cout 8. MACs = N * Cin * H_in * W_in * (Cout/group) * kh * kw
  // = 1 * 6 * 5 * 7 * 4 * 3 * 3 = 7560 (each input pixel scatters into Cout/group * k outputs).
  auto c = node_cost(make_node("ConvTranspose", {}, {{"group", 2}}), {act({1, 6, 5, 7}), weight({6, 4, 3, 3})},
                     {out({1, 8, 7, 9})});
  REQUIRE(c.ok());
  CHECK(c->macs == 7560);
}

TEST_CASE("Gemm and MatMul MACs", "[energy]") {
  // Gemm transA: A [K=64, M=10], B [64, 32] -> Y [10, 32]: 10 * 32 * 64 = 20480; bias adds 320.
  auto g = node_cost(make_node("Gemm", {}, {{"transA", 1}}), {act({64, 10}), weight({64, 32}), weight({32})},
                     {out({10, 32})});
  REQUIRE(g.ok());
  CHECK(g->macs == 20480);
  CHECK(g->flops == 320);
  // Gemm transB: A [4, 9], B [7, 9] -> [4, 7]: 4 * 7 * 9 = 252.
  auto g2 = node_cost(make_node("Gemm", {}, {{"transB", 1}}), {act({4, 9}), weight({7, 9})}, {out({4, 7})});
  REQUIRE(g2.ok());
  CHECK(g2->macs == 252);
  // MatMul [3, 5, 7] x [7, 11] -> [3, 5, 11]: 3 * 5 * 11 * 7 = 1155.
  auto m = node_cost(make_node("MatMul"), {act({3, 5, 7}), weight({7, 11})}, {out({3, 5, 11})});
  REQUIRE(m.ok());
  CHECK(m->macs == 1155);
  // Broadcast batches [4, 1, 6, 8] x [3, 8, 5] -> [4, 3, 6, 5]: 4 * 3 * 6 * 5 * 8 = 2880.
  auto b = node_cost(make_node("MatMul"), {act({4, 1, 6, 8}), act({3, 8, 5})}, {out({4, 3, 6, 5})});
  REQUIRE(b.ok());
  CHECK(b->macs == 2880);
  CHECK(b->params == 0);
  // Vector x matrix [7] x [7, 3] -> [3]: 21.
  auto v = node_cost(make_node("MatMul"), {act({7}), weight({7, 3})}, {out({3})});
  REQUIRE(v.ok());
  CHECK(v->macs == 21);
}

TEST_CASE("Attention-shaped batched MatMuls", "[energy]") {
  // BERT-base-like self-attention, batch 2, 12 heads, sequence 128, head size 64.
  // scores = Q [2,12,128,64] x K^T [2,12,64,128] -> [2,12,128,128]: 2*12*128*128*64 = 25165824 MACs.
  auto qk = node_cost(make_node("MatMul"), {act({2, 12, 128, 64}), act({2, 12, 64, 128})}, {out({2, 12, 128, 128})});
  REQUIRE(qk.ok());
  CHECK(qk->macs == 25165824.0);
  // context = P [2,12,128,128] x V [2,12,128,64] -> [2,12,128,64]: 2*12*128*64*128 = 25165824 MACs.
  auto pv = node_cost(make_node("MatMul"), {act({2, 12, 128, 128}), act({2, 12, 128, 64})}, {out({2, 12, 128, 64})});
  REQUIRE(pv.ok());
  CHECK(pv->macs == 25165824.0);
  // Projection [2, 128, 768] x W [768, 768]: 2 * 128 * 768 * 768 = 150994944.
  auto proj = node_cost(make_node("MatMul"), {act({2, 128, 768}), weight({768, 768})}, {out({2, 128, 768})});
  REQUIRE(proj.ok());
  CHECK(proj->macs == 150994944.0);
  CHECK(proj->params == 768 * 768);
}

TEST_CASE("Elementwise ops count FLOPs, not MACs; views cost nothing", "[energy]") {
  auto r = node_cost(make_node("Relu"), {act({2, 3, 4})}, {out({2, 3, 4})});
  REQUIRE(r.ok());
  CHECK(r->macs == 0);
  CHECK(r->flops == 24);
  CHECK(r->act_read_bytes == 96);
  CHECK(r->act_write_bytes == 96);
  // Sum of 3 inputs: 2 adds per element.
  auto s = node_cost(make_node("Sum"), {act({10}), act({10}), act({10})}, {out({10})});
  REQUIRE(s.ok());
  CHECK(s->flops == 20);
  // MaxPool 3x3 over a [1, 4, 5, 5] output: 100 * 9 comparisons.
  auto p = node_cost(make_node("MaxPool", {{"kernel_shape", {3, 3}}}), {act({1, 4, 11, 11})}, {out({1, 4, 5, 5})});
  REQUIRE(p.ok());
  CHECK(p->flops == 900);
  auto v = node_cost(make_node("Reshape"), {act({2, 3, 4}), weight({2}, DType::kInt64)}, {out({6, 4})});
  REQUIRE(v.ok());
  CHECK(v->bytes() == 0);
  CHECK(v->flops == 0);
}

TEST_CASE("Embedding Gather: the table is a parameter, a run reads only the selected rows", "[energy]") {
  // Table [1000, 64] float, ids [2, 7] int64 -> [2, 7, 64]: params 64000; reads 14 rows = 14 * 64 * 4 bytes.
  auto c = node_cost(make_node("Gather"), {weight({1000, 64}), act({2, 7}, DType::kInt64)}, {out({2, 7, 64})});
  REQUIRE(c.ok());
  CHECK(c->params == 64000);
  CHECK(c->weight_bytes == 14 * 64 * 4);
  CHECK(c->act_read_bytes == 14 * 8);
  CHECK(c->act_write_bytes == 14 * 64 * 4);
  CHECK(c->macs == 0);
}

TEST_CASE("QDQ int8: compute dtype int8, 1-byte weights and activations", "[energy]") {
  CostInput x = act({1, 16, 8, 8});
  x.quantized_from = DType::kUInt8;
  CostInput w = weight({32, 16, 3, 3}, DType::kInt8);
  auto c = node_cost(make_node("Conv"), {x, w}, {out({1, 32, 6, 6})});
  REQUIRE(c.ok());
  CHECK(c->compute_dtype == "int8");
  CHECK(c->weight_bytes == 32 * 16 * 9);
  CHECK(c->act_read_bytes == 16 * 64);
  // Float activation with int8 weight (weight-only quantization) still computes in fp32.
  auto c2 = node_cost(make_node("Conv"), {act({1, 16, 8, 8}), w}, {out({1, 32, 6, 6})});
  REQUIRE(c2.ok());
  CHECK(c2->compute_dtype == "fp32");
  CHECK(c2->weight_bytes == 32 * 16 * 9);
  // Integer ops are int8 by definition.
  auto mi = node_cost(make_node("MatMulInteger"), {act({4, 8}, DType::kUInt8), weight({8, 2}, DType::kInt8)},
                      {out({4, 2}, DType::kInt32)});
  REQUIRE(mi.ok());
  CHECK(mi->compute_dtype == "int8");
  CHECK(mi->macs == 64);
}

TEST_CASE("QDQ model walk: Conv behind DequantizeLinear runs in int8", "[energy]") {
  std::vector<int8_t> wq(8 * 4 * 3 * 3, 1);
  auto model = parse_model(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1, 4, 10, 10] X) => (float[1, 8, 8, 8] Y) {
      xq = QuantizeLinear (X, xs, xz)
      xd = DequantizeLinear (xq, xs, xz)
      wd = DequantizeLinear (Wq, ws)
      Y = Conv (xd, wd)
    })",
                           {{"Wq", Tensor::from_vector<int8_t>({8, 4, 3, 3}, wq)},
                            {"xs", Tensor::scalar<float>(0.1f)},
                            {"xz", Tensor::scalar<uint8_t>(128)},
                            {"ws", Tensor::scalar<float>(0.05f)}});
  auto c = model_cost(model);
  if (!c.ok()) FAIL(c.status().to_string());
  const NodeCost* conv = find_op(*c, "Conv");
  REQUIRE(conv);
  CHECK(conv->compute_dtype == "int8");
  CHECK(conv->macs == 8 * 8 * 8 * 4 * 9);
  CHECK(conv->weight_bytes == 8 * 4 * 9);   // int8 storage, not the dequantized float
  CHECK(conv->act_read_bytes == 4 * 100);   // uint8 activation
  CHECK(c->macs_by_dtype.at("int8") == conv->macs);
  // The weight's DequantizeLinear is folded (constant); the activation Q/DQ pair is fused.
  int folded = 0;
  for (const auto& n : c->nodes) folded += n.folded;
  CHECK(folded == 1);
}

TEST_CASE("2:4 sparsity along the reduction axis", "[energy]") {
  // Conv weight [2, 8, 1, 1]: groups of 4 input channels; each group keeps 2.
  std::vector<float> w = {1, 0, 2, 0, 0, 3, 0, 4,  /* out 0 */
                          0, 0, 5, 6, 7, 0, 8, 0}; /* out 1 */
  Tensor t = Tensor::from_vector<float>({2, 8, 1, 1}, w);
  CHECK(is_2_4_sparse(t, 1));
  w[1] = 9;  // group 0 of out 0 now has 1 zero
  CHECK_FALSE(is_2_4_sparse(Tensor::from_vector<float>({2, 8, 1, 1}, w), 1));
  // MatMul weight [K=8, N=2]: groups along K (axis 0), per column.
  std::vector<float> b = {1, 0, 0, 1, 0, 2, 3, 0,  // rows 0..3
                          0, 0, 0, 0, 4, 5, 6, 7}; // rows 4..7: column 0 = 0,0,4,6; column 1 = 0,0,5,7
  Tensor tb = Tensor::from_vector<float>({8, 2}, b);
  CHECK(is_2_4_sparse(tb, 0));
  CHECK_FALSE(is_2_4_sparse(tb, 1));  // axis length 2 is not a multiple of 4
  // Through the model walk: the Conv records the pattern and the zero fraction (8 of 16).
  std::vector<float> w2 = {1, 0, 2, 0, 0, 3, 0, 4, 0, 0, 5, 6, 7, 0, 8, 0};
  auto model = parse_model(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1, 8, 3, 3] X) => (float[1, 2, 3, 3] Y) {
      Y = Conv (X, W)
    })",
                           {{"W", Tensor::from_vector<float>({2, 8, 1, 1}, w2)}});
  auto c = model_cost(model);
  REQUIRE(c.ok());
  REQUIRE(c->nodes.size() == 1);
  CHECK(c->nodes[0].pattern_2_4);
  CHECK(c->nodes[0].weight_zero_fraction == 0.5);
  CHECK(c->macs_2_4 == 2 * 9 * 8);
  CHECK(c->macs_zero_weights == 0.5 * 2 * 9 * 8);
}

TEST_CASE("Roofline and per-op energy on a hand-made profile", "[energy]") {
  const std::string prof = R"({
    "name": "toy", "kind": "gpu", "sparse_tensor_cores": true,
    "peak_tops": {"fp32": {"value": 1, "source": "t"}, "fp16": {"value": 2, "source": "t"},
                  "int8": {"value": 4, "source": "t"}, "int8_sparse": {"value": 8, "source": "t"}},
    "vector_tflops": {"value": 0.5, "source": "t"},
    "memory_bandwidth_gbs": {"value": 100, "source": "t"},
    "tdp_w": {"value": 200, "source": "t"}, "idle_w": {"value": 50, "source": "t"},
    "pj_per_mac": {"fp32": {"value": 4, "source": "t"}, "fp16": {"value": 1.5, "source": "t"},
                   "int8": {"value": 0.25, "source": "t"}},
    "pj_per_flop": {"value": 1, "source": "t"},
    "pj_per_dram_byte": {"value": 10, "source": "t"},
    "pue": {"value": 1.5, "source": "t"}})";
  auto p = parse_device_profile(prof, "toy");
  REQUIRE(p.ok());
  ModelCost m;
  NodeCost a;  // compute-bound fp32: 1e9 MACs, 1e6 bytes
  a.compute_dtype = "fp32";
  a.macs = 1e9;
  a.act_read_bytes = 1e6;
  NodeCost b;  // memory-bound elementwise: 1e6 FLOPs, 1e9 bytes
  b.compute_dtype = "fp32";
  b.flops = 1e6;
  b.act_read_bytes = 5e8;
  b.act_write_bytes = 5e8;
  NodeCost s;  // 2:4 int8 on sparse tensor cores: 4e9 MACs at 8 TOPS sparse
  s.compute_dtype = "int8";
  s.macs = 4e9;
  s.pattern_2_4 = true;
  m.nodes = {a, b, s};
  Region r{"x", "x", 400, "t", 2024};
  auto e = estimate_energy(m, *p, r);
  // a: compute 2e9 / 1e12 = 2 ms; memory 1e6 / 1e11 = 10 us -> 2 ms.
  // b: compute 1e6 / 0.5e12 = 2 us; memory 1e9 / 1e11 = 10 ms -> 10 ms.
  // s: compute 2 * 4e9 / 8e12 = 1 ms -> 1 ms.
  CHECK(e.time_s == Approx(0.013));
  CHECK(e.roofline_energy_j == Approx(0.013 * 200));
  CHECK(e.roofline_dynamic_j == Approx(0.013 * 150));
  // per-op: a 1e9*4 pJ + 1e6*10 pJ = 4.01 mJ; b 1e6*1 + 1e9*10 pJ = 10.001 mJ; s 2e9 * 0.25 pJ = 0.5 mJ.
  CHECK(e.per_op_energy_j == Approx(4.01e-3 + 10.001e-3 + 0.5e-3));
  // carbon = J / 3.6e6 * PUE 1.5 * 400 g
  CHECK(e.carbon_g_per_op == Approx(e.per_op_energy_j / 3.6e6 * 1.5 * 400));
  auto e2 = estimate_energy(m, *p, r, 100.0, 1.0);
  CHECK(e2.carbon_g_per_op == Approx(e.per_op_energy_j / 3.6e6 * 100));
}

TEST_CASE("Device profiles: built-ins parse, user files are validated", "[energy]") {
  auto names = builtin_profile_names();
  for (const char* want : {"h100", "a100", "l4", "t4", "xeon", "laptop", "jetson-orin"}) {
    INFO(want);
    CHECK(std::find(names.begin(), names.end(), want) != names.end());
    auto p = builtin_profile(want);
    REQUIRE(p.ok());
    CHECK(!p->tdp_w.source.empty());
    CHECK(!p->pj_per_dram_byte.source.empty());
    for (const auto& kv : p->peak_tops) CHECK(!kv.second.source.empty());
  }
  CHECK(builtin_profile("h100")->sparse_tensor_cores);
  CHECK_FALSE(builtin_profile("t4")->sparse_tensor_cores);
  auto missing = parse_device_profile(R"({"name": "x", "peak_tops": {"fp32": {"value": 1, "source": "s"}}})", "f.json");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == StatusCode::kInvalidData);
  CHECK(missing.status().message().find("peak_tops.fp16") != std::string::npos);
  Json j = Json::parse(embedded_files().at("h100.json"));
  j["memory_bandwidth_gbs"]["value"] = -1;
  auto bad = parse_device_profile(j.dump(), "mine.json");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("mine.json") != std::string::npos);
  CHECK(bad.status().message().find("memory_bandwidth_gbs.value") != std::string::npos);
  j = Json::parse(embedded_files().at("h100.json"));
  j["tdp_w"].erase("source");
  auto nosrc = parse_device_profile(j.dump(), "mine.json");
  REQUIRE_FALSE(nosrc.ok());
  CHECK(nosrc.status().message().find("tdp_w.source") != std::string::npos);
  CHECK(parse_device_profile("{", "x.json").status().message().find("not valid JSON") != std::string::npos);
}

TEST_CASE("Region table: every value has a source and a year", "[energy]") {
  auto regions = builtin_regions();
  REQUIRE(regions.size() >= 9);
  for (const char* code : {"world", "eu", "us", "fr", "de", "pl", "se", "in", "cn"}) {
    INFO(code);
    auto r = find_region(code);
    REQUIRE(r.ok());
    CHECK(r->grid_g_per_kwh > 0);
    CHECK(r->year >= 2020);
    CHECK(!r->source.empty());
  }
  CHECK(find_region("fr")->grid_g_per_kwh < find_region("pl")->grid_g_per_kwh);
  CHECK(find_region("atlantis").status().code() == StatusCode::kInvalidArgument);
}

// ---- published totals for the light/ architectures (weights are constants; only shapes matter) ----
//
// MAC counts in these sources count Conv and fully connected layers (multiply-adds); so does
// ModelCost::macs. Light models need the executor's kernels for shapes: a missing kernel fails here
// with the op named.
namespace {

ModelCost light_cost(const std::string& file) {
  auto model = Model::load(kLight / file);
  if (!model.ok()) FAIL(model.status().to_string());
  auto c = model_cost(model.value());
  if (!c.ok()) FAIL(file + ": " + c.status().to_string());
  return std::move(c).value();
}

}  // namespace

TEST_CASE("ResNet-50 at 224x224: 4.09 GMACs, 25.6 M parameters", "[energy][light]") {
  // torchvision model table (pytorch.org/vision/stable/models.html), resnet50 IMAGENET1K_V1:
  // 4.09 "GFLOPS" (counted as multiply-adds) and 25,557,032 params. (He et al., CVPR 2016, Table 1,
  // gives 3.8e9 for the original variant with the stride in the first 1x1 conv.)
  // Our params also count BatchNorm running mean/var (+53,120), which torchvision keeps as buffers.
  auto c = light_cost("light_resnet50.onnx");
  CHECK(c.macs == Approx(4.09e9).epsilon(0.02));
  CHECK(static_cast<double>(c.params) == Approx(25557032 + 53120).epsilon(0.001));
}

TEST_CASE("VGG-19: 19.6 GMACs, 143.67 M parameters", "[energy][light]") {
  // He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Fig. 3 caption:
  // "VGG-19 model (19.6 billion FLOPs)" (multiply-adds). torchvision vgg19: 143,667,240 params.
  auto c = light_cost("light_vgg19.onnx");
  CHECK(c.macs == Approx(19.6e9).epsilon(0.01));
  CHECK(c.params == 143667240);
}

TEST_CASE("AlexNet (BVLC, grouped convs) at its declared 224x224 input", "[energy][light]") {
  // Sze, Chen, Yang, Emer, "Efficient Processing of Deep Neural Networks: A Tutorial and Survey",
  // Proc. IEEE 2017, Table 4 (AlexNet): 724 M MACs = 666 M conv + 58.6 M fully connected, 61 M weights,
  // for the Caffe definition's 227x227 input. This ONNX file declares 224x224 (and pads its last pool to
  // keep fc6 at 9216 inputs), so the FC part matches the published figure and the conv part is
  // hand-derived for 224: conv1 96*54*54*(3*11*11) = 101,616,768; conv2 256*26*26*(48*25) = 207,667,200;
  // conv3 384*12*12*(256*9) = 127,401,984; conv4 384*12*12*(192*9) = 95,551,488;
  // conv5 256*12*12*(192*9) = 63,700,992; total 595,938,432.
  auto c = light_cost("light_bvlc_alexnet.onnx");
  double conv = 0, fc = 0;
  for (const auto& n : c.nodes) (n.op_type == "Conv" ? conv : fc) += n.macs;
  CHECK(fc == Approx(58.6e6).epsilon(0.002));
  CHECK(conv == 595938432.0);
  CHECK(static_cast<double>(c.params) == Approx(61e6).epsilon(0.02));
}

TEST_CASE("SqueezeNet v1.1: 0.35 GMACs, 1,235,496 parameters", "[energy][light]") {
  // The light model is v1.1 (conv1: 64 filters, 3x3, stride 2; v1.0 has 96 7x7 filters).
  // torchvision squeezenet1_1: 0.35 GFLOPS (multiply-adds), 1,235,496 params.
  auto c = light_cost("light_squeezenet.onnx");
  CHECK(c.macs == Approx(0.35e9).epsilon(0.02));
  CHECK(c.params == 1235496);
}

TEST_CASE("GoogLeNet (Inception v1): 1.43 GMACs", "[energy][light]") {
  // Sze et al., Proc. IEEE 2017, Table 4 (GoogLeNet v1): 1.43 G MACs, 7.0 M weights. (Szegedy et al.,
  // CVPR 2015, state a budget of about 1.5 billion multiply-adds.)
  auto c = light_cost("light_inception_v1.onnx");
  CHECK(c.macs == Approx(1.43e9).epsilon(0.05));
  CHECK(static_cast<double>(c.params) == Approx(7.0e6).epsilon(0.05));
}

TEST_CASE("DenseNet-121: 2.83 GMACs", "[energy][light]") {
  // torchvision densenet121 IMAGENET1K_V1: 2.83 GFLOPS (multiply-adds).
  auto c = light_cost("light_densenet121.onnx");
  CHECK(c.macs == Approx(2.83e9).epsilon(0.02));
}

TEST_CASE("energy_section: original vs compressed summary for other commands' reports", "[energy]") {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1, 64] X) => (float[1, 32] Y) {
      Y = MatMul (X, W)
    })";
  std::vector<float> dense(64 * 32, 0.5f), pruned(64 * 32, 0.0f);
  // Half the weights zero, in pairs along N (row-major [K=64, N=32]): 2 of every 4 along N, but not
  // along the reduction axis K, so this is not 2:4 sparsity for a sparse tensor core.
  for (size_t i = 0; i < pruned.size(); i += 4) pruned[i] = pruned[i + 1] = 1.0f;
  auto a = parse_model(text, {{"W", Tensor::from_vector<float>({64, 32}, dense)}});
  auto b = parse_model(text, {{"W", Tensor::from_vector<float>({64, 32}, pruned)}});
  EnergyOptions opts;
  opts.profile = "a100";
  opts.region = "se";
  auto j = energy_section(*a, *b, opts);
  REQUIRE(j.ok());
  REQUIRE((*j)["models"].size() == 2);
  CHECK((*j)["models"][0]["totals"]["macs"].get<double>() == 64 * 32);
  CHECK_FALSE((*j)["models"][0].contains("nodes"));
  CHECK((*j)["assumptions"]["region"] == "se");
  CHECK((*j)["device"]["name"] == "a100");
  CHECK((*j)["comparison"]["macs"].get<double>() == 1.0);
  // Half the weights are zero in the pruned copy: the unstructured upper bound says so.
  CHECK((*j)["models"][1]["totals"]["sparsity"]["unstructured_zero_weight_macs_upper_bound"].get<double>() ==
        Approx(64 * 32 / 2.0));
  CHECK((*j)["models"][1]["totals"]["sparsity"]["macs_2_4_sparse"].get<double>() == 0);
  opts.profile = "nope";
  CHECK(energy_section(*a, *b, opts).status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("Cost from a run that happened anyway: CostRecorder, and a QDQ copy sized without running it", "[energy]") {
  // Float model: Y = Relu(X W + b), X [2, 8], W [8, 4].
  std::vector<float> w(32);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.25f * static_cast<float>(i % 7) - 0.5f;
  auto fmodel = parse_model(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2, 8] X) => (float[2, 4] Y) {
      m = MatMul (X, W)
      a = Add (m, B)
      Y = Relu (a)
    })",
                            {{"W", Tensor::from_vector<float>({8, 4}, w)}, {"B", Tensor::from_vector<float>({4}, {0, 1, 2, 3})}});
  auto ex = Executor::create(fmodel, ExecOptions{});
  REQUIRE(ex.ok());
  CostRecorder rec(*fmodel, (*ex)->graph());
  auto out = (*ex)->run({{"X", Tensor::zeros(DType::kFloat, {2, 8})}}, &rec);
  REQUIRE(out.ok());
  auto from_run = rec.finish();
  REQUIRE(from_run.ok());
  CHECK(from_run->macs == 2 * 8 * 4);                           // hand-derived
  CHECK(from_run->input_shapes == std::vector<std::pair<std::string, Shape>>{{"X", {2, 8}}});
  auto own = model_cost(fmodel);
  REQUIRE(own.ok());
  CHECK(from_run->macs == own->macs);
  CHECK(from_run->flops == own->flops);
  CHECK(from_run->weight_bytes == own->weight_bytes);
  CHECK(from_run->act_read_bytes == own->act_read_bytes);
  auto want = cost_input_shapes((*ex)->graph());
  REQUIRE(want.ok());
  CHECK(*want == rec.input_shapes());

  // Its QDQ copy: int8 weight per output channel (axis 1) with zeros at q == zero point 0; half of
  // each group of 4 along K is zero in columns 0 and 1, so the zero fraction is 8 / 32.
  std::vector<int8_t> wq(32);
  for (int k = 0; k < 8; ++k)
    for (int n = 0; n < 4; ++n) wq[k * 4 + n] = (n < 2 && k % 2 == 1) ? 0 : static_cast<int8_t>(k + n + 1);
  auto qmodel = parse_model(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2, 8] X) => (float[2, 4] Y) {
      xq = QuantizeLinear (X, xs, xz)
      xd = DequantizeLinear (xq, xs, xz)
      wd = DequantizeLinear <axis = 1> (Wq, ws, wz)
      m = MatMul (xd, wd)
      a = Add (m, B)
      Y = Relu (a)
    })",
                            {{"Wq", Tensor::from_vector<int8_t>({8, 4}, wq)},
                             {"ws", Tensor::from_vector<float>({4}, {0.1f, 0.2f, 0.3f, 0.4f})},
                             {"wz", Tensor::from_vector<int8_t>({4}, {0, 0, 0, 0})},
                             {"xs", Tensor::scalar<float>(0.05f)},
                             {"xz", Tensor::scalar<uint8_t>(128)},
                             {"B", Tensor::from_vector<float>({4}, {0, 1, 2, 3})}});
  auto derived = model_cost_derived(*qmodel, rec.shapes());
  if (!derived.ok()) FAIL(derived.status().to_string());
  auto ran = model_cost(qmodel);
  REQUIRE(ran.ok());
  const NodeCost* mm = find_op(*derived, "MatMul");
  REQUIRE(mm);
  CHECK(mm->compute_dtype == "int8");
  CHECK(mm->weight_zero_fraction == 8.0 / 32.0);  // hand-derived from wq
  CHECK(derived->macs_zero_weights == 0.25 * 2 * 8 * 4);
  // Node by node the same as running the QDQ model.
  REQUIRE(derived->nodes.size() == ran->nodes.size());
  for (size_t i = 0; i < ran->nodes.size(); ++i) {
    INFO(ran->nodes[i].op_type);
    CHECK(derived->nodes[i].op_type == ran->nodes[i].op_type);
    CHECK(derived->nodes[i].macs == ran->nodes[i].macs);
    CHECK(derived->nodes[i].weight_bytes == ran->nodes[i].weight_bytes);
    CHECK(derived->nodes[i].act_read_bytes == ran->nodes[i].act_read_bytes);
    CHECK(derived->nodes[i].act_write_bytes == ran->nodes[i].act_write_bytes);
    CHECK(derived->nodes[i].weight_zero_fraction == ran->nodes[i].weight_zero_fraction);
    CHECK(derived->nodes[i].compute_dtype == ran->nodes[i].compute_dtype);
    CHECK(derived->nodes[i].folded == ran->nodes[i].folded);
    CHECK(derived->nodes[i].pattern_2_4 == ran->nodes[i].pattern_2_4);
  }
  CHECK(derived->macs_zero_weights == ran->macs_zero_weights);

  // Per-channel zero points other than 0 and a channel whose scale is 0: the weight's zeros are
  // where (q - zero point) * scale == 0, counted here straight from that definition.
  const std::vector<int8_t> wz2 = {0, 4, 0, 7};
  const std::vector<float> ws2 = {0.1f, 0.2f, 0.0f, 0.4f};
  int zeros2 = 0;
  for (int k = 0; k < 8; ++k)
    for (int n = 0; n < 4; ++n) zeros2 += (double(wq[k * 4 + n]) - wz2[n]) * ws2[n] == 0.0;
  auto qmodel2 = parse_model(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2, 8] X) => (float[2, 4] Y) {
      wd = DequantizeLinear <axis = 1> (Wq, ws, wz)
      Y = MatMul (X, wd)
    })",
                             {{"Wq", Tensor::from_vector<int8_t>({8, 4}, wq)},
                              {"ws", Tensor::from_vector<float>({4}, ws2)},
                              {"wz", Tensor::from_vector<int8_t>({4}, wz2)}});
  auto derived2 = model_cost_derived(*qmodel2, rec.shapes());
  if (!derived2.ok()) FAIL(derived2.status().to_string());
  const NodeCost* mm2 = find_op(*derived2, "MatMul");
  REQUIRE(mm2);
  CHECK(zeros2 == 4 + 1 + 8 + 1);  // column 0 odd k; q == 4 at k = 2; scale 0; q == 7 at k = 3
  CHECK(mm2->weight_zero_fraction == zeros2 / 32.0);

  // A node the float run never had and that is not element-preserving cannot be sized: NotFound.
  auto other = parse_model(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2, 8] X) => (float[8, 2] T) {
      T = Transpose (X)
    })");
  auto bad = model_cost_derived(*other, rec.shapes());
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == StatusCode::kNotFound);
}
