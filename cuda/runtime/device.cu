#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "frugal_cuda/runtime.h"

namespace frugal::cuda {

std::vector<GpuInfo> list_gpus(std::string* why) {
  std::vector<GpuInfo> out;
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (why) *why = cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later CPU work is unaffected
    return out;
  }
  if (n == 0 && why) *why = "no CUDA device";
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    out.push_back({i, p.name, p.totalGlobalMem, p.major, p.minor, p.multiProcessorCount});
  }
  return out;
}

std::string build_cuda_version() {
  return std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10);
}

Status check_cublas() {
  std::string why;
  if (list_gpus(&why).empty()) return Unsupported("no GPU: " + why);
  cublasHandle_t h = nullptr;
  const cublasStatus_t s = cublasCreate(&h);
  if (s != CUBLAS_STATUS_SUCCESS) return Internal("cublasCreate failed with status " + std::to_string(static_cast<int>(s)));
  cublasDestroy(h);
  return OkStatus();
}

}  // namespace frugal::cuda
