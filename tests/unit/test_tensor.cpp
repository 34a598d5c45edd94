#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>

#include "frugal/model.h"
#include "frugal/tensor.h"

using namespace frugal;

TEST_CASE("float16 conversions match IEEE 754 binary16 bit patterns", "[tensor]") {
  // Reference bit patterns from the IEEE 754 binary16 definition.
  CHECK(float_to_half(0.0f) == 0x0000);
  CHECK(float_to_half(-0.0f) == 0x8000);
  CHECK(float_to_half(1.0f) == 0x3C00);
  CHECK(float_to_half(-2.0f) == 0xC000);
  CHECK(float_to_half(65504.0f) == 0x7BFF);                 // largest finite half
  CHECK(float_to_half(65520.0f) == 0x7C00);                 // rounds up to infinity
  CHECK(float_to_half(std::ldexp(1.0f, -24)) == 0x0001);    // smallest subnormal
  CHECK(float_to_half(std::ldexp(1.0f, -14)) == 0x0400);    // smallest normal
  CHECK(float_to_half(std::ldexp(1.0f, -26)) == 0x0000);    // below half the smallest subnormal
  CHECK(float_to_half(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);  // tie rounds to even (down)
  CHECK(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);  // tie rounds to even (up)
  CHECK(float_to_half(std::numeric_limits<float>::infinity()) == 0x7C00);
  CHECK((float_to_half(std::nanf("")) & 0x7C00) == 0x7C00);
  CHECK((float_to_half(std::nanf("")) & 0x03FF) != 0);

  CHECK(half_to_float(0x3C00) == 1.0f);
  CHECK(half_to_float(0x7BFF) == 65504.0f);
  CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(half_to_float(0x03FF) == std::ldexp(1023.0f, -24));
  CHECK(half_to_float(0x8000) == 0.0f);
  CHECK(std::signbit(half_to_float(0x8000)));
  CHECK(std::isinf(half_to_float(0xFC00)));
  // Every finite half survives half -> float -> half.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7C00) == 0x7C00) continue;
    REQUIRE(float_to_half(half_to_float(static_cast<uint16_t>(h))) == h);
  }
}

TEST_CASE("bfloat16 rounds to nearest even", "[tensor]") {
  CHECK(float_to_bf16(1.0f) == 0x3F80);
  CHECK(bf16_to_float(0x3F80) == 1.0f);
  // 1 + 2^-8 is exactly half way between bf16 1.0 and 1 + 2^-7: ties go to even (1.0).
  CHECK(float_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3F80);
  CHECK(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3F82);
}

TEST_CASE("storage sizes of packed and byte types", "[tensor]") {
  CHECK(storage_bytes(DType::kFloat, 10) == 40);
  CHECK(storage_bytes(DType::kInt4, 5) == 3);
  CHECK(storage_bytes(DType::kUInt2, 5) == 2);
  CHECK(storage_bytes(DType::kBool, 3) == 3);
  CHECK(storage_bytes(DType::kFloat, 0) == 0);
  CHECK(shape_numel({}) == 1);
  CHECK(shape_numel({2, 0, 3}) == 0);
}

TEST_CASE("compare_tensors counts elements outside atol + rtol*|expected|", "[tensor]") {
  auto a = Tensor::from_vector<float>({4}, {1.0f, 2.0f, 3.0f, NAN});
  auto b = Tensor::from_vector<float>({4}, {1.0f, 2.001f, 3.1f, NAN});
  auto r = compare_tensors(a, b, 1e-3, 0.0);
  CHECK(r.mismatches == 1);  // |3-3.1| > 3.1e-3; |2-2.001| = 1e-3 <= 2.001e-3; NaN == NaN
  CHECK(r.first_bad == 2);
  CHECK(r.max_abs == Approx(0.1).epsilon(1e-5));
  auto c = Tensor::from_vector<float>({2, 2}, {1, 2, 3, 4});
  CHECK_FALSE(compare_tensors(a, c, 1, 1).shape_ok);
}

