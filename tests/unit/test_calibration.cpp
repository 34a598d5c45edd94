// Calibration: histograms, range methods, observer batch/order independence, table JSON.
#include <algorithm>
#include <cmath>
#include <random>

#include <catch2/catch.hpp>

#include "frugal/calibration.h"
#include "frugal/parallel.h"
#include "quant/histogram_simd.h"

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
  return obs.finish();
}

}  // namespace

TEST_CASE("histogram bins are hand-computable and survive range growth", "[calibration]") {
  // 16 bins over [0, R): the first batch has max |x| 3.99, so R = 4 and w = 0.25; bin b of the 32
  // signed bins holds [(b - 16) w, (b - 15) w).
  Histogram h(16);
  const float a[] = {0.0f, 0.5f, 1.0f, 3.99f, -1.0f, std::nanf(""), INFINITY};
  h.add(a, 7);
  CHECK(h.limit() == 4.0);
  CHECK(h.total() == 5);  // NaN and inf skipped
  CHECK(h.zeros() == 1);
  auto c = h.counts();
  CHECK(c[16] == 1);  // 0
  CHECK(c[18] == 1);  // 0.5 / 0.25 = 2
  CHECK(c[20] == 1);  // 1 -> 4
  CHECK(c[31] == 1);  // 3.99 -> floor(15.96) = 15
  CHECK(c[12] == 1);  // -1 -> -4
  // 7.0 needs R = 8 (w = 0.5): bins pair up; each value must sit where it would have been counted at R = 8.
  const float b[] = {7.0f};
  h.add(b, 1);
  CHECK(h.limit() == 8.0);
  c = h.counts();
  CHECK(c[16] == 1);  // 0
  CHECK(c[17] == 1);  // 0.5 / 0.5 = 1
  CHECK(c[18] == 1);  // 1 -> 2
  CHECK(c[23] == 1);  // 3.99 -> floor(7.98) = 7
  CHECK(c[14] == 1);  // -1 -> -2
  CHECK(c[30] == 1);  // 7 -> 14
  CHECK(h.total() == 6);
  CHECK(h.zeros() == 1);  // range growth leaves the exact zeros alone
  // The other order counts identically.
  Histogram g(16);
  g.add(b, 1);
  g.add(a, 7);
  CHECK(g.counts() == h.counts());
  CHECK(g.zeros() == 1);
  // -0 is an exact zero too, counted in the same bin as +0; a tiny non-zero value is not.
  const float z[] = {-0.0f, 1e-30f, -1e-30f};
  g.add(z, 3);
  CHECK(g.zeros() == 2);
  CHECK(g.counts()[16] == 3);  // +0, -0, 1e-30
  CHECK(g.counts()[15] == 1);  // -1e-30 in [-w, 0)
  // Magnitudes fold signed bins 16 + k and 15 - k: |x| in [k w, (k+1) w), except that a negative
  // value exactly on an edge (-1 here, signed bin [-1, -0.5)) lands one magnitude bin lower.
  const auto m = h.magnitude_counts();
  CHECK(m[0] == 1);   // 0
  CHECK(m[1] == 2);   // 0.5 and -1
  CHECK(m[2] == 1);   // 1
  CHECK(m[7] == 1);   // 3.99
  CHECK(m[14] == 1);  // 7
  Histogram other(32);
  CHECK_FALSE(h.merge(other).ok());
}

namespace {

// Values that stress the bin arithmetic: a Relu-like body (half exact zeros, some -0), normal values,
// values exactly on bin edges of either sign, denormals and products that underflow, the largest
// value just under the range, NaN and infinities.
std::vector<float> awkward_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.5f);
  std::uniform_int_distribution<int> kind(0, 15), edge(-2047, 2047);
  std::vector<float> v(n);
  for (auto& x : v) {
    switch (kind(rng)) {
      case 0: case 1: case 2: case 3: case 4: case 5: x = 0.0f; break;
      case 6: x = -0.0f; break;
      case 7: x = static_cast<float>(edge(rng)) / 256.0f; break;  // on an edge of w = 8 / 2048
      case 8: x = (kind(rng) & 1 ? 1.0f : -1.0f) * 1e-42f * static_cast<float>(kind(rng) + 1); break;
      case 9: x = kind(rng) == 0 ? std::nanf("") : (kind(rng) & 1 ? INFINITY : -INFINITY); break;
      default: x = std::clamp(d(rng), -7.99f, 7.99f);
    }
  }
  v[n / 2] = std::nextafter(8.0f, 0.0f);
  v[n / 2 + 1] = -v[n / 2];  // in bin 0: max |x| < 8 gives R = 8
  return v;
}

