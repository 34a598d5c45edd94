#include <catch2/catch.hpp>

#include <fstream>
#include <string>

#include "frugal/dataset.h"
#include "frugal/executor.h"
#include "test_util.h"

using namespace frugal;
using frugal::testing::parse_model;

namespace {

// Peak resident set size of this process so far (kB), from /proc.
long peak_rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string key;
  long v = -1;
  while (in >> key) {
    if (key == "VmHWM:") {
      in >> v;
      break;
    }
    std::getline(in, key);
  }
  return v;
}

// Keeps per-tensor statistics (like calibration does) from every node output.
class StatsObserver : public Observer {
 public:
  Status on_node(const NodeEvent& ev) override {
    for (const auto& t : ev.outputs) {
      if (t.dtype() != DType::kFloat) continue;
      double s = 0;
      for (float v : t.span<float>()) s += v;
      sums_[ev.node.outputs[0]] += s;
      ++calls_;
    }
    order_.push_back(ev.node_index);
    return OkStatus();
  }
  std::map<std::string, double> sums_;
  size_t calls_ = 0;
  std::vector<size_t> order_;
};

const char* kChain = R"(
  <ir_version: 8, opset_import: ["" : 17]>
  chain (float[1,64,64,64] x) => (float[1,64,64,64] y) {
    a = Relu(x)
    b = Add(a, x)
    c = Mul(b, a)
    d = Sigmoid(c)
    e = Add(d, b)
    f = Mul(e, e)
    y = Tanh(f)
  }
)";

}  // namespace

TEST_CASE("observer sees every node in order; extra tensors can be kept", "[executor]") {
  auto model = parse_model(kChain);
  auto ex = Executor::create(model);
  REQUIRE(ex.ok());
  auto x = Tensor::zeros(DType::kFloat, {1, 64, 64, 64});
  x.mut<float>()[0] = 2.0f;
  StatsObserver obs;
  auto out = (*ex)->run_with_extra({{"x", x}}, {"c"}, &obs);
  REQUIRE(out.ok());
  CHECK(obs.order_.size() == 7);
  CHECK(obs.calls_ == 7);
  // y = tanh((sigmoid(relu(x)*... ))^2): hand-derived for x = 2 at element 0 and x = 0 elsewhere.
  const double a = 2, b = a + 2, c = b * a, d = 1 / (1 + std::exp(-c)), e = d + b, y0 = std::tanh(e * e);
  const double y1 = std::tanh(0.25);  // x = 0: a=b=c=0, d=0.5, e=0.5, f=0.25
  REQUIRE(out->size() == 2);
  CHECK((*out)[0].second.data<float>()[0] == Approx(y0));
  CHECK((*out)[0].second.data<float>()[1] == Approx(y1));
  CHECK((*out)[1].first == "c");
  CHECK((*out)[1].second.data<float>()[0] == Approx(c));
}

TEST_CASE("peak memory with an observer on every tensor does not grow with the number of samples", "[executor]") {
  auto model = parse_model(kChain);
  auto ex = Executor::create(model);
  REQUIRE(ex.ok());
  auto g = Graph::build(*model);
  REQUIRE(g.ok());
  DatasetOptions o;
  o.synthetic_count = 220;
  auto data = synthetic_dataset(*g, o);
  REQUIRE(data.ok());
  StatsObserver obs;
  auto run = [&](size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) {
      auto in = (*data)->get(i);
      REQUIRE(in.ok());
      auto out = (*ex)->run(*in, &obs);
      REQUIRE(out.ok());
    }
  };
  run(0, 20);  // warm up allocator pools
  const long after_20 = peak_rss_kb();
  run(20, 220);
  const long after_220 = peak_rss_kb();
  // Each sample makes 8 tensors of 1 MiB: keeping any of them per sample would add >= 200 MiB. The
  // bound leaves room for allocator slack (malloc arenas of the worker threads warm up unevenly on a
  // loaded machine: 8.2 MiB of growth was seen once), far below what a per-sample leak would add.
  INFO("peak RSS after 20 samples " << after_20 << " kB, after 220 samples " << after_220 << " kB");
  CHECK(after_220 - after_20 < 32 * 1024);
  CHECK(obs.calls_ == 220 * 7);
}

TEST_CASE("an op without a kernel is reported with op, domain, opset and node", "[executor]") {
  auto model = parse_model(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,2] x) => (float y) {
      y = Det (x)
    }
  )");
  onnx::ModelProto p = model->proto();
  p.mutable_graph()->mutable_node(0)->set_name("my_det");
  auto ex = Executor::create(Model::from_proto(p));
  REQUIRE_FALSE(ex.ok());
  CHECK(ex.status().code() == StatusCode::kUnsupported);
  const std::string& m = ex.status().message();
  CHECK(m.find("my_det") != std::string::npos);
  CHECK(m.find("ai.onnx::Det") != std::string::npos);
  CHECK(m.find("opset 17") != std::string::npos);
}

TEST_CASE("inputs are validated before running", "[executor]") {
  auto model = parse_model(kChain);
  auto ex = Executor::create(model);
  REQUIRE(ex.ok());
  auto r = (*ex)->run({{"x", Tensor::zeros(DType::kFloat, {1, 64, 64, 63})}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("input 'x'") != std::string::npos);
  r = (*ex)->run({{"x", Tensor::zeros(DType::kFloat, {1, 64, 64, 64})}, {"bogus", Tensor::zeros(DType::kFloat, {1})}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("bogus") != std::string::npos);
}