TEST_CASE("TensorProto typed fields and raw_data convert for every standard dtype", "[tensor][onnx]") {
  onnx::TensorProto p;
  p.set_name("x");
  p.add_dims(3);

  p.set_data_type(onnx::TensorProto::FLOAT);
  for (float v : {1.5f, -2.0f, 0.25f}) p.add_float_data(v);
  auto t = tensor_from_proto(p);
  REQUIRE(t.ok());
  CHECK(t->to_double_vector() == std::vector<double>{1.5, -2.0, 0.25});

  p.clear_float_data();
  p.set_data_type(onnx::TensorProto::INT8);
  for (int v : {-128, 0, 127}) p.add_int32_data(v);
  t = tensor_from_proto(p);
  REQUIRE(t.ok());
  CHECK(t->to_int64_vector() == std::vector<int64_t>{-128, 0, 127});

  p.clear_int32_data();
  p.set_data_type(onnx::TensorProto::FLOAT16);
  for (int v : {0x3C00, 0xC000, 0x0000}) p.add_int32_data(v);
  t = tensor_from_proto(p);
  REQUIRE(t.ok());
  CHECK(t->to_double_vector() == std::vector<double>{1.0, -2.0, 0.0});

  p.clear_int32_data();
  p.set_data_type(onnx::TensorProto::UINT32);
  for (uint64_t v : {0ull, 7ull, 4294967295ull}) p.add_uint64_data(v);
  t = tensor_from_proto(p);
  REQUIRE(t.ok());
  CHECK(t->to_int64_vector() == std::vector<int64_t>{0, 7, 4294967295LL});

  p.clear_uint64_data();
  p.set_data_type(onnx::TensorProto::INT64);
  for (int64_t v : {int64_t{-5}, int64_t{1} << 40, int64_t{3}}) p.add_int64_data(v);
  t = tensor_from_proto(p);
  REQUIRE(t.ok());
  CHECK(t->to_int64_vector() == std::vector<int64_t>{-5, int64_t{1} << 40, 3});

  p.clear_int64_data();
  p.set_data_type(onnx::TensorProto::DOUBLE);
  for (double v : {0.5, 1e300, -3.0}) p.add_double_data(v);
  t = tensor_from_proto(p);
  REQUIRE(t.ok());
  CHECK(t->to_double_vector() == std::vector<double>{0.5, 1e300, -3.0});

  p.clear_double_data();
  p.set_data_type(onnx::TensorProto::BOOL);
  for (int v : {1, 0, 1}) p.add_int32_data(v);
  t = tensor_from_proto(p);
  REQUIRE(t.ok());
  CHECK(t->to_int64_vector() == std::vector<int64_t>{1, 0, 1});

  // int4: two per int32_data entry (packed byte), low nibble first: values 1, -1, 7 -> 0xF1, 0x07.
  p.clear_int32_data();
  p.set_data_type(22);  // INT4 (newer than ONNX 1.12's enum)
  p.add_int32_data(0xF1);
  p.add_int32_data(0x07);
  t = tensor_from_proto(p);
  REQUIRE(t.ok());
  CHECK(t->nbytes() == 2);
  CHECK(static_cast<const uint8_t*>(t->raw())[0] == 0xF1);

  // raw_data round trip through tensor_to_proto.
  auto u = Tensor::from_vector<uint16_t>({2, 2}, {1, 2, 65535, 0});
  onnx::TensorProto q;
  tensor_to_proto(u, &q);
  CHECK(q.data_type() == onnx::TensorProto::UINT16);
  CHECK(q.raw_data().size() == 8);
  auto back = tensor_from_proto(q);
  REQUIRE(back.ok());
  CHECK(back->shape() == Shape{2, 2});
  CHECK(back->to_int64_vector() == std::vector<int64_t>{1, 2, 65535, 0});
}

TEST_CASE("TensorProto whose dims need more data than present is rejected", "[tensor][onnx]") {
  onnx::TensorProto p;
  p.set_name("w");
  p.add_dims(4);
  p.set_data_type(onnx::TensorProto::FLOAT);
  p.set_raw_data(std::string(12, '\0'));  // 3 floats for 4 elements
  auto t = tensor_from_proto(p);
  REQUIRE_FALSE(t.ok());
  CHECK(t.status().code() == StatusCode::kInvalidModel);
  CHECK(t.status().message().find("'w'") != std::string::npos);
  CHECK(t.status().message().find("16 bytes") != std::string::npos);

  p.clear_raw_data();
  p.add_float_data(1.0f);
  t = tensor_from_proto(p);
  REQUIRE_FALSE(t.ok());
  CHECK(t.status().message().find("holds 1 values") != std::string::npos);

  onnx::TensorProto neg;
  neg.set_name("n");
  neg.add_dims(-2);
  neg.set_data_type(onnx::TensorProto::FLOAT);
  CHECK(tensor_from_proto(neg).status().code() == StatusCode::kInvalidModel);
}

TEST_CASE("packed and float8 tensors compare on exact bit patterns", "[tensor]") {
  // int4 values {1, -1, 7} packed low nibble first: 0xF1, 0x07.
  const uint8_t a[2] = {0xF1, 0x07}, b[2] = {0xF1, 0x06}, c[2] = {0xF1, 0x17};
  auto ta = Tensor::from_bytes(DType::kInt4, {3}, a);
  CHECK(compare_tensors(ta, Tensor::from_bytes(DType::kInt4, {3}, a), 0, 0).ok());
  auto r = compare_tensors(ta, Tensor::from_bytes(DType::kInt4, {3}, b), 1, 1);  // tolerances do not apply
  CHECK(r.mismatches == 1);
  CHECK(r.first_bad == 2);
  // The unused high nibble of the last byte is padding, not an element.
  CHECK(compare_tensors(ta, Tensor::from_bytes(DType::kInt4, {3}, c), 0, 0).ok());
  const uint8_t f[2] = {0x38, 0x40}, g[2] = {0x38, 0x41};  // e4m3fn 1.0, 2.0 vs 2.25
  CHECK(compare_tensors(Tensor::from_bytes(DType::kFloat8E4M3FN, {2}, f), Tensor::from_bytes(DType::kFloat8E4M3FN, {2}, g),
                        0.5, 1.0).mismatches == 1);
}

