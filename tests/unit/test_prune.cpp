// Pruning building blocks and the pass on hand-built graphs: masks, reduction views, layer defaults,
// global thresholds, channel groups and sparse storage, with expected values worked out by hand.
#include <catch2/catch.hpp>

#include <cstring>

#include "frugal/prune.h"

#include "test_util.h"

using namespace frugal;
using namespace frugal::testing;

namespace {

std::vector<float> init_values(const Model& m, const std::string& name) {
  for (const auto& t : m.proto().graph().initializer())
    if (t.name() == name) {
      auto v = m.initializer(t);
      REQUIRE(v.ok());
      auto d = v->to_double_vector();
      return {d.begin(), d.end()};
    }
  FAIL("no initializer " << name);
  return {};
}

Shape init_shape(const Model& m, const std::string& name) {
  for (const auto& t : m.proto().graph().initializer())
    if (t.name() == name) return Shape(t.dims().begin(), t.dims().end());
  return {};
}

std::vector<float> ramp(int n, float start = 1.0f) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = (i % 2 ? -1.0f : 1.0f) * (start + i);
  return v;
}

}  // namespace

TEST_CASE("lowest_k_mask picks the k smallest, earlier first on ties", "[prune]") {
  std::vector<float> s = {5, 1, 3, 1, 4, 0.5f};
  auto m = lowest_k_mask(s, 3);
  CHECK(m == std::vector<uint8_t>{0, 1, 0, 1, 0, 1});
  CHECK(lowest_k_mask({2, 2, 2, 2}, 2) == std::vector<uint8_t>{1, 1, 0, 0});
  CHECK(lowest_k_mask(s, 0) == std::vector<uint8_t>(6, 0));
  CHECK(lowest_k_mask(s, 99) == std::vector<uint8_t>(6, 1));
}

TEST_CASE("nm_mask keeps the N largest of every M along a row, short tail group too", "[prune]") {
  // 2 rows x 6 cols, 2:4 -> groups {0..3} and the short {4,5} (keeps both: 2 <= N).
  std::vector<float> s = {4, 1, 3, 2, 9, 8,  //
                          0, 0, 5, 7, 1, 2};
  auto m = nm_mask(s, 2, 6, 2, 4);
  CHECK(m == std::vector<uint8_t>{0, 1, 0, 1, 0, 0,  //
                                  1, 1, 0, 0, 0, 0});
  // 1:3 on 7 cols: groups {0,1,2} {3,4,5} {6}.
  std::vector<float> t = {1, 3, 2, 6, 5, 4, 7};
  CHECK(nm_mask(t, 1, 7, 1, 3) == std::vector<uint8_t>{1, 0, 1, 0, 1, 1, 0});
}

TEST_CASE("global_prune_counts: one threshold, optionally normalised per layer", "[prune]") {
  // Layer A scores {1,2,3,4} (mean 2.5), layer B {10,20,30,40} (mean 25). Pruning 4:
  // raw scores -> all of A; normalised -> {0.4,0.8,1.2,1.6} each -> two from each.
  std::vector<std::vector<float>> sc = {{1, 2, 3, 4}, {10, 20, 30, 40}};
  CHECK(global_prune_counts(sc, 4, false) == std::vector<int64_t>{4, 0});
  CHECK(global_prune_counts(sc, 4, true) == std::vector<int64_t>{2, 2});
  CHECK(global_prune_counts(sc, 5, false) == std::vector<int64_t>{4, 1});
}

