// The kernel contract. A kernel is created once per node (attributes validated then) and computes
// many times. Kernels see frugal types only (NodeDef, Tensor), never protobuf, so kernel files stay
// light to compile and the same contract serves the CUDA backend.
//
// Adding an op: write the kernel in lib/kernels/<family>.cpp, add one line to that file's
// register_<family>_kernels(), a kernel test in tests/kernels/, and an allow-list line in
// tests/conformance/allowlist.tsv.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "frugal/status.h"
#include "frugal/tensor.h"

namespace frugal {

struct Attribute {
  enum class Kind { kFloat, kInt, kString, kTensor, kFloats, kInts, kStrings, kGraph, kOther };
  Kind kind = Kind::kOther;
  float f = 0;
  int64_t i = 0;
  std::string s;
  Tensor t;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
};

// One node as kernels see it. Built from the NodeProto by the graph index.
struct NodeDef {
  std::string name;
  std::string op_type;
  std::string domain;  // "" for ai.onnx
  int opset = 0;       // the model's opset for this node's domain
  std::vector<std::string> inputs;   // "" marks an omitted optional input
  std::vector<std::string> outputs;  // "" marks an omitted optional output
  std::map<std::string, Attribute> attrs;

  bool has(const std::string& a) const { return attrs.count(a) != 0; }
  int64_t get_int(const std::string& a, int64_t dflt) const;
  float get_float(const std::string& a, float dflt) const;
  std::string get_string(const std::string& a, const std::string& dflt) const;
  std::vector<int64_t> get_ints(const std::string& a, std::vector<int64_t> dflt = {}) const;
  std::vector<float> get_floats(const std::string& a, std::vector<float> dflt = {}) const;
  const Tensor* get_tensor(const std::string& a) const;
  // "node 'name' (Op)" for error messages.
  std::string label() const;
  // An error status prefixed with label().
  Status error(StatusCode code, const std::string& msg) const;
};

// What a kernel may use while it computes.
class KernelContext {
 public:
  KernelContext(std::span<const Tensor* const> inputs, std::vector<Tensor>* outputs, int threads)
      : inputs_(inputs), outputs_(outputs), threads_(threads) {}

  size_t num_inputs() const { return inputs_.size(); }
  // Whether optional input i was given (present and not the empty name).
  bool has_input(size_t i) const { return i < inputs_.size() && inputs_[i] != nullptr; }
  const Tensor& input(size_t i) const { return *inputs_[i]; }
  size_t num_outputs() const { return outputs_->size(); }
  // Allocate output i (zero-filled) and return it for writing.
  Tensor& allocate_output(size_t i, DType dtype, Shape shape);
  // Allocate output i without initialising it: only for kernels that write every element.
  Tensor& allocate_output_uninitialized(size_t i, DType dtype, Shape shape);
  // Hand over an already built tensor as output i (for example a reshaped view of an input).
  void set_output(size_t i, Tensor t);
  int threads() const { return threads_; }

 private:
  std::span<const Tensor* const> inputs_;
  std::vector<Tensor>* outputs_;
  int threads_ = 1;
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual Status compute(KernelContext& ctx) = 0;
};

// Wraps a lambda (or any callable) as a Kernel.
class FnKernel : public Kernel {
 public:
  using Fn = std::function<Status(KernelContext&)>;
  explicit FnKernel(Fn fn) : fn_(std::move(fn)) {}
  Status compute(KernelContext& ctx) override { return fn_(ctx); }

 private:
  Fn fn_;
};

using KernelFactory = std::function<StatusOr<std::unique_ptr<Kernel>>(const NodeDef&)>;

enum class Backend { kCpu, kCuda };
const char* backend_name(Backend b);

constexpr int kMaxOpset = 1000;

struct KernelEntry {
  std::string domain;   // "" = ai.onnx
  std::string op_type;
  int since = 1;        // first opset this entry serves
  int until = kMaxOpset;  // last opset this entry serves (inclusive)
  Backend backend = Backend::kCpu;
  KernelFactory create;
};

class KernelRegistry {
 public:
  void add(KernelEntry e);
  // Convenience for the CPU backend and the default domain.
  void add(const std::string& op, int since, int until, KernelFactory f) {
    add(KernelEntry{"", op, since, until, Backend::kCpu, std::move(f)});
  }
  // The entry with the highest `since` not above `opset` whose range covers it; nullptr if none.
  const KernelEntry* find(const std::string& domain, const std::string& op, int opset, Backend b) const;
  const std::vector<KernelEntry>& entries() const { return entries_; }

 private:
  std::vector<KernelEntry> entries_;
};

// Creates the kernel for `node` from `reg` and runs it once on `inputs` (nullptr = omitted optional
// input). For kernel tests and one-off evaluation; the Executor is the way to run graphs.
StatusOr<std::vector<Tensor>> run_node(const NodeDef& node, const std::vector<const Tensor*>& inputs,
                                       const KernelRegistry& reg, Backend backend = Backend::kCpu);

// The CPU registry with every family registered (lib/kernels/register_cpu.cpp).
const KernelRegistry& cpu_registry();
// Registry used for look-ups on a backend: CPU entries plus whatever that backend adds.
const KernelRegistry& default_registry();

}  // namespace frugal
