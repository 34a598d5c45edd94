#include "kernel_util.h"
#include "shape_util.h"
namespace frugal::kernels {
void register_resize_kernels(KernelRegistry&) {}
}
