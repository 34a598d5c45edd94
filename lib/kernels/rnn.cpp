#include "families.h"
#include "kernel_util.h"

namespace frugal::kernels {

void register_rnn_kernels(KernelRegistry& /*r*/) {}

}  // namespace frugal::kernels