// The bin of v among 2 * bins signed bins over [-R, R), derived in double: v * bins / R is exact in
// double for a float v and power-of-two bins and R, and std::floor is exact.
int64_t reference_bin(float v, int64_t bins, double range) {
  const double y = static_cast<double>(v) * (static_cast<double>(bins) / range);
  const int64_t b = static_cast<int64_t>(std::floor(y)) + bins;
  return std::clamp<int64_t>(b, 0, 2 * bins - 1);
}

std::vector<uint64_t> reference_counts(const std::vector<float>& v, int64_t bins, double range) {
  std::vector<uint64_t> c(static_cast<size_t>(2 * bins), 0);
  for (float x : v)
    if (std::isfinite(x)) ++c[static_cast<size_t>(reference_bin(x, bins, range))];
  return c;
}

}  // namespace

TEST_CASE("histogram counts every value in the bin exact arithmetic gives it, on every path", "[calibration]") {
  // 200003 values (not a multiple of any vector width) with R = 8 and 2048 bins: the wide path
  // (tables, one or several threads) and, with FRUGAL_GEMM_ISA=avx2 (ctest runs this file again so),
  // the SSE2 path; short inputs take the scalar path.
  const auto v = awkward_values(200003, 5);
  const auto expect = reference_counts(v, 2048, 8.0);
  uint64_t zeros = 0;
  for (float x : v) zeros += x == 0.0f;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Histogram h(2048);
    h.add(v.data(), static_cast<int64_t>(v.size()));
    REQUIRE(h.limit() == 8.0);
    CHECK(h.counts() == expect);
    CHECK(h.zeros() == zeros);
  }
  // A wide range (R = 2^40, so v * bins / R = v * 2^-29 in float): tiny negative values underflow
  // to -0 in float yet lie in [-w, 0), one bin below zero's; tiny positive ones stay in zero's bin.
  std::vector<float> wide(50001);
  for (size_t i = 0; i < wide.size(); ++i) {
    const float tiny = 1e-40f * static_cast<float>(i % 7 + 1);
    wide[i] = i % 5 == 0 ? 0.0f : (i % 2 ? -tiny : tiny);
  }
  wide[777] = 1e12f;  // 2^39 < 1e12 < 2^40
  const auto wide_expect = reference_counts(wide, 2048, std::ldexp(1.0, 40));
  REQUIRE(wide_expect[2047] > 0);  // the underflowing negatives, counted apart from zero's bin 2048
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Histogram h(2048);
    h.add(wide.data(), static_cast<int64_t>(wide.size()));
    REQUIRE(h.limit() == std::ldexp(1.0, 40));
    CHECK(h.counts() == wide_expect);
  }
  set_num_threads(0);
  for (size_t n : {size_t{1}, size_t{15}, size_t{17}, size_t{2047}, size_t{2049}, size_t{40000}}) {
    std::vector<float> part(v.begin(), v.begin() + static_cast<long>(n));
    part.push_back(-std::nextafter(8.0f, 0.0f));  // fixes R = 8 whatever the prefix holds
    Histogram h(2048);
    h.add(part.data(), static_cast<int64_t>(part.size()));
    REQUIRE(h.limit() == 8.0);
    CHECK(h.counts() == reference_counts(part, 2048, 8.0));
  }
}

