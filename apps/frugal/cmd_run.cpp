// frugal run MODEL (--data PATH | --synthetic N) [--dims k=v].. [-o OUTDIR] [--format pb|npy]
//                  [--expect DIR] [--rtol R] [--atol A]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli_util.h"
#include "commands.h"
#include "frugal/dataset.h"
#include "frugal/executor.h"

namespace frugal::cli {

namespace fs = std::filesystem;

Command add_run_command(CLI::App& root, const GlobalOptions& g) {
  struct Opts {
    std::string model, data, out, format = "pb", expect;
    size_t synthetic = 0;
    std::vector<std::string> dims;
    double rtol = 1e-3, atol = 1e-5;
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  Command c;
  c.app = root.add_subcommand("run", "Run a model on data; write outputs and compare with reference outputs");
  c.app->add_option("model", o->model, "ONNX model file")->required();
  c.app->add_option("--data", o->data, "Inputs: test_data_set dir(s), .npz (samples stacked on axis 0), dir of .npz/.npy, .pb");
  c.app->add_option("--synthetic", o->synthetic, "Use N synthetic samples drawn from the declared input shapes");
  c.app->add_option("--dims", o->dims, "Symbolic dim values, NAME=VALUE (repeatable)");
  c.app->add_option("--seed", o->seed, "Seed for synthetic data");
  c.app->add_option("-o,--output", o->out, "Write outputs to OUTDIR/test_data_set_<i>/output_<k>.{pb,npy}");
  c.app->add_option("--format", o->format, "Output file format")->check(CLI::IsMember({"pb", "npy"}));
  c.app->add_option("--expect", o->expect, "Reference outputs (DIR/test_data_set_<i>/output_<k>.pb); exit 3 on mismatch");
  c.app->add_option("--rtol", o->rtol, "Relative tolerance for --expect");
  c.app->add_option("--atol", o->atol, "Absolute tolerance for --expect");
  c.run = [o, &g]() -> Status {
    if (o->data.empty() == (o->synthetic == 0)) return InvalidArgument("give exactly one of --data PATH or --synthetic N");
    FRUGAL_ASSIGN_OR_RETURN(auto dims, parse_dims(o->dims));
    FRUGAL_ASSIGN_OR_RETURN(RunSetup setup, open_run_setup(g, o->model, o->data, o->synthetic, o->seed, dims));
    auto& model = setup.model;
    auto& ex = setup.executor;
    auto& data = setup.data;
    const size_t n = data->size();
    info(g, "running " + model->path().filename().string() + " on " + data->describe());

    struct OutStat {
      double max_abs = 0, max_rel = 0;
      int64_t mismatches = 0;
      std::string problem;
    };
    std::vector<OutStat> stats(ex->graph().outputs().size());
    Progress progress(g, n, "run");
    double compute_s = 0;
    for (size_t i = 0; i < n; ++i) {
      FRUGAL_ASSIGN_OR_RETURN(NamedTensors in, data->get(i));
      const auto t0 = std::chrono::steady_clock::now();
      FRUGAL_ASSIGN_OR_RETURN(NamedTensors outs, ex->run(in));
      compute_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!o->out.empty()) {
        const fs::path dir = fs::path(o->out) / ("test_data_set_" + std::to_string(i));
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) return IoError("cannot create output directory '" + dir.string() + "': " + ec.message());
        for (size_t k = 0; k < outs.size(); ++k) {
          const std::string base = "output_" + std::to_string(k);
          if (o->format == "npy") FRUGAL_RETURN_IF_ERROR(write_npy(dir / (base + ".npy"), outs[k].second));
          else FRUGAL_RETURN_IF_ERROR(write_tensor_pb(dir / (base + ".pb"), outs[k].first, outs[k].second));
        }
      }
      if (!o->expect.empty()) {
        FRUGAL_ASSIGN_OR_RETURN(NamedTensors ref, read_reference_outputs(ex->graph(), o->expect, i));
        for (size_t k = 0; k < outs.size(); ++k) {
          const Tensor* e = find_named(ref, outs[k].first);
          if (!e) return NotFound("reference outputs for sample " + std::to_string(i) + " lack '" + outs[k].first + "'");
          const auto r = compare_tensors(outs[k].second, *e, o->rtol, o->atol);
          auto& s = stats[k];
          if (!r.shape_ok) s.problem = "shape " + shape_str(outs[k].second.shape()) + " != " + shape_str(e->shape());
          else if (!r.dtype_ok) s.problem = std::string("dtype ") + dtype_name(outs[k].second.dtype()) + " != " + dtype_name(e->dtype());
          s.max_abs = std::max(s.max_abs, r.max_abs);
          s.max_rel = std::max(s.max_rel, r.max_rel);
          s.mismatches += r.mismatches;
        }
      }
      progress.tick();
    }
    progress.done();
    const double sps = compute_s > 0 ? static_cast<double>(n) / compute_s : 0;
    Json report;
    report["schema"] = "frugal.run/1";
    report["model"] = o->model;
    report["data"] = data->describe();
    report["samples"] = n;
    report["compute_seconds"] = compute_s;
    report["samples_per_second"] = sps;
    bool all_ok = true;
    if (!o->expect.empty()) {
      TextTable t({"output", "max abs err", "max rel err", "mismatches", "result"});
      Json arr = Json::array();
      for (size_t k = 0; k < stats.size(); ++k) {
        const auto& s = stats[k];
        const bool ok = s.problem.empty() && s.mismatches == 0;
        all_ok &= ok;
        const std::string& name = ex->graph().outputs()[k].name;
        t.add_row({name, fmt_fixed(s.max_abs, 8), fmt_fixed(s.max_rel, 8), std::to_string(s.mismatches),
                   ok ? "pass" : s.problem.empty() ? "FAIL" : "FAIL: " + s.problem});
        arr.push_back({{"name", name}, {"max_abs_error", s.max_abs}, {"max_rel_error", s.max_rel},
                       {"mismatches", s.mismatches}, {"pass", ok}});
      }
      report["expect"] = {{"dir", o->expect}, {"rtol", o->rtol}, {"atol", o->atol}, {"outputs", arr}, {"pass", all_ok}};
      if (!g.quiet) std::cout << t.str();
    }
    if (!g.quiet)
      std::cout << n << " sample(s) in " << fmt_seconds(compute_s) << " (" << fmt_fixed(sps, 1) << " samples/s, "
                << num_threads_used(g) << " thread(s))\n";
    if (!g.report.empty()) FRUGAL_RETURN_IF_ERROR(write_json(g.report, report));
    if (!all_ok)
      return QualityGate("outputs differ from the reference in '" + o->expect + "' beyond rtol " + fmt_fixed(o->rtol, 6) +
                         ", atol " + fmt_fixed(o->atol, 8));
    return OkStatus();
  };
  return c;
}

}  // namespace frugal::cli
