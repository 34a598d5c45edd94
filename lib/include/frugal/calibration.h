// Calibration: activation ranges measured on data, for static quantization.
//
// Streaming in at most two passes over the data, memory O(tensors x bins) whatever the sample count:
//   pass 1: exact min / max of every observed float tensor (order-independent by construction);
//   pass 2 (histogram methods only): a fixed-range histogram per tensor over the pass-1 range with a
//           fixed bin count; counts are integers that merge by addition, so the table is identical
//           whatever the batch size, the sample order or how the data is split.
// Methods: minmax; percentile (two-sided, from the signed histogram); entropy (TensorRT's KL-divergence
// threshold search on the |x| histogram, 128 quantized levels); mse (range minimising the expected
// quantization error of 8-bit uniform quantization, from the signed histogram).
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

// A histogram with `bins` equal bins over the fixed range [lo, hi]. Values outside are clamped into
// the edge bins (cannot happen in pass 2, whose range is the exact pass-1 range). Merging adds counts.
class Histogram {
 public:
  Histogram() = default;
  Histogram(double lo, double hi, int bins);
  void add(const float* x, int64_t n);
  // Adds |x| (for a histogram over [0, absmax]).
  void add_abs(const float* x, int64_t n);
  Status merge(const Histogram& other);  // same lo/hi/bins required
  double lo() const { return lo_; }
  double hi() const { return hi_; }
  int bins() const { return static_cast<int>(counts_.size()); }
  double bin_width() const { return bins() ? (hi_ - lo_) / bins() : 0.0; }
  const std::vector<uint64_t>& counts() const { return counts_; }
  uint64_t total() const;
  // Bin index of x (clamped to [0, bins-1]).
  int index(float x) const;

 private:
  double lo_ = 0, hi_ = 0;
  std::vector<uint64_t> counts_;
};

// Range choices from a histogram. All return {range_min, range_max}.
// percentile: the two-sided quantiles (100-p)% and p% (bin edges, clamped to the observed range).
std::pair<double, double> percentile_range(const Histogram& signed_hist, double percentile);
// entropy: threshold T from the |x| histogram (TensorRT algorithm: for i in [levels, bins) compare
// P = hist[0:i] with outliers folded into the last bin against Q = P quantized into `levels` levels,
// choose the i minimising KL(P||Q); T = (i + 0.5) * width). Returns the threshold T.
double entropy_threshold(const Histogram& abs_hist, int levels = 128);
// mse: shrinks the observed range [min, max] by factors k/steps and keeps the one minimising the
// expected squared error of uniform quantization into `levels` levels (clipping + rounding noise).
std::pair<double, double> mse_range(const Histogram& signed_hist, int levels = 256, int steps = 128);

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
  int bins = 2048;
  size_t max_samples = 0;  // 0: all samples of the dataset
  // Tensors to observe; empty: every float tensor produced by a node plus the float graph inputs.
  std::vector<std::string> tensors;
  ExecOptions exec;
};

// The observer behind calibration, usable on its own (tests feed tensors to it directly). In pass 1
// it records min/max; begin_histograms() fixes the histogram ranges from them, after which it records
// histograms. finish() chooses the ranges.
class RangeObserver : public Observer {
 public:
  RangeObserver(CalibOptions opts, std::vector<std::string> tensors);
  Status on_inputs(const NamedTensors& inputs) override;
  Status on_node(const NodeEvent& ev) override;
  // Feeds one tensor by name (ignored if not observed or not float).
  void observe(const std::string& name, const Tensor& t);
  bool needs_histograms() const;
  void begin_histograms();
  // Merges another observer's statistics of the same phase (for parallel or split data).
  Status merge(const RangeObserver& other);
  std::map<std::string, TensorRange> finish() const;
  const std::map<std::string, Histogram>* signed_histograms() const { return &signed_; }

 private:
  CalibOptions opts_;
  std::map<std::string, TensorRange> stats_;
  std::map<std::string, Histogram> signed_, abs_;
  bool hist_phase_ = false;
};

// The float tensors calibration observes by default (see CalibOptions::tensors).
std::vector<std::string> default_calibration_tensors(const Graph& graph);

// Runs the executor over `data` (one or two passes) and returns the table. Model hash and dataset
// fingerprint are filled from `model_path` (may be empty for in-memory models) and `data`.
StatusOr<CalibrationTable> calibrate(std::shared_ptr<const Model> model, Dataset& data, const CalibOptions& opts,
                                     const std::filesystem::path& model_path = {});

}  // namespace frugal
