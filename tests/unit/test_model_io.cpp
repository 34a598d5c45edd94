#include <catch2/catch.hpp>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "frugal/dataset.h"
#include "frugal/executor.h"
#include "frugal/file_util.h"
#include "frugal/inspect.h"
#include "frugal/model.h"

#include "test_util.h"

using namespace frugal;
using namespace frugal::testing;
namespace fs = std::filesystem;

namespace {

const fs::path kTestData = FRUGAL_TESTDATA_DIR;

std::string deterministic_bytes(const onnx::ModelProto& m) {
  std::string out;
  google::protobuf::io::StringOutputStream s(&out);
  google::protobuf::io::CodedOutputStream c(&s);
  c.SetSerializationDeterministic(true);
  m.SerializeToCodedStream(&c);
  return out;
}

onnx::ModelProto parse_file(const fs::path& p) {
  auto bytes = read_file_bytes(p, "model");
  REQUIRE(bytes.ok());
  onnx::ModelProto m;
  REQUIRE(parse_model_bytes(bytes->data(), bytes->size(), &m, p.string()).ok());
  return m;
}

std::vector<fs::path> all_models() {
  std::vector<fs::path> v;
  for (const auto& e : fs::recursive_directory_iterator(kTestData))
    if (e.is_regular_file() && e.path().extension() == ".onnx") v.push_back(e.path());
  std::sort(v.begin(), v.end());
  return v;
}

void write_bytes(const fs::path& p, const std::string& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

size_t count_files(const fs::path& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

}  // namespace

TEST_CASE("load then save gives an identical ModelProto for every model in shared testdata", "[model_io]") {
  REQUIRE(fs::is_directory(kTestData));
  auto models = all_models();
  REQUIRE(models.size() > 1800);  // node tests, pytorch-*, simple, light, mnist, bert, rten, tract
  TempDir tmp;
  size_t with_external = 0;
  for (const auto& p : models) {
    INFO(p.string());
    auto m = Model::load(p);
    REQUIRE(m.ok());
    const fs::path out = tmp.path / "out.onnx";
    REQUIRE((*m)->save(out).ok());
    const auto original = parse_file(p);
    const auto saved = parse_file(out);
    bool external = false;
    for (const auto& t : original.graph().initializer()) external |= is_external(t);
    if (!external) {
      REQUIRE(deterministic_bytes(original) == deterministic_bytes(saved));
      continue;
    }
    // External data: compare with every tensor re-inlined on both sides.
    ++with_external;
    auto a = Model::load(p, LoadOptions{true});
    auto b = Model::load(out, LoadOptions{true});
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(deterministic_bytes((*a)->proto()) == deterministic_bytes((*b)->proto()));
  }
  CHECK(with_external == 1);  // rten's mnist-external
}

TEST_CASE("external data is kept, re-inlined or re-externalised as asked", "[model_io]") {
  const fs::path src = kTestData / "robertknight-rten/rten-onnx/test-data/mnist-external/mnist.onnx";
  TempDir tmp;
  auto m = Model::load(src);
  REQUIRE(m.ok());
  auto inlined_ref = Model::load(src, LoadOptions{true});
  REQUIRE(inlined_ref.ok());

  // Default: stays external, in a data file named after the output.
  REQUIRE((*m)->save(tmp.path / "kept.onnx").ok());
  CHECK(fs::exists(tmp.path / "kept.onnx.data"));
  auto kept = parse_file(tmp.path / "kept.onnx");
  size_t ext = 0;
  for (const auto& t : kept.graph().initializer()) ext += is_external(t);
  CHECK(ext > 0);

  // Re-inlined.
  SaveOptions inl;
  inl.keep_external = false;
  REQUIRE((*m)->save(tmp.path / "inline.onnx", inl).ok());
  CHECK_FALSE(fs::exists(tmp.path / "inline.onnx.data"));
  auto inlined = parse_file(tmp.path / "inline.onnx");
  for (const auto& t : inlined.graph().initializer()) CHECK_FALSE(is_external(t));
  CHECK(deterministic_bytes(inlined) == deterministic_bytes((*inlined_ref)->proto()));

  // A plain model externalised with a threshold: only tensors at or above it move out.
  auto mnist = Model::load(kTestData / "alrevuelta-cONNXr/test/mnist/model.onnx");
  REQUIRE(mnist.ok());
  SaveOptions ex;
  ex.external_data = true;
  ex.external_threshold = 1000;
  REQUIRE((*mnist)->save(tmp.path / "ext.onnx", ex).ok());
  auto exm = parse_file(tmp.path / "ext.onnx");
  for (const auto& t : exm.graph().initializer()) {
    const size_t bytes = storage_bytes(static_cast<DType>(t.data_type()), [&] {
      int64_t n = 1;
      for (auto d : t.dims()) n *= d;
      return n;
    }());
    CHECK(is_external(t) == (bytes >= 1000));
  }
  auto back = Model::load(tmp.path / "ext.onnx", LoadOptions{true});
  REQUIRE(back.ok());
  // Tensors that went out come back as raw_data (the original used typed fields): compare values.
  onnx::ModelProto a = (*back)->proto(), b = (*mnist)->proto();
  for (auto* m : {&a, &b})
    for (auto& t : *m->mutable_graph()->mutable_initializer()) {
      auto v = tensor_from_proto(t);
      REQUIRE(v.ok());
      const std::string name = t.name();
      tensor_to_proto(*v, &t);
      t.set_name(name);
    }
  CHECK(deterministic_bytes(a) == deterministic_bytes(b));
}

TEST_CASE("the ONNX checker runs on the loaded model, or on the file when data is external", "[model_io]") {
  TempDir tmp;
  // Inline weights: checked in memory (no second read of the file); a broken copy fails.
  auto mnist = Model::load(kTestData / "alrevuelta-cONNXr/test/mnist/model.onnx");
  REQUIRE(mnist.ok());
  CHECK_FALSE((*mnist)->has_external_data());
  const CheckerResult good = run_onnx_checker(**mnist);
  CHECK(good.ran);
  CHECK(good.ok);
  onnx::ModelProto broken = (*mnist)->proto();
  broken.mutable_graph()->mutable_node(0)->set_op_type("NoSuchOp");
  write_bytes(tmp.path / "broken.onnx", broken.SerializeAsString());
  auto bad = Model::load(tmp.path / "broken.onnx");
  REQUIRE(bad.ok());
  const CheckerResult failed = run_onnx_checker(**bad);
  CHECK(failed.ran);
  CHECK_FALSE(failed.ok);
  CHECK(failed.note.find("NoSuchOp") != std::string::npos);
  // External weights: the file form, which checks the data file beside the model.
  SaveOptions ex;
  ex.external_data = true;
  ex.external_threshold = 1000;
  REQUIRE((*mnist)->save(tmp.path / "ext.onnx", ex).ok());
  auto ext = Model::load(tmp.path / "ext.onnx");
  REQUIRE(ext.ok());
  CHECK((*ext)->has_external_data());
  const CheckerResult ext_ok = run_onnx_checker(**ext);
  CHECK(ext_ok.ran);
  CHECK(ext_ok.ok);
}

TEST_CASE("save refuses to overwrite its input unless asked", "[model_io]") {
  TempDir tmp;
  fs::copy_file(kTestData / "alrevuelta-cONNXr/test/mnist/model.onnx", tmp.path / "m.onnx");
  auto m = Model::load(tmp.path / "m.onnx");
  REQUIRE(m.ok());
  auto st = (*m)->save(tmp.path / "m.onnx");
  CHECK(st.code() == StatusCode::kInvalidArgument);
  SaveOptions in_place;
  in_place.allow_overwrite_input = true;
  CHECK((*m)->save(tmp.path / "m.onnx", in_place).ok());
  CHECK(count_files(tmp.path) == 1);  // no temp file left
}

TEST_CASE("bad model files fail with a clear error and no crash", "[model_io]") {
  TempDir tmp;
  const fs::path good = kTestData / "alrevuelta-cONNXr/test/mnist/model.onnx";
  auto bytes = read_file_bytes(good, "model");
  REQUIRE(bytes.ok());

  SECTION("truncated") {
    write_bytes(tmp.path / "t.onnx", bytes->substr(0, bytes->size() / 2));
    auto m = Model::load(tmp.path / "t.onnx");
    REQUIRE_FALSE(m.ok());
    CHECK(m.status().code() == StatusCode::kInvalidModel);
    CHECK(m.status().message().find("t.onnx") != std::string::npos);
  }
  SECTION("random bytes") {
    std::mt19937 rng(7);
    std::string junk(4096, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    write_bytes(tmp.path / "r.onnx", junk);
    auto m = Model::load(tmp.path / "r.onnx");
    REQUIRE_FALSE(m.ok());
    CHECK(exit_code_for(m.status().code()) == 2);
  }
  SECTION("empty file") {
    write_bytes(tmp.path / "e.onnx", "");
    auto m = Model::load(tmp.path / "e.onnx");
    REQUIRE_FALSE(m.ok());
    CHECK(m.status().message().find("empty") != std::string::npos);
  }
  SECTION("a directory") {
    auto m = Model::load(tmp.path);
    REQUIRE_FALSE(m.ok());
    CHECK(m.status().message().find("directory") != std::string::npos);
    CHECK(exit_code_for(m.status().code()) == 2);
  }
  SECTION("missing file") {
    auto m = Model::load(tmp.path / "nope.onnx");
    REQUIRE_FALSE(m.ok());
    CHECK(m.status().code() == StatusCode::kNotFound);
  }
  SECTION("initializer declares more elements than its bytes hold") {
    onnx::ModelProto p = parse_file(good);
    auto* init = p.mutable_graph()->mutable_initializer(0);
    init->set_dims(0, init->dims(0) * 2);
    write_bytes(tmp.path / "short.onnx", p.SerializeAsString());
    auto m = Model::load(tmp.path / "short.onnx");
    REQUIRE_FALSE(m.ok());
    CHECK(m.status().code() == StatusCode::kInvalidModel);
    CHECK(m.status().message().find(init->name()) != std::string::npos);
  }
}

TEST_CASE("external data outside the model directory or past its file's end is rejected", "[model_io]") {
  TempDir tmp;
  const fs::path model_dir = tmp.path / "model";
  fs::create_directories(model_dir);
  const fs::path src = kTestData / "robertknight-rten/rten-onnx/test-data/mnist-external";
  fs::copy_file(src / "mnist.onnx.data", model_dir / "mnist.onnx.data");
  fs::copy_file(src / "mnist.onnx.data", tmp.path / "outside.data");
  const onnx::ModelProto base = parse_file(src / "mnist.onnx");

  auto with_location = [&](const std::string& loc, const std::string& offset, const std::string& length) {
    onnx::ModelProto p = base;
    for (auto& t : *p.mutable_graph()->mutable_initializer()) {
      if (!is_external(t)) continue;
      for (auto& kv : *t.mutable_external_data()) {
        if (kv.key() == "location") kv.set_value(loc);
        if (kv.key() == "offset" && !offset.empty()) kv.set_value(offset);
        if (kv.key() == "length" && !length.empty()) kv.set_value(length);
      }
      break;  // the first external tensor is enough
    }
    write_bytes(model_dir / "m.onnx", p.SerializeAsString());
    return Model::load(model_dir / "m.onnx");
  };

  CHECK(with_location("mnist.onnx.data", "", "").ok());
  auto abs = with_location((tmp.path / "outside.data").string(), "", "");
  REQUIRE_FALSE(abs.ok());
  CHECK(abs.status().message().find("absolute") != std::string::npos);
  auto up = with_location("../outside.data", "", "");
  REQUIRE_FALSE(up.ok());
  CHECK(up.status().message().find("escapes") != std::string::npos);
  fs::create_symlink(tmp.path / "outside.data", model_dir / "link.data");
  auto link = with_location("link.data", "", "");
  REQUIRE_FALSE(link.ok());
  CHECK(link.status().message().find("outside") != std::string::npos);
  auto past = with_location("mnist.onnx.data", "105000", "");
  REQUIRE_FALSE(past.ok());
  CHECK(past.status().message().find("past the end") != std::string::npos);
  auto missing = with_location("nothere.data", "", "");
  REQUIRE_FALSE(missing.ok());
  for (const auto* r : {&abs, &up, &link, &past, &missing}) CHECK(exit_code_for(r->status().code()) == 2);
}

TEST_CASE("graph index: producers, consumers, topological order", "[model_io]") {
  auto m = Model::load(kTestData / "alrevuelta-cONNXr/test/mnist/model.onnx");
  REQUIRE(m.ok());
  auto g = Graph::build(**m);
  REQUIRE(g.ok());
  CHECK(g->nodes().size() == 12);
  CHECK(g->inputs().size() == 1);
  CHECK(g->inputs()[0].dims == std::vector<int64_t>{1, 1, 28, 28});
  std::vector<size_t> pos(g->nodes().size());
  for (size_t i = 0; i < g->topo_order().size(); ++i) pos[g->topo_order()[i]] = i;
  for (size_t n = 0; n < g->nodes().size(); ++n)
    for (const auto& in : g->nodes()[n].inputs) {
      const int64_t p = g->producer(in);
      if (p >= 0) CHECK(pos[static_cast<size_t>(p)] < pos[n]);
    }
  CHECK((*m)->opset() == 8);
  // A node reading a tensor nobody produces is reported by name.
  onnx::ModelProto bad = (*m)->proto();
  bad.mutable_graph()->mutable_node(3)->set_input(0, "ghost");
  auto gb = Graph::build(*Model::from_proto(bad));
  REQUIRE_FALSE(gb.ok());
  CHECK(gb.status().message().find("ghost") != std::string::npos);
}

TEST_CASE("constant nodes run just before their first consumer", "[model_io]") {
  // A quantizer's layout: both weights' DequantizeLinear at the top of the file.
  auto m = parse_model(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,2] x) => (float[1,2] y) {
      w1 = DequantizeLinear(q1, s, z)
      w2 = DequantizeLinear(q2, s, z)
      h = MatMul(x, w1)
      r = Relu(h)
      y = MatMul(r, w2)
    })",
                       {{"q1", Tensor::from_vector<int8_t>({2, 2}, {1, 2, 3, 4})},
                        {"q2", Tensor::from_vector<int8_t>({2, 2}, {1, 0, 0, -1})},
                        {"s", Tensor::scalar<float>(0.5f)},
                        {"z", Tensor::scalar<int8_t>(0)}});
  auto g = Graph::build(*m);
  REQUIRE(g.ok());
  // File order would be 0 1 2 3 4; each DequantizeLinear moves down to its consumer.
  CHECK(g->topo_order() == std::vector<size_t>{0, 2, 3, 1, 4});
  auto ex = Executor::create(m);
  REQUIRE(ex.ok());
  auto out = (*ex)->run({{"x", Tensor::from_vector<float>({1, 2}, {1.0f, -2.0f})}});
  REQUIRE(out.ok());
  // w1 = [[0.5,1],[1.5,2]]: h = [1-3, 2-4] = [-2,-2], r = 0, y = 0; by hand.
  const float* y = (*out)[0].second.data<float>();
  CHECK(y[0] == 0.0f);
  CHECK(y[1] == 0.0f);
  auto out2 = (*ex)->run({{"x", Tensor::from_vector<float>({1, 2}, {2.0f, 0.0f})}});
  REQUIRE(out2.ok());
  // h = [1, 2] -> r = [1, 2]; w2 = [[0.5,0],[0,-0.5]]: y = [0.5, -1].
  CHECK((*out2)[0].second.data<float>()[0] == 0.5f);
  CHECK((*out2)[0].second.data<float>()[1] == -1.0f);
}

