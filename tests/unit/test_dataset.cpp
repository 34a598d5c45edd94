#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>
#include <zip.h>

#include <filesystem>
#include <fstream>
#include <iterator>
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

// ---- streamed .npz / .npy reading ---------------------------------------------------------------------

namespace {

// An .npy file's bytes as numpy writes them (v1 header padded to 64 bytes), around raw little-endian data.
std::string npy_bytes(const std::string& descr, const std::vector<int64_t>& shape, const void* data, size_t nbytes,
                      bool fortran = false) {
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                       ", 'shape': (" + dims + "), }";
  header += std::string((64 - (10 + header.size() + 1) % 64) % 64, ' ') + "\n";
  std::string out = std::string("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xFF);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(static_cast<const char*>(data), nbytes);
  return out;
}

template <typename T>
std::string npy_of(const std::string& descr, const std::vector<int64_t>& shape, const std::vector<T>& v) {
  return npy_bytes(descr, shape, v.data(), v.size() * sizeof(T));
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

// Writes an .npz with libzip: entries NAME.npy holding the given .npy bytes, stored or deflated.
void write_npz(const fs::path& p, const std::vector<std::pair<std::string, std::string>>& entries, bool deflate,
               int level = 6) {
  int err = 0;
  zip_t* z = zip_open(p.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  REQUIRE(z);
  for (const auto& [name, bytes] : entries) {
    zip_source_t* src = zip_source_buffer(z, bytes.data(), bytes.size(), 0);
    REQUIRE(src);
    const zip_int64_t idx = zip_file_add(z, (name + ".npy").c_str(), src, ZIP_FL_OVERWRITE);
    REQUIRE(idx >= 0);
    REQUIRE(zip_set_file_compression(z, static_cast<zip_uint64_t>(idx), deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE,
                                     static_cast<zip_uint32_t>(level)) == 0);
  }
  REQUIRE(zip_close(z) == 0);  // the buffers must outlive zip_close, which writes the archive
}

// Where the first entry's (compressed) data starts: after the local header, its name and extra field.
size_t first_entry_data_offset(const std::string& zip_bytes) {
  REQUIRE(zip_bytes.compare(0, 4, "PK\x03\x04") == 0);
  auto u16 = [&](size_t at) { return static_cast<size_t>(static_cast<uint8_t>(zip_bytes[at])) |
                                     static_cast<size_t>(static_cast<uint8_t>(zip_bytes[at + 1])) << 8; };
  return 30 + u16(26) + u16(28);
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

const char* kTwoInputs = R"(
  <ir_version: 8, opset_import: ["" : 13]>
  g (float[2,3] x, int64[4] y) => (float[2,3] xo, int64[4] yo) { xo = Identity(x)  yo = Identity(y) }
)";
const char* kOneInput = R"(
  <ir_version: 8, opset_import: ["" : 13]>
  g (float[2,3] x) => (float[2,3] xo) { xo = Identity(x) }
)";

// n samples of x: float[2,3] (random bit patterns of ordinary floats) and y: int64[4] (large values).
struct Samples {
  size_t n;
  std::vector<float> x;
  std::vector<int64_t> y;
  explicit Samples(size_t n_, uint32_t seed = 1) : n(n_), x(n_ * 6), y(n_ * 4) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (auto& v : x) v = nd(rng);
    for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<int64_t>(rng()) * 1000003 - static_cast<int64_t>(i);
  }
  std::vector<float> x_row(size_t i) const { return {x.begin() + static_cast<long>(6 * i), x.begin() + static_cast<long>(6 * i + 6)}; }
  std::vector<int64_t> y_row(size_t i) const { return {y.begin() + static_cast<long>(4 * i), y.begin() + static_cast<long>(4 * i + 4)}; }
  // .npy bytes of samples [a, b) (stacked) or of sample a alone (unstacked).
  std::string x_npy(size_t a, size_t b) const {
    return npy_bytes("<f4", {static_cast<int64_t>(b - a), 2, 3}, x.data() + 6 * a, (b - a) * 24);
  }
  std::string y_npy(size_t a, size_t b) const {
    return npy_bytes("<i8", {static_cast<int64_t>(b - a), 4}, y.data() + 4 * a, (b - a) * 32);
  }
  std::string x_npy_single(size_t a) const { return npy_bytes("<f4", {2, 3}, x.data() + 6 * a, 24); }
  std::string y_npy_single(size_t a) const { return npy_bytes("<i8", {4}, y.data() + 4 * a, 32); }
};

// get(i) for each i in `order`: x (and y when the model has it) must equal sample i's rows exactly.
void check_samples(Dataset& ds, const Samples& s, const std::vector<size_t>& order, bool with_y) {
  for (size_t i : order) {
    INFO("sample " << i);
    auto got = ds.get(i);
    REQUIRE(got.ok());
    REQUIRE(got->size() == (with_y ? 2u : 1u));
    const Tensor* x = find_named(*got, "x");
    REQUIRE(x);
    REQUIRE(x->dtype() == DType::kFloat);
    REQUIRE(x->shape() == Shape{2, 3});
    CHECK(std::vector<float>(x->data<float>(), x->data<float>() + 6) == s.x_row(i));
    if (with_y) {
      const Tensor* y = find_named(*got, "y");
      REQUIRE(y);
      REQUIRE(y->dtype() == DType::kInt64);
      REQUIRE(y->shape() == Shape{4});
      CHECK(std::vector<int64_t>(y->data<int64_t>(), y->data<int64_t>() + 4) == s.y_row(i));
    }
  }
}

std::vector<size_t> all_then_shuffled(size_t n) {
  std::vector<size_t> v;
  for (size_t i = 0; i < n; ++i) v.push_back(i);
  for (size_t i : {5, 1, 7, 7, 7, 0, 8, 3, 3, 8, 0}) v.push_back(i % n);
  return v;
}

// Peak RSS (VmHWM) and current RSS (VmRSS) of this process in KiB.
int64_t proc_status_kib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));
  return -1;
}

