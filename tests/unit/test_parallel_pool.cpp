// parallel_for on frugal's thread pool: every index visited exactly once, nested calls run inline,
// thread-count changes between calls, and many back-to-back jobs (workers spinning vs sleeping).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "frugal/parallel.h"

using namespace frugal;

TEST_CASE("parallel_for covers every index in 0..n-1 exactly once at 1..4 threads", "[parallel]") {
  const int before = num_threads();
  for (int threads : {1, 2, 3, 4}) {
    set_num_threads(threads);
    for (int64_t n : {1, 2, 7, 64, 1000, 12345}) {
      for (int64_t grain : {1, 5, 100}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        parallel_for(n, grain, [&](int64_t b, int64_t e) {
          REQUIRE(b < e);
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        });
        int bad = 0;
        for (auto& h : hits) bad += h.load() != 1;
        INFO("threads " << threads << " n " << n << " grain " << grain);
        CHECK(bad == 0);
      }
    }
  }
  set_num_threads(before);
}

TEST_CASE("nested parallel_for runs inline and back-to-back jobs after sleeps complete", "[parallel]") {
  const int before = num_threads();
  set_num_threads(2);
  std::atomic<int64_t> sum{0};
  parallel_for(8, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      parallel_for(100, 1, [&](int64_t b2, int64_t e2) {
        for (int64_t j = b2; j < e2; ++j) sum.fetch_add(i * 100 + j);
      });
  });
  CHECK(sum.load() == 799 * 800 / 2);
  for (int round = 0; round < 3; ++round) {
    // Let the workers fall asleep, then wake them with many tiny jobs.
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    int64_t total = 0;
    for (int k = 0; k < 2000; ++k) {
      std::atomic<int64_t> s{0};
      parallel_for(4, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) s.fetch_add(i + 1);
      });
      total += s.load();
    }
    CHECK(total == 2000 * 10);
  }
  set_num_threads(before);
}

TEST_CASE("a worker started for a job takes part in that job and SerialRegion runs work inline", "[parallel]") {
  // Under ctest this case runs in its own process, so its first parallel_for starts the pool's
  // worker. Each of the two chunks waits (up to 5 s) until both have started: if the new worker
  // missed the job that started it, the caller would run both chunks one after the other.
  const int before = num_threads();
  set_num_threads(2);
  std::atomic<int> started{0};
  std::atomic<int> together{0};
  parallel_for(2, 1, [&](int64_t, int64_t) {
    started.fetch_add(1);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (started.load() < 2 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
    together.fetch_add(started.load() == 2);
  });
  CHECK(together.load() == 2);
  {
    SerialRegion serial;
    CHECK(parallel_region_active());
    const auto caller = std::this_thread::get_id();
    std::atomic<int> elsewhere{0};
    parallel_for(64, 1, [&](int64_t, int64_t) { elsewhere.fetch_add(std::this_thread::get_id() != caller); });
    CHECK(elsewhere.load() == 0);
  }
  CHECK_FALSE(parallel_region_active());
  set_num_threads(before);
}
