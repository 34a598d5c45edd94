// `frugal quantize` as a library call: calibrate (or read a table), quantize, per-layer SQNR,
// fidelity on held-out data, the --max-drop loop, save, report.
#include <algorithm>
#include <chrono>
#include <future>
#include <optional>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>
#include <sys/resource.h>

#include "frugal/energy.h"
#include "frugal/file_util.h"
#include "frugal/quantize.h"

namespace frugal {

namespace {

// Keeps the float values of the listed tensors of one run (one sample: memory stays per-sample).
class CaptureObserver : public Observer {
 public:
  explicit CaptureObserver(const std::set<std::string>& names) : names_(names) {}
  Status on_node(const NodeEvent& ev) override {
    for (size_t k = 0; k < ev.node.outputs.size() && k < ev.outputs.size(); ++k)
      if (names_.count(ev.node.outputs[k]) && dtype_is_float(ev.outputs[k].dtype()))
        captured[ev.node.outputs[k]] = ev.outputs[k];
    return OkStatus();
  }
  std::map<std::string, Tensor> captured;

 private:
  const std::set<std::string>& names_;
};

// Compares the quantized model's value of each tensor with the captured float one.
class SqnrObserver : public Observer {
 public:
  SqnrObserver(const std::map<std::string, Tensor>& ref, std::map<std::string, std::pair<double, double>>& acc)
      : ref_(ref), acc_(acc) {}
  Status on_node(const NodeEvent& ev) override {
    for (size_t k = 0; k < ev.node.outputs.size() && k < ev.outputs.size(); ++k) {
      auto it = ref_.find(ev.node.outputs[k]);
      if (it == ref_.end() || ev.outputs[k].numel() != it->second.numel() || !dtype_is_float(ev.outputs[k].dtype())) continue;
      Tensor a = it->second.to_float(), b = ev.outputs[k].to_float();
      const float* x = a.data<float>();
      const float* y = b.data<float>();
      double s = 0, e = 0;
      for (int64_t i = 0; i < a.numel(); ++i) {
        s += static_cast<double>(x[i]) * x[i];
        const double d = static_cast<double>(x[i]) - y[i];
        e += d * d;
      }
      auto& slot = acc_[ev.node.outputs[k]];
      slot.first += s;
      slot.second += e;
    }
    return OkStatus();
  }

 private:
  const std::map<std::string, Tensor>& ref_;
  std::map<std::string, std::pair<double, double>>& acc_;
};

std::string fmt_db(double v) { return std::isnan(v) ? "-" : fmt_fixed(v, 1); }

std::string fmt_range(double a, double b) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "[%.4g, %.4g]", a, b);
  return buf;
}

uintmax_t serialized_size(const Model& m) { return m.serialized_size(); }

}  // namespace

StatusOr<std::map<std::string, double>> layer_sqnr(std::shared_ptr<const Model> float_model,
                                                   std::shared_ptr<const Model> quant_model,
                                                   const std::vector<std::string>& tensors, Dataset& data,
                                                   size_t max_samples, const ExecOptions& exec) {
  FRUGAL_ASSIGN_OR_RETURN(auto fexec, Executor::create(float_model, exec));
  FRUGAL_ASSIGN_OR_RETURN(auto qexec, Executor::create(quant_model, exec));
  std::set<std::string> names(tensors.begin(), tensors.end());
  std::map<std::string, std::pair<double, double>> acc;
  size_t n = data.size();
  if (max_samples) n = std::min(n, max_samples);
  for (size_t i = 0; i < n; ++i) {
    FRUGAL_ASSIGN_OR_RETURN(NamedTensors in, data.get(i));
    CaptureObserver cap(names);
    auto r1 = fexec->run(in, &cap);
    if (!r1.ok()) return r1.status().with_context("float model, sample " + std::to_string(i));
    SqnrObserver sq(cap.captured, acc);
    auto r2 = qexec->run(in, &sq);
    if (!r2.ok()) return r2.status().with_context("quantized model, sample " + std::to_string(i));
  }
  std::map<std::string, double> out;
  for (const auto& [name, se] : acc) out[name] = quant::sqnr_db(se.first, se.second);
  return out;
}

