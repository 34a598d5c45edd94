#include <algorithm>

#include "frugal/kernel.h"

namespace frugal {

int64_t NodeDef::get_int(const std::string& a, int64_t dflt) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? dflt : it->second.i;
}

float NodeDef::get_float(const std::string& a, float dflt) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? dflt : it->second.f;
}

std::string NodeDef::get_string(const std::string& a, const std::string& dflt) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? dflt : it->second.s;
}

std::vector<int64_t> NodeDef::get_ints(const std::string& a, std::vector<int64_t> dflt) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? dflt : it->second.ints;
}

std::vector<float> NodeDef::get_floats(const std::string& a, std::vector<float> dflt) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? dflt : it->second.floats;
}

const Tensor* NodeDef::get_tensor(const std::string& a) const {
  auto it = attrs.find(a);
  return it == attrs.end() || it->second.kind != Attribute::Kind::kTensor ? nullptr : &it->second.t;
}

std::string NodeDef::label() const {
  std::string op = domain.empty() ? op_type : domain + "." + op_type;
  return "node '" + name + "' (" + op + ")";
}

Status NodeDef::error(StatusCode code, const std::string& msg) const { return Status(code, label() + ": " + msg); }

Tensor& KernelContext::allocate_output(size_t i, DType dtype, Shape shape) {
  (*outputs_)[i] = Tensor::zeros(dtype, std::move(shape));
  return (*outputs_)[i];
}

Tensor& KernelContext::allocate_output_uninitialized(size_t i, DType dtype, Shape shape) {
  (*outputs_)[i] = Tensor::uninitialized(dtype, std::move(shape));
  return (*outputs_)[i];
}

void KernelContext::set_output(size_t i, Tensor t) { (*outputs_)[i] = std::move(t); }

const char* backend_name(Backend b) { return b == Backend::kCpu ? "cpu" : "cuda"; }

void KernelRegistry::add(KernelEntry e) {
  if (e.domain == "ai.onnx") e.domain.clear();
  entries_.push_back(std::move(e));
}

const KernelEntry* KernelRegistry::find(const std::string& domain_in, const std::string& op, int opset,
                                        Backend b) const {
  const std::string domain = domain_in == "ai.onnx" ? std::string() : domain_in;
  const KernelEntry* best = nullptr;
  for (const auto& e : entries_) {
    if (e.backend != b || e.op_type != op || e.domain != domain) continue;
    if (opset < e.since || opset > e.until) continue;
    if (!best || e.since > best->since) best = &e;
  }
  return best;
}

const KernelRegistry& default_registry() { return cpu_registry(); }

StatusOr<std::vector<Tensor>> run_node(const NodeDef& node, const std::vector<const Tensor*>& inputs,
                                       const KernelRegistry& reg, Backend backend) {
  const KernelEntry* e = reg.find(node.domain, node.op_type, node.opset, backend);
  if (!e)
    return node.error(StatusCode::kUnsupported, "no " + std::string(backend_name(backend)) + " kernel for opset " +
                                                    std::to_string(node.opset));
  FRUGAL_ASSIGN_OR_RETURN(auto kernel, e->create(node));
  std::vector<Tensor> outputs(node.outputs.size());
  KernelContext ctx(inputs, &outputs, 1);
  FRUGAL_RETURN_IF_ERROR(kernel->compute(ctx));
  return outputs;
}

}  // namespace frugal
