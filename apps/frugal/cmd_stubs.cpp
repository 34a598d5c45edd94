// Subcommands whose issue has not landed yet. They accept any arguments and exit 4 with
// "not implemented" rather than pretending to work.
#include "commands.h"

namespace frugal::cli {

Command not_implemented_command(CLI::App& root, const std::string& name, const std::string& description) {
  Command c;
  c.app = root.add_subcommand(name, description + " [not implemented yet]");
  c.app->fallthrough(false);
  c.app->allow_extras();  // accept whatever follows, as the real command will
  c.run = [name] { return Unsupported("'frugal " + name + "' is not implemented yet"); };
  return c;
}

}  // namespace frugal::cli