TEST_CASE("the AVX-512 bin counter and min/max agree with exact scalar arithmetic", "[calibration]") {
  if (!quant_simd::avx512()) {
    WARN("this CPU has no AVX-512 (or FRUGAL_GEMM_ISA caps it): the AVX-512 observer kernels are not run here");
    return;
  }
  const auto v = awkward_values(100019, 9);
  const int64_t nb = 2048, stride = 2 * nb + 1;
  std::vector<uint32_t> t(static_cast<size_t>(4 * stride + quant_simd::kScratchSlots), 0);
  for (size_t start : {size_t{0}, size_t{3}}) {  // aligned and unaligned input
    std::fill(t.begin(), t.end(), 0u);
    const int64_t n = static_cast<int64_t>(v.size() - start);
    const uint64_t zeros = quant_simd::count_bins_avx512(v.data() + start, n, 256.0f, static_cast<int32_t>(nb), t.data(), stride);
    std::vector<uint64_t> got(static_cast<size_t>(2 * nb), 0);
    for (int k = 0; k < 4; ++k)
      for (int64_t b = 0; b < 2 * nb; ++b) got[static_cast<size_t>(b)] += t[static_cast<size_t>(k * stride + b)];
    std::vector<float> rest(v.begin() + static_cast<long>(start), v.end());
    auto expect = reference_counts(rest, nb, 8.0);
    uint64_t expect_zeros = 0;
    for (float x : rest) expect_zeros += x == 0.0f;
    CHECK(zeros == expect_zeros);
    expect[static_cast<size_t>(nb)] -= expect_zeros;  // zeros are returned, not counted
    CHECK(got == expect);
    float lo = 0, hi = 0;
    quant_simd::min_max_avx512(rest.data(), static_cast<int64_t>(rest.size()), &lo, &hi);
    CHECK(lo == -INFINITY);  // the data hold infinities
    CHECK(hi == INFINITY);
  }
  const float few[] = {std::nanf(""), 3.0f, -2.5f, std::nanf(""), 0.25f};
  float lo = 0, hi = 0;
  quant_simd::min_max_avx512(few, 5, &lo, &hi);
  CHECK(lo == -2.5f);
  CHECK(hi == 3.0f);
  const float nans[] = {std::nanf(""), std::nanf("")};
  quant_simd::min_max_avx512(nans, 2, &lo, &hi);
  CHECK(lo == INFINITY);
  CHECK(hi == -INFINITY);
}

TEST_CASE("percentile range from a uniform histogram", "[calibration]") {
  // 100 values 0.5, 1.5, ..., 99.5: max 99.5, so R = 128 and with 64 bins w = 2: two values per bin.
  Histogram h(64);
  std::vector<float> v;
  for (int i = 0; i < 100; ++i) v.push_back(static_cast<float>(i) + 0.5f);
  h.add(v.data(), 100);
  // p = 90: the lower end is the bin where the cumulative count passes 10 ([10, 12) -> edge 10); the
  // upper end the bin where it reaches 90 ([88, 90) -> edge 90).
  auto [lo, hi] = percentile_range(h, 90.0, 0.5, 99.5);
  CHECK(lo == 10.0);
  CHECK(hi == 90.0);
  // p = 100 keeps the observed range (bin edges 0 and 100 clamped to it).
  auto [lo2, hi2] = percentile_range(h, 100.0, 0.5, 99.5);
  CHECK(lo2 == 0.5);
  CHECK(hi2 == 99.5);
}

namespace {

// TensorRT's search written out directly, O(bins^2): for each candidate i, build P and Q bin by bin and
// sum KL over the bins (normalised). Infinite when Q is zero where P is not.
int naive_entropy(const std::vector<uint64_t>& h, int levels) {
  int last = static_cast<int>(h.size()) - 1;
  while (last >= 0 && h[static_cast<size_t>(last)] == 0) --last;
  const int L = last + 1;
  if (L <= levels) return std::max(L, 1);
  double best = INFINITY;
  int best_i = L;
  for (int i = levels; i <= L; ++i) {
    std::vector<double> p(h.begin(), h.begin() + i), q(static_cast<size_t>(i), 0.0);
    for (int k = i; k < L; ++k) p[static_cast<size_t>(i - 1)] += static_cast<double>(h[static_cast<size_t>(k)]);
    const int m = i / levels;
    for (int j = 0; j < levels; ++j) {
      const int s = j * m, e = j == levels - 1 ? i : s + m;
      double mass = 0;
      int nz = 0;
      for (int k = s; k < e; ++k) mass += static_cast<double>(h[static_cast<size_t>(k)]), nz += p[static_cast<size_t>(k)] > 0;
      for (int k = s; k < e; ++k)
        if (p[static_cast<size_t>(k)] > 0) q[static_cast<size_t>(k)] = mass / nz;
    }
    double sp = 0, sq = 0;
    for (int k = 0; k < i; ++k) sp += p[static_cast<size_t>(k)], sq += q[static_cast<size_t>(k)];
    double kl = 0;
    for (int k = 0; k < i; ++k) {
      const double pk = p[static_cast<size_t>(k)] / sp, qk = q[static_cast<size_t>(k)] / sq;
      if (pk == 0) continue;
      kl += qk == 0 ? INFINITY : pk * std::log(pk / qk);
    }
    if (kl < best - 1e-12) best = kl, best_i = i;
  }
  return best_i;
}

}  // namespace

