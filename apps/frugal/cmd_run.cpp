// Placeholder until its issue lands: exits 4 with "not implemented".
#include "commands.h"

namespace frugal::cli {

Command add_run_command(CLI::App& root, const GlobalOptions&) {
  return not_implemented_command(root, "run", "Run a model on data and compare with reference outputs");
}

}  // namespace frugal::cli
