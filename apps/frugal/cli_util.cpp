#include "cli_util.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "frugal/parallel.h"

namespace frugal::cli {

StatusOr<std::map<std::string, int64_t>> parse_dims(const std::vector<std::string>& items) {
  std::map<std::string, int64_t> out;
  for (const auto& it : items) {
    const auto eq = it.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == it.size())
      return InvalidArgument("--dims '" + it + "' is not NAME=VALUE");
    try {
      size_t used = 0;
      const long long v = std::stoll(it.substr(eq + 1), &used);
      if (used != it.size() - eq - 1 || v <= 0) throw std::invalid_argument("bad");
      out[it.substr(0, eq)] = v;
    } catch (const std::exception&) {
      return InvalidArgument("--dims '" + it + "': the value must be a positive integer");
    }
  }
  return out;
}

StatusOr<RunSetup> open_run_setup(const GlobalOptions& g, const std::string& model_path, const std::string& data_path,
                                  size_t synthetic, uint64_t seed, const std::map<std::string, int64_t>& dims) {
  RunSetup r;
  FRUGAL_ASSIGN_OR_RETURN(r.model, Model::load(model_path));
  ExecOptions eo;
  eo.dims = dims;
  eo.threads = g.threads;
  FRUGAL_ASSIGN_OR_RETURN(r.executor, Executor::create(r.model, eo));
  DatasetOptions dopts;
  dopts.dims = dims;
  dopts.synthetic_count = synthetic;
  dopts.seed = seed;
  FRUGAL_ASSIGN_OR_RETURN(r.data, open_dataset(r.executor->graph(), data_path, dopts));
  return r;
}

int num_threads_used(const GlobalOptions& g) { return g.threads > 0 ? g.threads : frugal::num_threads(); }

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Progress::Progress(const GlobalOptions& g, size_t total, std::string label)
    : enabled_(!g.quiet && isatty(STDERR_FILENO) && total > 1), total_(total), label_(std::move(label)), start_(now_s()) {}

void Progress::tick() {
  ++done_;
  if (!enabled_) return;
  const double el = now_s() - start_;
  const int width = 30;
  const int filled = static_cast<int>(width * done_ / std::max<size_t>(total_, 1));
  std::fprintf(stderr, "\r%s [%s%s] %zu/%zu  %.1f/s", label_.c_str(), std::string(filled, '#').c_str(),
               std::string(width - filled, ' ').c_str(), done_, total_, el > 0 ? done_ / el : 0.0);
  std::fflush(stderr);
}

void Progress::done() {
  if (enabled_) std::fprintf(stderr, "\n");
}

}  // namespace frugal::cli