TEST_CASE("reduction views: Conv input channels fastest, MatMul and Gemm along K", "[prune]") {
  // Conv W [2, 3, 2, 1]: flat (o, i, kpos) = o*6 + i*2 + kpos; view col = kpos*3 + i.
  auto v = reduction_view_index("Conv", {2, 3, 2, 1}, 1, false);
  CHECK(v == std::vector<int64_t>{0, 2, 4, 1, 3, 5, 6, 8, 10, 7, 9, 11});
  // MatMul [K=3, N=2]: row n, col k -> k*2 + n.
  CHECK(reduction_view_index("MatMul", {3, 2}, 1, false) == std::vector<int64_t>{0, 2, 4, 1, 3, 5});
  // Gemm transB=1 [N=2, K=3]: identity.
  CHECK(reduction_view_index("Gemm", {2, 3}, 1, true) == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  // ConvTranspose W [Cin=4, Og=1, 1] group 2: rows = 2 (one per group), cols = 2 input channels.
  CHECK(reduction_view_index("ConvTranspose", {4, 1, 1}, 2, false) == std::vector<int64_t>{0, 1, 2, 3});
}

const char* kMlp = R"(
<ir_version: 8, opset_import: ["" : 13]>
mlp (float[N, 8] x) => (float[N, 4] y) {
  h = MatMul(x, w1)
  r = Relu(h)
  h2 = Gemm<transB = 1>(r, w2)
  r2 = Relu(h2)
  y = Gemm(r2, w3)
}
)";

TEST_CASE("prune_model: per-layer exact counts, classifier skipped by default", "[prune]") {
  auto m = parse_model(kMlp, {{"w1", Tensor::from_vector<float>({8, 6}, ramp(48))},
                              {"w2", Tensor::from_vector<float>({5, 6}, ramp(30))},
                              {"w3", Tensor::from_vector<float>({5, 4}, ramp(20))}});
  PruneOptions o;
  o.sparsity = 0.5;
  auto r = prune_model(*m, o, nullptr);
  REQUIRE(r.ok());
  auto w1 = init_values(*r->model, "w1");
  int z = 0;
  for (float v : w1) z += v == 0;
  CHECK(z == 24);
  // |ramp| = 1..48: the 24 smallest magnitudes are the first 24 elements.
  for (int i = 0; i < 48; ++i) CHECK((w1[i] == 0) == (i < 24));
  auto w2 = init_values(*r->model, "w2");
  z = 0;
  for (float v : w2) z += v == 0;
  CHECK(z == 15);
  CHECK(init_values(*r->model, "w3") == ramp(20));  // final classifier untouched
  REQUIRE(r->layers.size() == 3);
  CHECK(r->layers[2].skipped);
  CHECK(r->layers[2].note.find("final classifier") != std::string::npos);
  // The input model is never modified.
  CHECK(init_values(*m, "w1") == ramp(48));

  o.skip_final_classifier = false;
  o.exclude = {"MatMul"};
  o.layer_sparsity = {{"^#4$", 0.25}};  // unnamed nodes are indexed "#i"; w3's Gemm is node 4
  r = prune_model(*m, o, nullptr);
  REQUIRE(r.ok());
  CHECK(init_values(*r->model, "w1") == ramp(48));
  z = 0;
  for (float v : init_values(*r->model, "w3")) z += v == 0;
  CHECK(z == 5);
}

TEST_CASE("prune_model: global scope pools all layers under one threshold", "[prune]") {
  // w1 magnitudes 1..48, w2 magnitudes 101..130: pruning 39 of 78 globally takes all from w1... up to 39.
  std::vector<float> w2 = ramp(30, 101);
  auto m = parse_model(kMlp, {{"w1", Tensor::from_vector<float>({8, 6}, ramp(48))},
                              {"w2", Tensor::from_vector<float>({5, 6}, w2)},
                              {"w3", Tensor::from_vector<float>({5, 4}, ramp(20))}});
  PruneOptions o;
  o.scope = PruneScope::kGlobal;
  o.sparsity = 0.5;
  auto r = prune_model(*m, o, nullptr);
  REQUIRE(r.ok());
  int z1 = 0, z2 = 0;
  for (float v : init_values(*r->model, "w1")) z1 += v == 0;
  for (float v : init_values(*r->model, "w2")) z2 += v == 0;
  CHECK(z1 == 39);
  CHECK(z2 == 0);
}