TEST_CASE("entropy search equals the direct O(bins^2) TensorRT search", "[calibration]") {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 12; ++trial) {
    INFO("trial " << trial);
    // Heavy-tailed magnitudes (|Cauchy|-like) with random sparsity, 600-1100 bins, 32 levels to keep
    // the direct search quick; plus a couple of tail spikes.
    const int nb = 600 + static_cast<int>(rng() % 500);
    std::vector<uint64_t> h(static_cast<size_t>(nb), 0);
    std::cauchy_distribution<double> cd(0.0, 20.0 + trial * 10.0);
    for (int k = 0; k < 20000; ++k) {
      const double a = std::fabs(cd(rng));
      if (a < nb) ++h[static_cast<size_t>(a)];
    }
    if (trial % 3 == 0) h[static_cast<size_t>(nb - 1)] += 3;
    if (trial % 4 == 1) h[static_cast<size_t>(nb / 2)] += 50;
    const int want = naive_entropy(h, 32);
    const int got = entropy_search(h, 32);
    CHECK(got == want);
  }
  // Hand-derived: 128 unit bins and one outlier at bin 1000. Every candidate below 1001 has
  // KL = 2 ln2 / 129 + ln(128/129) > 0 or is infinite; i = 1001 reproduces P exactly (KL 0).
  std::vector<uint64_t> h(2048, 0);
  for (int k = 0; k < 128; ++k) h[static_cast<size_t>(k)] = 1;
  h[1000] = 1;
  CHECK(entropy_search(h, 128) == 1001);
  CHECK(naive_entropy(h, 128) == 1001);
}

namespace {

// A dense body with a sparse tail: the 200000 quantiles x_k = -ln(1 - u_k (1 - e^-6)), u_k = (k + 0.5)
// / 200000, of the unit exponential truncated at 6 (max 5.99899), then `outliers` values at 15.
std::vector<float> truncated_exponential(int outliers) {
  const int n = 200000;
  std::vector<float> v(static_cast<size_t>(n));
  for (int k = 0; k < n; ++k)
    v[static_cast<size_t>(k)] = static_cast<float>(-std::log1p(-(k + 0.5) / n * -std::expm1(-6.0)));
  v.insert(v.end(), static_cast<size_t>(outliers), 15.0f);
  return v;
}

TensorRange observe_entropy(const std::vector<float>& v) {
  CalibOptions o;
  o.method = CalibMethod::kEntropy;
  RangeObserver obs(o, {"t"});
  obs.observe("t", Tensor::from_vector<float>({static_cast<int64_t>(v.size())}, v));
  return obs.finish().at("t");
}

}  // namespace

TEST_CASE("entropy levels follow the activation grid", "[calibration]") {
  // One-signed tensors get all 256 uint8 levels on [0, max|x|]; two-signed ones TensorRT's 128.
  CHECK(entropy_levels(0.0, 5.0) == 256);
  CHECK(entropy_levels(-5.0, 0.0) == 256);
  CHECK(entropy_levels(0.0, 0.0) == 256);
  CHECK(entropy_levels(-1.0, 1.0) == 128);
  CHECK(entropy_levels(-0.17, 10.0) == 128);
}

