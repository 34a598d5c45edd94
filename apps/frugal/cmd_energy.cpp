// Placeholder until its issue lands: exits 4 with "not implemented".
#include "commands.h"

namespace frugal::cli {

Command add_energy_command(CLI::App& root, const GlobalOptions&) {
  return not_implemented_command(root, "energy", "Energy and carbon estimate per inference");
}

}  // namespace frugal::cli
