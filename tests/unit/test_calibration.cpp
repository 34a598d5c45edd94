// Calibration: histograms, range methods, observer batch/order independence, table JSON.
#include <algorithm>
#include <random>

#include <catch2/catch.hpp>

#include "frugal/calibration.h"

using namespace frugal;

namespace {

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.3f, 1.7f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  v[n / 3] = 25.0f;  // an outlier the histogram methods should clip
  return v;
}

// Feeds `v` to an observer in chunks of `chunk` elements (as if batched), in the given chunk order.
std::map<std::string, TensorRange> observe_chunks(CalibMethod m, const std::vector<float>& v, size_t chunk, bool reverse) {
  CalibOptions o;
  o.method = m;
  o.percentile = 99.0;
  RangeObserver obs(o, {"t"});
  std::vector<std::pair<size_t, size_t>> parts;
  for (size_t i = 0; i < v.size(); i += chunk) parts.push_back({i, std::min(chunk, v.size() - i)});
  if (reverse) std::reverse(parts.begin(), parts.end());
  auto feed = [&] {
    for (auto [start, len] : parts) {
      std::vector<float> piece(v.begin() + static_cast<long>(start), v.begin() + static_cast<long>(start + len));
      obs.observe("t", Tensor::from_vector<float>({static_cast<int64_t>(len)}, piece));
    }
  };
  feed();
  if (obs.needs_histograms()) {
    obs.begin_histograms();
    feed();
  }
  return obs.finish();
}

}  // namespace

TEST_CASE("histogram bins are hand-computable and merge by addition", "[calibration]") {
  Histogram h(0.0, 4.0, 4);
  const float a[] = {0.0f, 0.5f, 1.0f, 3.99f, 4.0f};
  h.add(a, 5);
  // bins [0,1) [1,2) [2,3) [3,4]: 0 and 0.5 -> 0; 1 -> 1; 3.99 and 4 (the top edge) -> 3.
  CHECK(h.counts() == std::vector<uint64_t>{2, 1, 0, 2});
  Histogram g(0.0, 4.0, 4);
  const float b[] = {2.5f, -1.0f};  // -1 clamps into bin 0
  g.add(b, 2);
  REQUIRE(h.merge(g).ok());
  CHECK(h.counts() == std::vector<uint64_t>{3, 1, 1, 2});
  CHECK(h.total() == 7);
  Histogram other(0.0, 5.0, 4);
  CHECK_FALSE(h.merge(other).ok());

  Histogram ab(0.0, 2.0, 2);
  const float c[] = {-1.5f, 0.5f, 1.0f};
  ab.add_abs(c, 3);
  CHECK(ab.counts() == std::vector<uint64_t>{1, 2});
}

TEST_CASE("percentile range from a uniform histogram", "[calibration]") {
  // 100 values 0.5, 1.5, ..., 99.5 in 100 bins over [0, 100]: one per bin.
  Histogram h(0.0, 100.0, 100);
  std::vector<float> v;
  for (int i = 0; i < 100; ++i) v.push_back(static_cast<float>(i) + 0.5f);
  h.add(v.data(), 100);
  // p = 90: lower end is the bin where the cumulative count passes 10 (bin 10 -> edge 10); upper end
  // is the bin where it reaches 90 (bin 89 -> upper edge 90).
  auto [lo, hi] = percentile_range(h, 90.0);
  CHECK(lo == Approx(10.0));
  CHECK(hi == Approx(90.0));
  auto [lo2, hi2] = percentile_range(h, 100.0);
  CHECK(lo2 == 0.0);
  CHECK(hi2 == 100.0);
}

