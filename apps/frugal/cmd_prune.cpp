// Placeholder until its issue lands: exits 4 with "not implemented".
#include "commands.h"

namespace frugal::cli {

Command add_prune_command(CLI::App& root, const GlobalOptions&) {
  return not_implemented_command(root, "prune", "Prune weights (magnitude, N:M, channels, data-aware)");
}

}  // namespace frugal::cli
