// Placeholder until its issue lands: exits 4 with "not implemented".
#include "commands.h"

namespace frugal::cli {

Command add_quantize_command(CLI::App& root, const GlobalOptions&) {
  return not_implemented_command(root, "quantize", "INT8 quantization (static QDQ or dynamic)");
}

}  // namespace frugal::cli
