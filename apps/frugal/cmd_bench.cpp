// Placeholder until its issue lands: exits 4 with "not implemented".
#include "commands.h"

namespace frugal::cli {

Command add_bench_command(CLI::App& root, const GlobalOptions&) {
  return not_implemented_command(root, "bench", "Run inferences and measure latency and energy");
}

}  // namespace frugal::cli
