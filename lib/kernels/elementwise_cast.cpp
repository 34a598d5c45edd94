#include "elementwise_cast.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "elementwise_util.h"

namespace frugal::kernels {

namespace {

// ---- standard C++ types (numbers and bool): one static_cast-based loop per type pair ----

bool is_std(DType t) {
  switch (t) {
    case DType::kFloat: case DType::kDouble: case DType::kBool:
    case DType::kInt8: case DType::kUInt8: case DType::kInt16: case DType::kUInt16:
    case DType::kInt32: case DType::kUInt32: case DType::kInt64: case DType::kUInt64:
      return true;
    default:
      return false;
  }
}

template <typename F>
void dispatch_std(DType t, F&& f) {
  switch (t) {
    case DType::kFloat: return f(TypeTag<float>{});
    case DType::kDouble: return f(TypeTag<double>{});
    case DType::kBool: return f(TypeTag<bool>{});
    case DType::kInt8: return f(TypeTag<int8_t>{});
    case DType::kUInt8: return f(TypeTag<uint8_t>{});
    case DType::kInt16: return f(TypeTag<int16_t>{});
    case DType::kUInt16: return f(TypeTag<uint16_t>{});
    case DType::kInt32: return f(TypeTag<int32_t>{});
    case DType::kUInt32: return f(TypeTag<uint32_t>{});
    case DType::kInt64: return f(TypeTag<int64_t>{});
    case DType::kUInt64: return f(TypeTag<uint64_t>{});
    default: return;
  }
}

// Float to integer as numpy does on x86: truncate toward zero, out-of-range and NaN become the
// "integer indefinite" value, narrower targets wrap.
template <typename D, typename S>
D float_to_int(S v) {
  if constexpr (std::is_same_v<D, uint64_t>) {
    if (v >= S(9223372036854775808.0) && v < S(18446744073709551616.0)) return static_cast<uint64_t>(v);
  }
  if (!(v > S(-9223372036854775808.0) && v < S(9223372036854775808.0)))
    return static_cast<D>(std::numeric_limits<int64_t>::min());
  return static_cast<D>(static_cast<int64_t>(v));
}

template <typename S, typename D>
D convert(S v) {
  if constexpr (std::is_same_v<D, bool>) {
    return v != S(0);
  } else if constexpr (std::is_floating_point_v<S> && std::is_integral_v<D>) {
    return float_to_int<D>(v);
  } else {
    return static_cast<D>(v);
  }
}

// ---- minifloats ----

struct MiniFormat {
  int ebits, mbits, bias;
  bool fnuz;       // 0x80 is the only NaN, no -0, no inf
  bool ieee_inf;   // all-ones exponent is inf/NaN (E5M2)
  bool has_nan;    // false for float4 E2M1
  uint8_t max_code;  // largest finite positive code
};

// E4M3FN: all-ones code (0x7F) is NaN, no inf.
constexpr MiniFormat kE4M3FN{4, 3, 7, false, false, true, 0x7E};
constexpr MiniFormat kE4M3FNUZ{4, 3, 8, true, false, true, 0x7F};
constexpr MiniFormat kE5M2{5, 2, 15, false, true, true, 0x7B};
constexpr MiniFormat kE5M2FNUZ{5, 2, 16, true, false, true, 0x7F};
constexpr MiniFormat kE2M1{2, 1, 1, false, false, false, 0x7};

const MiniFormat* mini_format(DType t) {
  switch (t) {
    case DType::kFloat8E4M3FN: return &kE4M3FN;
    case DType::kFloat8E4M3FNUZ: return &kE4M3FNUZ;
    case DType::kFloat8E5M2: return &kE5M2;
    case DType::kFloat8E5M2FNUZ: return &kE5M2FNUZ;
    case DType::kFloat4E2M1: return &kE2M1;
    default: return nullptr;
  }
}

int sign_shift(const MiniFormat& f) { return f.ebits + f.mbits; }

// Value of a positive finite code.
double mini_magnitude(const MiniFormat& f, uint32_t code) {
  const uint32_t e = code >> f.mbits, m = code & ((1u << f.mbits) - 1);
  if (e == 0) return std::ldexp(double(m), 1 - f.bias - f.mbits);
  return std::ldexp(1.0 + double(m) / double(1u << f.mbits), int(e) - f.bias);
}

float mini_decode(const MiniFormat& f, uint32_t code) {
  const uint32_t sign_bit = 1u << sign_shift(f);
  const bool neg = (code & sign_bit) != 0;
  const uint32_t mag = code & (sign_bit - 1);
  const float qnan = std::numeric_limits<float>::quiet_NaN();
  if (f.fnuz && code == 0x80) return qnan;
  if (f.has_nan && !f.fnuz && !f.ieee_inf && mag == 0x7F) return qnan;
  if (f.ieee_inf && (mag >> f.mbits) == (1u << f.ebits) - 1) {
    if ((mag & ((1u << f.mbits) - 1)) != 0) return qnan;
    return neg ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
  }
  const float v = static_cast<float>(mini_magnitude(f, mag));
  return neg ? -v : v;
}

// Round-to-nearest-even encoding by search over the (monotonic) positive code values.
uint8_t mini_encode(const MiniFormat& f, float x, bool saturate) {
  const uint32_t sign_bit = 1u << sign_shift(f);
  const bool neg = std::signbit(x);
  const uint32_t s = neg ? sign_bit : 0;
  if (std::isnan(x)) {
    if (f.fnuz) return 0x80;
    if (!f.has_nan) return static_cast<uint8_t>(neg ? 0 : sign_bit);  // ml_dtypes' float4 behaviour
    return static_cast<uint8_t>(s | (f.ieee_inf ? 0x7E : 0x7F));
  }
  auto overflow = [&]() -> uint8_t {
    if (saturate || !f.has_nan) return static_cast<uint8_t>(s | f.max_code);
    if (f.fnuz) return 0x80;
    if (f.ieee_inf) return static_cast<uint8_t>(s | 0x7C);
    return static_cast<uint8_t>(s | 0x7F);
  };
  if (std::isinf(x)) return overflow();
  const double ax = std::fabs(double(x));
  // Table of positive code values, built once per format.
  static thread_local std::array<std::vector<double>, 5> tables;
  const size_t ti = &f == &kE4M3FN ? 0 : &f == &kE4M3FNUZ ? 1 : &f == &kE5M2 ? 2 : &f == &kE5M2FNUZ ? 3 : 4;
  auto& tab = tables[ti];
  if (tab.empty())
    for (uint32_t c = 0; c <= f.max_code; ++c) tab.push_back(mini_magnitude(f, c));
  const auto it = std::upper_bound(tab.begin(), tab.end(), ax);
  const uint32_t lo = static_cast<uint32_t>(it - tab.begin()) - 1;  // tab[0] = 0 <= ax
  const double vlo = tab[lo];
  const double vhi = lo == f.max_code ? tab[lo] + (tab[lo] - tab[lo - 1]) : tab[lo + 1];
  uint32_t code;
  if (ax == vlo) code = lo;
  else {
    const double dlo = ax - vlo, dhi = vhi - ax;
    code = dlo < dhi ? lo : dhi < dlo ? lo + 1 : ((lo & 1) == 0 ? lo : lo + 1);
  }
  if (code > f.max_code) return overflow();
  if (code == 0 && f.fnuz) return 0;  // no negative zero
  return static_cast<uint8_t>(s | code);
}

uint8_t e8m0_encode(float x, const CastOptions& opt) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  uint32_t e = (bits >> 23) & 0xFF;
  if (e == 0xFF) return 0xFF;
  const uint32_t frac = bits & 0x7FFFFF;
  bool up = false;
  if (opt.round_mode == "up") {
    up = frac != 0;
  } else if (opt.round_mode == "nearest") {
    const bool g = (frac & 0x400000) != 0, r = (frac & 0x200000) != 0, st = (frac & 0x1FFFFF) != 0;
    up = g && (r || st || e > 0);
  }
  if (up && opt.saturate && e == 0xFE) up = false;
  e += up ? 1 : 0;
  return static_cast<uint8_t>(e);
}

float e8m0_decode(uint8_t c) {
  if (c == 0xFF) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, int(c) - 127);
}