// The expected thresholds below come from a direct numpy transcription of TensorRT's search (build P
// and Q per candidate, KL summed bin by bin, the smallest i among KLs equal to 1e-9 relative) on the
// same histograms; naive_entropy re-derives them here.
TEST_CASE("entropy leaves exact zeros out: a Relu output keeps its range", "[calibration]") {
  // A Relu output: 200000 exact zeros and the truncated exponential body (R = 8, w = 1/256; the last
  // non-empty bin is 1535, so the full range is i = 1536).
  const auto x = truncated_exponential(0);
  std::vector<float> v(200000, 0.0f);
  v.insert(v.end(), x.begin(), x.end());
  Histogram h(2048);
  h.add(v.data(), static_cast<int64_t>(v.size()));
  REQUIRE(h.bin_width() == 1.0 / 256);
  REQUIRE(h.zeros() == 200000u);
  auto mag = h.magnitude_counts();
  // The search with the zeros left in bin 0 (the old behaviour, 128 levels): Q spreads the spike over
  // the first group's i/128 bins, so KL grows with i/128 and the search stops at the largest i with
  // i/128 = 1: i = 255, T = 0.996 of max 6.0. numpy: 255.
  CHECK(entropy_search(mag, 128) == 255);
  CHECK(naive_entropy(mag, 128) == 255);
  // Without the zeros (zero is exact on every grid) and with 256 levels (the tensor is non-negative)
  // the dense body is kept whole: numpy gives i = 1536, the full range.
  mag[0] -= h.zeros();
  CHECK(entropy_search(mag, 256) == 1536);
  CHECK(naive_entropy(mag, 256) == 1536);
  const auto r = observe_entropy(v);
  CHECK(r.range_min == 0.0);
  CHECK(r.range_max == r.max);
  // Three outliers at 15 (R = 16, w = 1/128; the body ends in bin 767): numpy gives i = 769, T =
  // 6.0078125, the outliers folded into the empty bin 768. Every i from 769 to 1023 (the same i/256)
  // has exactly the same KL, the empty bins weighing nothing, and the smallest wins: the same values
  // are clipped, with a finer step. With the zeros kept, numpy gives 255 again (T = 1.99).
  auto y = truncated_exponential(3);
  y.insert(y.end(), 200000, 0.0f);
  Histogram g(2048);
  g.add(y.data(), static_cast<int64_t>(y.size()));
  auto gm = g.magnitude_counts();
  CHECK(naive_entropy(gm, 128) == 255);
  gm[0] -= g.zeros();
  CHECK(naive_entropy(gm, 256) == 769);
  CHECK(entropy_search(gm, 256) == 769);
  const auto ry = observe_entropy(y);
  CHECK(ry.range_min == 0.0);
  CHECK(ry.range_max == 6.0078125);
  // Exact zeros do not move it.
  CHECK(observe_entropy(truncated_exponential(3)).range_max == 6.0078125);
}

TEST_CASE("entropy on a signed tensor: one magnitude threshold, 128 levels", "[calibration]") {
  // +x and -x for the truncated exponential with three outliers at 15 (so also three at -15), and 50000
  // exact zeros. numpy, magnitude histogram without the zeros, 128 levels: i = 769 (w = 1/128, T =
  // 6.0078125); with the zeros kept: 639 = 4 x 128 + 127 (T = 4.99).
  const auto x = truncated_exponential(3);
  std::vector<float> v = x;
  for (float a : x) v.push_back(-a);
  const auto no_zeros = v;
  v.insert(v.end(), 50000, 0.0f);
  Histogram h(2048);
  h.add(v.data(), static_cast<int64_t>(v.size()));
  auto mag = h.magnitude_counts();
  CHECK(naive_entropy(mag, 128) == 639);
  mag[0] -= h.zeros();
  CHECK(naive_entropy(mag, 128) == 769);
  CHECK(entropy_search(mag, 128) == 769);
  const auto r = observe_entropy(v);
  CHECK(r.range_min == -6.0078125);  // both sides clipped at T
  CHECK(r.range_max == 6.0078125);
  const auto r0 = observe_entropy(no_zeros);
  CHECK(r0.range_min == r.range_min);
  CHECK(r0.range_max == r.range_max);
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
    // Ascending |x|: the histogram range grows many times along the way.
    auto sorted = v;
    std::sort(sorted.begin(), sorted.end(), [](float a, float b) { return std::fabs(a) < std::fabs(b); });
    for (size_t chunk : {7u, 1000u}) {
      const auto r = observe_chunks(m, sorted, chunk, false).at("t");
      CHECK(r.range_min == ref.range_min);
      CHECK(r.range_max == ref.range_max);
    }
  }
}