// Resets the peak RSS to the current RSS (Linux >= 4.0: writing 5 to /proc/self/clear_refs).
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return f.good();
}

}  // namespace

TEST_CASE("stacked npz streams samples in and out of order, stored and deflated", "[dataset][npz_stream]") {
  auto m = parse_model(kTwoInputs);
  auto g = Graph::build(*m);
  REQUIRE(g.ok());
  const Samples s(9);
  TempDir tmp;
  for (bool deflate : {false, true}) {
    INFO((deflate ? "deflated" : "stored"));
    const fs::path p = tmp.path / (deflate ? "d.npz" : "s.npz");
    // y first in the archive: arrays bind by name, not by position.
    write_npz(p, {{"y", s.y_npy(0, 9)}, {"x", s.x_npy(0, 9)}}, deflate);
    auto ds = open_dataset(*g, p, {});
    REQUIRE(ds.ok());
    CHECK((*ds)->size() == 9);
    CHECK((*ds)->describe() == "9 sample(s) from " + p.string());
    auto sha = sha256_file(p);
    REQUIRE(sha.ok());
    CHECK((*ds)->fingerprint() == *sha);
    check_samples(**ds, s, all_then_shuffled(9), true);
    // Read again from the start after the streams reached the end.
    check_samples(**ds, s, {0, 1, 2, 8, 8}, true);
  }
  // Unnamed arrays (numpy's arr_0, arr_1) bind by position; a single sample (no stack axis) also streams.
  const fs::path p = tmp.path / "pos.npz";
  write_npz(p, {{"arr_0", s.x_npy_single(4)}, {"arr_1", s.y_npy_single(4)}}, true);
  auto ds = open_dataset(*g, p, {});
  REQUIRE(ds.ok());
  CHECK((*ds)->size() == 1);
  auto one = (*ds)->get(0);
  REQUIRE(one.ok());
  CHECK(std::vector<float>(find_named(*one, "x")->data<float>(), find_named(*one, "x")->data<float>() + 6) == s.x_row(4));
  CHECK(find_named(*one, "y")->to_int64_vector() == s.y_row(4));
}