// ---- element access for the non-standard types ----

bool is_packed_int(DType t) {
  return t == DType::kInt4 || t == DType::kUInt4 || t == DType::kInt2 || t == DType::kUInt2;
}

// Reads element i of a non-standard float-like type as float.
float read_floatlike(DType t, const uint8_t* p, int64_t i) {
  switch (t) {
    case DType::kFloat16: { uint16_t h; std::memcpy(&h, p + 2 * i, 2); return half_to_float(h); }
    case DType::kBFloat16: { uint16_t h; std::memcpy(&h, p + 2 * i, 2); return bf16_to_float(h); }
    case DType::kFloat8E8M0: return e8m0_decode(p[i]);
    case DType::kFloat4E2M1: return mini_decode(kE2M1, (p[i / 2] >> ((i & 1) * 4)) & 0xF);
    default: return mini_decode(*mini_format(t), p[i]);
  }
}

int64_t read_packed_int(DType t, const uint8_t* p, int64_t i) {
  const int bits = dtype_bits(t);
  const int per = 8 / bits;
  const uint32_t v = (p[i / per] >> ((i % per) * bits)) & ((1u << bits) - 1);
  if (t == DType::kInt4 || t == DType::kInt2) {
    const uint32_t sign = 1u << (bits - 1);
    return (v & sign) ? int64_t(v) - (int64_t(1) << bits) : int64_t(v);
  }
  return v;
}

