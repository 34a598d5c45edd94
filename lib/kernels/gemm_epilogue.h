// Fused epilogues for GEMM-shaped kernels (Conv, MatMul): a per-channel or per-column bias and an
// activation applied in the same pass over the output, so a fused Conv+BatchNormalization+Relu or
// MatMul+Add+Gelu writes its result once. The Executor's plan-time fusion (lib/exec/executor.cpp)
// requests them through private node attributes that no ONNX model carries:
//   _frugal_activation  string  "Relu" or "Gelu" (erf form: x * 0.5 * (1 + erf(x / sqrt 2)))
//   _frugal_bias        int     1: MatMul input 2 is a bias of N values added to every output row
#pragma once

#include <cstdint>
#include <string>

#include "conv_geom.h"
#include "elementwise_math.h"
#include "frugal/kernel.h"

namespace frugal::kernels {

enum class Activation { kNone, kRelu, kGelu };

inline constexpr const char* kActivationAttr = "_frugal_activation";
inline constexpr const char* kBiasAttr = "_frugal_bias";

inline Activation activation_of(const NodeDef& node) {
  const std::string a = node.get_string(kActivationAttr, "");
  if (a == "Relu") return Activation::kRelu;
  if (a == "Gelu") return Activation::kGelu;
  return Activation::kNone;
}

inline float gelu_erf(float x) {
  // Same association as the decomposed graph: (x * 0.5) * (1 + erf(x * (1/sqrt 2))).
  return (x * 0.5f) * (1.0f + verff(x * 0.70710678118654752f));
}

// y[i] = act(y[i] + bias) for a run of n values sharing one bias value.
FRUGAL_CLONES inline void bias_act_run(float* __restrict y, int64_t n, float bias, Activation act) {
  switch (act) {
    case Activation::kNone:
      for (int64_t i = 0; i < n; ++i) y[i] += bias;
      break;
    case Activation::kRelu:
      for (int64_t i = 0; i < n; ++i) y[i] = relu_value(y[i] + bias);
      break;
    case Activation::kGelu:
      for (int64_t i = 0; i < n; ++i) y[i] = gelu_erf(y[i] + bias);
      break;
  }
}

// y[r, j] = act(y[r, j] + bias[j]) over rows [0, rows) of an [rows, n] block (bias may be null).
FRUGAL_CLONES inline void row_bias_act(float* __restrict y, int64_t rows, int64_t n, const float* __restrict bias,
                                       Activation act) {
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = y + r * n;
    switch (act) {
      case Activation::kNone:
        if (bias)
          for (int64_t j = 0; j < n; ++j) yr[j] += bias[j];
        break;
      case Activation::kRelu:
        for (int64_t j = 0; j < n; ++j) yr[j] = relu_value(yr[j] + (bias ? bias[j] : 0.0f));
        break;
      case Activation::kGelu:
        for (int64_t j = 0; j < n; ++j) yr[j] = gelu_erf(yr[j] + (bias ? bias[j] : 0.0f));
        break;
    }
  }
}

}  // namespace frugal::kernels