TEST_CASE("numpy-written deflated npz streams the values numpy reads", "[dataset][npz_stream]") {
  std::shared_ptr<Model> keep;
  Graph g = graph_of(kRepo / "tests/models/digits_mlp.onnx", &keep);
  auto ds = open_dataset(g, kRepo / "tests/models/data/digits_mlp_heldout.npz", {});
  REQUIRE(ds.ok());
  // (sample, first three non-zero elements, sum) as numpy reads them; values are multiples of 1/16.
  struct Want {
    size_t i;
    std::vector<std::pair<int, float>> first;
    double sum;
  };
  const std::vector<Want> want = {{5, {{2, 0.5f}, {3, 1.0f}, {4, 0.3125f}}, 16.625},
                                  {1, {{2, 0.1875f}, {3, 0.75f}, {4, 1.0f}}, 22.125},
                                  {7, {{4, 0.875f}, {5, 0.8125f}, {6, 0.0625f}}, 19.9375},
                                  {499, {{3, 0.375f}, {4, 0.9375f}, {5, 0.375f}}, 17.25}};
  for (int rep = 0; rep < 2; ++rep)
    for (const auto& w : want) {
      INFO("sample " << w.i);
      auto s = (*ds)->get(w.i);
      REQUIRE(s.ok());
      const Tensor& t = (*s)[0].second;
      REQUIRE(t.shape() == Shape{1, 64});
      double sum = 0;
      std::vector<std::pair<int, float>> nz;
      for (int k = 0; k < 64; ++k) {
        sum += t.data<float>()[k];
        if (t.data<float>()[k] != 0 && nz.size() < 3) nz.emplace_back(k, t.data<float>()[k]);
      }
      CHECK(nz == w.first);
      CHECK(sum == w.sum);
    }
}

TEST_CASE("stacked npy files and folders of stacked files stream sample by sample", "[dataset][npz_stream]") {
  const Samples s(11, 2);
  TempDir tmp;
  SECTION("one stacked .npy") {
    auto m = parse_model(kOneInput);
    auto g = Graph::build(*m);
    REQUIRE(g.ok());
    write_bytes(tmp.path / "x.npy", s.x_npy(0, 11));
    auto ds = open_dataset(*g, tmp.path / "x.npy", {});
    REQUIRE(ds.ok());
    CHECK((*ds)->size() == 11);
    auto sha = sha256_file(tmp.path / "x.npy");
    REQUIRE(sha.ok());
    CHECK((*ds)->fingerprint() == *sha);
    check_samples(**ds, s, all_then_shuffled(11), false);
  }
  SECTION("a folder of .npy: stacks and a single sample, in numeric name order") {
    auto m = parse_model(kOneInput);
    auto g = Graph::build(*m);
    REQUIRE(g.ok());
    write_bytes(tmp.path / "x_2.npy", s.x_npy(0, 4));
    write_bytes(tmp.path / "x_3.npy", s.x_npy_single(4));
    write_bytes(tmp.path / "x_10.npy", s.x_npy(5, 11));
    auto ds = open_dataset(*g, tmp.path, {});
    REQUIRE(ds.ok());
    CHECK((*ds)->size() == 11);
    check_samples(**ds, s, all_then_shuffled(11), false);
    check_samples(**ds, s, {10, 4, 3, 5, 0, 10}, false);
  }
  SECTION("a folder of .npz, stored and deflated") {
    auto m = parse_model(kTwoInputs);
    auto g = Graph::build(*m);
    REQUIRE(g.ok());
    write_npz(tmp.path / "a0.npz", {{"x", s.x_npy(0, 3)}, {"y", s.y_npy(0, 3)}}, false);
    write_npz(tmp.path / "a1.npz", {{"x", s.x_npy(3, 8)}, {"y", s.y_npy(3, 8)}}, true);
    write_npz(tmp.path / "a2.npz", {{"x", s.x_npy_single(8)}, {"y", s.y_npy_single(8)}}, true);
    write_npz(tmp.path / "a3.npz", {{"y", s.y_npy(9, 11)}, {"x", s.x_npy(9, 11)}}, false);
    auto ds = open_dataset(*g, tmp.path, {});
    REQUIRE(ds.ok());
    CHECK((*ds)->size() == 11);
    CHECK((*ds)->describe() == "11 sample(s) in 4 file(s) in " + tmp.path.string());
    check_samples(**ds, s, all_then_shuffled(11), true);
    check_samples(**ds, s, {6, 4, 7, 3, 9, 10, 9}, true);
  }
}