void write_packed(DType t, uint8_t* p, int64_t i, uint32_t v) {
  const int bits = dtype_bits(t);
  const int per = 8 / bits;
  const int sh = static_cast<int>(i % per) * bits;
  const uint32_t mask = ((1u << bits) - 1) << sh;
  p[i / per] = static_cast<uint8_t>((p[i / per] & ~mask) | ((v << sh) & mask));
}

void write_floatlike(DType t, uint8_t* p, int64_t i, float v, const CastOptions& opt) {
  switch (t) {
    case DType::kFloat16: { const uint16_t h = float_to_half(v); std::memcpy(p + 2 * i, &h, 2); return; }
    case DType::kBFloat16: { const uint16_t h = float_to_bf16(v); std::memcpy(p + 2 * i, &h, 2); return; }
    case DType::kFloat8E8M0: p[i] = e8m0_encode(v, opt); return;
    case DType::kFloat4E2M1: write_packed(t, p, i, mini_encode(kE2M1, v, true)); return;
    default: p[i] = mini_encode(*mini_format(t), v, opt.saturate); return;
  }
}

bool is_floatlike(DType t) { return t == DType::kFloat || t == DType::kDouble || dtype_is_float(t) ||
                                    mini_format(t) != nullptr || t == DType::kFloat8E8M0; }

}  // namespace

bool cast_supported(DType t) {
  return is_std(t) || t == DType::kFloat16 || t == DType::kBFloat16 || mini_format(t) != nullptr ||
         t == DType::kFloat8E8M0 || is_packed_int(t);
}

Tensor cast_tensor(const Tensor& x, DType to, const CastOptions& opt) {
  const int64_t n = x.numel();
  if (is_std(x.dtype()) && is_std(to)) {
    Tensor out = Tensor::uninitialized(to, x.shape());
    dispatch_std(x.dtype(), [&](auto st) {
      using S = typename decltype(st)::type;
      dispatch_std(to, [&](auto dt) {
        using D = typename decltype(dt)::type;
        unary_map(x.data<S>(), out.mut<D>(), n, [](S v) { return convert<S, D>(v); });
      });
    });
    return out;
  }
  // Everything else goes through float32 (float-like source) or int64 (integer or bool source).
  Tensor out = Tensor::zeros(to, x.shape());
  const auto* src = static_cast<const uint8_t*>(x.raw());
  auto* dst = static_cast<uint8_t*>(out.raw_mut());
  const bool src_float = is_floatlike(x.dtype());
  const DType sd = x.dtype();
  auto read_float = [&](int64_t i) -> float {
    if (sd == DType::kFloat) return x.data<float>()[i];
    if (sd == DType::kDouble) return static_cast<float>(x.data<double>()[i]);
    return read_floatlike(sd, src, i);
  };
  auto read_int = [&](int64_t i) -> int64_t {
    if (is_packed_int(sd)) return read_packed_int(sd, src, i);
    int64_t v = 0;
    dispatch_std(sd, [&](auto st) {
      using S = typename decltype(st)::type;
      v = static_cast<int64_t>(x.data<S>()[i]);
    });
    return v;
  };
  for (int64_t i = 0; i < n; ++i) {
    if (is_std(to)) {
      dispatch_std(to, [&](auto dt) {
        using D = typename decltype(dt)::type;
        D* o = out.mut<D>();
        if (src_float) o[i] = convert<float, D>(read_float(i));
        else o[i] = convert<int64_t, D>(read_int(i));
      });
    } else if (is_packed_int(to)) {
      const int64_t v = src_float ? float_to_int<int64_t>(read_float(i)) : read_int(i);
      write_packed(to, dst, i, static_cast<uint32_t>(static_cast<uint64_t>(v)));
    } else {
      const float v = src_float ? read_float(i) : static_cast<float>(read_int(i));
      write_floatlike(to, dst, i, v, opt);
    }
  }
  return out;
}

}  // namespace frugal::kernels