TEST_CASE("a model can share its source's initializer bytes: graph, executor and save see full tensors", "[model_io]") {
  std::vector<float> wv(64 * 8), bv(8);
  for (size_t i = 0; i < wv.size(); ++i) wv[i] = static_cast<float>(static_cast<int>(i % 13) - 6) * 0.25f;
  for (size_t i = 0; i < bv.size(); ++i) bv[i] = static_cast<float>(i);
  auto src = parse_model(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,64] x) => (float[1,8] y) {
      h = MatMul(x, w)
      y = Add(h, b)
    })",
                         {{"w", Tensor::from_vector<float>({64, 8}, wv)}});
  // `b` stored in typed fields (float_data): not shareable in place, copied instead.
  {
    auto* t = src->mutable_proto().mutable_graph()->add_initializer();
    t->set_name("b");
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->add_dims(8);
    for (float v : bv) t->add_float_data(v);
  }
  // The full model as a pass would otherwise write it, and a byte-less copy sharing `src`'s bytes.
  const onnx::ModelProto full = src->proto();
  onnx::ModelProto shell = full;
  for (auto& t : *shell.mutable_graph()->mutable_initializer()) {
    t.clear_raw_data();
    t.clear_float_data();
  }
  auto out = Model::from_proto(shell);
  CHECK(out->share_initializer_bytes(src) == 1);
  CHECK(out->shares_bytes());
  // `b` was copied; `w` is still a shell in the proto but resolves to the source's tensor.
  CHECK(out->proto().graph().initializer(1).float_data_size() == 8);
  CHECK_FALSE(out->proto().graph().initializer(0).has_raw_data());
  auto g = Graph::build(*out);
  REQUIRE(g.ok());
  CHECK(g->initializer("w") == &src->proto().graph().initializer(0));
  CHECK(out->serialized_size() == full.ByteSizeLong());

  // Runs like the source: y = x @ w + b, checked against a plain loop.
  std::vector<float> xv(64);
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = static_cast<float>(i % 5) - 2.0f;
  auto ex = Executor::create(out);
  REQUIRE(ex.ok());
  auto r = (*ex)->run({{"x", Tensor::from_vector<float>({1, 64}, xv)}});
  REQUIRE(r.ok());
  for (int j = 0; j < 8; ++j) {
    double acc = bv[static_cast<size_t>(j)];
    for (int k = 0; k < 64; ++k) acc += static_cast<double>(xv[static_cast<size_t>(k)]) * wv[static_cast<size_t>(k * 8 + j)];
    CHECK((*r)[0].second.data<float>()[j] == Approx(acc).margin(1e-4));
  }

  // Saved, the file is exactly the full model's serialization (what protobuf itself writes).
  TempDir tmp;
  REQUIRE(out->save(tmp.path / "shared.onnx").ok());
  auto bytes = read_file_bytes(tmp.path / "shared.onnx", "model");
  REQUIRE(bytes.ok());
  CHECK(*bytes == full.SerializeAsString());
  // Re-externalising goes through a materialized copy and keeps the data.
  SaveOptions so;
  so.external_data = true;
  REQUIRE(out->save(tmp.path / "ext.onnx", so).ok());
  auto back = Model::load(tmp.path / "ext.onnx");
  REQUIRE(back.ok());
  auto wt = (*back)->initializer((*back)->proto().graph().initializer(0));
  REQUIRE(wt.ok());
  CHECK(std::memcmp(wt->data<float>(), wv.data(), wv.size() * sizeof(float)) == 0);
  // The source outlives its last owner elsewhere: the shared model keeps it alive.
  const onnx::TensorProto* w_src = &src->proto().graph().initializer(0);
  src.reset();
  CHECK(&out->resolve(out->proto().graph().initializer(0)) == w_src);
  CHECK(out->initializer(out->proto().graph().initializer(0))->data<float>()[1] == wv[1]);
}