TEST_CASE("prune_model N:M rewrites MatMul as Gemm transB=1 with 2:4 along K", "[prune]") {
  auto m = parse_model(kMlp, {{"w1", Tensor::from_vector<float>({8, 6}, ramp(48))},
                              {"w2", Tensor::from_vector<float>({5, 6}, ramp(30))},
                              {"w3", Tensor::from_vector<float>({5, 4}, ramp(20))}});
  PruneOptions o;
  o.pattern = PrunePattern::kNM;
  auto r = prune_model(*m, o, nullptr);
  REQUIRE(r.ok());
  const auto& g = r->model->proto().graph();
  CHECK(g.node(0).op_type() == "Gemm");
  CHECK(init_shape(*r->model, "w1") == Shape{6, 8});
  auto w1 = init_values(*r->model, "w1");  // [N=6, K=8]; original W[k][n] = ramp[k*6+n]
  for (int n = 0; n < 6; ++n)
    for (int k0 = 0; k0 < 8; k0 += 4) {
      int nz = 0;
      for (int k = k0; k < k0 + 4; ++k) {
        const float orig = ramp(48)[k * 6 + n];
        CHECK((w1[n * 8 + k] == 0 || w1[n * 8 + k] == orig));
        nz += w1[n * 8 + k] != 0;
        // magnitudes grow with k, so the two largest in a group are its last two
        CHECK((w1[n * 8 + k] != 0) == (k - k0 >= 2));
      }
      CHECK(nz == 2);
    }
  CHECK(!r->warnings.empty());  // tiny layers: under 256 channels
}

TEST_CASE("prune_channels: residual group, BatchNorm and Flatten consumer rewritten", "[prune]") {
  // c0 (first conv, skipped) -> c1 -> bn -> relu -> c2 ; add(relu, c2) -> relu -> flatten -> gemm.
  // c1 and c2 outputs are tied by the Add: one group of 4 channels; channels 1 and 3 have the smallest
  // filter norms in c1 + c2 and go.
  const char* text = R"(
<ir_version: 8, opset_import: ["" : 13]>
g (float[1, 2, 3, 3] x) => (float[1, 3] y) {
  a = Conv<pads = [1, 1, 1, 1]>(x, w0)
  b = Conv<pads = [1, 1, 1, 1]>(a, w1, b1)
  c = BatchNormalization(b, s, bb, mu, var)
  d = Relu(c)
  e = Conv<pads = [1, 1, 1, 1]>(d, w2)
  f = Add(d, e)
  h = Relu(f)
  i = Flatten(h)
  y = Gemm<transB = 1>(i, wf)
}
)";
  std::vector<float> w1(4 * 3 * 9), w2(4 * 4 * 9);
  const float scale[4] = {3, 0.1f, 2, 0.2f};
  for (int o = 0; o < 4; ++o) {
    for (int e = 0; e < 27; ++e) w1[o * 27 + e] = scale[o];
    for (int e = 0; e < 36; ++e) w2[o * 36 + e] = scale[o] * 0.5f;
  }
  std::vector<float> wf(3 * 36);
  for (int i = 0; i < 108; ++i) wf[i] = float(i);
  auto m = parse_model(text, {{"w0", Tensor::from_vector<float>({3, 2, 3, 3}, std::vector<float>(54, 1))},
                              {"w1", Tensor::from_vector<float>({4, 3, 3, 3}, w1)},
                              {"b1", Tensor::from_vector<float>({4}, {10, 11, 12, 13})},
                              {"s", Tensor::from_vector<float>({4}, {1, 2, 3, 4})},
                              {"bb", Tensor::from_vector<float>({4}, {5, 6, 7, 8})},
                              {"mu", Tensor::from_vector<float>({4}, {0, 0, 0, 0})},
                              {"var", Tensor::from_vector<float>({4}, {1, 1, 1, 1})},
                              {"w2", Tensor::from_vector<float>({4, 4, 3, 3}, w2)},
                              {"wf", Tensor::from_vector<float>({3, 36}, wf)}});
  PruneOptions o;
  o.pattern = PrunePattern::kChannels;
  o.sparsity = 0.5;
  auto r = prune_model(*m, o, nullptr);
  REQUIRE(r.ok());
  const Model& p = *r->model;
  CHECK(init_shape(p, "w0") == Shape{3, 2, 3, 3});
  CHECK(init_shape(p, "w1") == Shape{2, 3, 3, 3});
  CHECK(init_shape(p, "w2") == Shape{2, 2, 3, 3});
  CHECK(init_values(p, "b1") == std::vector<float>{10, 12});
  CHECK(init_values(p, "s") == std::vector<float>{1, 3});
  CHECK(init_values(p, "bb") == std::vector<float>{5, 7});
  CHECK(init_shape(p, "wf") == Shape{3, 18});
  auto f = init_values(p, "wf");
  // Kept channels 0 and 2: K blocks [0, 9) and [18, 27) of each row.
  for (int row = 0; row < 3; ++row)
    for (int k = 0; k < 18; ++k) CHECK(f[row * 18 + k] == float(row * 36 + (k < 9 ? k : k + 9)));
  int pruned_groups = 0, first_conv_reason = 0;
  for (const auto& gr : r->channel_groups) {
    pruned_groups += gr.pruned;
    if (!gr.pruned && gr.reason.find("first conv") != std::string::npos) first_conv_reason++;
  }
  CHECK(pruned_groups == 1);
  CHECK(first_conv_reason == 1);
}

