// Placeholder until its issue lands: exits 4 with "not implemented".
#include "commands.h"

namespace frugal::cli {

Command add_distill_command(CLI::App& root, const GlobalOptions&) {
  return not_implemented_command(root, "distill", "Knowledge-distillation loss of a student against a teacher (CI gate)");
}

}  // namespace frugal::cli
