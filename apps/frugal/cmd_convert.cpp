// frugal convert MODEL -o OUT [--external-data [--external-threshold BYTES]] [--inline-data] [--in-place]
// Loads and saves a model: moves weights into or out of an external data file (needed past 2 GB),
// and proves a model survives frugal's I/O unchanged.
#include <iostream>

#include "commands.h"
#include "frugal/file_util.h"
#include "frugal/model.h"

namespace frugal::cli {

Command add_convert_command(CLI::App& root, const GlobalOptions& g) {
  struct Opts {
    std::string model, out;
    bool external = false, inline_data = false, in_place = false;
    size_t threshold = 1024;
  };
  auto o = std::make_shared<Opts>();
  Command c;
  c.app = root.add_subcommand("convert", "Re-save a model, moving weights to or from external data");
  c.app->add_option("model", o->model, "ONNX model file")->required();
  c.app->add_option("-o,--output", o->out, "Output model file");
  c.app->add_flag("--external-data", o->external, "Write tensors of at least --external-threshold bytes to OUT.data");
  c.app->add_option("--external-threshold", o->threshold, "Smallest tensor (bytes) that goes to external data");
  c.app->add_flag("--inline-data", o->inline_data, "Put external data back inside the model (under 2 GB)");
  c.app->add_flag("--in-place", o->in_place, "Overwrite the input model");
  c.app->get_option("--external-data")->excludes("--inline-data");
  c.run = [o, &g]() -> Status {
    if (o->out.empty() && !o->in_place) return InvalidArgument("give -o OUT (or --in-place to overwrite the input)");
    const std::string out = o->out.empty() ? o->model : o->out;
    if (!o->in_place && same_file(out, o->model))
      return InvalidArgument("refusing to overwrite the input model '" + out + "' (use --in-place)");
    FRUGAL_ASSIGN_OR_RETURN(auto model, Model::load(o->model));
    SaveOptions so;
    so.external_data = o->external;
    so.keep_external = !o->inline_data;
    so.external_threshold = o->threshold;
    so.allow_overwrite_input = o->in_place;
    so.input_path = o->model;
    FRUGAL_RETURN_IF_ERROR(model->save(out, so));
    info(g, "wrote " + out);
    return OkStatus();
  };
  return c;
}

}  // namespace frugal::cli