TEST_CASE("Large tensor buffers are recycled; zeros() is zero on a recycled block", "[tensor]") {
  release_recycled_tensor_memory();
  const Shape big{512, 1024};  // 2 MiB of float: recycled
  const void* first = nullptr;
  {
    Tensor a = Tensor::uninitialized(DType::kFloat, big);
    first = a.raw();
    float* p = a.mut<float>();
    for (int64_t i = 0; i < a.numel(); ++i) p[i] = 7.0f;
  }
  Tensor b = Tensor::zeros(DType::kFloat, big);
  CHECK(b.raw() == first);  // the same block came back
  const float* q = b.data<float>();
  int64_t nonzero = 0;
  for (int64_t i = 0; i < b.numel(); ++i) nonzero += q[i] != 0.0f;
  CHECK(nonzero == 0);
  // A block of another size is not handed out for this one: free a 1 MiB block, then the 2 MiB
  // request must not get it.
  const void* small_block = nullptr;
  {
    Tensor c = Tensor::uninitialized(DType::kFloat, Shape{256, 1024});
    small_block = c.raw();
  }
  Tensor d = Tensor::uninitialized(DType::kFloat, big);
  CHECK(d.raw() != small_block);
  release_recycled_tensor_memory();
  // Small buffers are not kept by the cache (glibc reuses them on its own): nothing to assert on
  // addresses there, but they must still be usable and zeroed.
  Tensor s = Tensor::zeros(DType::kFloat, Shape{16});
  CHECK(s.to_double_vector() == std::vector<double>(16, 0.0));
}

TEST_CASE("count_zeros counts values equal to zero in every stored type", "[tensor]") {
  // Expected counts from the formats' definitions: +0 and -0 are zero; the smallest denormals,
  // float8 NaN and e8m0's smallest value (2^-127; e8m0 has no zero) are not.
  const std::vector<float> f = {0.0f, -0.0f, 1e-45f, 3.0f, 0.0f};
  CHECK(count_zeros(Tensor::from_vector<float>({5}, f)) == 3);
  const std::vector<double> d = {-0.0, 1e-300, 0.0, 2.0};
  CHECK(count_zeros(Tensor::from_vector<double>({4}, d)) == 2);
  const uint16_t h[] = {0x0000, 0x8000, 0x0001, 0x3C00};  // +0, -0, smallest denormal, 1.0
  CHECK(count_zeros(Tensor::from_bytes(DType::kFloat16, {4}, h)) == 2);
  CHECK(count_zeros(Tensor::from_bytes(DType::kBFloat16, {4}, h)) == 2);
  const uint8_t e4m3fn[] = {0x00, 0x80, 0x01, 0x38};  // +0, -0, 2^-9, 1.0
  CHECK(count_zeros(Tensor::from_bytes(DType::kFloat8E4M3FN, {4}, e4m3fn)) == 2);
  CHECK(count_zeros(Tensor::from_bytes(DType::kFloat8E5M2, {4}, e4m3fn)) == 2);  // 0x80 is -0 there too
  const uint8_t fnuz[] = {0x00, 0x80, 0x01};  // +0, NaN (the fnuz types have no -0), denormal
  CHECK(count_zeros(Tensor::from_bytes(DType::kFloat8E4M3FNUZ, {3}, fnuz)) == 1);
  CHECK(count_zeros(Tensor::from_bytes(DType::kFloat8E5M2FNUZ, {3}, fnuz)) == 1);
  const uint8_t e8m0[] = {0x00, 0x7F};  // 2^-127, 1.0
  CHECK(count_zeros(Tensor::from_bytes(DType::kFloat8E8M0, {2}, e8m0)) == 0);
  const uint8_t f4[] = {0x80, 0x21};  // float4e2m1 nibbles, low first: +0, -0, 0.5, 1.0
  CHECK(count_zeros(Tensor::from_bytes(DType::kFloat4E2M1, {4}, f4)) == 2);
  const uint8_t i4[] = {0xF0, 0x08, 0x00};  // int4 nibbles, low first: 0, -1, 8 -> -8, 0, 0, (pad)
  CHECK(count_zeros(Tensor::from_bytes(DType::kInt4, {5}, i4)) == 3);
  const std::vector<int8_t> i8 = {0, -1, 0, 127};
  CHECK(count_zeros(Tensor::from_vector<int8_t>({4}, i8)) == 2);
  const std::vector<int64_t> i64 = {0, 1LL << 40, 0};
  CHECK(count_zeros(Tensor::from_vector<int64_t>({3}, i64)) == 2);
}
