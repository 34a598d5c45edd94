// frugal inspect MODEL [--json] | --kernels
#include <iostream>

#include "commands.h"
#include "frugal/inspect.h"

namespace frugal::cli {

Command add_inspect_command(CLI::App& root, const GlobalOptions& g) {
  struct Opts {
    std::string model;
    bool json = false;
    bool kernels = false;
  };
  auto o = std::make_shared<Opts>();
  Command c;
  c.app = root.add_subcommand("inspect", "Describe a model: opsets, inputs, ops, parameters, what frugal cannot run");
  c.app->add_option("model", o->model, "ONNX model file");
  c.app->add_flag("--json", o->json, "Print the report as JSON (schema: docs/formats/inspect.md)");
  c.app->add_flag("--kernels", o->kernels, "List the registered kernels instead");
  c.run = [o, &g]() -> Status {
    if (o->kernels) {
      std::cout << kernel_table_text();
      return OkStatus();
    }
    if (o->model.empty()) return InvalidArgument("inspect needs a model file (or --kernels)");
    FRUGAL_ASSIGN_OR_RETURN(auto model, Model::load(o->model));
    FRUGAL_ASSIGN_OR_RETURN(Json report, inspect_model(*model));
    if (!g.report.empty()) FRUGAL_RETURN_IF_ERROR(write_json(g.report, report));
    if (o->json) std::cout << report.dump(2) << "\n";
    else std::cout << inspect_text(report);
    return OkStatus();
  };
  return c;
}

}  // namespace frugal::cli
