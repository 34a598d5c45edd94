// The CPU kernel table: every op family registers explicitly here (no static self-registration), so
// the set of kernels is visible in one place and link order cannot drop a family.
#include "frugal/kernel.h"
#include "families.h"

namespace frugal {

const KernelRegistry& cpu_registry() {
  static const KernelRegistry reg = [] {
    KernelRegistry r;
    kernels::register_elementwise_kernels(r);
    kernels::register_activation_kernels(r);
    kernels::register_matmul_kernels(r);
    kernels::register_conv_kernels(r);
    kernels::register_pool_kernels(r);
    kernels::register_norm_kernels(r);
    kernels::register_reduce_kernels(r);
    kernels::register_shape_kernels(r);
    kernels::register_quant_kernels(r);
    kernels::register_rnn_kernels(r);
    return r;
  }();
  return reg;
}

}  // namespace frugal