TEST_CASE("entropy and mse clip a lone outlier, minmax keeps it", "[calibration]") {
  const auto v = random_values(20000, 7);
  auto mm = observe_chunks(CalibMethod::kMinMax, v, 1000, false).at("t");
  CHECK(mm.range_max == 25.0);
  CHECK(mm.count == 20000);
  auto en = observe_chunks(CalibMethod::kEntropy, v, 1000, false).at("t");
  CHECK(en.range_max < 12.0);
  CHECK(en.range_max > 3.0);
  CHECK(en.range_min == Approx(std::max(mm.min, -en.range_max)));
  auto ms = observe_chunks(CalibMethod::kMse, v, 1000, false).at("t");
  CHECK(ms.range_max < 25.0);
  auto pc = observe_chunks(CalibMethod::kPercentile, v, 1000, false).at("t");
  CHECK(pc.range_max < 25.0);
  CHECK(pc.range_min > mm.min);
}

TEST_CASE("ranges are identical whatever the batching and the order", "[calibration]") {
  const auto v = random_values(6007, 11);  // prime count: uneven last batch
  for (CalibMethod m : {CalibMethod::kMinMax, CalibMethod::kPercentile, CalibMethod::kEntropy, CalibMethod::kMse}) {
    INFO(calib_method_name(m));
    const auto ref = observe_chunks(m, v, v.size(), false).at("t");
    for (size_t chunk : {1u, 7u, 64u, 1000u}) {
      for (bool rev : {false, true}) {
        const auto r = observe_chunks(m, v, chunk, rev).at("t");
        CHECK(r.min == ref.min);
        CHECK(r.max == ref.max);
        CHECK(r.range_min == ref.range_min);
        CHECK(r.range_max == ref.range_max);
        CHECK(r.count == ref.count);
      }
    }
  }
}

TEST_CASE("observers merge exactly", "[calibration]") {
  const auto v = random_values(4000, 3);
  CalibOptions o;
  o.method = CalibMethod::kEntropy;
  RangeObserver a(o, {"t"}), b(o, {"t"}), whole(o, {"t"});
  auto half = [&](size_t s, size_t e) {
    std::vector<float> p(v.begin() + static_cast<long>(s), v.begin() + static_cast<long>(e));
    return Tensor::from_vector<float>({static_cast<int64_t>(p.size())}, p);
  };
  a.observe("t", half(0, 2000));
  b.observe("t", half(2000, 4000));
  whole.observe("t", half(0, 4000));
  REQUIRE(a.merge(b).ok());
  CHECK(a.finish().at("t").max == whole.finish().at("t").max);
  // Pass 2 workers start from the merged pass-1 ranges, then their histograms add up.
  RangeObserver b2 = a;
  a.begin_histograms();
  b2.begin_histograms();
  whole.begin_histograms();
  a.observe("t", half(0, 2000));
  b2.observe("t", half(2000, 4000));
  whole.observe("t", half(0, 4000));
  REQUIRE(a.merge(b2).ok());
  CHECK(a.finish().at("t").range_max == whole.finish().at("t").range_max);
}

TEST_CASE("calibration table round-trips through JSON", "[calibration]") {
  CalibrationTable t;
  t.method = "percentile";
  t.percentile = 99.9;
  t.bins = 2048;
  t.samples = 12;
  t.model_sha256 = "ab";
  t.dataset_fingerprint = "cd";
  t.tensors["x"] = TensorRange{-1.25, 3.0000000001, -1.0, 2.5, 99};
  auto back = CalibrationTable::from_json(Json::parse(t.to_json().dump()), "test");
  REQUIRE(back.ok());
  CHECK(back->method == "percentile");
  CHECK(back->percentile == 99.9);
  CHECK(back->samples == 12);
  CHECK(back->model_sha256 == "ab");
  const TensorRange* r = back->find("x");
  REQUIRE(r);
  CHECK(r->max == 3.0000000001);
  CHECK(r->range_min == -1.0);
  CHECK(r->count == 99);
  CHECK_FALSE(CalibrationTable::from_json(Json::parse(R"({"format":"other"})"), "test").ok());
  CHECK(parse_calib_method("entropy").ok());
  CHECK_FALSE(parse_calib_method("kl").ok());
}
