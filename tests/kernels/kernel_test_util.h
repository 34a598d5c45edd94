// Shared helpers for the kernel tests: build a NodeDef (op, opset, input/output names, attributes),
// run it through frugal::run_node on the CPU registry, make tensors from literals, read values back,
// and make deterministic random inputs. Header-only; each test file keeps its own reference code.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "frugal/kernel.h"

namespace frugal::testing {

// One-letter names starting at `first`: "a", "b", ... (or "p", "q", ...).
inline std::vector<std::string> letter_names(size_t count, char first = 'a') {
  std::vector<std::string> v;
  for (size_t i = 0; i < count; ++i) v.push_back(std::string(1, static_cast<char>(first + i)));
  return v;
}

// Indexed names: prefix0, prefix1, ...
inline std::vector<std::string> indexed_names(const std::string& prefix, size_t count) {
  std::vector<std::string> v;
  for (size_t i = 0; i < count; ++i) v.push_back(std::string(prefix).append(std::to_string(i)));
  return v;
}

// A node with the given name, op, opset and input/output names, no attributes.
inline NodeDef make_node(const std::string& name, const std::string& op, int opset, std::vector<std::string> inputs,
                         std::vector<std::string> outputs) {
  NodeDef n;
  n.name = name;
  n.op_type = op;
  n.opset = opset;
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  return n;
}

// A node with inputs x0, x1, ... and outputs y0, y1, ...
inline NodeDef xy_node(const std::string& op, int opset, size_t n_in, size_t n_out = 1, const std::string& name = "t") {
  return make_node(name, op, opset, indexed_names("x", n_in), indexed_names("y", n_out));
}

inline void set_int(NodeDef& n, const std::string& k, int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  n.attrs[k] = a;
}
inline void set_float(NodeDef& n, const std::string& k, float v) {
  Attribute a;
  a.kind = Attribute::Kind::kFloat;
  a.f = v;
  n.attrs[k] = a;
}
inline void set_str(NodeDef& n, const std::string& k, const std::string& v) {
  Attribute a;
  a.kind = Attribute::Kind::kString;
  a.s = v;
  n.attrs[k] = a;
}
inline void set_ints(NodeDef& n, const std::string& k, std::vector<int64_t> v) {
  Attribute a;
  a.kind = Attribute::Kind::kInts;
  a.ints = std::move(v);
  n.attrs[k] = a;
}
inline void set_floats(NodeDef& n, const std::string& k, std::vector<float> v) {
  Attribute a;
  a.kind = Attribute::Kind::kFloats;
  a.floats = std::move(v);
  n.attrs[k] = a;
}
inline void set_strings(NodeDef& n, const std::string& k, std::vector<std::string> v) {
  Attribute a;
  a.kind = Attribute::Kind::kStrings;
  a.strings = std::move(v);
  n.attrs[k] = a;
}
inline void set_tensor(NodeDef& n, const std::string& k, Tensor t) {
  Attribute a;
  a.kind = Attribute::Kind::kTensor;
  a.t = std::move(t);
  n.attrs[k] = a;
}

// Runs one node on the CPU registry; an undefined Tensor in `ins` is an absent optional input.
inline StatusOr<std::vector<Tensor>> try_run(const NodeDef& n, const std::vector<Tensor>& ins) {
  std::vector<const Tensor*> p;
  for (const auto& t : ins) p.push_back(t.defined() ? &t : nullptr);
  return run_node(n, p, cpu_registry());
}

// As try_run, but REQUIREs success (the status is shown on failure).
inline std::vector<Tensor> run(const NodeDef& n, const std::vector<Tensor>& ins) {
  auto r = try_run(n, ins);
  INFO((r.ok() ? std::string() : r.status().to_string()));
  REQUIRE(r.ok());
  return *r;
}

// The first output of run().
inline Tensor run1(const NodeDef& n, const std::vector<Tensor>& ins) { return run(n, ins)[0]; }

template <typename T>
Tensor tv(Shape s, std::vector<T> v) {
  return Tensor::from_vector<T>(std::move(s), v);
}
inline Tensor tf(Shape s, std::vector<float> v) { return Tensor::from_vector<float>(std::move(s), v); }
// A 1-D int64 tensor (axes, shapes, indices given as inputs).
inline Tensor ti(std::vector<int64_t> v) { return Tensor::from_vector<int64_t>({static_cast<int64_t>(v.size())}, v); }

// The elements of `t`, REQUIRing its dtype to be T.
template <typename T>
std::vector<T> vals(const Tensor& t) {
  REQUIRE(t.dtype() == DTypeOf<T>::value);
  return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
}
inline std::vector<float> fvals(const Tensor& t) { return vals<float>(t); }

// The raw storage bytes of `t` (packed int4/int2, float8 bit patterns).
inline std::vector<uint8_t> bytes(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.raw());
  return std::vector<uint8_t>(p, p + t.nbytes());
}

// start, start + step, ... (n values).
inline std::vector<float> iota_f(int64_t n, float start = 0, float step = 1) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = start + step * float(i);
  return v;
}

// n floats uniform in [-1, 1) from mt19937(seed).
inline std::vector<float> rand_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// n integers uniform in [lo, hi] from mt19937(seed), cast to T.
template <typename T>
std::vector<T> rand_ints(size_t n, uint32_t seed, int lo, int hi) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(d(rng));
  return v;
}

}  // namespace frugal::testing
