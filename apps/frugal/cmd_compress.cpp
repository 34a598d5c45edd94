// Placeholder until its issue lands: exits 4 with "not implemented".
#include "commands.h"

namespace frugal::cli {

Command add_compress_command(CLI::App& root, const GlobalOptions&) {
  return not_implemented_command(root, "compress", "Prune, quantize and check a model in one go");
}

}  // namespace frugal::cli
