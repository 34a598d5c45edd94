// frugal calibrate MODEL --data PATH [--method minmax|percentile|entropy|mse] [--percentile P]
//                  [--bins N] [--max-samples N] [--dims k=v].. -o table.json
#include <chrono>
#include <iostream>

#include "cli_util.h"
#include "commands.h"
#include "frugal/calibration.h"
#include "frugal/dataset.h"

namespace frugal::cli {

Command add_calibrate_command(CLI::App& root, const GlobalOptions& g) {
  struct Opts {
    std::string model, data, out, method = "minmax";
    double percentile = 99.99;
    int bins = 2048;
    size_t max_samples = 0;
    std::vector<std::string> dims;
  };
  auto o = std::make_shared<Opts>();
  Command c;
  c.app = root.add_subcommand("calibrate", "Compute activation ranges on data into a calibration table (JSON)");
  c.app->add_option("model", o->model, "ONNX model file")->required();
  c.app->add_option("--data", o->data, "Calibration inputs: test_data_set dir(s), .npz (samples stacked on axis 0), dir of .npz")
      ->required();
  c.app->add_option("--method", o->method, "Range method")->check(CLI::IsMember({"minmax", "percentile", "entropy", "mse"}));
  c.app->add_option("--percentile", o->percentile, "Percentile for --method percentile (two-sided)")->check(CLI::Range(50.0, 100.0));
  c.app->add_option("--bins", o->bins, "Histogram bins (percentile, entropy, mse)")->check(CLI::Range(128, 1 << 20));
  c.app->add_option("--max-samples", o->max_samples, "Use at most N samples (0: all)");
  c.app->add_option("--dims", o->dims, "Symbolic dim values, NAME=VALUE (repeatable)");
  c.app->add_option("-o,--output", o->out, "Calibration table to write (JSON)")->required();
  c.run = [o, &g]() -> Status {
    FRUGAL_ASSIGN_OR_RETURN(auto dims, parse_dims(o->dims));
    FRUGAL_ASSIGN_OR_RETURN(auto model, Model::load(o->model));
    FRUGAL_ASSIGN_OR_RETURN(Graph graph, Graph::build(*model));
    DatasetOptions dopts;
    dopts.dims = dims;
    FRUGAL_ASSIGN_OR_RETURN(auto data, open_dataset(graph, o->data, dopts));
    CalibOptions co;
    FRUGAL_ASSIGN_OR_RETURN(co.method, parse_calib_method(o->method));
    co.percentile = o->percentile;
    co.bins = o->bins;
    co.max_samples = o->max_samples;
    co.exec.dims = dims;
    co.exec.threads = g.threads;
    info(g, "calibrating " + model->path().filename().string() + " (" + o->method + ") on " + data->describe());
    const auto t0 = std::chrono::steady_clock::now();
    FRUGAL_ASSIGN_OR_RETURN(CalibrationTable table, calibrate(model, *data, co, o->model));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    FRUGAL_RETURN_IF_ERROR(table.save(o->out));
    if (!g.quiet) {
      TextTable t({"tensor", "min", "max", "range min", "range max"});
      for (const auto& [name, r] : table.tensors)
        t.add_row({name, fmt_fixed(r.min, 5), fmt_fixed(r.max, 5), fmt_fixed(r.range_min, 5), fmt_fixed(r.range_max, 5)});
      std::cout << t.str();
      std::cout << table.tensors.size() << " tensors, " << table.samples << " samples, method " << table.method << ", "
                << fmt_seconds(secs) << "; table written to " << o->out << "\n";
    }
    if (!g.report.empty()) {
      Json rep = table.to_json();
      rep["command"] = "calibrate";
      rep["seconds"] = secs;
      FRUGAL_RETURN_IF_ERROR(write_json(g.report, rep));
    }
    return OkStatus();
  };
  return c;
}

}  // namespace frugal::cli
