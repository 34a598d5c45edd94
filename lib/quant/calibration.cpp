// Calibration: the range observer, the one-pass driver and the JSON table.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <future>
#include <optional>
#include <limits>
#include <mutex>
#include <set>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "frugal/calibration.h"
#include "frugal/file_util.h"
#include "frugal/parallel.h"
#include "histogram_simd.h"

namespace frugal {

const char* calib_method_name(CalibMethod m) {
  switch (m) {
    case CalibMethod::kMinMax: return "minmax";
    case CalibMethod::kPercentile: return "percentile";
    case CalibMethod::kEntropy: return "entropy";
    case CalibMethod::kMse: return "mse";
  }
  return "?";
}

StatusOr<CalibMethod> parse_calib_method(const std::string& s) {
  if (s == "minmax") return CalibMethod::kMinMax;
  if (s == "percentile") return CalibMethod::kPercentile;
  if (s == "entropy") return CalibMethod::kEntropy;
  if (s == "mse") return CalibMethod::kMse;
  return InvalidArgument("unknown calibration method '" + s + "' (expected minmax, percentile, entropy or mse)");
}

// ---- observer -----------------------------------------------------------------------------------

namespace {

// min/max over the non-NaN values of x[0:n) (+inf and -inf when there are none). MINPS/MAXPS return
// their second operand, the running value, when the first is NaN; the scalar tail compares the same way.
void min_max(const float* x, int64_t n, float* out_lo, float* out_hi) {
  if (quant_simd::avx512()) {
    quant_simd::min_max_avx512(x, n, out_lo, out_hi);
    return;
  }
  float lo = std::numeric_limits<float>::infinity(), hi = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
#if defined(__SSE2__)
  __m128 vlo = _mm_set1_ps(lo), vhi = _mm_set1_ps(hi);
  for (; i + 4 <= n; i += 4) {
    const __m128 v = _mm_loadu_ps(x + i);
    vlo = _mm_min_ps(v, vlo);
    vhi = _mm_max_ps(v, vhi);
  }
  alignas(16) float l4[4], h4[4];
  _mm_store_ps(l4, vlo);
  _mm_store_ps(h4, vhi);
  for (int k = 0; k < 4; ++k) {
    lo = std::min(lo, l4[k]);
    hi = std::max(hi, h4[k]);
  }
#endif
  for (; i < n; ++i) {
    const float v = x[i];
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  *out_lo = lo;
  *out_hi = hi;
}

}  // namespace

RangeObserver::RangeObserver(CalibOptions opts, std::vector<std::string> tensors) : opts_(std::move(opts)) {
  for (auto& t : tensors) {
    TensorRange r;
    r.min = std::numeric_limits<double>::infinity();
    r.max = -std::numeric_limits<double>::infinity();
    watched_.insert(t);
    stats_.emplace(std::move(t), r);
  }
}

bool RangeObserver::needs_histograms() const { return opts_.method != CalibMethod::kMinMax; }

void RangeObserver::observe(const std::string& name, const Tensor& t) {
  auto it = stats_.find(name);
  if (it == stats_.end() || !t.defined() || !dtype_is_float(t.dtype()) || t.numel() == 0) return;
  Tensor f = t.dtype() == DType::kFloat ? t : t.to_float();
  const float* x = f.data<float>();
  const int64_t n = f.numel();
  float lo = std::numeric_limits<float>::infinity(), hi = -std::numeric_limits<float>::infinity();
  constexpr int64_t kParallelMin = int64_t{1} << 16;  // values per task
  const int64_t tasks = parallel_region_active() ? 1 : std::min<int64_t>(num_threads(), n / kParallelMin);
  if (tasks > 1) {
    std::vector<float> los(static_cast<size_t>(tasks)), his(static_cast<size_t>(tasks));
    parallel_for(tasks, 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        const int64_t s = n * k / tasks, f = n * (k + 1) / tasks;
        min_max(x + s, f - s, &los[static_cast<size_t>(k)], &his[static_cast<size_t>(k)]);
      }
    });
    for (int64_t k = 0; k < tasks; ++k) {
      lo = std::min(lo, los[static_cast<size_t>(k)]);
      hi = std::max(hi, his[static_cast<size_t>(k)]);
    }
  } else {
    min_max(x, n, &lo, &hi);
  }
  TensorRange& r = it->second;
  r.min = std::min(r.min, static_cast<double>(lo));
  r.max = std::max(r.max, static_cast<double>(hi));
  r.count += static_cast<uint64_t>(n);
  if (!needs_histograms()) return;
  auto h = hist_.find(name);
  if (h == hist_.end()) h = hist_.emplace(name, Histogram(opts_.bins)).first;
  // With infinities present the histogram finds the finite max |x| itself.
  const double absmax = std::max(std::fabs(static_cast<double>(lo)), std::fabs(static_cast<double>(hi)));
  h->second.add(x, n, std::isfinite(absmax) ? absmax : -1.0);
}