TEST_CASE("damaged or mismatched npz and npy data fail with one clear line", "[dataset][npz_stream]") {
  auto m1 = parse_model(kOneInput);
  auto g1 = Graph::build(*m1);
  REQUIRE(g1.ok());
  auto m2 = parse_model(kTwoInputs);
  auto g2 = Graph::build(*m2);
  REQUIRE(g2.ok());
  const Samples s(4000, 3);
  TempDir tmp;
  auto one_line = [](const Status& st) { return st.message().find('\n') == std::string::npos; };

  SECTION("a header promising more data than the entry or file holds fails at open") {
    std::string short_npy = s.x_npy(0, 10);
    short_npy.resize(short_npy.size() - 12);
    for (bool deflate : {false, true}) {
      write_npz(tmp.path / "short.npz", {{"x", short_npy}}, deflate);
      auto ds = open_dataset(*g1, tmp.path / "short.npz", {});
      REQUIRE_FALSE(ds.ok());
      CHECK(ds.status().code() == StatusCode::kInvalidData);
      CHECK(ds.status().message() == (tmp.path / "short.npz").string() +
                                         ":x: array [10,2,3] of float32 needs 240 bytes but the entry holds 228");
    }
    write_bytes(tmp.path / "short.npy", short_npy);
    auto ds = open_dataset(*g1, tmp.path / "short.npy", {});
    REQUIRE_FALSE(ds.ok());
    CHECK(ds.status().message().find("needs 240 bytes but the file holds 228") != std::string::npos);
    // In a folder the check also happens when the folder is opened, before any sample is read.
    fs::create_directory(tmp.path / "dir");
    write_bytes(tmp.path / "dir" / "a.npy", s.x_npy(0, 3));
    write_bytes(tmp.path / "dir" / "b.npy", short_npy);
    ds = open_dataset(*g1, tmp.path / "dir", {});
    REQUIRE_FALSE(ds.ok());
    CHECK(ds.status().message().find("b.npy: array [10,2,3] of float32 needs 240 bytes") != std::string::npos);
  }
  SECTION("damaged deflated data fails when its sample is read") {
    write_npz(tmp.path / "d.npz", {{"x", s.x_npy(0, 4000)}}, true);
    std::string z = read_all(tmp.path / "d.npz");
    const size_t at = first_entry_data_offset(z) + 20000;  // well past the header, inside the stream
    for (size_t k = 0; k < 16; ++k) z[at + k] ^= 0x5A;
    write_bytes(tmp.path / "d.npz", z);
    auto ds = open_dataset(*g1, tmp.path / "d.npz", {});
    REQUIRE(ds.ok());  // the header decompresses fine
    Status failed;
    for (size_t i = 0; i < 4000 && failed.ok(); ++i) {
      auto r = (*ds)->get(i);
      if (!r.ok()) failed = r.status();
    }
    REQUIRE_FALSE(failed.ok());
    CHECK(failed.code() == StatusCode::kInvalidData);
    CHECK(failed.message().find((tmp.path / "d.npz").string() + ": entry 'x.npy' is truncated or corrupt") == 0);
    CHECK(one_line(failed));
  }
  SECTION("damaged stored data fails the CRC check once the entry has been read through") {
    // A small entry (up to 1 MiB) is read through when the dataset opens, so the damage shows then.
    write_npz(tmp.path / "s.npz", {{"x", s.x_npy(0, 4000)}}, false);
    std::string z = read_all(tmp.path / "s.npz");
    z[first_entry_data_offset(z) + 128 + 24 * 1000 + 5] ^= 0x01;  // a byte of sample 1000
    write_bytes(tmp.path / "s.npz", z);
    auto ds = open_dataset(*g1, tmp.path / "s.npz", {});
    REQUIRE_FALSE(ds.ok());
    CHECK(ds.status().message() ==
          (tmp.path / "s.npz").string() + ": entry 'x.npy' is truncated or corrupt (CRC mismatch)");
    // A larger one is skipped over at open and checked when its last sample has been read in order.
    const Samples big(50000, 7);  // 1.2 MB of data
    write_npz(tmp.path / "b.npz", {{"x", big.x_npy(0, big.n)}}, false);
    z = read_all(tmp.path / "b.npz");
    z[first_entry_data_offset(z) + 128 + 24 * 30000 + 5] ^= 0x01;  // a byte of sample 30000
    write_bytes(tmp.path / "b.npz", z);
    ds = open_dataset(*g1, tmp.path / "b.npz", {});
    REQUIRE(ds.ok());
    for (size_t i = 0; i + 1 < big.n; ++i) REQUIRE((*ds)->get(i).ok());
    auto last = (*ds)->get(big.n - 1);
    REQUIRE_FALSE(last.ok());
    CHECK(last.status().message() ==
          (tmp.path / "b.npz").string() + ": entry 'x.npy' is truncated or corrupt (CRC mismatch)");
  }
  SECTION("an archive cut short is refused at open") {
    write_npz(tmp.path / "s.npz", {{"x", s.x_npy(0, 4000)}}, false);
    std::string z = read_all(tmp.path / "s.npz");
    write_bytes(tmp.path / "s.npz", z.substr(0, z.size() / 2));
    auto ds = open_dataset(*g1, tmp.path / "s.npz", {});
    REQUIRE_FALSE(ds.ok());
    CHECK(ds.status().message() == "'" + (tmp.path / "s.npz").string() +
                                       "' is not a valid .npz (zip) archive (no end of central directory record; "
                                       "the file may be cut short)");
  }
  SECTION("Fortran order is refused with the fix named") {
    write_bytes(tmp.path / "f.npy", npy_bytes("<f4", {3, 2, 3}, s.x.data(), 72, true));
    auto ds = open_dataset(*g1, tmp.path / "f.npy", {});
    REQUIRE_FALSE(ds.ok());
    CHECK(ds.status().code() == StatusCode::kUnsupported);
    CHECK(ds.status().message().find("Fortran-order arrays are not supported") != std::string::npos);
  }
  SECTION("wrong dtype or shape names the input and the sample") {
    std::vector<double> xd(s.x.begin(), s.x.begin() + 18);
    write_npz(tmp.path / "dt.npz", {{"x", npy_of("<f8", {3, 2, 3}, xd)}, {"y", s.y_npy(0, 3)}}, true);
    auto ds = open_dataset(*g2, tmp.path / "dt.npz", {});
    REQUIRE(ds.ok());
    auto r = (*ds)->get(2);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find("sample 2") != std::string::npos);
    CHECK(r.status().message().find("input 'x' has dtype float64 but the model expects float32") != std::string::npos);
    write_npz(tmp.path / "sh.npz", {{"x", s.x_npy(0, 3)}, {"y", npy_bytes("<i8", {3, 5}, s.y.data(), 120)}}, false);
    ds = open_dataset(*g2, tmp.path / "sh.npz", {});
    REQUIRE(ds.ok());
    r = (*ds)->get(1);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find("input 'y' has shape [5] but dim 0 must be 4") != std::string::npos);
    write_npz(tmp.path / "n.npz", {{"x", s.x_npy(0, 3)}, {"y", s.y_npy(0, 2)}}, false);
    ds = open_dataset(*g2, tmp.path / "n.npz", {});
    REQUIRE_FALSE(ds.ok());
    CHECK(ds.status().message().find("array 'y' holds 2 samples, others 3") != std::string::npos);
  }
}

