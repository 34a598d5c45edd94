// Calibration: activation ranges measured on data, for static quantization.
//
// One streaming pass over the data, memory O(tensors x bins) whatever the sample count: the exact
// min / max of every observed float tensor and, for the histogram methods, a power-of-two-range
// histogram (see Histogram) whose integer counts merge exactly, so the table is identical whatever
// the batch size, the sample order or how the data is split.
// Methods: minmax; percentile (two-sided, from the signed histogram); entropy (TensorRT's KL-divergence
// threshold search on the |x| histogram without its exact zeros, 128 or 256 quantized levels); mse
// (range minimising the expected quantization error of 8-bit uniform quantization, from the signed
// histogram).
// The result is a CalibrationTable, written as reviewable JSON (docs/formats/calibration.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "frugal/dataset.h"
#include "frugal/executor.h"
#include "frugal/report.h"
#include "frugal/status.h"

namespace frugal {

enum class CalibMethod { kMinMax, kPercentile, kEntropy, kMse };
const char* calib_method_name(CalibMethod m);
StatusOr<CalibMethod> parse_calib_method(const std::string& s);

// A streaming histogram over a power-of-two range [-R, R), R = 2^e the smallest power of two above
// every |x| seen so far, with 2 * bins equal bins (bin b covers [(b - bins) w, (b - bins + 1) w),
// w = R / bins). When a larger value arrives, R doubles as often as needed and adjacent bin pairs
// merge; bin edges at R are a subset of those at R/2 and the bin of a value is computed exactly
// (floor of x * bins / R in double, a power-of-two scaling of a float), so the counts are a pure
// function of the multiset of values: identical whatever the batch size, the order of samples or how
// the data is split across workers, and one pass over the data suffices. The observed |x| range
// covers between bins/2 and bins of the bins over [0, R).
class Histogram {
 public:
  explicit Histogram(int bins = 2048);  // bins over [0, R) (made even, at least 16)
  // Adds the finite values of x (NaN and infinities are skipped). `absmax` may pass max |x| over
  // the finite values when the caller already has it (< 0: computed here).
  void add(const float* x, int64_t n, double absmax = -1);
  Status merge(const Histogram& other);  // same bin count required; ranges may differ
  int bins() const { return bins_; }
  bool empty() const { return exp_ == kNoRange; }
  int exponent() const { return exp_; }  // R = 2^exponent (meaningless when empty)
  double limit() const;                  // R (0 when empty)
  double bin_width() const;              // R / bins
  double bin_lo(int64_t b) const { return static_cast<double>(b - bins_) * bin_width(); }  // signed bin b
  const std::vector<uint64_t>& counts() const { return counts_; }  // 2 * bins signed bins
  std::vector<uint64_t> magnitude_counts() const;  // bins over [0, R): |x| in [k w, (k + 1) w)
  uint64_t total() const;
  // How many of the counted values are exactly 0 (+0 or -0; all counted in signed bin `bins`).
  uint64_t zeros() const { return zeros_; }

 private:
  static constexpr int kNoRange = -100000;
  void grow_to(int exponent);
  int bins_;
  int exp_ = kNoRange;
  std::vector<uint64_t> counts_;
  uint64_t zeros_ = 0;
};

// Range choices from a histogram, clamped to the observed [obs_min, obs_max]. All return
// {range_min, range_max}.
// percentile: the two-sided quantiles (100-p)% and p% at bin edges.
std::pair<double, double> percentile_range(const Histogram& h, double percentile, double obs_min, double obs_max);
// entropy: TensorRT's KL-divergence threshold search on a magnitude histogram `mag` (bins of equal
// width, the last non-empty bin holding max |x|): for each candidate end i in [levels, last + 1],
// P = mag[0:i] with the outliers mag[i:] added to its last bin and Q = mag[0:i] merged into `levels`
// groups (i / levels bins each, the last group taking the remainder), each group's mass spread evenly
// over the bins where P is non-zero; the i minimising KL(P || Q) wins (the smallest on ties). KL is
// evaluated exactly in closed form from prefix sums, O(bins) per tensor instead of O(bins^2); a
// candidate whose Q is zero where P is not has infinite KL and is skipped. Returns the chosen i.
int entropy_search(const std::vector<uint64_t>& mag, int levels = 128);
// The threshold T = i * w of entropy_search on h's magnitude histogram without its exact zeros: zero
// is exactly representable (the zero point), so exact zeros carry no quantization error, and left in
// bin 0 the spike they form after a Relu dominates KL (Q spreads it over the first group's i / levels
// bins), which drove the search to the largest i before i / levels steps up, clipping hard.
double entropy_threshold(const Histogram& h, int levels = 128);
// The quantization levels the entropy search assumes for a tensor observed in [obs_min, obs_max]: 256
// when it has one sign (the default uint8 activation grid spends all its levels on [0, max |x|]), 128
// when it has both (TensorRT's symmetric int8 count). Measured better than 128 everywhere and than the
// grid's exact share 256 max|x| / (max - min) (docs/formats/calibration.md).
int entropy_levels(double obs_min, double obs_max);
// The entropy range: T = entropy_threshold(h, entropy_levels(obs_min, obs_max)), range
// [max(obs_min, -T), min(obs_max, T)].
std::pair<double, double> entropy_range(const Histogram& h, double obs_min, double obs_max);
// mse: the observed range (extended to include 0) scaled by k/steps, k = steps..1, keeping the one
// with the least expected squared error of uniform quantization into `levels` levels (bin centres
// outside the range are clipped; inside, the rounding noise scale^2/12).
std::pair<double, double> mse_range(const Histogram& h, double obs_min, double obs_max, int levels = 256, int steps = 128);

struct TensorRange {
  double min = 0, max = 0;              // observed
  double range_min = 0, range_max = 0;  // chosen by the method
  uint64_t count = 0;                   // elements observed
};

struct CalibrationTable {
  std::string method;  // calib_method_name
  double percentile = 0;
  int bins = 0;        // 0 for minmax
  int64_t samples = 0;
  std::string model_path, model_sha256;
  std::string dataset_description, dataset_fingerprint;
  std::map<std::string, TensorRange> tensors;

