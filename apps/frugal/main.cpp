// frugal: energy-aware model compression for ONNX. This file wires the subcommands together and
// turns a Status into the documented exit code with a one-line error.
#include <iostream>
#include <string>
#if defined(__GLIBC__)  // defined by the headers above
#include <malloc.h>
#endif

#include "commands.h"
#include "frugal/kernel.h"
#include "frugal/parallel.h"
#ifdef FRUGAL_WITH_CUDA
#include "frugal_cuda/runtime.h"
#endif

namespace {

std::string version_text() {
  std::string v = "frugal " FRUGAL_VERSION "\n";
#ifdef FRUGAL_WITH_CUDA
  v += "CUDA backend: built (CUDA " + frugal::cuda::build_cuda_version() + ")\n";
  std::string why;
  auto gpus = frugal::cuda::list_gpus(&why);
  if (gpus.empty()) v += "GPUs visible: none (" + why + "); running on CPU\n";
  for (const auto& g : gpus)
    v += "GPU " + std::to_string(g.index) + ": " + g.name + ", " + std::to_string(g.total_memory >> 20) + " MiB, sm_" +
         std::to_string(g.cc_major) + std::to_string(g.cc_minor) + "\n";
#else
  v += "CUDA backend: not built; running on CPU\n";
#endif
  v += "CPU kernels: " + std::to_string(frugal::cpu_registry().entries().size()) + " registered\n";
  return v;
}

}  // namespace

namespace frugal::cli {

void info(const GlobalOptions& g, const std::string& msg) {
  if (!g.quiet) std::cerr << msg << "\n";
}

void debug(const GlobalOptions& g, const std::string& msg) {
  if (g.verbose > 0 && !g.quiet) std::cerr << msg << "\n";
}

}  // namespace frugal::cli

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Blocks of 1 MiB and more (weights, quantized copies, large activations) get their own mapping
  // and go back to the system when freed. glibc's default raises that threshold after the first
  // large free, and freed weight-sized blocks then stay in the process: 30-40 MB more peak RSS on a
  // BERT-base-sized quantize run.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  // Setting that threshold also pins glibc's trim threshold at 128 KiB, so each free of a smaller
  // activation at the top of the heap gave its pages back and the next inference faulted them in
  // again (a 1x1024x14x14 Add + Relu spent 59% of its time in the kernel, 320 k page faults a
  // second). Freed heap tops up to 64 MiB stay; calibration still trims between its phases.
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
  using namespace frugal;
  using namespace frugal::cli;
  CLI::App app{"frugal: energy-aware model compression for ONNX"};
  app.require_subcommand(0, 1);
  app.fallthrough();
  GlobalOptions g;
  bool show_version = false;
  app.add_flag("--version", show_version, "Print the version, whether CUDA is built in, and visible GPUs");
  app.add_flag("-v,--verbose", g.verbose, "More detail on stderr (repeatable)");
  app.add_flag("-q,--quiet", g.quiet, "No tables, progress or informational messages (--json output, reports and errors still appear)");
  app.add_option("--threads", g.threads, "CPU threads (0: all cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--report", g.report, "Write the command's JSON report to FILE");

  std::vector<Command> commands = {
      add_inspect_command(app, g),   add_run_command(app, g),     add_calibrate_command(app, g),
      add_quantize_command(app, g),  add_prune_command(app, g),   add_distill_command(app, g),
      add_energy_command(app, g),    add_bench_command(app, g),   add_compress_command(app, g),
      add_convert_command(app, g),
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "frugal: usage error: " << e.what() << " (see --help)\n";
    return 1;
  }
  if (show_version) {
    std::cout << version_text();
    return 0;
  }
  set_num_threads(g.threads);
  for (const auto& c : commands) {
    if (!c.app->parsed()) continue;
    Status st;
    try {
      st = c.run();
    } catch (const std::bad_alloc&) {
      st = OutOfMemory("out of memory");
    } catch (const std::exception& e) {
      st = Internal(std::string("unexpected error: ") + e.what());
    }
    if (!st.ok()) {
      std::cerr << "frugal " << c.app->get_name() << ": error: " << st.message() << "\n";
      return exit_code_for(st.code());
    }
    return 0;
  }
  std::cout << app.help();
  return 1;
}