bool MaxDrop::holds(const Fidelity& f) const {
  if (metric == "cosine") return f.min_cosine() >= value;
  const double t = f.min_top1();
  return t < 0 || (1.0 - t) <= value + 1e-12;
}

std::string MaxDrop::describe() const {
  if (metric == "cosine") return "cosine >= " + fmt_fixed(value, 6);
  return "top-1 agreement drop <= " + fmt_fixed(value * 100, 3) + "%";
}

StatusOr<MaxDrop> parse_max_drop(const std::string& s) {
  const auto eq = s.find('=');
  if (eq == std::string::npos) return InvalidArgument("--max-drop expects METRIC=VALUE (top1=0.5% or cosine=0.999), got '" + s + "'");
  MaxDrop d;
  d.metric = s.substr(0, eq);
  std::string v = s.substr(eq + 1);
  bool pct = !v.empty() && v.back() == '%';
  if (pct) v.pop_back();
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !std::isfinite(x) || x < 0)
    return InvalidArgument("--max-drop: '" + s.substr(eq + 1) + "' is not a non-negative number");
  if (d.metric == "top1") {
    d.value = pct ? x / 100.0 : x;  // a bare number is a fraction (0.005)
    if (d.value > 1) return InvalidArgument("--max-drop top1: a drop above 100% makes no sense");
  } else if (d.metric == "cosine") {
    if (pct) return InvalidArgument("--max-drop cosine takes a plain number (e.g. 0.999)");
    d.value = x;
  } else {
    return InvalidArgument("--max-drop: unknown metric '" + d.metric + "' (expected top1 or cosine)");
  }
  return d;
}

