// The CLI's shape: each subcommand lives in cmd_<name>.cpp, registers its flags on a CLI11 subcommand
// and returns the function that runs it. main.cpp maps the returned Status to the exit code and
// prints errors as one line. No algorithm lives in apps/: commands parse, call lib/, print.
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "frugal/status.h"

namespace frugal::cli {

// Options every subcommand accepts (set on the root app, usable before or after the subcommand).
struct GlobalOptions {
  int verbose = 0;     // -v (repeatable)
  bool quiet = false;  // -q: no progress or info on stderr (results still print on stdout)
  int threads = 0;     // --threads (0: all cores)
  std::string report;  // --report FILE: the JSON report of the command
};

struct Command {
  CLI::App* app = nullptr;
  std::function<Status()> run;
};

// Each returns the subcommand it added to `root`.
Command add_inspect_command(CLI::App& root, const GlobalOptions& g);
Command add_run_command(CLI::App& root, const GlobalOptions& g);
Command add_calibrate_command(CLI::App& root, const GlobalOptions& g);
Command add_quantize_command(CLI::App& root, const GlobalOptions& g);
Command add_prune_command(CLI::App& root, const GlobalOptions& g);
Command add_distill_command(CLI::App& root, const GlobalOptions& g);
Command add_energy_command(CLI::App& root, const GlobalOptions& g);
Command add_bench_command(CLI::App& root, const GlobalOptions& g);
Command add_compress_command(CLI::App& root, const GlobalOptions& g);
Command add_convert_command(CLI::App& root, const GlobalOptions& g);

// For subcommands declared before their issue lands: parses any arguments and fails with exit 4.
Command not_implemented_command(CLI::App& root, const std::string& name, const std::string& description);

// Progress/info printing that honours -q/-v (to stderr, so stdout stays machine-readable).
void info(const GlobalOptions& g, const std::string& msg);
void debug(const GlobalOptions& g, const std::string& msg);

}  // namespace frugal::cli