namespace {

void append_varint(uint64_t v, std::string* out) {
  for (; v >= 0x80; v >>= 7) out->push_back(static_cast<char>((v & 0x7f) | 0x80));
  out->push_back(static_cast<char>(v));
}

void append_len_field(int number, const std::string& body, std::string* out) {
  append_varint(static_cast<uint64_t>(number) << 3 | 2, out);
  append_varint(body.size(), out);
  out->append(body);
}

std::string filler_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// A float tensor of n values whose raw_data comes first on the wire (protobuf writes it after the
// name and type): a hand-written field order the loader must keep.
std::string raw_first_tensor(const std::string& name, size_t n, uint32_t seed) {
  std::string t;
  append_len_field(onnx::TensorProto::kRawDataFieldNumber, filler_bytes(n * 4, seed), &t);
  append_varint(onnx::TensorProto::kDimsFieldNumber << 3, &t);
  append_varint(n, &t);
  append_varint(onnx::TensorProto::kDataTypeFieldNumber << 3, &t);
  append_varint(onnx::TensorProto::FLOAT, &t);
  append_len_field(onnx::TensorProto::kNameFieldNumber, name, &t);
  return t;
}

// A model file: `graph` holds everything but `extra_initializers`, which are appended to the graph as
// hand-written TensorProto bytes.
std::string model_file_bytes(onnx::ModelProto m, const std::vector<std::string>& extra_initializers) {
  std::string graph = m.graph().SerializeAsString();
  for (const auto& t : extra_initializers) append_len_field(onnx::GraphProto::kInitializerFieldNumber, t, &graph);
  m.clear_graph();
  std::string out = m.SerializeAsString();
  append_len_field(onnx::ModelProto::kGraphFieldNumber, graph, &out);
  return out;
}

onnx::ModelProto protobuf_parse(const std::string& bytes) {
  onnx::ModelProto m;
  google::protobuf::io::ArrayInputStream raw(bytes.data(), static_cast<int>(bytes.size()));
  google::protobuf::io::CodedInputStream in(&raw);
  in.SetTotalBytesLimit(INT_MAX);
  REQUIRE(m.ParseFromCodedStream(&in));
  return m;
}

}  // namespace

