#include "frugal/executor.h"

#include <exception>
#include <new>
#include <set>
#include <unordered_map>

#include "frugal/dataset.h"
#include "frugal/parallel.h"

namespace frugal {

const Tensor* find_named(const NamedTensors& v, const std::string& name) {
  for (const auto& kv : v)
    if (kv.first == name) return &kv.second;
  return nullptr;
}

std::vector<UnsupportedNode> find_unsupported(const Graph& graph, const KernelRegistry& reg, Backend backend) {
  std::vector<UnsupportedNode> out;
  std::set<size_t> with_subgraphs(graph.nodes_with_subgraphs().begin(), graph.nodes_with_subgraphs().end());
  for (size_t i = 0; i < graph.nodes().size(); ++i) {
    const NodeDef& n = graph.nodes()[i];
    std::string reason;
    if (with_subgraphs.count(i)) {
      reason = "control flow with subgraphs (If/Loop/Scan) is not supported";
    } else if (n.opset == 0) {
      reason = "domain '" + n.domain + "' is not imported by the model";
    } else if (!reg.find(n.domain, n.op_type, n.opset, backend)) {
      reason = "no " + std::string(backend_name(backend)) + " kernel for this op at opset " + std::to_string(n.opset);
    }
    if (!reason.empty()) out.push_back({i, n.name, n.op_type, n.domain.empty() ? "ai.onnx" : n.domain, n.opset, reason});
  }
  return out;
}

StatusOr<std::unique_ptr<Executor>> Executor::create(std::shared_ptr<const Model> model, const ExecOptions& opts) {
  std::unique_ptr<Executor> ex(new Executor());
  ex->model_ = std::move(model);
  ex->opts_ = opts;
  FRUGAL_ASSIGN_OR_RETURN(ex->graph_, Graph::build(*ex->model_));
  const KernelRegistry& reg = default_registry();
  auto unsupported = find_unsupported(ex->graph_, reg, opts.backend);
  if (!unsupported.empty()) {
    const auto& u = unsupported.front();
    std::string msg = "node '" + u.name + "' (" + u.domain + "::" + u.op_type + ", opset " + std::to_string(u.opset) +
                      "): " + u.reason;
    if (unsupported.size() > 1) msg += " (and " + std::to_string(unsupported.size() - 1) + " more; see frugal inspect)";
    return Unsupported(msg);
  }
  for (const auto& kv : ex->graph_.initializers()) {
    if (!dtype_is_supported(static_cast<DType>(kv.second->data_type()))) continue;
    auto t = ex->model_->initializer(*kv.second);
    if (!t.ok()) return t.status().with_context("initializer '" + kv.first + "'");
    ex->constants_[kv.first] = std::move(t).value();
  }
  ex->kernels_.resize(ex->graph_.nodes().size());
  for (size_t i : ex->graph_.topo_order()) {
    const NodeDef& n = ex->graph_.nodes()[i];
    const KernelEntry* e = reg.find(n.domain, n.op_type, n.opset, opts.backend);
    auto k = e->create(n);
    if (!k.ok()) {
      const auto& st = k.status();
      return st.message().rfind("node '", 0) == 0 ? st : st.with_context(n.label());
    }
    ex->kernels_[i] = std::move(k).value();
  }
  const auto& order = ex->graph_.topo_order();
  for (size_t pos = 0; pos < order.size(); ++pos)
    for (const auto& in : ex->graph_.nodes()[order[pos]].inputs)
      if (!in.empty()) ex->last_use_[in] = pos;
  return ex;
}

Status Executor::validate_inputs(const NamedTensors& inputs) const { return check_inputs(graph_, inputs, opts_.dims); }

StatusOr<NamedTensors> Executor::run(const NamedTensors& inputs, Observer* observer) {
  return run_with_extra(inputs, {}, observer);
}

StatusOr<NamedTensors> Executor::run_with_extra(const NamedTensors& inputs, const std::vector<std::string>& extra,
                                                Observer* observer) {
  FRUGAL_RETURN_IF_ERROR(validate_inputs(inputs));
  if (opts_.threads > 0 && opts_.threads != num_threads()) set_num_threads(opts_.threads);

  std::unordered_map<std::string, Tensor> live;
  live.reserve(graph_.nodes().size() * 2);
  std::set<std::string> keep;
  for (const auto& o : graph_.outputs()) keep.insert(o.name);
  for (const auto& e : extra) keep.insert(e);
  for (const auto& kv : inputs) live[kv.first] = kv.second;
  if (observer) FRUGAL_RETURN_IF_ERROR(observer->on_inputs(inputs));

  auto lookup = [&](const std::string& name) -> const Tensor* {
    auto it = live.find(name);
    if (it != live.end()) return &it->second;
    auto c = constants_.find(name);
    if (c != constants_.end()) return &c->second;
    return nullptr;
  };

  const auto& order = graph_.topo_order();
  std::vector<const Tensor*> in_ptrs;
  for (size_t pos = 0; pos < order.size(); ++pos) {
    const size_t ni = order[pos];
    const NodeDef& node = graph_.nodes()[ni];
    in_ptrs.assign(node.inputs.size(), nullptr);
    for (size_t k = 0; k < node.inputs.size(); ++k) {
      if (node.inputs[k].empty()) continue;
      in_ptrs[k] = lookup(node.inputs[k]);
      if (!in_ptrs[k])
        return node.error(StatusCode::kUnsupported, "input '" + node.inputs[k] + "' has a data type frugal cannot hold");
    }
    std::vector<Tensor> outs(node.outputs.size());
    KernelContext ctx(in_ptrs, &outs, num_threads());
    Status st;
    try {
      st = kernels_[ni]->compute(ctx);
    } catch (const std::bad_alloc&) {
      return node.error(StatusCode::kOutOfMemory, "out of memory");
    } catch (const std::exception& e) {
      return node.error(StatusCode::kInternal, std::string("kernel threw: ") + e.what());
    }
    if (!st.ok()) return st.message().rfind("node '", 0) == 0 ? st : st.with_context(node.label());
    for (size_t k = 0; k < outs.size(); ++k)
      if (!node.outputs[k].empty() && !outs[k].defined())
        return node.error(StatusCode::kInternal, "kernel produced no value for output " + std::to_string(k));
    if (observer) {
      NodeEvent ev{ni, node, in_ptrs, outs};
      FRUGAL_RETURN_IF_ERROR(observer->on_node(ev));
    }
    for (size_t k = 0; k < outs.size(); ++k) {
      const std::string& name = node.outputs[k];
      if (name.empty()) continue;
      if (!keep.count(name) && !last_use_.count(name)) continue;  // nobody reads it
      live[name] = std::move(outs[k]);
    }
    // Free what this node was the last reader of.
    for (const auto& in : node.inputs) {
      if (in.empty() || keep.count(in)) continue;
      auto lu = last_use_.find(in);
      if (lu != last_use_.end() && lu->second == pos) live.erase(in);
    }
  }

  NamedTensors result;
  for (const auto& o : graph_.outputs()) {
    const Tensor* t = lookup(o.name);
    if (!t) return Internal("graph output '" + o.name + "' was not computed");
    result.emplace_back(o.name, *t);
  }
  for (const auto& e : extra) {
    const Tensor* t = lookup(e);
    if (!t) return NotFound("tensor '" + e + "' is not produced by the graph");
    result.emplace_back(e, *t);
  }
  return result;
}

}  // namespace frugal