TEST_CASE("observers merge exactly", "[calibration]") {
  const auto v = random_values(4000, 3);
  CalibOptions o;
  o.method = CalibMethod::kEntropy;
  RangeObserver a(o, {"t"}), b(o, {"t"}), whole(o, {"t"});
  auto part = [&](size_t s, size_t e, float mul) {
    std::vector<float> p(v.begin() + static_cast<long>(s), v.begin() + static_cast<long>(e));
    for (auto& x : p) x *= mul;
    return Tensor::from_vector<float>({static_cast<int64_t>(p.size())}, p);
  };
  // The halves have different ranges (the second is scaled up 3x), so the merge must regroup bins.
  a.observe("t", part(0, 2000, 1.0f));
  b.observe("t", part(2000, 4000, 3.0f));
  whole.observe("t", part(2000, 4000, 3.0f));
  whole.observe("t", part(0, 2000, 1.0f));
  REQUIRE(a.merge(b).ok());
  CHECK(a.histograms().at("t").counts() == whole.histograms().at("t").counts());
  CHECK(a.histograms().at("t").zeros() == whole.histograms().at("t").zeros());
  const auto ra = a.finish().at("t"), rw = whole.finish().at("t");
  CHECK(ra.max == rw.max);
  CHECK(ra.range_max == rw.range_max);
  CHECK(ra.count == 4000);
}

TEST_CASE("histogram counts of a large tensor equal a per-element count", "[calibration]") {
  // Large enough for the threaded, four-table path; compared with a plain loop over the same rule.
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> v(600000);
  for (auto& x : v) x = (rng() % 3 == 0) ? 0.0f : nd(rng);  // runs of zeros, as after a Relu
  Histogram h(2048);
  h.add(v.data(), static_cast<int64_t>(v.size()));
  float am = 0;
  for (float x : v) am = std::max(am, std::fabs(x));
  int e;
  std::frexp(static_cast<double>(am), &e);
  REQUIRE(h.limit() == std::ldexp(1.0, e));
  std::vector<uint64_t> want(4096, 0);
  const double w = std::ldexp(1.0, e) / 2048;
  for (float x : v) ++want[static_cast<size_t>(std::floor(x / w) + 2048)];
  CHECK(h.counts() == want);
  CHECK(h.zeros() == static_cast<uint64_t>(std::count(v.begin(), v.end(), 0.0f)));
}

TEST_CASE("calibration table round-trips through JSON", "[calibration]") {
  CalibrationTable t;
  t.method = "percentile";
  t.percentile = 99.9;
  t.bins = 2048;
  t.samples = 12;
  // hashes of the real length (a two-character one trips a GCC 12 false -Wmaybe-uninitialized)
  t.model_sha256 = std::string(64, 'a');
  t.dataset_fingerprint = std::string(64, 'c');
  t.tensors["x"] = TensorRange{-1.25, 3.0000000001, -1.0, 2.5, 99};
  auto back = CalibrationTable::from_json(Json::parse(t.to_json().dump()), "test");
  REQUIRE(back.ok());
  CHECK(back->method == "percentile");
  CHECK(back->percentile == 99.9);
  CHECK(back->samples == 12);
  CHECK(back->model_sha256 == std::string(64, 'a'));
  CHECK(back->dataset_fingerprint == std::string(64, 'c'));
  const TensorRange* r = back->find("x");
  REQUIRE(r);
  CHECK(r->max == 3.0000000001);
  CHECK(r->range_min == -1.0);
  CHECK(r->count == 99);
  CHECK_FALSE(CalibrationTable::from_json(Json::parse(R"({"format":"other"})"), "test").ok());
  CHECK(parse_calib_method("entropy").ok());
  CHECK_FALSE(parse_calib_method("kl").ok());
}
