// Placeholder until its issue lands: exits 4 with "not implemented".
#include "commands.h"

namespace frugal::cli {

Command add_calibrate_command(CLI::App& root, const GlobalOptions&) {
  return not_implemented_command(root, "calibrate", "Compute activation ranges on data into a calibration table");
}

}  // namespace frugal::cli
