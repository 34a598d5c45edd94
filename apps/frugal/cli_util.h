// Small helpers shared by subcommands: --dims parsing and a TTY progress bar.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "commands.h"
#include "frugal/dataset.h"
#include "frugal/executor.h"
#include "frugal/report.h"

namespace frugal::cli {

// "N=8", "seq=128" -> {"N": 8, "seq": 128}; a malformed item is a usage error naming it.
StatusOr<std::map<std::string, int64_t>> parse_dims(const std::vector<std::string>& items);

// A model planned for execution with the samples it runs on: where `run` and `bench` start.
struct RunSetup {
  std::shared_ptr<Model> model;
  std::unique_ptr<Executor> executor;
  std::unique_ptr<Dataset> data;  // reads against executor's graph; keep both alive together
};
// Loads `model_path`, plans it with --threads and `dims`, and opens `data_path` (or `synthetic`
// samples when the path is empty, drawn with `seed`).
StatusOr<RunSetup> open_run_setup(const GlobalOptions& g, const std::string& model_path, const std::string& data_path,
                                  size_t synthetic, uint64_t seed, const std::map<std::string, int64_t>& dims);

// The thread count in effect (the --threads value or the machine's cores).
int num_threads_used(const GlobalOptions& g);

// A one-line progress bar on stderr, drawn only when stderr is a terminal and -q is off.
class Progress {
 public:
  Progress(const GlobalOptions& g, size_t total, std::string label);
  void tick();
  void done();

 private:
  bool enabled_;
  size_t total_, done_ = 0;
  std::string label_;
  double start_;
};

}  // namespace frugal::cli
