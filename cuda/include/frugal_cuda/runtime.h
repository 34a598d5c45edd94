// CUDA runtime glue: device discovery and a checked cuBLAS handle. Errors become Status; a machine
// without a GPU (or without a driver) reports no devices instead of failing.
#pragma once

#include <string>
#include <vector>

#include "frugal/status.h"

namespace frugal::cuda {

struct GpuInfo {
  int index = 0;
  std::string name;
  size_t total_memory = 0;
  int cc_major = 0, cc_minor = 0;
  int multiprocessors = 0;
};

// Visible GPUs; empty with `why` set when none can be used (no driver, no device).
std::vector<GpuInfo> list_gpus(std::string* why);
// The CUDA runtime version frugal was built against, "13.0".
std::string build_cuda_version();
// Creates and destroys a cuBLAS handle on device 0 as a health check of the GPU stack.
Status check_cublas();

}  // namespace frugal::cuda
