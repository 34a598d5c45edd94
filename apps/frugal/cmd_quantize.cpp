// frugal quantize MODEL -o OUT (--data PATH [--method M] | --table T.json) [--dynamic [--dynamic-form F]]
//                 [--activation-type uint8|int8] [--per-tensor] [--reduce-range]
//                 [--include PAT].. [--exclude PAT].. [--max-drop top1=0.5%|cosine=0.999] [--holdout PATH]
#include <iostream>

#include "cli_util.h"
#include "commands.h"
#include "frugal/quantize.h"

namespace frugal::cli {

Command add_quantize_command(CLI::App& root, const GlobalOptions& g) {
  struct Opts {
    std::string model, out, data, table, holdout, method = "minmax", act_type = "uint8", max_drop;
    std::string dynamic_form = "weight-only";
    double percentile = 99.99;
    int bins = 2048;
    size_t max_samples = 0, sqnr_samples = 8, fidelity_samples = 0;
    bool dynamic = false, per_tensor = false, reduce_range = false, no_fidelity = false;
    std::vector<std::string> include, exclude, dims;
  };
  auto o = std::make_shared<Opts>();
  Command c;
  c.app = root.add_subcommand("quantize", "INT8 quantization (static QDQ or dynamic) with a per-layer report");
  c.app->add_option("model", o->model, "ONNX model file")->required();
  c.app->add_option("-o,--output", o->out, "Quantized model to write")->required();
  c.app->add_option("--data", o->data, "Calibration inputs (test_data_set dirs, .npz, dir of .npz)");
  c.app->add_option("--table", o->table, "Calibration table from frugal calibrate (checked against the model's sha256)");
  c.app->add_option("--method", o->method, "Calibration method with --data")
      ->check(CLI::IsMember({"minmax", "percentile", "entropy", "mse"}));
  c.app->add_option("--percentile", o->percentile, "Percentile for --method percentile")->check(CLI::Range(50.0, 100.0));
  c.app->add_option("--bins", o->bins, "Histogram bins")->check(CLI::Range(128, 1 << 20));
  c.app->add_option("--max-samples", o->max_samples, "Calibrate on at most N samples (0: all)");
  c.app->add_flag("--dynamic", o->dynamic, "Dynamic int8, no calibration needed (form: --dynamic-form)");
  c.app->add_option("--dynamic-form", o->dynamic_form,
                    "With --dynamic: weight-only (int8 weights behind DequantizeLinear, float activations; default) "
                    "or integer (MatMul/Gemm as DynamicQuantizeLinear + MatMulInteger, onnxruntime's form; Conv "
                    "stays weight-only)")
      ->check(CLI::IsMember({"weight-only", "integer"}));
  c.app->add_option("--activation-type", o->act_type, "uint8 (asymmetric) or int8 (symmetric, TensorRT)")
      ->check(CLI::IsMember({"uint8", "int8"}));
  c.app->add_flag("--per-tensor", o->per_tensor, "Per-tensor weight scales instead of per-channel");
  c.app->add_flag("--reduce-range", o->reduce_range, "7-bit weights for CPUs without VNNI");
  c.app->add_option("--include", o->include, "Quantize only nodes matching (name regex or op type; repeatable)");
  c.app->add_option("--exclude", o->exclude, "Keep matching nodes in float (name regex or op type; repeatable)");
  c.app->add_option("--max-drop", o->max_drop, "Quality bound, top1=0.5% or cosine=0.999: keep sensitive layers float; exit 3 if unmet");
  c.app->add_option("--holdout", o->holdout, "Held-out data for the fidelity figures (default: the calibration data)");
  c.app->add_option("--sqnr-samples", o->sqnr_samples, "Samples used for per-layer SQNR (0: skip)");
  c.app->add_option("--fidelity-samples", o->fidelity_samples, "Held-out samples for fidelity (0: all)");
  c.app->add_flag("--no-fidelity", o->no_fidelity, "Skip the held-out fidelity comparison (timing runs)");
  c.app->add_option("--dims", o->dims, "Symbolic dim values, NAME=VALUE (repeatable)");
  c.run = [o, &g, app = c.app]() -> Status {
    if (!o->dynamic && app->count("--dynamic-form"))
      return InvalidArgument("--dynamic-form applies to --dynamic only");
    if (!o->dynamic && o->data.empty() == o->table.empty())
      return InvalidArgument("give exactly one of --data PATH (calibrate now) or --table FILE (from frugal calibrate)");
    FRUGAL_ASSIGN_OR_RETURN(auto dims, parse_dims(o->dims));
    QuantizeJob job;
    job.model_path = o->model;
    job.output_path = o->out;
    job.data_path = o->data;
    job.table_path = o->table;
    job.holdout_path = o->holdout;
    FRUGAL_ASSIGN_OR_RETURN(job.calib.method, parse_calib_method(o->method));
    job.calib.percentile = o->percentile;
    job.calib.bins = o->bins;
    job.calib.max_samples = o->max_samples;
    job.calib.exec.dims = dims;
    job.calib.exec.threads = g.threads;
    job.data_opts.dims = dims;
    job.quant.dynamic = o->dynamic;
    job.quant.dynamic_form = o->dynamic_form == "integer" ? DynamicForm::kInteger : DynamicForm::kWeightOnly;
    job.quant.activation_type = o->act_type == "int8" ? DType::kInt8 : DType::kUInt8;
    job.quant.per_channel = !o->per_tensor;
    job.quant.reduce_range = o->reduce_range;
    job.quant.include = o->include;
    job.quant.exclude = o->exclude;
    job.sqnr_samples = o->sqnr_samples;
    job.fidelity_samples = o->fidelity_samples;
    job.measure_fidelity = !o->no_fidelity;
    job.hash_model = !g.report.empty();  // only the JSON report shows the model's hash
    job.estimate_energy = !g.report.empty() || !g.quiet;  // the report and the table show the estimate
    if (!o->max_drop.empty()) {
      FRUGAL_ASSIGN_OR_RETURN(MaxDrop md, parse_max_drop(o->max_drop));
      job.max_drop = md;
    }
    info(g, "quantizing " + o->model + (o->dynamic ? " (dynamic, " + o->dynamic_form + " form)" : std::string(" (static QDQ)")));
    FRUGAL_ASSIGN_OR_RETURN(QuantizeRunResult r, run_quantize(job));
    if (!g.quiet) std::cout << r.text;
    if (!g.report.empty()) FRUGAL_RETURN_IF_ERROR(write_json(g.report, r.report));
    if (!r.gate.ok()) return r.gate;
    info(g, "wrote " + o->out);
    return OkStatus();
  };
  return c;
}

}  // namespace frugal::cli
