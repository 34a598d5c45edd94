// Low-bit storage helpers for the quantization kernels: packed 4- and 2-bit integer access, the
// 2-bit ranges and the float8 (e4m3fn, e5m2) / float4 (e2m1) conversions with round-half-even and
// ONNX's saturate rule. These extend frugal/quant_math.h (which has no 2-bit ranges and no minifloat
// casts); kept header-only so a CUDA twin can include them.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "frugal/quant_math.h"

namespace frugal::quant {

constexpr QRange kInt2{-2, 1};
constexpr QRange kUInt2{0, 3};

// Element i of a packed sub-byte array (ONNX order: lowest bits first), sign-extended when signed.
inline int32_t load_packed(const uint8_t* p, int64_t i, int bits, bool is_signed) {
  const int per_byte = 8 / bits;
  const int shift = static_cast<int>(i % per_byte) * bits;
  const uint32_t mask = (1u << bits) - 1u;
  int32_t v = static_cast<int32_t>((p[i / per_byte] >> shift) & mask);
  if (is_signed && (v & (1 << (bits - 1)))) v -= (1 << bits);
  return v;
}

// Writes element i of a packed sub-byte array; the destination must start zeroed or hold the
// neighbours' bits (only this element's bits are replaced).
inline void store_packed(uint8_t* p, int64_t i, int bits, int32_t v) {
  const int per_byte = 8 / bits;
  const int shift = static_cast<int>(i % per_byte) * bits;
  const uint32_t mask = (1u << bits) - 1u;
  uint8_t& b = p[i / per_byte];
  b = static_cast<uint8_t>((b & ~(mask << shift)) | ((static_cast<uint32_t>(v) & mask) << shift));
}

// A minifloat format without subnormal-free tricks: `exp_bits`, `man_bits`, `bias`; `max` is the largest
// finite value; `has_inf` (e5m2) or an all-ones NaN pattern (e4m3fn: S.1111.111); e2m1 has neither.
struct MiniFloat {
  int exp_bits, man_bits, bias;
  float max;
  bool has_inf, has_nan;
};
constexpr MiniFloat kE4M3FN{4, 3, 7, 448.0f, false, true};
constexpr MiniFloat kE5M2{5, 2, 15, 57344.0f, true, true};
constexpr MiniFloat kE2M1{2, 1, 1, 6.0f, false, false};

inline float minifloat_to_float(uint32_t bits, const MiniFloat& f) {
  const int total = 1 + f.exp_bits + f.man_bits;
  const bool neg = (bits >> (total - 1)) & 1u;
  const uint32_t e = (bits >> f.man_bits) & ((1u << f.exp_bits) - 1u);
  const uint32_t m = bits & ((1u << f.man_bits) - 1u);
  const uint32_t emax = (1u << f.exp_bits) - 1u;
  float v;
  if (f.has_inf && e == emax) {
    v = m == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  } else if (!f.has_inf && f.has_nan && e == emax && m == (1u << f.man_bits) - 1u) {
    v = std::numeric_limits<float>::quiet_NaN();
  } else if (e == 0) {
    v = std::ldexp(static_cast<float>(m), 1 - f.bias - f.man_bits);
  } else {
    v = std::ldexp(static_cast<float>(m + (1u << f.man_bits)), static_cast<int>(e) - f.bias - f.man_bits);
  }
  return neg ? -v : v;
}

// Bits of the largest finite value.
inline uint32_t encode_max(const MiniFloat& f) {
  const uint32_t emax = (1u << f.exp_bits) - 1u;
  const uint32_t man_all = (1u << f.man_bits) - 1u;
  if (f.has_inf) return ((emax - 1u) << f.man_bits) | man_all;        // e5m2: 0x7B
  if (f.has_nan) return (emax << f.man_bits) | (man_all - 1u);        // e4m3fn: 0x7E
  return (emax << f.man_bits) | man_all;                               // e2m1: 0x7
}

// float -> minifloat bits, round half to even. saturate: overflow and infinities clamp to +/-max;
// otherwise they become infinity (e5m2) or NaN (e4m3fn). e2m1 always saturates (it has neither).
inline uint32_t float_to_minifloat(float x, const MiniFloat& f, bool saturate) {
  const int total = 1 + f.exp_bits + f.man_bits;
  const uint32_t sign = std::signbit(x) ? (1u << (total - 1)) : 0u;
  const uint32_t emax = (1u << f.exp_bits) - 1u;
  const uint32_t man_all = (1u << f.man_bits) - 1u;
  const uint32_t nan_bits = (emax << f.man_bits) | man_all;
  const uint32_t inf_bits = emax << f.man_bits;
  auto overflow = [&]() -> uint32_t {
    if (saturate || !f.has_nan) return sign | encode_max(f);
    return sign | (f.has_inf ? inf_bits : nan_bits);
  };
  if (std::isnan(x)) return f.has_nan ? (sign | nan_bits) : sign;
  float a = std::fabs(x);
  if (std::isinf(a)) return overflow();
  if (a == 0.0f) return sign;
  const int min_exp = 1 - f.bias;  // exponent of the smallest normal
  int e;
  std::frexp(a, &e);  // a = m * 2^e with m in [0.5, 1)
  e -= 1;             // a = 1.x * 2^e
  if (e < min_exp) e = min_exp;
  const float quantum = std::ldexp(1.0f, e - f.man_bits);
  const float r = std::nearbyint(a / quantum) * quantum;  // exact: quantum is a power of two
  if (r > f.max) return overflow();
  if (r == 0.0f) return sign;
  int re;
  std::frexp(r, &re);
  re -= 1;
  if (re < min_exp) {
    const uint32_t m = static_cast<uint32_t>(std::ldexp(r, f.bias - 1 + f.man_bits));
    return sign | m;
  }
  const uint32_t m = static_cast<uint32_t>(std::ldexp(r, f.man_bits - re)) - (1u << f.man_bits);
  return sign | (static_cast<uint32_t>(re + f.bias) << f.man_bits) | m;
}

}  // namespace frugal::quant
