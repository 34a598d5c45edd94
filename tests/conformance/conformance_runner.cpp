// Runs ONNX backend test directories (model.onnx + test_data_set_N/{input,output}_K.pb) through the
// Executor and compares with the stored outputs (onnx's tolerances: rtol 1e-3, atol 1e-7).
//
//   frugal_conformance --root DIR [--root DIR...] [--allowlist FILE] [--filter REGEX] [-v]
//
// With --allowlist, only the listed tests run: "pass" lines must pass (exit 1 otherwise) and
// "exclude" lines are skipped and counted, each with its reason. Without it, every test under the
// roots runs and the summary is informational. The closing line is "N passed, N failed, N skipped".
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "frugal/executor.h"
#include "frugal/model.h"

namespace fs = std::filesystem;
using namespace frugal;

namespace {

struct AllowEntry {
  std::string action;  // pass | exclude
  std::string reason;
  double rtol = -1, atol = -1;  // overrides, when the reference needs looser bounds
};

// One file, or a directory whose *.tsv files (one per op family) are read together.
std::map<std::string, AllowEntry> read_allowlist(const fs::path& p) {
  std::map<std::string, AllowEntry> out;
  if (fs::is_directory(p)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(p))
      if (e.path().extension() == ".tsv") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files)
      for (auto& kv : read_allowlist(f)) out[kv.first] = kv.second;
    return out;
  }
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cols;
    std::stringstream ss(line);
    std::string c;
    while (std::getline(ss, c, '\t')) cols.push_back(c);
    if (cols.size() < 2) continue;
    AllowEntry e;
    e.action = cols[1];
    if (cols.size() > 2) e.reason = cols[2];
    if (cols.size() > 3 && !cols[3].empty()) e.rtol = std::stod(cols[3]);
    if (cols.size() > 4 && !cols[4].empty()) e.atol = std::stod(cols[4]);
    out[cols[0]] = e;
  }
  return out;
}

std::vector<fs::path> sorted_files(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> v;
  if (!fs::is_directory(dir)) return v;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0 && e.path().extension() == ".pb") v.push_back(e.path());
  }
  std::sort(v.begin(), v.end(), [&](const fs::path& a, const fs::path& b) {
    auto num = [&](const fs::path& p) { return std::stoi(p.stem().string().substr(prefix.size())); };
    return num(a) < num(b);
  });
  return v;
}

// Runs one test dir; returns "" on pass or the failure description.
std::string run_test(const fs::path& dir, double rtol, double atol) {
  auto model = Model::load(dir / "model.onnx");
  if (!model.ok()) return "load: " + model.status().to_string();
  auto ex = Executor::create(*model);
  if (!ex.ok()) return "plan: " + ex.status().to_string();
  const auto& graph = (*ex)->graph();
  for (const auto& set : fs::directory_iterator(dir)) {
    if (!set.is_directory() || set.path().filename().string().rfind("test_data_set_", 0) != 0) continue;
    NamedTensors inputs;
    auto in_files = sorted_files(set.path(), "input_");
    for (size_t k = 0; k < in_files.size(); ++k) {
      auto t = read_tensor_pb(in_files[k]);
      if (!t.ok()) return "input: " + t.status().to_string();
      std::string name = t->first;
      bool known = false;
      for (const auto& vi : graph.inputs()) known |= vi.name == name;
      if (!known) {
        if (k >= graph.inputs().size()) return "more input files than graph inputs";
        name = graph.inputs()[k].name;
      }
      inputs.emplace_back(name, t->second);
    }
    auto outs = (*ex)->run(inputs);
    if (!outs.ok()) return "run: " + outs.status().to_string();
    auto out_files = sorted_files(set.path(), "output_");
    for (size_t k = 0; k < out_files.size(); ++k) {
      auto t = read_tensor_pb(out_files[k]);
      if (!t.ok()) return "expected output: " + t.status().to_string();
      const Tensor* actual = find_named(*outs, t->first);
      if (!actual) {
        if (k >= outs->size()) return "more output files than graph outputs";
        actual = &(*outs)[k].second;
      }
      auto r = compare_tensors(*actual, t->second, rtol, atol);
      std::ostringstream msg;
      if (!r.shape_ok)
        msg << "output " << k << " shape " << shape_str(actual->shape()) << " != expected " << shape_str(t->second.shape());
      else if (!r.dtype_ok)
        msg << "output " << k << " dtype " << dtype_name(actual->dtype()) << " != expected " << dtype_name(t->second.dtype());
      else if (!r.ok())
        msg << "output " << k << ": " << r.mismatches << " mismatches, max abs err " << r.max_abs << ", first at "
            << r.first_bad;
      if (!msg.str().empty()) return msg.str();
    }
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<fs::path> roots;
  fs::path allowlist;
  std::string filter;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--root" && i + 1 < argc) roots.emplace_back(argv[++i]);
    else if (a == "--allowlist" && i + 1 < argc) allowlist = argv[++i];
    else if (a == "--filter" && i + 1 < argc) filter = argv[++i];
    else if (a == "-v") verbose = true;
    else {
      std::cerr << "usage: frugal_conformance --root DIR [--allowlist FILE] [--filter REGEX] [-v]\n";
      return 2;
    }
  }
  std::map<std::string, AllowEntry> allow;
  if (!allowlist.empty()) {
    if (!fs::exists(allowlist)) {
      std::cerr << "allowlist " << allowlist << " not found\n";
      return 2;
    }
    allow = read_allowlist(allowlist);
  }
  const std::regex re(filter.empty() ? ".*" : filter);
  int passed = 0, failed = 0, skipped = 0, missing = 0;
  std::vector<std::string> failures;
  for (const auto& root : roots) {
    if (!fs::is_directory(root)) {
      std::cerr << "FAIL: test root " << root << " is missing\n";
      return 1;
    }
    std::vector<fs::path> dirs;
    for (const auto& e : fs::directory_iterator(root))
      if (e.is_directory() && fs::exists(e.path() / "model.onnx")) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    for (const auto& d : dirs) {
      const std::string name = d.filename().string();
      if (!std::regex_search(name, re)) continue;
      double rtol = 1e-3, atol = 1e-7;
      if (!allow.empty()) {
        auto it = allow.find(name);
        if (it == allow.end()) continue;
        if (it->second.action == "exclude") {
          ++skipped;
          if (verbose) std::cout << "SKIP " << name << ": " << it->second.reason << "\n";
          continue;
        }
        if (it->second.rtol >= 0) rtol = it->second.rtol;
        if (it->second.atol >= 0) atol = it->second.atol;
      }
      const std::string err = run_test(d, rtol, atol);
      if (err.empty()) {
        ++passed;
        if (verbose) std::cout << "PASS " << name << "\n";
      } else {
        ++failed;
        failures.push_back(name + ": " + err);
        std::cout << "FAIL " << name << ": " << err << "\n";
      }
    }
  }
  if (!allow.empty()) {
    // Every allow-list line must name a test that exists.
    for (const auto& kv : allow) {
      bool found = false;
      for (const auto& root : roots) found |= fs::exists(root / kv.first / "model.onnx");
      if (!found) {
        ++missing;
        std::cout << "FAIL allow-list names a test that does not exist: " << kv.first << "\n";
      }
    }
  }
  std::cout << "conformance: " << passed << " passed, " << failed << " failed, " << skipped << " excluded\n";
  std::cout << passed << " passed, " << failed + missing << " failed, " << skipped << " skipped\n";
  return (failed + missing) == 0 ? 0 : 1;
}
