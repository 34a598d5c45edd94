// Placeholder until its issue lands: exits 4 with "not implemented".
#include "commands.h"

namespace frugal::cli {

Command add_inspect_command(CLI::App& root, const GlobalOptions&) {
  return not_implemented_command(root, "inspect", "Describe a model: opsets, inputs, ops, parameters, what frugal cannot run");
}

}  // namespace frugal::cli
