#include <catch2/catch.hpp>

#include <filesystem>
#include <random>

#include "frugal/dataset.h"
#include "frugal/file_util.h"

#include "test_util.h"

using namespace frugal;
using namespace frugal::testing;
namespace fs = std::filesystem;

namespace {

const fs::path kTestData = FRUGAL_TESTDATA_DIR;
const fs::path kRepo = FRUGAL_SOURCE_DIR;

Graph graph_of(const fs::path& p, std::shared_ptr<Model>* keep) {
  auto m = Model::load(p);
  REQUIRE(m.ok());
  *keep = *m;
  auto g = Graph::build(**m);
  REQUIRE(g.ok());
  return std::move(g).value();
}

}  // namespace

TEST_CASE("npy: hand-written v1 file parses; write_npy round-trips", "[dataset]") {
  // numpy's own layout: magic, version 1.0, little-endian header length, dict, padding, data.
  std::string header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }";
  header += std::string(64 - (10 + header.size() + 1) % 64, ' ') + "\n";
  std::string file = std::string("\x93NUMPY\x01\x00", 8);
  file += static_cast<char>(header.size() & 0xFF);
  file += static_cast<char>(header.size() >> 8);
  file += header;
  for (int32_t v : {1, -2, 3, 4, 5, 6}) file.append(reinterpret_cast<const char*>(&v), 4);
  auto t = parse_npy(file.data(), file.size(), "mem");
  REQUIRE(t.ok());
  CHECK(t->dtype() == DType::kInt32);
  CHECK(t->shape() == Shape{2, 3});
  CHECK(t->to_int64_vector() == std::vector<int64_t>{1, -2, 3, 4, 5, 6});

  auto bad = parse_npy(file.data(), file.size() - 4, "short");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("needs 24 bytes") != std::string::npos);

  TempDir tmp;
  auto x = Tensor::from_vector<float>({3}, {0.5f, -1.0f, 2.0f});
  REQUIRE(write_npy(tmp.path / "x.npy", x).ok());
  auto y = read_npy(tmp.path / "x.npy");
  REQUIRE(y.ok());
  CHECK(y->shape() == Shape{3});
  CHECK(y->to_double_vector() == std::vector<double>{0.5, -1.0, 2.0});
}

TEST_CASE("npz written by numpy reads with names and shapes", "[dataset]") {
  auto z = read_npz(kTestData / "sonos-tract/onnx/test_cases/qrelu_1/io.npz");
  REQUIRE(z.ok());
  REQUIRE(z->size() == 2);
  const Tensor* in = find_named(*z, "input");
  REQUIRE(in);
  CHECK(in->shape() == Shape{5, 10});
  CHECK(in->dtype() == DType::kFloat);
  CHECK(in->data<float>()[0] == Approx(0.49671414494514465));  // value read with numpy
}

TEST_CASE("test_data_set inputs bind by name when names match, by position otherwise", "[dataset]") {
  std::shared_ptr<Model> keep;
  SECTION("keras BERT: file order differs from graph order") {
    const fs::path dir = kTestData /
        "microsoft-onnxruntime/onnxruntime/python/tools/transformers/test_data/bert_squad_tensorflow2.1_keras2onnx_opset11";
    Graph g = graph_of(dir / "TFBertForQuestionAnswering.onnx", &keep);
    auto ds = open_dataset(g, dir, {});
    REQUIRE(ds.ok());
    CHECK((*ds)->size() == 1);
    auto s = (*ds)->get(0);
    REQUIRE(s.ok());
    auto ids = read_tensor_pb(dir / "test_data_set_0/input_0.pb");
    REQUIRE(ids.ok());
    const Tensor* bound = find_named(*s, ids->first);
    REQUIRE(bound);
    CHECK(bound->to_int64_vector() == ids->second.to_int64_vector());
    auto ref = (*ds)->expected(0);
    REQUIRE(ref.ok());
    CHECK(ref->size() == 2);
  }
  SECTION("mnist: unnamed tensors bind by position") {
    const fs::path dir = kTestData / "alrevuelta-cONNXr/test/mnist";
    Graph g = graph_of(dir / "model.onnx", &keep);
    auto ds = open_dataset(g, dir, {});
    REQUIRE(ds.ok());
    CHECK((*ds)->size() == 3);
    auto s = (*ds)->get(2);
    REQUIRE(s.ok());
    CHECK((*s)[0].first == g.inputs()[0].name);
    CHECK((*s)[0].second.shape() == Shape{1, 1, 28, 28});
  }
}

TEST_CASE("an npz with one more axis than the input is a stack of samples", "[dataset]") {
  std::shared_ptr<Model> keep;
  Graph g = graph_of(kRepo / "tests/models/digits_mlp.onnx", &keep);
  auto ds = open_dataset(g, kRepo / "tests/models/data/digits_mlp_heldout.npz", {});
  REQUIRE(ds.ok());
  CHECK((*ds)->size() == 500);
  auto s = (*ds)->get(499);
  REQUIRE(s.ok());
  CHECK((*s)[0].second.shape() == Shape{1, 64});
  // The fingerprint is the file's sha256.
  auto sha = sha256_file(kRepo / "tests/models/data/digits_mlp_heldout.npz");
  REQUIRE(sha.ok());
  CHECK((*ds)->fingerprint() == *sha);
}

TEST_CASE("wrong dtype or shape names the input at fault", "[dataset]") {
  std::shared_ptr<Model> keep;
  Graph g = graph_of(kTestData / "alrevuelta-cONNXr/test/mnist/model.onnx", &keep);
  const std::string name = g.inputs()[0].name;
  NamedTensors wrong_type{{name, Tensor::zeros(DType::kDouble, {1, 1, 28, 28})}};
  auto st = check_inputs(g, wrong_type);
  CHECK(st.code() == StatusCode::kInvalidData);
  CHECK(st.message().find("'" + name + "'") != std::string::npos);
  CHECK(st.message().find("float64") != std::string::npos);
  NamedTensors wrong_shape{{name, Tensor::zeros(DType::kFloat, {1, 1, 28, 27})}};
  st = check_inputs(g, wrong_shape);
  CHECK(st.message().find("dim 3 must be 28") != std::string::npos);
  CHECK(check_inputs(g, {}).message().find("missing input") != std::string::npos);
  TempDir tmp;
  auto none = open_dataset(g, tmp.path, {});
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().message().find("no samples") != std::string::npos);
}

TEST_CASE("synthetic data follows declared shapes and needs --dims for symbolic ones", "[dataset]") {
  std::shared_ptr<Model> keep;
  Graph g = graph_of(kTestData /
                         "microsoft-onnxruntime/onnxruntime/python/tools/transformers/test_data/"
                         "bert_squad_pytorch1.4_opset11/BertForQuestionAnswering_1.onnx",
                     &keep);
  DatasetOptions o;
  o.synthetic_count = 4;
  auto ds = synthetic_dataset(g, o);
  REQUIRE(ds.ok());  // the dynamic batch dim defaults to 1
  auto s = (*ds)->get(3);
  REQUIRE(s.ok());
  CHECK((*s)[0].second.shape()[0] == 1);
  o.dims["batch_size"] = 3;
  ds = synthetic_dataset(g, o);
  REQUIRE(ds.ok());
  auto s3 = (*ds)->get(0);
  REQUIRE(s3.ok());
  INFO(shape_str((*s3)[0].second.shape()));
  CHECK(check_inputs(g, *s3, o.dims).ok());
}
