// frugal energy MODEL [--compare OTHER] [--profile NAME | --device-profile FILE] [--region CODE]
//                     [--grid-intensity G] [--pue P] [--dims k=v].. [--json] [--html FILE]
#include <cmath>
#include <iostream>

#include "cli_util.h"
#include "commands.h"
#include "frugal/dataset.h"
#include "frugal/energy.h"
#include "frugal/fidelity.h"
#include "frugal/file_util.h"

namespace frugal::cli {

Command add_energy_command(CLI::App& root, const GlobalOptions& g) {
  struct Opts {
    std::string model, compare, profile = "h100", profile_file, region = "world", html, data;
    size_t fidelity_samples = 4;
    std::vector<std::string> dims;
    double grid = -1, pue = -1;
    bool json = false, list = false;
  };
  auto o = std::make_shared<Opts>();
  Command c;
  c.app = root.add_subcommand("energy", "Energy and carbon estimate per inference (per op family, totals, HTML)");
  c.app->add_option("model", o->model, "ONNX model file");
  c.app->add_option("--compare", o->compare, "A second model (e.g. the compressed one) shown side by side");
  c.app->add_option("--profile", o->profile, "Built-in device profile: h100, a100, l4, t4, xeon, laptop, jetson-orin");
  c.app->add_option("--device-profile", o->profile_file, "A device profile JSON file (same schema as the built-ins)");
  c.app->add_option("--region", o->region, "Grid region for carbon: world, eu, us, fr, de, pl, se, in, cn");
  c.app->add_option("--grid-intensity", o->grid, "Grid carbon intensity in gCO2e/kWh (overrides --region's value)");
  c.app->add_option("--pue", o->pue, "Power usage effectiveness (>= 1; default: the profile's)");
  c.app->add_option("--dims", o->dims, "Symbolic dim values, NAME=VALUE (repeatable; unset ones are 1)");
  c.app->add_flag("--json", o->json, "Print the JSON report on stdout instead of the table");
  c.app->add_option("--html", o->html, "Write a self-contained HTML report (charts, no external resources)");
  c.app->add_option("--data", o->data, "Inputs for the --compare fidelity check (default: synthetic)");
  c.app->add_option("--fidelity-samples", o->fidelity_samples,
                    "Samples for the --compare fidelity check (0: skip it)");
  c.app->add_flag("--list-profiles", o->list, "List the built-in device profiles and regions, then exit");
  c.run = [o, &g]() -> Status {
    if (o->list) {
      for (const auto& n : builtin_profile_names()) {
        auto p = builtin_profile(n);
        std::cout << n << ": " << (p.ok() ? p->description : p.status().message()) << "\n";
      }
      for (const auto& r : builtin_regions())
        std::cout << "region " << r.code << ": " << r.grid_g_per_kwh << " gCO2e/kWh (" << r.source << ", " << r.year
                  << ")\n";
      return OkStatus();
    }
    if (o->model.empty()) return InvalidArgument("a model file is required (frugal energy MODEL)");
    EnergyOptions eo;
    eo.profile = o->profile;
    eo.profile_file = o->profile_file;
    eo.region = o->region;
    if (o->grid >= 0) eo.grid_g_per_kwh = o->grid;
    else if (o->grid != -1) return InvalidArgument("--grid-intensity must be >= 0 gCO2e/kWh");
    if (o->pue != -1) {
      if (!(o->pue >= 1) || !std::isfinite(o->pue)) return InvalidArgument("--pue must be a number >= 1");
      eo.pue = o->pue;
    }
    FRUGAL_ASSIGN_OR_RETURN(eo.cost.dims, parse_dims(o->dims));
    FRUGAL_ASSIGN_OR_RETURN(DeviceProfile profile, resolve_profile(eo));
    FRUGAL_ASSIGN_OR_RETURN(Region region, resolve_region(eo));

    std::shared_ptr<Model> model_a, model_b;
    auto cost_of = [&](const std::string& path, std::shared_ptr<Model>* keep) -> StatusOr<ModelCost> {
      FRUGAL_ASSIGN_OR_RETURN(*keep, Model::load(path));
      auto c = model_cost(*keep, eo.cost);
      if (!c.ok()) return c.status().with_context(path);
      return c;
    };
    FRUGAL_ASSIGN_OR_RETURN(ModelCost a, cost_of(o->model, &model_a));
    EnergyEstimate ea = estimate_energy(a, profile, region, eo.grid_g_per_kwh, eo.pue);
    std::optional<ModelCost> b;
    std::optional<EnergyEstimate> eb;
    if (!o->compare.empty()) {
      FRUGAL_ASSIGN_OR_RETURN(b, cost_of(o->compare, &model_b));
      eb = estimate_energy(*b, profile, region, eo.grid_g_per_kwh, eo.pue);
    }
    const ModelCost* pb = b ? &*b : nullptr;
    const EnergyEstimate* peb = eb ? &*eb : nullptr;
    Json report = energy_report_json(a, ea, pb, peb, profile, region, eo);
    // With --compare, how closely the second model follows the first (measured, not estimated): the
    // fidelity column of the size/energy/fidelity comparison.
    Json fid;
    if (b && o->fidelity_samples > 0) {
      auto measure = [&]() -> StatusOr<Json> {
        ExecOptions xo;
        xo.dims = eo.cost.dims;
        xo.threads = g.threads;
        FRUGAL_ASSIGN_OR_RETURN(auto ra, Executor::create(model_a, xo));
        FRUGAL_ASSIGN_OR_RETURN(auto rb, Executor::create(model_b, xo));
        DatasetOptions dopts;
        dopts.dims = eo.cost.dims;
        dopts.synthetic_count = o->data.empty() ? o->fidelity_samples : 0;
        FRUGAL_ASSIGN_OR_RETURN(auto data, open_dataset(ra->graph(), o->data, dopts));
        FRUGAL_ASSIGN_OR_RETURN(Fidelity f, measure_fidelity(*ra, *rb, *data, o->fidelity_samples));
        Json j = fidelity_json(f);
        Json out;
        out["label"] = "measured";
        out["data"] = data->describe();
        for (auto it = j.begin(); it != j.end(); ++it) out[it.key()] = it.value();
        return out;
      };
      auto m = measure();
      if (m.ok()) {
        fid = std::move(m).value();
      } else {
        fid["label"] = "measured";
        fid["error"] = m.status().message();
      }
      report["comparison"]["fidelity"] = fid;
    }
    if (!g.report.empty()) FRUGAL_RETURN_IF_ERROR(write_json(g.report, report));
    if (!o->html.empty())
      FRUGAL_RETURN_IF_ERROR(write_file_atomic(o->html, energy_report_html(a, ea, pb, peb, profile, region,
                                                                  fid.is_null() ? nullptr : &fid)));
    if (o->json) {
      std::cout << report.dump(2) << "\n";
    } else if (!g.quiet) {
      std::cout << "Energy estimate on " << profile.description << " (" << profile.source_file << "); region "
                << region.code << " " << ea.grid_g_per_kwh << " gCO2e/kWh (" << region.source
                << (region.year ? ", " + std::to_string(region.year) : std::string()) << "), PUE " << ea.pue
                << ". All figures are estimates.\n"
                << "Roofline energy = time x TDP " << profile.tdp_w.value << " W (idle " << profile.idle_w.value
                << " W); per-op energy = pJ/MAC by dtype + pJ/DRAM byte.\n\n"
                << energy_report_text(a, ea, pb, peb);
      if (a.macs_2_4 > 0)
        std::cout << "2:4 sparse MACs: " << fmt_count(a.macs_2_4)
                  << (profile.sparse_tensor_cores ? " (halved on this device's sparse tensor cores)"
                                                  : " (no sparse tensor cores on this device: not exploited)")
                  << "\n";
      if (a.macs_zero_weights > 0)
        std::cout << "Unstructured zero-weight MACs (upper bound on skippable work, not a speedup): "
                  << fmt_count(a.macs_zero_weights) << "\n";
    }
    if (!o->html.empty()) info(g, "wrote " + o->html);
    return OkStatus();
  };
  return c;
}

}  // namespace frugal::cli
