// Cast between every fixed-size numeric type, bool, float16/bfloat16, the float8 family
// (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ, E8M0), float4 E2M1 and packed int4/uint4/int2/uint2, with the
// rounding, saturation and special-value rules of the ONNX Cast op (numpy/ml_dtypes semantics).
#pragma once

#include <string>

#include "frugal/tensor.h"

namespace frugal::kernels {

struct CastOptions {
  bool saturate = true;            // float8 targets: clamp out-of-range values to the largest finite
  std::string round_mode = "up";   // float8e8m0 target: up | down | nearest
};

// Whether cast_tensor can read and write this type.
bool cast_supported(DType t);

// A new tensor holding x converted to `to` (both must be cast_supported).
Tensor cast_tensor(const Tensor& x, DType to, const CastOptions& opt);

}  // namespace frugal::kernels
