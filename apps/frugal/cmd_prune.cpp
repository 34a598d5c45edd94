// frugal prune MODEL -o OUT [--sparsity S] [--pattern unstructured|N:M|channels] [--scope layer|global]
//                    [--layer-sparsity REGEX=S].. [--include F].. [--exclude F].. [--data PATH [--reconstruct]]
//                    [--holdout PATH] [--sparse-storage]
#include <filesystem>
#include <iostream>
#include <regex>

#include "cli_util.h"
#include "commands.h"
#include "frugal/dataset.h"
#include "frugal/energy.h"
#include "frugal/executor.h"
#include "frugal/fidelity.h"
#include "frugal/file_util.h"
#include "frugal/prune.h"

namespace frugal::cli {

namespace fs = std::filesystem;

namespace {

uintmax_t size_on_disk(const fs::path& p) {
  std::error_code ec;
  uintmax_t s = fs::file_size(p, ec);
  if (ec) return 0;
  fs::path data = p;
  data += ".data";
  uintmax_t d = fs::file_size(data, ec);
  return s + (ec ? 0 : d);
}

}  // namespace

Command add_prune_command(CLI::App& root, const GlobalOptions& g) {
  struct Opts {
    std::string model, output, pattern = "unstructured", scope = "layer", data, heldout;
    std::vector<std::string> layer_sparsity, dims;
    bool prune_first_conv = false, prune_classifier = false, no_gemm_layout = false;
    int64_t channel_multiple = 1;
    size_t fidelity_samples = 0;
    PruneOptions p;
  };
  auto o = std::make_shared<Opts>();
  Command c;
  c.app = root.add_subcommand("prune", "Prune weights (L1 magnitude, N:M, structured channels, data-aware)");
  c.app->add_option("model", o->model, "ONNX model file")->required();
  c.app->add_option("-o,--output", o->output, "Pruned model to write")->required();
  c.app->add_option("--sparsity", o->p.sparsity, "Fraction of weights (or channels) to remove, in [0, 1)");
  c.app->add_option("--pattern", o->pattern, "unstructured (default), N:M (e.g. 2:4) or channels");
  c.app->add_option("--scope", o->scope, "layer: each layer at --sparsity; global: one threshold across layers")
      ->check(CLI::IsMember({"layer", "global"}));
  c.app->add_flag("--normalize-scores", o->p.normalize_scores, "Global scope: divide scores by each layer's mean");
  c.app->add_option("--layer-sparsity", o->layer_sparsity, "REGEX=S: sparsity for layers whose name matches (repeatable)");
  c.app->add_option("--include", o->p.include, "Only nodes of this op type or whose name matches this regex (repeatable)");
  c.app->add_option("--exclude", o->p.exclude, "Leave nodes of this op type or name regex dense (repeatable)");
  c.app->add_flag("--prune-first-conv", o->prune_first_conv, "Also prune the first Conv (skipped by default)");
  c.app->add_flag("--prune-classifier", o->prune_classifier, "Also prune the final classifier (skipped by default)");
  c.app->add_flag("--no-gemm-layout", o->no_gemm_layout, "N:M: keep MatMul / Gemm transB=0 as they are");
  c.app->add_option("--channel-multiple", o->channel_multiple,
                    "Channels: keep a multiple of N channels per group (8 suits blocked CPU/GPU conv kernels)")
      ->check(CLI::PositiveNumber);
  c.app->add_option("--data", o->data, "Calibration data: Wanda scores |W| x ||X||2 (and --reconstruct)");
  c.app->add_option("--dims", o->dims, "Symbolic dim values, NAME=VALUE (repeatable)");
  c.app->add_option("--max-samples", o->p.max_samples, "Calibration samples to use (0: all)");
  c.app->add_flag("--reconstruct", o->p.reconstruct, "SparseGPT-style weight update minimising each layer's output error");
  c.app->add_option("--damp", o->p.damp, "Reconstruction: Hessian damping relative to its mean diagonal");
  c.app->add_option("--block-size", o->p.block_size, "Reconstruction: columns per block");
  c.app->add_option("--holdout,--heldout", o->heldout, "Held-out data for end-to-end fidelity (default: --data)");
  c.app->add_option("--fidelity-samples", o->fidelity_samples, "Samples for fidelity (0: all)");
  c.app->add_flag("--sparse-storage", o->p.sparse_storage, "Write pruned weights as sparse_initializer where smaller");
  c.run = [o, &g]() -> Status {
    PruneOptions p = o->p;
    FRUGAL_ASSIGN_OR_RETURN(p.dims, parse_dims(o->dims));
    static const std::regex nm_re(R"(^(\d+):(\d+)$)");
    std::smatch m;
    if (o->pattern == "unstructured") {
      p.pattern = PrunePattern::kUnstructured;
    } else if (o->pattern == "channels") {
      p.pattern = PrunePattern::kChannels;
    } else if (std::regex_match(o->pattern, m, nm_re)) {
      p.pattern = PrunePattern::kNM;
      p.nm_n = std::stoi(m[1]);
      p.nm_m = std::stoi(m[2]);
    } else {
      return InvalidArgument("--pattern: expected unstructured, channels or N:M (like 2:4), got '" + o->pattern + "'");
    }
    p.scope = o->scope == "global" ? PruneScope::kGlobal : PruneScope::kLayer;
    p.skip_first_conv = !o->prune_first_conv;
    p.skip_final_classifier = !o->prune_classifier;
    p.gemm_layout = !o->no_gemm_layout;
    p.channel_multiple = o->channel_multiple;
    for (const auto& item : o->layer_sparsity) {
      const auto eq = item.rfind('=');
      if (eq == std::string::npos || eq == 0) return InvalidArgument("--layer-sparsity: expected REGEX=S, got '" + item + "'");
      try {
        p.layer_sparsity.push_back({item.substr(0, eq), std::stod(item.substr(eq + 1))});
      } catch (const std::exception&) {
        return InvalidArgument("--layer-sparsity: '" + item.substr(eq + 1) + "' is not a number");
      }
    }
    if (p.reconstruct && o->data.empty()) return InvalidArgument("--reconstruct needs --data");

    FRUGAL_ASSIGN_OR_RETURN(auto model, Model::load(o->model));
    FRUGAL_ASSIGN_OR_RETURN(Graph graph, Graph::build(*model));
    DatasetOptions dopts;
    dopts.dims = p.dims;
    std::unique_ptr<Dataset> data;
    if (!o->data.empty()) {
      FRUGAL_ASSIGN_OR_RETURN(data, open_dataset(graph, o->data, dopts));
      info(g, "calibration data: " + data->describe());
    }
    FRUGAL_ASSIGN_OR_RETURN(PruneResult r, prune_model(*model, p, data.get()));

    SaveOptions so;
    so.input_path = o->model;
    FRUGAL_RETURN_IF_ERROR(r.model->save(o->output, so));
    const uintmax_t size_before = size_on_disk(o->model), size_after = size_on_disk(o->output);

    Json rep;
    rep["command"] = "prune";
    // Only the JSON report shows the model's hash (0.6 s of CPU on a 150 MB model).
    Json sha = nullptr;
    if (!g.report.empty()) {
      auto h = sha256_file(o->model);
      if (h.ok()) sha = *h;
    }
    rep["model"] = {{"path", o->model}, {"sha256", sha}};
    rep["output"] = o->output;
    Json section = prune_report_json(r, p);
    for (auto it = section.begin(); it != section.end(); ++it) rep[it.key()] = it.value();
    if (data)
      rep["calibration"] = {{"data", data->describe()},
                            {"fingerprint", g.report.empty() ? Json(nullptr) : Json(data->fingerprint())}};
    rep["file_size"] = {{"before_bytes", size_before}, {"after_bytes", size_after}};

    // End-to-end fidelity on held-out data (or the calibration data, labelled as such).
    std::string fid_text;
    const std::string fid_path = !o->heldout.empty() ? o->heldout : o->data;
    if (!fid_path.empty()) {
      auto run_fid = [&]() -> StatusOr<Json> {
        ExecOptions eo;
        eo.dims = p.dims;
        FRUGAL_ASSIGN_OR_RETURN(auto ref, Executor::create(model, eo));
        FRUGAL_ASSIGN_OR_RETURN(auto cand, Executor::create(r.dense_model, eo));
        FRUGAL_ASSIGN_OR_RETURN(auto fdata, open_dataset(ref->graph(), fid_path, dopts));
        FRUGAL_ASSIGN_OR_RETURN(Fidelity f, measure_fidelity(*ref, *cand, *fdata, o->fidelity_samples));
        Json fj = fidelity_json(f);
        fj["data"] = fdata->describe();
        fj["heldout"] = !o->heldout.empty();
        for (const auto& out : f.outputs) {
          fid_text += "fidelity '" + out.name + "' on " + std::to_string(out.samples) + " samples" +
                      (o->heldout.empty() ? " (calibration data, not held out)" : "") + ": max abs " +
                      fmt_fixed(out.max_abs, 6) + ", cosine " + fmt_fixed(out.cosine, 6);
          if (out.top1_agreement >= 0) fid_text += ", top-1 agreement " + fmt_fixed(out.top1_agreement * 100, 2) + "%";
          fid_text += "\n";
        }
        return fj;
      };
      auto fj = run_fid();
      if (fj.ok()) rep["fidelity"] = std::move(fj).value();
      else rep["fidelity"] = {{"error", fj.status().message()}}, fid_text = "fidelity: " + fj.status().message() + "\n";
    }
    // Energy: original vs pruned on lib/energy's default profile (integrator: wire --device-profile /
    // --region here when the CLI grows them). Made where it is shown: the report, or the table
    // (which -q leaves out, as every command's table).
    const bool table = !g.quiet;
    if (table || !g.report.empty()) {
      auto e = energy_section(*model, *r.dense_model, EnergyOptions{});
      if (e.ok()) rep["energy"] = std::move(e).value();
      else rep["energy"] = {{"error", e.status().message()}};
    }

    if (!g.report.empty()) FRUGAL_RETURN_IF_ERROR(write_json(g.report, rep));
    if (!table) return OkStatus();
    std::cout << prune_report_table(r);
    const Json& t = rep["totals"];
    std::cout << "total params " << fmt_count(t["params_before"].get<double>()) << " -> non-zero "
              << fmt_count(t["nonzero_after"].get<double>()) << " (sparsity " << fmt_fixed(t["sparsity"].get<double>() * 100, 2)
              << "% over prunable layers)\n";
    std::cout << "file size: " << fmt_bytes(double(size_before)) << " -> " << fmt_bytes(double(size_after));
    if (!r.sparse_initializers.empty()) std::cout << " (" << r.sparse_initializers.size() << " sparse initializer(s))";
    else if (p.pattern != PrunePattern::kChannels) std::cout << " (dense storage: zeros take space; see --sparse-storage)";
    std::cout << "\n" << fid_text << energy_section_text(rep["energy"]);
    std::cout << "wrote " << o->output << "\n";
    return OkStatus();
  };
  return c;
}

}  // namespace frugal::cli
