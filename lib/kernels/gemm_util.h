// Small helpers shared by the matmul, conv and pool kernel files: kernel wrapping, 16-bit float
// round trips, quantization parameter reading and integer widening.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "frugal/kernel.h"
#include "frugal/quant_math.h"
#include "kernel_util.h"

namespace frugal::kernels {

inline StatusOr<std::unique_ptr<Kernel>> make_fn_kernel(FnKernel::Fn fn) {
  return std::unique_ptr<Kernel>(std::make_unique<FnKernel>(std::move(fn)));
}

// Runs `fn(ctx)` with every 16-bit float input (float16/bfloat16) converted to float32 and converts
// each float32 output back to the first input's 16-bit type, so float kernels serve half types.
template <typename F>
Status with_half_as_float(KernelContext& ctx, F&& fn) {
  const DType half = ctx.input(0).dtype();
  std::vector<Tensor> conv(ctx.num_inputs());
  std::vector<const Tensor*> ptrs(ctx.num_inputs(), nullptr);
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) continue;
    if (is_half_type(ctx.input(i).dtype())) {
      conv[i] = to_float32(ctx.input(i));
      ptrs[i] = &conv[i];
    } else {
      ptrs[i] = &ctx.input(i);
    }
  }
  std::vector<Tensor> outs(ctx.num_outputs());
  KernelContext inner(ptrs, &outs, ctx.threads());
  FRUGAL_RETURN_IF_ERROR(fn(inner));
  for (size_t i = 0; i < outs.size(); ++i) {
    if (!outs[i].defined()) continue;
    if (outs[i].dtype() == DType::kFloat)
      ctx.set_output(i, from_float32(outs[i], half));
    else
      ctx.set_output(i, outs[i]);
  }
  return OkStatus();
}

// Values of a scale tensor (float32, float16, bfloat16 or double) as float32.
inline std::vector<float> float_values(const Tensor& t) {
  std::vector<double> d = t.to_double_vector();
  return std::vector<float>(d.begin(), d.end());
}

// Integer zero points as int32 (an absent tensor reads as {0}).
inline std::vector<int32_t> zero_points(const KernelContext& ctx, size_t i) {
  if (!ctx.has_input(i)) return {0};
  std::vector<int64_t> v = ctx.input(i).to_int64_vector();
  if (v.empty()) return {0};
  return std::vector<int32_t>(v.begin(), v.end());
}

// The saturation range of an 8/16-bit quantized type.
inline quant::QRange qrange_of(DType t) {
  switch (t) {
    case DType::kInt8: return quant::kInt8;
    case DType::kInt16: return quant::kInt16;
    case DType::kUInt16: return quant::kUInt16;
    default: return quant::kUInt8;
  }
}

// Widens a uint8/int8 tensor's values to int32.
inline void widen_to_i32(const Tensor& t, int32_t* out) {
  const int64_t n = t.numel();
  if (t.dtype() == DType::kInt8) {
    const int8_t* p = t.data<int8_t>();
    for (int64_t i = 0; i < n; ++i) out[i] = p[i];
  } else {
    const uint8_t* p = t.data<uint8_t>();
    for (int64_t i = 0; i < n; ++i) out[i] = p[i];
  }
}

// Writes requantized values: q = saturate(round_half_even(acc * multiplier) + zp) into a uint8/int8 buffer.
inline void store_requantized(int32_t acc, float multiplier, int32_t zp, quant::QRange r, DType t, void* out,
                              int64_t i) {
  const int32_t q = quant::saturate(quant::round_half_even(static_cast<float>(acc) * multiplier) +
                                        static_cast<float>(zp),
                                    r.lo, r.hi);
  if (t == DType::kInt8)
    static_cast<int8_t*>(out)[i] = static_cast<int8_t>(q);
  else
    static_cast<uint8_t*>(out)[i] = static_cast<uint8_t>(q);
}

// A per-thread scratch buffer that grows to the largest request and is reused across nodes and runs.
template <typename T>
T* scratch_buffer(size_t n, int slot = 0) {
  static thread_local std::vector<T> bufs[3];
  auto& b = bufs[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

}  // namespace frugal::kernels