// The memory check: ~200 MB of samples read one by one must not raise the peak RSS by anything like
// the data size. The files are written by a child process, so the writer's buffers never count here.
TEST_CASE("a damaged npz byte anywhere gives an error or the exact samples, never a wrong read", "[dataset][npz_stream]") {
  // Every byte of two small archives (stored and deflated, two arrays each), changed one at a time:
  // the local headers, the data, the central directory and the end record. Whatever the byte was,
  // opening and reading every sample must either fail with a one-line InvalidData/Unsupported/NotFound
  // (a name that no longer ends in .npy leaves an input unbound) or give back exactly the original
  // samples (bytes no reader depends on: timestamps, attributes, versions).
  auto m = parse_model(kTwoInputs);
  auto g = Graph::build(*m);
  REQUIRE(g.ok());
  const Samples s(5, 11);
  TempDir tmp;
  for (bool deflate : {false, true}) {
    INFO((deflate ? "deflated" : "stored"));
    const fs::path p = tmp.path / "m.npz";
    write_npz(p, {{"x", s.x_npy(0, 5)}, {"y", s.y_npy(0, 5)}}, deflate);
    const std::string good = read_all(p);
    size_t failed = 0, intact = 0;
    for (size_t at = 0; at < good.size(); ++at) {
      for (unsigned char flip : {0x01, 0xFF}) {
        std::string bad = good;
        bad[at] = static_cast<char>(static_cast<unsigned char>(bad[at]) ^ flip);
        write_bytes(p, bad);
        INFO("byte " << at << " xor " << int(flip));
        Status st;
        std::vector<NamedTensors> got;
        auto ds = open_dataset(*g, p, {});
        if (!ds.ok()) st = ds.status();
        for (size_t i = 0; st.ok() && i < (*ds)->size(); ++i) {
          auto r = (*ds)->get(i);
          if (r.ok())
            got.push_back(std::move(*r));
          else
            st = r.status();
        }
        if (!st.ok()) {
          CHECK((st.code() == StatusCode::kInvalidData || st.code() == StatusCode::kUnsupported ||
                 st.code() == StatusCode::kNotFound || st.code() == StatusCode::kInvalidArgument));
          CHECK(st.message().find('\n') == std::string::npos);
          ++failed;
          continue;
        }
        REQUIRE(got.size() == s.n);
        for (size_t i = 0; i < s.n; ++i) {
          const Tensor* x = find_named(got[i], "x");
          const Tensor* y = find_named(got[i], "y");
          REQUIRE((x && y));
          REQUIRE(std::vector<float>(x->data<float>(), x->data<float>() + 6) == s.x_row(i));
          REQUIRE(y->to_int64_vector() == s.y_row(i));
        }
        ++intact;
      }
    }
    // Most single-byte changes must be caught (the data and sizes are CRC-checked, the offsets and
    // signatures bounds-checked); only header fields nobody reads can pass.
    CHECK(failed > 2 * intact);
  }
}