TEST_CASE("the two-part load gives protobuf's own parse of the file", "[model_io]") {
  TempDir tmp;
  // A graph whose weights are large (cut out and read into place), small (left to protobuf), typed,
  // in a subgraph (left to protobuf), with unknown fields at every level and a hand-ordered tensor.
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(17);
  auto* g = m.mutable_graph();
  g->set_name("g");
  auto add_raw = [](onnx::GraphProto* graph, const std::string& name, size_t n, uint32_t seed) {
    auto* t = graph->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->add_dims(static_cast<int64_t>(n));
    t->set_raw_data(filler_bytes(n * 4, seed));
    return t;
  };
  auto* big = add_raw(g, "big", 1 << 19, 1);  // 2 MiB: one piece
  add_raw(g, "huge", 3 << 20, 2);              // 12 MiB: three pieces
  add_raw(g, "small", 100, 3);
  big->GetReflection()->MutableUnknownFields(big)->AddVarint(1000, 42);
  auto* typed = g->add_initializer();
  typed->set_name("typed");
  typed->set_data_type(onnx::TensorProto::INT64);
  typed->add_dims(3);
  for (int64_t v : {1, 2, 3}) typed->add_int64_data(v);
  auto* node = g->add_node();
  node->set_op_type("If");
  node->add_input("cond");
  node->add_output("y");
  auto* attr = node->add_attribute();
  attr->set_name("then_branch");
  attr->set_type(onnx::AttributeProto::GRAPH);
  add_raw(attr->mutable_g(), "sub", 1 << 17, 4);
  g->GetReflection()->MutableUnknownFields(g)->AddLengthDelimited(2000, "graph extension");
  m.GetReflection()->MutableUnknownFields(&m)->AddFixed64(3000, 7);

  SECTION("cut and read back in place") {
    const std::string bytes = model_file_bytes(m, {raw_first_tensor("first", 70000, 5)});
    write_bytes(tmp.path / "m.onnx", bytes);
    onnx::ModelProto split;
    auto r = load_model_in_parts(tmp.path / "m.onnx", &split);
    REQUIRE(r.ok());
    CHECK(*r);
    const onnx::ModelProto whole = protobuf_parse(bytes);
    CHECK(deterministic_bytes(split) == deterministic_bytes(whole));
    CHECK(split.graph().initializer(1).raw_data() == filler_bytes(3 << 22, 2));  // by value, too
    auto loaded = Model::load(tmp.path / "m.onnx");
    REQUIRE(loaded.ok());
    CHECK(deterministic_bytes((*loaded)->proto()) == deterministic_bytes(whole));
  }
  SECTION("a tensor with raw_data twice is left to protobuf (the last one wins)") {
    std::string twice = raw_first_tensor("twice", 70000, 6);
    append_len_field(onnx::TensorProto::kRawDataFieldNumber, filler_bytes(280000, 7), &twice);
    const std::string bytes = model_file_bytes(m, {twice});
    write_bytes(tmp.path / "t.onnx", bytes);
    onnx::ModelProto split;
    auto r = load_model_in_parts(tmp.path / "t.onnx", &split);
    REQUIRE(r.ok());
    CHECK_FALSE(*r);
    auto loaded = Model::load(tmp.path / "t.onnx");
    REQUIRE(loaded.ok());
    const onnx::ModelProto whole = protobuf_parse(bytes);
    CHECK(whole.graph().initializer(4).raw_data() == filler_bytes(280000, 7));
    CHECK(deterministic_bytes((*loaded)->proto()) == deterministic_bytes(whole));
  }
  SECTION("a truncated large file fails as before: invalid model, its path named") {
    const std::string bytes = model_file_bytes(m, {});
    write_bytes(tmp.path / "cut.onnx", bytes.substr(0, bytes.size() - 1000));
    auto loaded = Model::load(tmp.path / "cut.onnx");
    REQUIRE_FALSE(loaded.ok());
    CHECK(loaded.status().code() == StatusCode::kInvalidModel);
    CHECK(loaded.status().message().find("cut.onnx") != std::string::npos);
  }
}