Status RangeObserver::on_inputs(const NamedTensors& inputs) {
  for (const auto& [name, t] : inputs) observe(name, t);
  return OkStatus();
}

Status RangeObserver::on_node(const NodeEvent& ev) {
  for (size_t k = 0; k < ev.node.outputs.size() && k < ev.outputs.size(); ++k)
    if (!ev.node.outputs[k].empty()) observe(ev.node.outputs[k], ev.outputs[k]);
  return OkStatus();
}

Status RangeObserver::merge(const RangeObserver& o) {
  for (const auto& [name, r] : o.stats_) {
    auto it = stats_.find(name);
    if (it == stats_.end()) continue;
    it->second.min = std::min(it->second.min, r.min);
    it->second.max = std::max(it->second.max, r.max);
    it->second.count += r.count;
  }
  for (const auto& [name, h] : o.hist_) {
    if (!stats_.count(name)) continue;
    auto it = hist_.find(name);
    if (it == hist_.end()) it = hist_.emplace(name, Histogram(h.bins())).first;
    FRUGAL_RETURN_IF_ERROR(it->second.merge(h));
  }
  return OkStatus();
}

std::map<std::string, TensorRange> RangeObserver::finish() const {
  std::vector<std::pair<std::string, TensorRange>> items;
  for (const auto& [name, r0] : stats_)
    if (r0.count != 0 && std::isfinite(r0.min) && std::isfinite(r0.max)) items.emplace_back(name, r0);
  // The searches (entropy especially) are independent per tensor: spread them over the threads.
  parallel_for(static_cast<int64_t>(items.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const std::string& name = items[static_cast<size_t>(i)].first;
      TensorRange& r = items[static_cast<size_t>(i)].second;
      r.range_min = r.min;
      r.range_max = r.max;
      auto h = hist_.find(name);
      if (h == hist_.end()) continue;  // minmax, or nothing finite was seen
      switch (opts_.method) {
        case CalibMethod::kMinMax: break;
        case CalibMethod::kPercentile:
          std::tie(r.range_min, r.range_max) = percentile_range(h->second, opts_.percentile, r.min, r.max);
          break;
        case CalibMethod::kEntropy:
          std::tie(r.range_min, r.range_max) = entropy_range(h->second, r.min, r.max);
          break;
        case CalibMethod::kMse:
          std::tie(r.range_min, r.range_max) = mse_range(h->second, r.min, r.max, 256, 128);
          break;
      }
    }
  });
  return std::map<std::string, TensorRange>(items.begin(), items.end());
}

std::vector<std::string> default_calibration_tensors(const Graph& graph) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& vi : graph.inputs())
    if ((vi.dtype == DType::kUndefined || dtype_is_float(vi.dtype)) && seen.insert(vi.name).second) out.push_back(vi.name);
  for (size_t ni : graph.topo_order()) {
    const NodeDef& n = graph.nodes()[ni];
    // Shape-computing ops never carry activations worth quantizing.
    if (n.op_type == "Shape" || n.op_type == "Size" || n.op_type == "Constant" || n.op_type == "ConstantOfShape") continue;
    for (const auto& o : n.outputs) {
      if (o.empty() || !seen.insert(o).second) continue;
      const ValueInfo* vi = graph.value_info(o);
      if (vi && vi->dtype != DType::kUndefined && !dtype_is_float(vi->dtype)) continue;
      out.push_back(o);  // dtype checked again at run time: only float tensors are observed
    }
  }
  return out;
}

// ---- driver -------------------------------------------------------------------------------------

namespace {

// Two observers of one run; it needs every node when either does.
class BothObservers : public Observer {
 public:
  BothObservers(Observer& a, Observer& b) : a_(a), b_(b) {}
  Status on_inputs(const NamedTensors& in) override {
    FRUGAL_RETURN_IF_ERROR(a_.on_inputs(in));
    return b_.on_inputs(in);
  }
  Status on_node(const NodeEvent& ev) override {
    FRUGAL_RETURN_IF_ERROR(a_.on_node(ev));
    return b_.on_node(ev);
  }

