// frugal bench MODEL [--data PATH | --synthetic N] [--device cpu|cuda] [--iterations N] [--min-seconds S]
//                    [--measure-energy] [--windows W] [--profile NAME] [--dims k=v].. [--json]
// Latency (mean, p50, p90) and throughput of the executor; with --measure-energy, measured joules per
// inference (RAPL on CPU) beside the cost-model estimate. FRUGAL_POWERCAP_ROOT overrides the sysfs root.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "cli_util.h"
#include "commands.h"
#include "frugal/dataset.h"
#include "frugal/energy.h"
#include "frugal/executor.h"

namespace frugal::cli {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string joules(double j) {
  if (std::fabs(j) >= 1) return fmt_fixed(j, 3) + " J";
  if (std::fabs(j) >= 1e-3) return fmt_fixed(j * 1e3, 3) + " mJ";
  return fmt_fixed(j * 1e6, 3) + " uJ";
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  // Nearest-rank percentile.
  size_t k = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, k == 0 ? 0 : k - 1)];
}

}  // namespace

Command add_bench_command(CLI::App& root, const GlobalOptions& g) {
  struct Opts {
    std::string model, data, device = "cpu", profile;
    size_t synthetic = 0, iterations = 20, windows = 3, warmup = 1;
    double min_seconds = 0;
    bool measure = false, json = false;
    std::vector<std::string> dims;
  };
  auto o = std::make_shared<Opts>();
  Command c;
  c.app = root.add_subcommand("bench", "Run inferences and measure latency, throughput and energy");
  c.app->add_option("model", o->model, "ONNX model file")->required();
  c.app->add_option("--data", o->data, "Inputs (test_data_set dirs, .npz, .npy, .pb); cycled");
  c.app->add_option("--synthetic", o->synthetic, "N synthetic samples from the declared shapes (default 1)");
  c.app->add_option("--device", o->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  c.app->add_option("--iterations", o->iterations, "Timed inferences (at least)")->check(CLI::PositiveNumber);
  c.app->add_option("--min-seconds", o->min_seconds, "Keep running until this much time has passed");
  c.app->add_option("--warmup", o->warmup, "Untimed inferences first");
  c.app->add_flag("--measure-energy", o->measure, "Read RAPL (CPU) / NVML (GPU) energy counters");
  c.app->add_option("--windows", o->windows, "Energy windows of >= 1 s each (repeated)")->check(CLI::PositiveNumber);
  c.app->add_option("--profile", o->profile, "Device profile for the estimate (default: xeon for cpu)");
  c.app->add_option("--dims", o->dims, "Symbolic dim values, NAME=VALUE (repeatable)");
  c.app->add_flag("--json", o->json, "Print the JSON report on stdout");
  c.run = [o, &g]() -> Status {
    if (o->device == "cuda") {
      std::string nvml = "NVML not probed";
      if (o->measure) {
        auto m = open_nvml_meter(0);
        nvml = m.ok() ? "NVML energy counter readable on " + (*m)->name() : m.status().message();
      }
      return Unsupported("--device cuda: this build has no GPU execution yet (CPU executor only); GPU latency and "
                         "energy measurement need a CUDA build on a machine with a GPU [" + nvml + "]");
    }
    if (!o->data.empty() && o->synthetic > 0) return InvalidArgument("give at most one of --data PATH or --synthetic N");
    FRUGAL_ASSIGN_OR_RETURN(auto dims, parse_dims(o->dims));
    FRUGAL_ASSIGN_OR_RETURN(RunSetup setup, open_run_setup(g, o->model, o->data,
                                                           o->data.empty() ? std::max<size_t>(o->synthetic, 1) : 0, 0,
                                                           dims));
    auto& model = setup.model;
    auto& ex = setup.executor;
    auto& data = setup.data;
    if (data->size() == 0) return InvalidData("dataset " + data->describe() + " has no samples");
    std::vector<NamedTensors> samples;
    for (size_t i = 0; i < std::min<size_t>(data->size(), 16); ++i) {
      FRUGAL_ASSIGN_OR_RETURN(NamedTensors s, data->get(i));
      samples.push_back(std::move(s));
    }
    size_t next = 0;
    auto run_one = [&]() -> Status {
      auto r = ex->run(samples[next++ % samples.size()]);
      return r.ok() ? OkStatus() : r.status();
    };
    for (size_t i = 0; i < o->warmup; ++i) FRUGAL_RETURN_IF_ERROR(run_one());

    std::vector<double> lat;
    const auto t_all = Clock::now();
    while (lat.size() < o->iterations || since(t_all) < o->min_seconds) {
      const auto t0 = Clock::now();
      FRUGAL_RETURN_IF_ERROR(run_one());
      lat.push_back(since(t0));
    }
    const double total = since(t_all);
    double mean = 0;
    for (double v : lat) mean += v;
    mean /= static_cast<double>(lat.size());

    Json j;
    j["schema"] = "frugal.bench/1";
    j["model"] = o->model;
    j["device"] = "cpu";
    j["threads"] = num_threads_used(g);
    j["data"] = data->describe();
    Json l;
    l["label"] = "measured";
    l["inferences"] = lat.size();
    l["mean_s"] = mean;
    l["p50_s"] = percentile(lat, 0.5);
    l["p90_s"] = percentile(lat, 0.9);
    l["throughput_per_s"] = static_cast<double>(lat.size()) / total;
    j["latency"] = l;

    // The estimate for the same model, to put the measurement in context.
    EnergyOptions en;
    en.profile = o->profile.empty() ? "xeon" : o->profile;
    en.cost.dims = dims;
    std::optional<EnergyEstimate> est;
    FRUGAL_ASSIGN_OR_RETURN(DeviceProfile prof, resolve_profile(en));
    FRUGAL_ASSIGN_OR_RETURN(Region region, resolve_region(en));
    auto cost = model_cost(model, en.cost);
    Json je;
    je["label"] = "estimate";
    je["profile"] = prof.name;
    if (cost.ok()) {
      est = estimate_energy(*cost, prof, region);
      je["roofline_energy_j"] = est->roofline_energy_j;
      je["per_op_energy_j"] = est->per_op_energy_j;
      je["roofline_time_s"] = est->time_s;
    } else {
      je["error"] = cost.status().message();
    }
    j["estimate"] = je;

    Json jm;
    jm["label"] = "measured";
    if (o->measure) {
      const char* env = std::getenv("FRUGAL_POWERCAP_ROOT");
      auto meter = open_rapl_meter(env && *env ? env : "/sys/class/powercap");
      if (!meter.ok()) {
        jm["available"] = false;
        jm["reason"] = meter.status().message();
      } else {
        auto& m = **meter;
        jm["available"] = true;
        jm["meter"] = m.name();
        jm["scope"] = "CPU package energy (all activity on the sockets, including idle power)";
        // Idle baseline over 1 s, then windows of >= 1 s of back-to-back inferences.
        FRUGAL_ASSIGN_OR_RETURN(double e0, m.read_joules());
        const auto ti = Clock::now();
        std::this_thread::sleep_for(std::chrono::milliseconds(1000));
        FRUGAL_ASSIGN_OR_RETURN(double e1, m.read_joules());
        const double idle_w = (e1 - e0) / since(ti);
        Json windows = Json::array();
        double sum_j = 0, sum_n = 0, sum_t = 0;
        for (size_t w = 0; w < o->windows; ++w) {
          FRUGAL_ASSIGN_OR_RETURN(double a, m.read_joules());
          const auto tw = Clock::now();
          size_t n = 0;
          while (since(tw) < 1.0 || n == 0) {
            FRUGAL_RETURN_IF_ERROR(run_one());
            ++n;
          }
          const double secs = since(tw);
          FRUGAL_ASSIGN_OR_RETURN(double b, m.read_joules());
          Json wj;
          wj["seconds"] = secs;
          wj["inferences"] = n;
          wj["joules"] = b - a;
          wj["j_per_inference"] = (b - a) / static_cast<double>(n);
          windows.push_back(wj);
          sum_j += b - a;
          sum_n += static_cast<double>(n);
          sum_t += secs;
        }
        jm["idle_w"] = idle_w;
        jm["windows"] = windows;
        jm["j_per_inference"] = sum_j / sum_n;
        jm["j_per_inference_above_idle"] = (sum_j - idle_w * sum_t) / sum_n;
        if (est && est->per_op_energy_j > 0) {
          jm["ratio_measured_to_per_op_estimate"] = sum_j / sum_n / est->per_op_energy_j;
          jm["ratio_measured_to_roofline_estimate"] = sum_j / sum_n / est->roofline_energy_j;
        }
      }
    } else {
      jm["available"] = false;
      jm["reason"] = "not requested (--measure-energy)";
    }
    j["energy"] = jm;

    if (!g.report.empty()) FRUGAL_RETURN_IF_ERROR(write_json(g.report, j));
    if (o->json) {
      std::cout << j.dump(2) << "\n";
      return OkStatus();
    }
    if (g.quiet) return OkStatus();
    std::cout << "bench " << o->model << " on cpu (" << num_threads_used(g) << " threads), " << lat.size()
              << " inferences (measured)\n";
    TextTable t({"figure", "value"});
    t.add_row({"latency mean", fmt_seconds(mean)});
    t.add_row({"latency p50", fmt_seconds(percentile(lat, 0.5))});
    t.add_row({"latency p90", fmt_seconds(percentile(lat, 0.9))});
    t.add_row({"throughput", fmt_fixed(static_cast<double>(lat.size()) / total, 2) + " inferences/s"});
    if (est) {
      t.add_row({"energy/inference, per-op estimate (" + prof.name + ")", joules(est->per_op_energy_j)});
      t.add_row({"energy/inference, roofline estimate (" + prof.name + ")",
                 joules(est->roofline_energy_j)});
    }
    if (jm.value("available", false)) {
      t.add_row({"energy/inference, measured (" + jm["meter"].get<std::string>() + ")",
                 joules(jm["j_per_inference"].get<double>())});
      t.add_row({"energy/inference above idle, measured", joules(jm["j_per_inference_above_idle"].get<double>())});
      if (jm.contains("ratio_measured_to_per_op_estimate"))
        t.add_row({"measured / per-op estimate", fmt_fixed(jm["ratio_measured_to_per_op_estimate"].get<double>(), 3)});
    }
    std::cout << t.str();
    if (o->measure && !jm.value("available", false))
      std::cout << "energy not measured: " << jm["reason"].get<std::string>() << "\n";
    return OkStatus();
  };
  return c;
}

}  // namespace frugal::cli
