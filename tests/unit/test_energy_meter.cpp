// RAPL reader against a fake powercap tree (counter wrap included) and NVML's absence handling.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>

#include "frugal/energy.h"

#include "test_util.h"

using namespace frugal;
using namespace frugal::testing;
namespace fs = std::filesystem;

namespace {

struct FakePowercap {
  TempDir dir;
  fs::path root = dir.path;
  void domain(const std::string& name, uint64_t energy, uint64_t max_range) {
    fs::create_directories(root / name);
    set(name, energy);
    std::ofstream(root / name / "max_energy_range_uj") << max_range << "\n";
    std::ofstream(root / name / "name") << "package-0\n";
  }
  void set(const std::string& name, uint64_t energy) { std::ofstream(root / name / "energy_uj") << energy << "\n"; }
};

}  // namespace

TEST_CASE("RAPL: package domains summed, sub-domains ignored, counter wrap handled", "[energy][rapl]") {
  FakePowercap pc;
  pc.domain("intel-rapl:0", 1000, 5000);
  pc.domain("intel-rapl:1", 7000000, 262143328850ULL);
  pc.domain("intel-rapl:0:0", 42, 5000);  // core sub-domain: counted inside package 0 already
  pc.domain("intel-rapl-mmio:0", 99, 5000);
  auto m = open_rapl_meter(pc.root);
  REQUIRE(m.ok());
  CHECK((*m)->name() == "RAPL (intel-rapl:0, intel-rapl:1)");
  auto j0 = (*m)->read_joules();
  REQUIRE(j0.ok());
  CHECK(*j0 == Approx(0.0));

  pc.set("intel-rapl:0", 4000);     // +3000 uJ
  pc.set("intel-rapl:1", 9000000);  // +2,000,000 uJ
  pc.set("intel-rapl:0:0", 4999);   // ignored
  auto j1 = (*m)->read_joules();
  REQUIRE(j1.ok());
  CHECK(*j1 == Approx((3000 + 2000000) * 1e-6));

  pc.set("intel-rapl:0", 500);  // wrapped: 4000 -> 5000 (max) -> 0 -> 500 = +1500 uJ
  auto j2 = (*m)->read_joules();
  REQUIRE(j2.ok());
  CHECK(*j2 == Approx((3000 + 1500 + 2000000) * 1e-6));

  pc.set("intel-rapl:0", 2500);  // +2000 after the wrap
  auto j3 = (*m)->read_joules();
  REQUIRE(j3.ok());
  CHECK(*j3 == Approx((3000 + 1500 + 2000 + 2000000) * 1e-6));
}

TEST_CASE("RAPL: clear reasons when it cannot be read", "[energy][rapl]") {
  FakePowercap pc;
  auto none = open_rapl_meter(pc.root / "missing");
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().message().find("no powercap directory") != std::string::npos);

  auto empty = open_rapl_meter(pc.root);
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.status().message().find("no intel-rapl:N package domains") != std::string::npos);

  fs::create_directories(pc.root / "intel-rapl:0");
  std::ofstream(pc.root / "intel-rapl:0" / "max_energy_range_uj") << 100 << "\n";
  auto no_counter = open_rapl_meter(pc.root);
  REQUIRE_FALSE(no_counter.ok());
  CHECK(no_counter.status().message().find("energy_uj: file missing") != std::string::npos);
}

TEST_CASE("NVML: opening never crashes; without a driver it says so", "[energy][nvml]") {
  auto m = open_nvml_meter(0);
  if (m.ok()) {
    // A machine with an NVIDIA GPU: the counter is monotonic.
    auto a = (*m)->read_joules();
    auto b = (*m)->read_joules();
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(*b >= *a);
  } else {
    CHECK(m.status().message().rfind("NVML: ", 0) == 0);
  }
}
