// The single source of quantization arithmetic: rounding, saturation, scale and zero-point choice.
// Used by the QuantizeLinear/DequantizeLinear and integer kernels, by calibration and by the quantize
// pass, so the model frugal writes and the numbers frugal reports agree bit for bit. Header-only and
// free of host-only constructs so CUDA code can include it too.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FRUGAL_HD __host__ __device__
#else
#define FRUGAL_HD
#endif

namespace frugal::quant {

// Round half to even, as ONNX QuantizeLinear specifies (numpy.rint).
FRUGAL_HD inline float round_half_even(float x) { return std::nearbyint(x); }

// Saturating cast of an already rounded value into [lo, hi].
FRUGAL_HD inline int32_t saturate(float v, int32_t lo, int32_t hi) {
  if (!(v == v)) return 0;  // NaN
  if (v <= static_cast<float>(lo)) return lo;
  if (v >= static_cast<float>(hi)) return hi;
  return static_cast<int32_t>(v);
}

// q = saturate(round(x / scale) + zero_point). Division (not multiplication by 1/scale) matches the
// ONNX reference and onnxruntime bit for bit.
FRUGAL_HD inline int32_t quantize_value(float x, float scale, int32_t zero_point, int32_t lo, int32_t hi) {
  return saturate(round_half_even(x / scale) + static_cast<float>(zero_point), lo, hi);
}

FRUGAL_HD inline float dequantize_value(int32_t q, float scale, int32_t zero_point) {
  return static_cast<float>(q - zero_point) * scale;
}

struct QRange {
  int32_t lo, hi;
};
constexpr QRange kInt8{-128, 127};
constexpr QRange kUInt8{0, 255};
constexpr QRange kInt8Symmetric{-127, 127};  // weights: keeps +/- ranges equal, no -128
constexpr QRange kInt16{-32768, 32767};
constexpr QRange kUInt16{0, 65535};
constexpr QRange kInt4{-8, 7};
constexpr QRange kUInt4{0, 15};
constexpr QRange kInt32{INT32_MIN, INT32_MAX};

struct QParams {
  float scale = 1.0f;
  int32_t zero_point = 0;
};

// Asymmetric parameters covering [rmin, rmax] (extended to include 0 so that zero is exact).
inline QParams asymmetric_params(float rmin, float rmax, QRange r) {
  rmin = std::min(rmin, 0.0f);
  rmax = std::max(rmax, 0.0f);
  QParams p;
  const float span = rmax - rmin;
  if (span <= 0.0f || !std::isfinite(span)) return p;  // all zeros: scale 1, zp at the zero of the range
  p.scale = span / static_cast<float>(r.hi - r.lo);
  const float zp = static_cast<float>(r.lo) - rmin / p.scale;
  p.zero_point = saturate(round_half_even(zp), r.lo, r.hi);
  return p;
}

// Symmetric parameters: zero point at the middle of the range (0 for signed types, 128 for uint8).
inline QParams symmetric_params(float absmax, QRange r) {
  QParams p;
  const float half = static_cast<float>(r.hi - r.lo) / 2.0f;
  absmax = std::fabs(absmax);
  p.scale = absmax > 0.0f && std::isfinite(absmax) ? absmax / half : 1.0f;
  p.zero_point = r.lo < 0 ? 0 : static_cast<int32_t>((r.lo + r.hi + 1) / 2);
  return p;
}

// Signal-to-quantization-noise ratio in dB from accumulated sum of squares (signal and error).
inline double sqnr_db(double signal_sq, double noise_sq) {
  if (noise_sq <= 0.0) return 200.0;  // exact: report a large finite value, not infinity
  if (signal_sq <= 0.0) return 0.0;
  return 10.0 * std::log10(signal_sq / noise_sq);
}

}  // namespace frugal::quant
