// Quantization kernels against hand-derived values and plain loops: round half to even, saturation at
// both ends, per-axis on axis 0 and 1, blocked scales, packed int4/int2 bytes, float8 bit patterns,
// DynamicQuantizeLinear (the spec's example) and, byte for byte, the ONNX node tests whose packed or
// float8 outputs the conformance runner cannot compare by value.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <vector>

#include "frugal/executor.h"
#include "frugal/kernel.h"
#include "frugal/model.h"
#include "kernel_test_util.h"

using namespace frugal;
using namespace frugal::testing;

namespace {

NodeDef qnode(const std::string& op, int opset, size_t n_in, size_t n_out = 1) {
  return xy_node(op, opset, n_in, n_out, "q");
}

}  // namespace

TEST_CASE("QuantizeLinear rounds half to even", "[quant]") {
  auto n = qnode("QuantizeLinear", 13, 3);
  const auto y = run(n, {tf({8}, {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 0.49f, 3.5f}), Tensor::scalar(1.0f),
                         Tensor::scalar(int8_t{0})})[0];
  CHECK(vals<int8_t>(y) == std::vector<int8_t>{0, 2, 2, 0, -2, -2, 0, 4});
  const auto y2 = run(n, {tf({2}, {1.0f, 0.5f}), Tensor::scalar(0.4f), Tensor::scalar(uint8_t{10})})[0];
  CHECK(vals<uint8_t>(y2) == std::vector<uint8_t>{12, 11});  // 2.5 -> 2, 1.25 -> 1
}

TEST_CASE("QuantizeLinear saturates at both ends", "[quant]") {
  auto n = qnode("QuantizeLinear", 13, 3);
  auto y = run(n, {tf({4}, {-1000.f, 1000.f, -64.f, 63.5f}), Tensor::scalar(0.5f), Tensor::scalar(uint8_t{128})})[0];
  CHECK(vals<uint8_t>(y) == std::vector<uint8_t>{0, 255, 0, 255});
  y = run(n, {tf({4}, {-1000.f, 1000.f, -128.f, 127.f}), Tensor::scalar(1.0f), Tensor::scalar(int8_t{0})})[0];
  CHECK(vals<int8_t>(y) == std::vector<int8_t>{-128, 127, -128, 127});
  // No zero point: uint8 with zero point 0.
  auto n2 = qnode("QuantizeLinear", 13, 2);
  y = run(n2, {tf({3}, {-1.f, 2.f, 300.f}), Tensor::scalar(1.0f)})[0];
  CHECK(vals<uint8_t>(y) == std::vector<uint8_t>{0, 2, 255});
  // 16-bit types.
  y = run(n, {tf({3}, {-1e6f, 1e6f, 3.f}), Tensor::scalar(1.0f), Tensor::scalar(int16_t{0})})[0];
  CHECK(vals<int16_t>(y) == std::vector<int16_t>{-32768, 32767, 3});
}

TEST_CASE("QuantizeLinear / DequantizeLinear per axis on axis 0 and 1", "[quant]") {
  const std::vector<float> x = {-3.f, 0.f, 1.f, 2.f, 5.f, 7.f};  // shape [2,3]
  for (int axis : {0, 1}) {
    auto n = qnode("QuantizeLinear", 13, 3);
    set_int(n, "axis", axis);
    const int64_t c = axis == 0 ? 2 : 3;
    std::vector<float> sc = {0.5f, 2.0f, 0.25f};
    std::vector<int8_t> zp = {1, -3, 4};
    sc.resize(static_cast<size_t>(c));
    zp.resize(static_cast<size_t>(c));
    const auto y = run(n, {tf({2, 3}, x), tf({c}, sc), Tensor::from_vector<int8_t>({c}, zp)})[0];
    std::vector<int8_t> want(6);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) {
        const size_t k = static_cast<size_t>(axis == 0 ? i : j);
        const double q = std::nearbyint(x[static_cast<size_t>(i * 3 + j)] / sc[k]) + zp[k];
        want[static_cast<size_t>(i * 3 + j)] = static_cast<int8_t>(std::clamp(q, -128.0, 127.0));
      }
    CHECK(vals<int8_t>(y) == want);
    auto d = qnode("DequantizeLinear", 13, 3);
    set_int(d, "axis", axis);
    const auto back = run(d, {y, tf({c}, sc), Tensor::from_vector<int8_t>({c}, zp)})[0];
    const auto bv = vals<float>(back);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) {
        const size_t k = static_cast<size_t>(axis == 0 ? i : j), e = static_cast<size_t>(i * 3 + j);
        CHECK(bv[e] == static_cast<float>(want[e] - zp[k]) * sc[k]);
      }
  }
}