StatusOr<QuantizeRunResult> run_quantize(const QuantizeJob& job) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  // Hashing a large model takes longer than loading it (~250 MB/s): do it on its own thread,
  // overlapping the load and calibration, and wait for it only where the hash is needed. Nobody needs
  // it when there is neither a table to check nor a report to carry it.
  const bool hash = job.hash_model || !job.table_path.empty();
  std::future<StatusOr<std::string>> sha_job;
  if (hash) sha_job = std::async(std::launch::async, [p = job.model_path] { return sha256_file(p); });
  std::optional<std::string> sha_value;
  auto model_sha_of = [&]() -> StatusOr<std::string> {
    if (!hash) return std::string();
    if (!sha_value) {
      FRUGAL_ASSIGN_OR_RETURN(std::string h, sha_job.get());
      sha_value = std::move(h);
    }
    return *sha_value;
  };
  // Per phase, in order, for the report: wall seconds and the process's peak RSS when it ended
  // (where the time and the memory of a run go).
  struct Phase {
    std::string name;
    double seconds;
    double peak_rss_mib;
  };
  std::vector<Phase> phases;
  auto t_phase = t0;
  auto mark = [&](const char* name) {
    const auto now = clock::now();
    struct rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    phases.push_back({name, std::chrono::duration<double>(now - t_phase).count(), static_cast<double>(ru.ru_maxrss) / 1024.0});
    t_phase = now;
  };
  FRUGAL_ASSIGN_OR_RETURN(std::shared_ptr<Model> model, Model::load(job.model_path));
  FRUGAL_ASSIGN_OR_RETURN(Graph graph, Graph::build(*model));
  mark("load");
  const bool dynamic = job.quant.dynamic;

  std::unique_ptr<Dataset> calib_data;
  if (!job.data_path.empty()) {
    FRUGAL_ASSIGN_OR_RETURN(calib_data, open_dataset(graph, job.data_path, job.data_opts));
  }
  CalibrationTable table;
  bool have_table = false;
  std::unique_ptr<CostRecorder> cost_recorder;
  if (!job.table_path.empty()) {
    FRUGAL_ASSIGN_OR_RETURN(table, CalibrationTable::load(job.table_path));
    FRUGAL_ASSIGN_OR_RETURN(std::string model_sha, model_sha_of());
    if (!table.model_sha256.empty() && table.model_sha256 != model_sha)
      return InvalidArgument("calibration table '" + job.table_path.string() + "' was computed for a different model (sha256 " +
                             table.model_sha256.substr(0, 16) + "..., from '" + table.model_path + "') but '" +
                             job.model_path.string() + "' has sha256 " + model_sha.substr(0, 16) +
                             "...; run frugal calibrate on this model");
    have_table = true;
  } else if (!dynamic) {
    if (!calib_data) return InvalidArgument("static quantization needs calibration data (--data PATH) or a table (--table FILE)");
    CalibOptions co = job.calib;
    // Observe only the tensors the pass will read ranges for (a fraction of all of them).
    if (co.tensors.empty()) {
      FRUGAL_ASSIGN_OR_RETURN(co.tensors, static_quantization_tensors(*model, job.quant));
    }
    // The energy estimate needs one full run of the float model: calibration's first sample is it.
    if (job.estimate_energy) {
      cost_recorder = std::make_unique<CostRecorder>(*model, graph);
      co.first_run_observer = cost_recorder.get();
    }
    co.fingerprint_data = hash;  // shown in the report only
    FRUGAL_ASSIGN_OR_RETURN(table, calibrate(model, *calib_data, co));
    mark("calibrate");
    table.model_path = job.model_path.string();
    if (hash) {
      FRUGAL_ASSIGN_OR_RETURN(table.model_sha256, model_sha_of());
      mark("hash wait");
    }
    have_table = true;
  }
  const auto t_calib = clock::now();

  std::unique_ptr<Dataset> holdout;
  if (!job.holdout_path.empty()) {
    FRUGAL_ASSIGN_OR_RETURN(holdout, open_dataset(graph, job.holdout_path, job.data_opts));
  }
  Dataset* fid_data = holdout ? holdout.get() : calib_data.get();
  if (!job.measure_fidelity && !job.max_drop) fid_data = nullptr;
  Dataset* sqnr_data = calib_data ? calib_data.get() : holdout.get();

  QuantizeOptions qopts = job.quant;
  auto do_quantize = [&](const QuantizeOptions& o) -> StatusOr<QuantizeResult> {
    return dynamic ? quantize_dynamic(*model, o) : quantize_static(*model, table, o);
  };
  FRUGAL_ASSIGN_OR_RETURN(QuantizeResult qr, do_quantize(qopts));
  mark("quantize");
  std::vector<std::string> notes;  // the driver's own; the pass's notes come from the final result

  // Per-layer SQNR on the calibration data: float and quantized models side by side.
  std::map<std::string, double> sqnr;
  if (sqnr_data && job.sqnr_samples > 0) {
    std::vector<std::string> outs;
    for (const auto& n : qr.nodes)
      if (n.quantized && !n.output_tensor.empty()) outs.push_back(n.output_tensor);
    auto s = layer_sqnr(model, qr.model, outs, *sqnr_data, job.sqnr_samples, job.calib.exec);
    if (s.ok()) sqnr = std::move(s).value();
    else notes.push_back("per-layer SQNR not measured: " + s.status().message());
  }
  for (auto& n : qr.nodes) {
    auto it = sqnr.find(n.output_tensor);
    if (it != sqnr.end()) n.sqnr_db = it->second;
  }
  const std::vector<NodeQuantInfo> first_nodes = qr.nodes;
  if (sqnr_data && job.sqnr_samples > 0) mark("sqnr");

  // Fidelity on held-out data, and the --max-drop loop.
  std::optional<Fidelity> fid;
  std::vector<std::string> kept_float;
  Status gate;
  auto measure = [&](const QuantizeResult& r) -> StatusOr<Fidelity> {
    FRUGAL_ASSIGN_OR_RETURN(auto fe, Executor::create(model, job.calib.exec));
    FRUGAL_ASSIGN_OR_RETURN(auto qe, Executor::create(r.model, job.calib.exec));
    return measure_fidelity(*fe, *qe, *fid_data, job.fidelity_samples);
  };
  if (fid_data) {
    auto f = measure(qr);
    if (f.ok()) fid = std::move(f).value();
    else if (job.max_drop) return f.status().with_context("measuring fidelity for --max-drop");
    else notes.push_back("fidelity not measured: " + f.status().message());
  } else if (job.max_drop) {
    return InvalidArgument("--max-drop needs data to measure fidelity on (--data or --holdout)");
  }
  if (job.max_drop && fid && !job.max_drop->holds(*fid)) {
    // Most sensitive first: lowest SQNR among quantized compute nodes (unmeasured ones last).
    std::vector<const NodeQuantInfo*> order;
    for (const auto& n : first_nodes)
      if (n.quantized && (n.op_type == "Conv" || n.op_type == "ConvTranspose" || n.op_type == "Gemm" || n.op_type == "MatMul"))
        order.push_back(&n);
    std::stable_sort(order.begin(), order.end(), [](const NodeQuantInfo* a, const NodeQuantInfo* b) {
      const double x = std::isnan(a->sqnr_db) ? 1e300 : a->sqnr_db, y = std::isnan(b->sqnr_db) ? 1e300 : b->sqnr_db;
      return x < y;
    });
    // Keep the k most sensitive layers float, for the smallest k whose model meets the bound: k doubles
    // until the bound holds, then a binary search between the last failing and the first passing k.
    // Each probe re-quantizes and re-measures (O(log n) probes instead of one per layer); only a k
    // measured to hold is ever kept, so the bound is guaranteed even where sensitivity is not monotonic.
    auto probe = [&](size_t k) -> StatusOr<std::pair<QuantizeResult, Fidelity>> {
      QuantizeOptions o = qopts;
      for (size_t i = 0; i < k; ++i) o.keep_float.insert(order[i]->name);
      FRUGAL_ASSIGN_OR_RETURN(QuantizeResult r2, do_quantize(o));
      FRUGAL_ASSIGN_OR_RETURN(Fidelity f2, measure(r2));
      return std::make_pair(std::move(r2), f2);
    };
    bool met = false;
    size_t fail_k = 0, pass_k = 0;  // k = 0 (everything quantized) is known to fail
    for (size_t k = 1; k <= order.size(); k = std::min(k * 2, order.size())) {
      FRUGAL_ASSIGN_OR_RETURN(auto r, probe(k));
      const bool holds = job.max_drop->holds(r.second);
      qr = std::move(r.first);
      fid = r.second;
      if (holds) {
        met = true;
        pass_k = k;
        break;
      }
      fail_k = k;
      if (k == order.size()) break;
    }
    if (met) {
      while (pass_k - fail_k > 1) {
        const size_t mid = fail_k + (pass_k - fail_k) / 2;
        FRUGAL_ASSIGN_OR_RETURN(auto r, probe(mid));
        if (job.max_drop->holds(r.second)) {  // qr/fid always hold the smallest passing k so far
          pass_k = mid;
          qr = std::move(r.first);
          fid = r.second;
        } else {
          fail_k = mid;
        }
      }
    }
    const size_t kept = met ? pass_k : order.size();
    for (size_t i = 0; i < kept; ++i) {
      qopts.keep_float.insert(order[i]->name);
      kept_float.push_back(order[i]->name);
    }
    if (!met)
      gate = QualityGate("--max-drop " + job.max_drop->describe() + " cannot be met even with " +
                         std::to_string(kept_float.size()) + " layer(s) kept in float; no model written");
    // Carry the SQNR figures of the first full quantization into the final node list.
    for (auto& n : qr.nodes)
      for (const auto& f : first_nodes)
        if (f.name == n.name) n.sqnr_db = f.sqnr_db;
  }

  if (fid_data) mark(job.max_drop ? "fidelity and max-drop" : "fidelity");
  // Save (temp file + rename, input never modified).
  uintmax_t out_size = 0;
  if (gate.ok() && !job.output_path.empty()) {
    SaveOptions so;
    so.input_path = job.model_path;
    FRUGAL_RETURN_IF_ERROR(qr.model->save(job.output_path, so));
    std::error_code ec;
    out_size = std::filesystem::file_size(job.output_path, ec);
    if (ec) out_size = serialized_size(*qr.model);
  } else {
    out_size = serialized_size(*qr.model);
  }
  const uintmax_t in_size = model->file_size() ? model->file_size() : serialized_size(*model);
  mark("save");
  const auto t_end = clock::now();

  // ---- report ----
  FRUGAL_ASSIGN_OR_RETURN(std::string model_sha, model_sha_of());
  Json rep;
  rep["command"] = "quantize";
  rep["model"] = {{"path", job.model_path.string()}, {"sha256", hash ? Json(model_sha) : Json(nullptr)}};
  rep["output"] = job.output_path.string();
  rep["mode"] = !dynamic ? "static-qdq" : job.quant.dynamic_form == DynamicForm::kInteger ? "dynamic-integer" : "dynamic-weight-only";
  rep["options"] = {{"activation_type", dtype_name(job.quant.activation_type)},
                    {"per_channel", job.quant.per_channel},
                    {"reduce_range", job.quant.reduce_range},
                    {"include", job.quant.include},
                    {"exclude", job.quant.exclude}};
  if (dynamic) rep["options"]["dynamic_form"] = dynamic_form_name(job.quant.dynamic_form);
  if (have_table) {
    rep["calibration"] = {{"source", job.table_path.empty() ? "data" : job.table_path.string()},
                          {"method", table.method},
                          {"bins", table.bins},
                          {"samples", table.samples},
                          {"dataset", table.dataset_description},
                          {"dataset_fingerprint",
                           table.dataset_fingerprint.empty() ? Json(nullptr) : Json(table.dataset_fingerprint)},
                          {"tensors", table.tensors.size()}};
    if (table.method == "percentile") rep["calibration"]["percentile"] = table.percentile;
  }
  rep["opset"] = {{"before", qr.opset_before}, {"after", qr.opset_after}};
  Json layers = Json::array();
  for (const auto& n : qr.nodes) {
    Json l = {{"name", n.name}, {"op_type", n.op_type}, {"quantized", n.quantized}};
    if (n.quantized) l["form"] = n.form;
    if (!n.quantized || !n.reason.empty()) l["reason"] = n.reason;
    if (n.weight_axis >= -1) {
      l["weight"] = {{"per_channel", n.weight_axis >= 0}, {"axis", n.weight_axis}, {"min", n.weight_min}, {"max", n.weight_max}};
    }
    if (n.has_input_range) l["activation"] = {{"tensor", n.input_tensor}, {"range_min", n.input_min}, {"range_max", n.input_max}};
    if (!std::isnan(n.sqnr_db)) l["sqnr_db"] = n.sqnr_db;
    layers.push_back(l);
  }
  rep["layers"] = layers;
  rep["summary"] = {{"nodes_quantized", qr.quantized_count()},
                    {"nodes_skipped", static_cast<int>(qr.nodes.size()) - qr.quantized_count()},
                    {"size_before_bytes", in_size},
                    {"size_after_bytes", out_size},
                    {"calibration_seconds", std::chrono::duration<double>(t_calib - t0).count()},
                    {"total_seconds", std::chrono::duration<double>(t_end - t0).count()}};
  if (fid) {
    Json fj = fidelity_json(*fid);
    fj["data"] = fid_data->describe();
    rep["fidelity"] = fj;
  }
  if (job.max_drop) {
    rep["max_drop"] = {{"bound", job.max_drop->describe()}, {"met", gate.ok()}, {"kept_float", kept_float}};
  }
  // Energy: original vs quantized, estimated on the default profile of lib/energy (integrator: wire
  // --device-profile/--region through here when the CLI grows them).
  if (!job.estimate_energy) {
    rep["energy"] = nullptr;
  } else {
    const EnergyOptions eopts;
    // The float model's cost comes from calibration's first run when that ran at the shapes the
    // estimate uses; the quantized copy is sized from it, or run once when it has outputs the float
    // run cannot size (an opset upgrade's Flatten around Softmax). Otherwise both models run here.
    std::optional<StatusOr<Json>> from_run;
    if (cost_recorder) {
      auto want = cost_input_shapes(graph, eopts.cost);
      if (want.ok() && *want == cost_recorder->input_shapes()) {
        auto ca = cost_recorder->finish();
        auto cb = model_cost_derived(*qr.model, cost_recorder->shapes());
        if (!cb.ok() && cb.status().code() == StatusCode::kNotFound) cb = model_cost(qr.model, eopts.cost);
        if (ca.ok() && cb.ok()) from_run = energy_section(*ca, *cb, eopts);
      }
      cost_recorder.reset();
    }
    auto e = from_run ? std::move(*from_run) : energy_section(*model, *qr.model, eopts);
    if (e.ok()) rep["energy"] = std::move(e).value();
    else rep["energy"] = {{"error", e.status().message()}};
  }
  mark("energy");
  {
    Json pj = Json::array();
    for (const auto& ph : phases) pj.push_back({{"phase", ph.name}, {"seconds", ph.seconds}, {"peak_rss_mib", ph.peak_rss_mib}});
    rep["summary"]["phases"] = pj;
  }
  notes.insert(notes.begin(), qr.notes.begin(), qr.notes.end());
  rep["notes"] = notes;

  std::ostringstream text;
  TextTable tt({"node", "op", "quantized", "weight", "activation range", "SQNR dB", "note"});
  for (const auto& n : qr.nodes) {
    std::string w = n.weight_axis >= 0 ? (n.op_type == "Gather" ? std::string("per-row")
                                                                 : "per-channel axis " + std::to_string(n.weight_axis))
                    : n.weight_axis == -1 ? "per-tensor" : "-";
    tt.add_row({n.name, n.op_type, n.quantized ? "yes" : "no", w,
                n.has_input_range ? fmt_range(n.input_min, n.input_max) : "-", fmt_db(n.sqnr_db), n.reason});
  }
  text << tt.str();
  text << "nodes quantized: " << qr.quantized_count() << ", skipped: " << (qr.nodes.size() - qr.quantized_count()) << "\n";
  text << "size: " << fmt_bytes(static_cast<double>(in_size)) << " -> " << fmt_bytes(static_cast<double>(out_size)) << "\n";
  if (fid) {
    for (const auto& o : fid->outputs) {
      text << "fidelity '" << o.name << "' on " << o.samples << " samples: cosine " << fmt_fixed(o.cosine, 6) << ", max abs err "
           << fmt_fixed(o.max_abs, 6) << ", SQNR " << fmt_fixed(o.sqnr_db, 1) << " dB";
      if (o.top1_agreement >= 0) text << ", top-1 agreement " << fmt_fixed(o.top1_agreement * 100, 2) << "%";
      text << "\n";
    }
  }
  if (job.max_drop)
    text << "max-drop " << job.max_drop->describe() << ": " << (gate.ok() ? "met" : "NOT met") << " with "
         << kept_float.size() << " layer(s) kept in float\n";
  if (job.estimate_energy) text << energy_section_text(rep["energy"]);
  for (const auto& n : notes) text << "note: " << n << "\n";

  QuantizeRunResult out;
  out.report = std::move(rep);
  out.text = text.str();
  out.gate = gate;
  return out;
}

}  // namespace frugal