  const TensorRange* find(const std::string& name) const;
  Json to_json() const;
  static StatusOr<CalibrationTable> from_json(const Json& j, const std::string& what);
  Status save(const std::filesystem::path& path) const;
  static StatusOr<CalibrationTable> load(const std::filesystem::path& path);
};

struct CalibOptions {
  CalibMethod method = CalibMethod::kMinMax;
  double percentile = 99.99;
  int bins = 2048;  // Histogram bins over [0, R)
  size_t max_samples = 0;  // 0: all samples of the dataset
  // Tensors to observe; empty: every float tensor produced by a node plus the float graph inputs.
  std::vector<std::string> tensors;
  ExecOptions exec;
  // Also sees the first sample's run (which always runs every node, unfused): a caller that needs one
  // full run of the model anyway (the energy estimate's shapes) gets it from calibration. Not owned.
  Observer* first_run_observer = nullptr;
  // With two or more threads and samples, run every sample on one thread: the first alone, the rest
  // side by side, each thread on its own executor (sharing the weights and folded copies) and
  // observer, merged exactly at the end, instead of splitting each sample's operators across
  // threads. The table is then the one a single thread writes. Costs one more set of activations
  // per extra thread.
  bool parallel_samples = true;
  // false: the table's dataset_fingerprint stays empty and the data files are not hashed (a caller
  // that shows no fingerprint; a 300 MB .npz costs about a second of CPU).
  bool fingerprint_data = true;
};

// The observer behind calibration, usable on its own (tests feed tensors to it directly). One pass:
// it records the exact min/max/count of every observed tensor and, for the histogram methods, its
// Histogram. finish() chooses the ranges.
class RangeObserver : public Observer {
 public:
  RangeObserver(CalibOptions opts, std::vector<std::string> tensors);
  Status on_inputs(const NamedTensors& inputs) override;
  Status on_node(const NodeEvent& ev) override;
  // It reads only the outputs it observes, so the executor may fuse around them.
  const std::set<std::string>* watched() const override { return &watched_; }
  // Feeds one tensor by name (ignored if not observed or not float).
  void observe(const std::string& name, const Tensor& t);
  bool needs_histograms() const;
  // Merges another observer's statistics (for parallel or split data); exact.
  Status merge(const RangeObserver& other);
  std::map<std::string, TensorRange> finish() const;
  const std::map<std::string, Histogram>& histograms() const { return hist_; }

 private:
  CalibOptions opts_;
  std::map<std::string, TensorRange> stats_;
  std::set<std::string> watched_;  // the keys of stats_
  std::map<std::string, Histogram> hist_;
};

// The float tensors calibration observes by default (see CalibOptions::tensors).
std::vector<std::string> default_calibration_tensors(const Graph& graph);

// Runs the executor once over `data` and returns the table. Model hash and dataset fingerprint are
// filled from `model_path` (may be empty for in-memory models) and `data`; a caller that already
// hashed the model passes `model_sha256` to skip hashing it again.
StatusOr<CalibrationTable> calibrate(std::shared_ptr<const Model> model, Dataset& data, const CalibOptions& opts,
                                     const std::filesystem::path& model_path = {}, const std::string& model_sha256 = {});

}  // namespace frugal