TEST_CASE("QuantizeLinear blocked scales", "[quant]") {
  auto n = qnode("QuantizeLinear", 21, 3);
  set_int(n, "axis", 1);
  set_int(n, "block_size", 2);
  // x [2,5], scale [2,3]: columns {0,1}, {2,3}, {4} share a scale.
  const std::vector<float> x = {1, 2, 3, 4, 5, -1, -2, -3, -4, -5};
  const std::vector<float> sc = {1, 2, 4, 0.5f, 0.25f, 1};
  const std::vector<uint8_t> zp = {0, 10, 20, 30, 40, 50};
  const auto y = run(n, {tf({2, 5}, x), tf({2, 3}, sc), Tensor::from_vector<uint8_t>({2, 3}, zp)})[0];
  std::vector<uint8_t> want;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 5; ++j) {
      const size_t k = static_cast<size_t>(i * 3 + j / 2);
      const double q = std::nearbyint(x[static_cast<size_t>(i * 5 + j)] / sc[k]) + zp[k];
      want.push_back(static_cast<uint8_t>(std::clamp(q, 0.0, 255.0)));
    }
  CHECK(vals<uint8_t>(y) == want);
  // A scale shape that does not match is rejected with a message.
  std::vector<const Tensor*> bad;
  Tensor xt = tf({2, 5}, x), st = tf({2, 2}, {1, 1, 1, 1});
  bad = {&xt, &st};
  auto r = run_node(n, bad, cpu_registry());
  CHECK_FALSE(r.ok());
}

TEST_CASE("int4 / uint4 / int2 pack low nibble first", "[quant]") {
  auto n = qnode("QuantizeLinear", 21, 2);
  set_int(n, "output_dtype", static_cast<int64_t>(DType::kInt4));
  const auto y = run(n, {tf({5}, {1.f, -2.f, 7.f, -8.f, 9.f}), Tensor::scalar(1.0f)})[0];
  REQUIRE(y.dtype() == DType::kInt4);
  // 1 | (-2 & 0xF) << 4 = 0xE1; 7 | 8 << 4 = 0x87; 9 saturates to 7 -> 0x07.
  CHECK(bytes(y) == std::vector<uint8_t>{0xE1, 0x87, 0x07});

  set_int(n, "output_dtype", static_cast<int64_t>(DType::kUInt4));
  const auto u = run(n, {tf({3}, {3.f, 20.f, -1.f}), Tensor::scalar(1.0f)})[0];
  CHECK(bytes(u) == std::vector<uint8_t>{0xF3, 0x00});

  set_int(n, "output_dtype", static_cast<int64_t>(DType::kInt2));
  const auto i2 = run(n, {tf({5}, {1.f, -2.f, 5.f, -1.f, 0.f}), Tensor::scalar(1.0f)})[0];
  // 2-bit fields from the low end: 01, 10, 01 (5 -> 1), 11 -> 0b11_01_10_01 = 0xD9; then 0.
  CHECK(bytes(i2) == std::vector<uint8_t>{0xD9, 0x00});

  // Dequantize the int4 bytes back with a packed int4 zero point of -1 and scale 0.5.
  auto d = qnode("DequantizeLinear", 21, 3);
  const uint8_t zp_byte = 0x0F;  // -1
  const Tensor zp = Tensor::from_bytes(DType::kInt4, {}, &zp_byte);
  const auto back = run(d, {y, Tensor::scalar(0.5f), zp})[0];
  CHECK(vals<float>(back) == std::vector<float>{1.0f, -0.5f, 4.0f, -3.5f, 4.0f});
}

TEST_CASE("DequantizeLinear int32, float16 scale and output_dtype", "[quant]") {
  auto d = qnode("DequantizeLinear", 21, 2);
  const auto y = run(d, {Tensor::from_vector<int32_t>({3}, {-2147483647, 0, 1000}), Tensor::scalar(0.5f)})[0];
  const auto v = vals<float>(y);
  CHECK(v[0] == Approx(-1073741823.5).epsilon(1e-7));
  CHECK(v[2] == 500.0f);
  Half h;
  h.bits = float_to_half(0.25f);
  const Tensor hs = Tensor::from_bytes(DType::kFloat16, {}, &h.bits);
  const auto yh = run(d, {Tensor::from_vector<uint8_t>({2}, {4, 8}), hs})[0];
  REQUIRE(yh.dtype() == DType::kFloat16);
  CHECK(half_to_float(yh.data<uint16_t>()[0]) == 1.0f);
  CHECK(half_to_float(yh.data<uint16_t>()[1]) == 2.0f);
}