TEST_CASE("streaming a 200 MB npz keeps the peak RSS flat, stored and deflated", "[dataset][npz_stream][memory]") {
  auto m = parse_model(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[64,1024] x) => (float[64,1024] xo) { xo = Identity(x) }
  )");
  auto g = Graph::build(*m);
  REQUIRE(g.ok());
  constexpr size_t kSamples = 800, kRow = 64 * 1024;  // 256 KiB per sample, 200 MiB in all
  constexpr size_t kBytes = kSamples * kRow * sizeof(float);
  // Sample i, element e: i + (e % 1000) / 1024 (exact in float32; zlib level 2 deflates it in about a second).
  auto value = [](size_t i, size_t e) { return static_cast<float>(i) + static_cast<float>(e % 1000) / 1024.0f; };
  TempDir tmp;
  const fs::path stored = tmp.path / "big_stored.npz", deflated = tmp.path / "big_deflated.npz";
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::vector<float> x(kSamples * kRow);
    for (size_t i = 0; i < kSamples; ++i)
      for (size_t e = 0; e < kRow; ++e) x[i * kRow + e] = value(i, e);
    const std::string npy = npy_bytes("<f4", {static_cast<int64_t>(kSamples), 64, 1024}, x.data(), kBytes);
    bool ok = true;
    for (bool deflate : {false, true}) {
      int err = 0;
      zip_t* z = zip_open((deflate ? deflated : stored).c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
      zip_source_t* src = z ? zip_source_buffer(z, npy.data(), npy.size(), 0) : nullptr;
      const zip_int64_t idx = src ? zip_file_add(z, "x.npy", src, 0) : -1;
      ok = ok && idx >= 0 &&
           zip_set_file_compression(z, static_cast<zip_uint64_t>(idx), deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 2) == 0 &&
           zip_close(z) == 0;
    }
    _exit(ok ? 0 : 1);
  }
  int wstatus = 0;
  REQUIRE(waitpid(pid, &wstatus, 0) == pid);
  REQUIRE(WIFEXITED(wstatus));
  REQUIRE(WEXITSTATUS(wstatus) == 0);
  REQUIRE(fs::file_size(stored) > kBytes);

  REQUIRE(reset_peak_rss());
  for (const fs::path& p : {stored, deflated}) {
    INFO(p.filename().string());
    REQUIRE(reset_peak_rss());
    const int64_t before = proc_status_kib("VmRSS");
    REQUIRE(before > 0);
    {
      auto ds = open_dataset(*g, p, {});
      REQUIRE(ds.ok());
      REQUIRE((*ds)->size() == kSamples);
      for (size_t i = 0; i < kSamples; ++i) {
        auto s = (*ds)->get(i);
        REQUIRE(s.ok());
        const float* d = (*s)[0].second.data<float>();
        if (d[0] != value(i, 0) || d[kRow - 1] != value(i, kRow - 1)) FAIL("sample " << i << " has wrong values");
        if (i % 97 == 0)
          for (size_t e = 0; e < kRow; ++e)
            if (d[e] != value(i, e)) FAIL("sample " << i << " element " << e << ": " << d[e] << " != " << value(i, e));
      }
    }
    const int64_t growth = proc_status_kib("VmHWM") - before;
    INFO("peak RSS growth " << growth << " KiB for " << kBytes / 1024 << " KiB of samples");
    CHECK(growth < static_cast<int64_t>(kBytes / 1024 / 4));
  }
  // The control: the whole-file reader does show up, so the measurement above can see a full load.
  REQUIRE(reset_peak_rss());
  const int64_t before = proc_status_kib("VmRSS");
  {
    auto all = read_npz(stored);
    REQUIRE(all.ok());
  }
  CHECK(proc_status_kib("VmHWM") - before > static_cast<int64_t>(kBytes / 1024 * 9 / 10));
}
