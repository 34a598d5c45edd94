// Threading for kernels: OpenMP underneath, one process-wide thread count set from --threads.
#pragma once

#include <cstdint>
#include <functional>

namespace frugal {

void set_num_threads(int n);  // <= 0: all hardware threads
int num_threads();

// Whether the calling thread is running a parallel_for chunk (nested work then runs inline).
bool parallel_region_active();

// While alive, parallel_for on the constructing thread runs inline, as inside a parallel region: the
// work of that thread is done on it alone, in the same order whatever the thread count.
class SerialRegion {
 public:
  SerialRegion();
  ~SerialRegion();
  SerialRegion(const SerialRegion&) = delete;
  SerialRegion& operator=(const SerialRegion&) = delete;

 private:
  bool was_;
};

// Calls fn(begin, end) on disjoint chunks covering [0, n). Runs inline when n < grain or with one thread.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace frugal
