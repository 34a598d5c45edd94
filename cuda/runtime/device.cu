#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

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
  // cuBLAS is loaded on first use so CPU-only runs never pay for mapping it.
  const std::string name = "libcublas.so." + std::to_string(CUDART_VERSION / 1000);
  void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) return Unsupported(std::string("cuBLAS not found: ") + dlerror());
  using CreateFn = cublasStatus_t (*)(cublasHandle_t*);
  using DestroyFn = cublasStatus_t (*)(cublasHandle_t);
  auto create = reinterpret_cast<CreateFn>(dlsym(lib, "cublasCreate_v2"));
  auto destroy = reinterpret_cast<DestroyFn>(dlsym(lib, "cublasDestroy_v2"));
  if (!create || !destroy) return Internal("cuBLAS library lacks cublasCreate_v2/cublasDestroy_v2");
  cublasHandle_t h = nullptr;
  const cublasStatus_t s = create(&h);
  if (s != CUBLAS_STATUS_SUCCESS) return Internal("cublasCreate failed with status " + std::to_string(static_cast<int>(s)));
  destroy(h);
  return OkStatus();
}

}  // namespace frugal::cuda
