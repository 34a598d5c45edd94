// Measured energy: RAPL through powercap sysfs, NVML through dlopen (no build dependency on the driver).
#include <dlfcn.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "frugal/energy.h"

namespace frugal {

namespace {

namespace fs = std::filesystem;

// Reads one unsigned integer from a sysfs file; the error says why (missing, permission, garbage).
StatusOr<uint64_t> read_u64(const fs::path& p) {
  std::ifstream f(p);
  if (!f) {
    const int err = errno;
    if (!fs::exists(p)) return NotFound(p.string() + ": file missing");
    if (err == EACCES || err == EPERM)
      return IoError(p.string() + ": permission denied (RAPL counters are root-only since Linux 5.10; run as root "
                                  "or grant read access)");
    return IoError(p.string() + ": cannot open (" + std::strerror(err) + ")");
  }
  uint64_t v = 0;
  if (!(f >> v)) {
    // sysfs reports permission problems at read() time on some kernels.
    return IoError(p.string() + ": read failed (permission denied or not a number)");
  }
  return v;
}

class RaplMeter : public EnergyMeter {
 public:
  struct Domain {
    fs::path dir;
    uint64_t max_range = 0, last = 0;
    double total_uj = 0;
  };
  explicit RaplMeter(std::vector<Domain> d) : domains_(std::move(d)) {}
  std::string name() const override {
    std::string n = "RAPL (";
    for (size_t i = 0; i < domains_.size(); ++i) n += (i ? ", " : "") + domains_[i].dir.filename().string();
    return n + ")";
  }
  StatusOr<double> read_joules() override {
    double sum = 0;
    for (auto& d : domains_) {
      FRUGAL_ASSIGN_OR_RETURN(uint64_t v, read_u64(d.dir / "energy_uj"));
      // The counter wraps at max_energy_range_uj back to 0.
      if (v >= d.last) {
        d.total_uj += static_cast<double>(v - d.last);
      } else {
        d.total_uj += static_cast<double>(d.max_range - d.last) + static_cast<double>(v);
      }
      d.last = v;
      sum += d.total_uj;
    }
    return sum * 1e-6;
  }

 private:
  std::vector<Domain> domains_;
};

}  // namespace

StatusOr<std::unique_ptr<EnergyMeter>> open_rapl_meter(const fs::path& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec))
    return NotFound("RAPL: no powercap directory at " + root.string() + " (kernel without powercap, or a VM/container)");
  std::vector<RaplMeter::Domain> domains;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    // Top-level package domains only ("intel-rapl:0"); sub-domains ("intel-rapl:0:0") are inside them.
    if (n.rfind("intel-rapl:", 0) != 0 || n.find(':', 11) != std::string::npos) continue;
    RaplMeter::Domain d;
    d.dir = e.path();
    domains.push_back(d);
  }
  if (domains.empty()) return NotFound("RAPL: no intel-rapl:N package domains under " + root.string());
  std::sort(domains.begin(), domains.end(), [](const auto& a, const auto& b) { return a.dir < b.dir; });
  for (auto& d : domains) {
    FRUGAL_ASSIGN_OR_RETURN(d.max_range, read_u64(d.dir / "max_energy_range_uj"));
    FRUGAL_ASSIGN_OR_RETURN(d.last, read_u64(d.dir / "energy_uj"));
  }
  return std::unique_ptr<EnergyMeter>(new RaplMeter(std::move(domains)));
}

namespace {

using nvmlDevice_t = void*;
using FnInit = int (*)();
using FnShutdown = int (*)();
using FnHandle = int (*)(unsigned, nvmlDevice_t*);
using FnEnergy = int (*)(nvmlDevice_t, unsigned long long*);
using FnName = int (*)(nvmlDevice_t, char*, unsigned);
using FnErr = const char* (*)(int);

class NvmlMeter : public EnergyMeter {
 public:
  NvmlMeter(void* lib, nvmlDevice_t dev, FnEnergy energy, FnShutdown shutdown, std::string name)
      : lib_(lib), dev_(dev), energy_(energy), shutdown_(shutdown), name_(std::move(name)) {}
  ~NvmlMeter() override {
    if (shutdown_) shutdown_();
    if (lib_) dlclose(lib_);
  }
  std::string name() const override { return name_; }
  StatusOr<double> read_joules() override {
    unsigned long long mj = 0;  // millijoules since the driver was loaded
    int rc = energy_(dev_, &mj);
    if (rc != 0) return IoError("NVML: nvmlDeviceGetTotalEnergyConsumption failed (code " + std::to_string(rc) + ")");
    return static_cast<double>(mj) * 1e-3;
  }

 private:
  void* lib_;
  nvmlDevice_t dev_;
  FnEnergy energy_;
  FnShutdown shutdown_;
  std::string name_;
};

}  // namespace

StatusOr<std::unique_ptr<EnergyMeter>> open_nvml_meter(unsigned index) {
  void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return NotFound("NVML: libnvidia-ml.so.1 not found (no NVIDIA driver on this machine)");
  auto sym = [&](const char* n) { return dlsym(lib, n); };
  auto init = reinterpret_cast<FnInit>(sym("nvmlInit_v2"));
  auto shutdown = reinterpret_cast<FnShutdown>(sym("nvmlShutdown"));
  auto handle = reinterpret_cast<FnHandle>(sym("nvmlDeviceGetHandleByIndex_v2"));
  auto energy = reinterpret_cast<FnEnergy>(sym("nvmlDeviceGetTotalEnergyConsumption"));
  auto name = reinterpret_cast<FnName>(sym("nvmlDeviceGetName"));
  auto errstr = reinterpret_cast<FnErr>(sym("nvmlErrorString"));
  if (!init || !shutdown || !handle || !energy) {
    dlclose(lib);
    return Unsupported("NVML: libnvidia-ml.so.1 lacks nvmlDeviceGetTotalEnergyConsumption (driver too old)");
  }
  auto why = [&](int rc) { return errstr ? std::string(errstr(rc)) : "code " + std::to_string(rc); };
  int rc = init();
  if (rc != 0) {
    dlclose(lib);
    return IoError("NVML: nvmlInit failed: " + why(rc));
  }
  nvmlDevice_t dev = nullptr;
  rc = handle(index, &dev);
  if (rc != 0) {
    shutdown();
    dlclose(lib);
    return NotFound("NVML: no GPU " + std::to_string(index) + ": " + why(rc));
  }
  unsigned long long probe = 0;
  rc = energy(dev, &probe);
  if (rc != 0) {
    shutdown();
    dlclose(lib);
    return Unsupported("NVML: GPU " + std::to_string(index) + " has no total-energy counter: " + why(rc) +
                       " (needs Volta or newer)");
  }
  char buf[96] = {0};
  std::string gpu = "GPU " + std::to_string(index);
  if (name && name(dev, buf, sizeof(buf)) == 0) gpu += " (" + std::string(buf) + ")";
  return std::unique_ptr<EnergyMeter>(new NvmlMeter(lib, dev, energy, shutdown, "NVML " + gpu));
}

}  // namespace frugal