TEST_CASE("float8 e4m3fn / e5m2 bit patterns and saturate", "[quant]") {
  auto n = qnode("QuantizeLinear", 21, 2);
  set_int(n, "output_dtype", static_cast<int64_t>(DType::kFloat8E4M3FN));
  // 1 = 0.0111.000, 0.5 = 0.0110.000, -2 = 1.1000.000, 448 = max 0x7E, 500 saturates, 2^-9 smallest
  // subnormal, 1.0625 is halfway between 1 and 1.125 -> even mantissa (1.0).
  const auto y = run(n, {tf({7}, {1.f, 0.5f, -2.f, 448.f, 500.f, 0.001953125f, 1.0625f}), Tensor::scalar(1.0f)})[0];
  CHECK(bytes(y) == std::vector<uint8_t>{0x38, 0x30, 0xC0, 0x7E, 0x7E, 0x01, 0x38});
  set_int(n, "saturate", 0);
  const auto ns = run(n, {tf({2}, {500.f, -1e9f}), Tensor::scalar(1.0f)})[0];
  CHECK(bytes(ns) == std::vector<uint8_t>{0x7F, 0xFF});  // NaN
  set_int(n, "output_dtype", static_cast<int64_t>(DType::kFloat8E5M2));
  const auto e5 = run(n, {tf({3}, {1.f, 57344.f, 1e6f}), Tensor::scalar(1.0f)})[0];
  CHECK(bytes(e5) == std::vector<uint8_t>{0x3C, 0x7B, 0x7C});  // 1e6 -> +inf without saturate
}

TEST_CASE("DynamicQuantizeLinear matches the spec example", "[quant]") {
  auto n = qnode("DynamicQuantizeLinear", 11, 1, 3);
  const auto out = run(n, {tf({6}, {0.f, 2.f, -3.f, -2.5f, 1.34f, 0.5f})});
  // range [-3, 2]: scale 5/255, zero point round(3 / scale) = 153
  CHECK(out[1].data<float>()[0] == Approx(5.0f / 255.0f));
  CHECK(vals<uint8_t>(out[2]) == std::vector<uint8_t>{153});
  CHECK(vals<uint8_t>(out[0]) == std::vector<uint8_t>{153, 255, 0, 26, 221, 179});
  // All-positive input: the range is extended down to 0, so zero point is 0.
  const auto pos = run(n, {tf({2}, {1.f, 2.55f})});
  CHECK(vals<uint8_t>(pos[2]) == std::vector<uint8_t>{0});
  CHECK(vals<uint8_t>(pos[0]) == std::vector<uint8_t>{100, 255});
}

// The conformance runner compares values via doubles, which packed and float8 tensors do not convert
// to; here the stored expected outputs are compared byte for byte.
TEST_CASE("QuantizeLinear node tests with packed/float8 outputs match byte for byte", "[quant]") {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(FRUGAL_SOURCE_DIR) / "../shared/testdata/onnx-onnx/onnx/backend/test/data/node";
  if (!fs::exists(root)) {
    WARN("ONNX node test data not found; skipped");
    return;
  }
  for (const char* name : {"test_quantizelinear_int4", "test_quantizelinear_uint4", "test_quantizelinear_int2",
                           "test_quantizelinear_uint2", "test_quantizelinear_e4m3fn", "test_quantizelinear_e5m2",
                           "test_quantizelinear_float4e2m1"}) {
    INFO(name);
    const fs::path dir = root / name;
    auto model = Model::load(dir / "model.onnx");
    REQUIRE(model.ok());
    auto ex = Executor::create(*model);
    REQUIRE(ex.ok());
    NamedTensors inputs;
    for (size_t k = 0; k < (*ex)->graph().inputs().size(); ++k) {
      auto t = read_tensor_pb(dir / "test_data_set_0" / ("input_" + std::to_string(k) + ".pb"));
      REQUIRE(t.ok());
      inputs.emplace_back((*ex)->graph().inputs()[k].name, t->second);
    }
    auto outs = (*ex)->run(inputs);
    REQUIRE(outs.ok());
    auto want = read_tensor_pb(dir / "test_data_set_0" / "output_0.pb");
    REQUIRE(want.ok());
    const Tensor& got = (*outs)[0].second;
    CHECK(got.dtype() == want->second.dtype());
    CHECK(got.shape() == want->second.shape());
    CHECK(bytes(got) == bytes(want->second));
  }
}