TEST_CASE("prune_channels leaves a group alone when a Concat consumes it, saying why", "[prune]") {
  const char* text = R"(
<ir_version: 8, opset_import: ["" : 13]>
g (float[1, 1, 4, 4] x) => (float[1, 4, 4, 4] y) {
  a = Conv(x, w0)
  b = Conv(a, w1)
  y = Concat<axis = 1>(b, b)
}
)";
  auto m = parse_model(text, {{"w0", Tensor::from_vector<float>({2, 1, 1, 1}, {1, 2})},
                              {"w1", Tensor::from_vector<float>({2, 2, 1, 1}, {1, 2, 3, 4})}});
  PruneOptions o;
  o.pattern = PrunePattern::kChannels;
  o.skip_first_conv = false;
  auto r = prune_model(*m, o, nullptr);
  REQUIRE(r.ok());
  CHECK(init_shape(*r->model, "w0") == Shape{1, 1, 1, 1});  // a -> b: prunable
  CHECK(init_shape(*r->model, "w1") == Shape{2, 1, 1, 1});  // only its input channels
  bool concat_reason = false;
  for (const auto& gr : r->channel_groups)
    if (!gr.pruned && gr.reason.find("Concat") != std::string::npos) concat_reason = true;
  CHECK(concat_reason);
}

TEST_CASE("sparse storage: only when smaller, -0.0 and NaN kept as values", "[prune]") {
  std::vector<float> w(100, 0.0f);
  w[3] = 1.5f;
  w[50] = -0.0f;
  w[77] = std::nanf("");
  auto m =
      parse_model(R"(
<ir_version: 8, opset_import: ["" : 13]>
g (float[1, 10] x) => (float[1, 10] y) { y = MatMul(x, w) }
)",
                  {{"w", Tensor::from_vector<float>({10, 10}, w)}, {"d", Tensor::from_vector<float>({2}, {1, 2})}});
  onnx::ModelProto p = m->proto();
  std::vector<std::string> conv;
  REQUIRE(convert_to_sparse_storage(p, {"w", "d"}, &conv).ok());
  CHECK(conv == std::vector<std::string>{"w"});  // "d" is dense-only (no zeros, would grow)
  REQUIRE(p.graph().sparse_initializer_size() == 1);
  const auto& sp = p.graph().sparse_initializer(0);
  CHECK(sp.values().dims(0) == 3);
  std::vector<int64_t> idx(3);
  std::memcpy(idx.data(), sp.indices().raw_data().data(), 24);
  CHECK(idx == std::vector<int64_t>{3, 50, 77});
  uint32_t bits;
  std::memcpy(&bits, sp.values().raw_data().data() + 4, 4);
  CHECK(bits == 0x80000000u);  // -0.0 stored with its sign
}