 private:
  Observer& a_;
  Observer& b_;
};

class NoObserver : public Observer {
 public:
  Status on_node(const NodeEvent&) override { return OkStatus(); }
};

// Recycled tensor blocks and glibc's free lists back to the system, between phases whose buffers
// differ in size.
void return_freed_memory() {
  release_recycled_tensor_memory();
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace

StatusOr<CalibrationTable> calibrate(std::shared_ptr<const Model> model, Dataset& data, const CalibOptions& opts,
                                     const std::filesystem::path& model_path, const std::string& model_sha256) {
  // The model hash runs on its own thread, overlapping the inference.
  std::future<StatusOr<std::string>> sha_job;
  if (!model_path.empty() && model_sha256.empty())
    sha_job = std::async(std::launch::async, [model_path] { return sha256_file(model_path); });
  FRUGAL_ASSIGN_OR_RETURN(auto exec, Executor::create(model, opts.exec));
  std::vector<std::string> tensors = opts.tensors.empty() ? default_calibration_tensors(exec->graph()) : opts.tensors;
  RangeObserver obs(opts, tensors);
  size_t n = data.size();
  if (opts.max_samples > 0) n = std::min(n, opts.max_samples);
  if (n == 0) return InvalidData("calibration data '" + data.describe() + "' has no samples");
  std::mutex data_mu;  // lanes read the dataset one at a time
  auto run_sample = [&](Executor& e, size_t i, Observer* o) -> Status {
    auto inputs = [&] {
      std::lock_guard<std::mutex> lock(data_mu);
      return data.get(i);
    }();
    if (!inputs.ok()) return inputs.status().with_context("calibration, sample " + std::to_string(i));
    // Only what the observer reads is run (the layers after the last observed tensor are not).
    Status st = e.observe(*inputs, *o);
    return st.ok() ? st : st.with_context("calibration, sample " + std::to_string(i));
  };
  // With two or more samples and threads, every sample runs on one thread: the rest side by side in
  // lanes, the first alone (unfused, see below). A product split across
  // threads may block its sums differently, and the table must not depend on the thread count. (CPU
  // only: a GPU backend runs one sample at a time on its device.)
  const bool per_thread = opts.parallel_samples && opts.exec.backend == Backend::kCpu && !parallel_region_active() &&
                          num_threads() > 1 && n >= 2;
  const int64_t lanes = per_thread ? std::min<int64_t>(num_threads(), static_cast<int64_t>(n) - 1) : 1;
  std::optional<SerialRegion> serial;
  if (per_thread) serial.emplace();
  {
    // The first sample always runs unfused and whole: a first-run observer (the energy estimate's
    // cost recorder) needs every node, and the table must not depend on whether one was given
    // (BatchNormalization folded into a Conv rounds differently from the two nodes run apart).
    NoObserver none;
    BothObservers both(obs, opts.first_run_observer ? *opts.first_run_observer : none);
    FRUGAL_RETURN_IF_ERROR(run_sample(*exec, 0, &both));
    // The unfused first run freed more (and other-sized) blocks than a fused run holds; hand them
    // back before the fused plan (BatchNormalization-folded weight copies) is built beside them.
    return_freed_memory();
  }
  if (lanes < 2) {
    for (size_t i = 1; i < n; ++i) FRUGAL_RETURN_IF_ERROR(run_sample(*exec, i, &obs));
  } else {
    // One executor and one observer per lane; lanes take the next sample as they finish one. Each
    // sample's operators then run on its lane's thread alone (no fork and join per operator).
    serial.reset();  // the plan below may use every thread; then this thread becomes lane 0
    std::vector<std::unique_ptr<Executor>> execs;
    execs.push_back(std::move(exec));
    std::vector<RangeObserver> lane_obs;
    for (int64_t l = 1; l < lanes; ++l) {
      FRUGAL_ASSIGN_OR_RETURN(auto e, execs.front()->sibling(&obs));
      execs.push_back(std::move(e));
      lane_obs.emplace_back(opts, tensors);
    }
    std::mutex mu;  // the first failure
    std::atomic<size_t> next{1};
    std::atomic<bool> stop{false};
    size_t failed_at = n;
    Status failure;
    parallel_for(lanes, 1, [&](int64_t b, int64_t e) {
      for (int64_t l = b; l < e; ++l) {
        Observer* o = l == 0 ? static_cast<Observer*>(&obs) : &lane_obs[static_cast<size_t>(l - 1)];
        while (!stop.load()) {
          const size_t i = next.fetch_add(1);
          if (i >= n) break;
          Status st = run_sample(*execs[static_cast<size_t>(l)], i, o);
          if (!st.ok()) {
            std::lock_guard<std::mutex> lock(mu);
            // Report the earliest failing sample, as a one-thread run would.
            if (i < failed_at) failed_at = i, failure = std::move(st);
            stop = true;
          }
        }
      }
    });
    if (failed_at < n) return failure;
    for (const auto& lo : lane_obs) FRUGAL_RETURN_IF_ERROR(obs.merge(lo));
  }
  // What comes next (quantization, other models) needs other sizes; and the activations freed
  // under the 1 MiB mmap threshold (a 128 x 768 one is 384 KiB) would otherwise stay in glibc's
  // arenas, the lanes' trimmed lazily, with a quantization pass's int8 weights stacked on top (on
  // the BERT-base-sized encoder 26 MB were left and the quantize peak was 217 instead of 197 MiB).
  return_freed_memory();
  CalibrationTable t;
  t.method = calib_method_name(opts.method);
  t.percentile = opts.method == CalibMethod::kPercentile ? opts.percentile : 0;
  t.bins = opts.method == CalibMethod::kMinMax ? 0 : std::max(opts.bins, 16);
  t.samples = static_cast<int64_t>(n);
  if (!model_path.empty()) {
    t.model_path = model_path.string();
    if (!model_sha256.empty()) {
      t.model_sha256 = model_sha256;
    } else {
      FRUGAL_ASSIGN_OR_RETURN(t.model_sha256, sha_job.get());
    }
  }
  t.dataset_description = data.describe();
  if (opts.fingerprint_data) t.dataset_fingerprint = data.fingerprint();
  t.tensors = obs.finish();
  return t;
}

// ---- table --------------------------------------------------------------------------------------

const TensorRange* CalibrationTable::find(const std::string& name) const {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

Json CalibrationTable::to_json() const {
  Json j;
  j["format"] = "frugal-calibration";
  j["version"] = 1;
  j["method"] = method;
  if (method == "percentile") j["percentile"] = percentile;
  j["bins"] = bins;
  j["samples"] = samples;
  j["model"] = {{"path", model_path}, {"sha256", model_sha256}};
  j["dataset"] = {{"description", dataset_description}, {"fingerprint", dataset_fingerprint}};
  Json ts = Json::object();
  for (const auto& [name, r] : tensors)
    ts[name] = {{"min", r.min}, {"max", r.max}, {"range_min", r.range_min}, {"range_max", r.range_max},
                {"count", r.count}};
  j["tensors"] = ts;
  return j;
}

StatusOr<CalibrationTable> CalibrationTable::from_json(const Json& j, const std::string& what) {
  try {
    if (!j.is_object() || j.value("format", "") != "frugal-calibration")
      return InvalidData(what + ": not a frugal calibration table (missing \"format\": \"frugal-calibration\")");
    if (j.value("version", 0) != 1)
      return InvalidData(what + ": unsupported calibration table version " + j.value("version", Json(0)).dump());
    CalibrationTable t;
    t.method = j.at("method").get<std::string>();
    t.percentile = j.value("percentile", 0.0);
    t.bins = j.value("bins", 0);
    t.samples = j.value("samples", int64_t{0});
    if (j.contains("model")) {
      t.model_path = j["model"].value("path", "");
      t.model_sha256 = j["model"].value("sha256", "");
    }
    if (j.contains("dataset")) {
      t.dataset_description = j["dataset"].value("description", "");
      t.dataset_fingerprint = j["dataset"].value("fingerprint", "");
    }
    for (const auto& [name, v] : j.at("tensors").items()) {
      TensorRange r;
      r.min = v.at("min").get<double>();
      r.max = v.at("max").get<double>();
      r.range_min = v.value("range_min", r.min);
      r.range_max = v.value("range_max", r.max);
      r.count = v.value("count", uint64_t{0});
      if (!(r.range_min <= r.range_max))
        return InvalidData(what + ": tensor '" + name + "' has range_min > range_max");
      t.tensors.emplace(name, r);
    }
    return t;
  } catch (const std::exception& e) {
    return InvalidData(what + ": malformed calibration table: " + e.what());
  }
}

Status CalibrationTable::save(const std::filesystem::path& path) const { return write_json(path, to_json()); }

StatusOr<CalibrationTable> CalibrationTable::load(const std::filesystem::path& path) {
  FRUGAL_ASSIGN_OR_RETURN(std::string bytes, read_file_bytes(path, "calibration table"));
  Json j = Json::parse(bytes, nullptr, false);
  if (j.is_discarded()) return InvalidData("calibration table '" + path.string() + "' is not valid JSON");
  return from_json(j, "calibration table '" + path.string() + "'");
}

}  // namespace frugal
