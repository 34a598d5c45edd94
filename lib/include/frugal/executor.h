// Executor: runs a model's main graph on a backend. Plans once (kernel per node, topological order,
// last use of every tensor) and frees each intermediate after its last consumer, so a run holds only
// the live tensors. Observers see every node's outputs as they are produced and keep what they need:
// calibration and distillation memory never grows with the number of samples.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "frugal/kernel.h"
#include "frugal/model.h"
#include "frugal/status.h"
#include "frugal/tensor.h"

namespace frugal {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Looks up a tensor by name in a NamedTensors list; nullptr if absent.
const Tensor* find_named(const NamedTensors& v, const std::string& name);

struct NodeEvent {
  size_t node_index;                     // index into Graph::nodes()
  const NodeDef& node;
  std::span<const Tensor* const> inputs;  // nullptr for omitted optional inputs
  std::span<const Tensor> outputs;
};

class Observer {
 public:
  virtual ~Observer() = default;
  // Called once per run with the graph inputs (after validation).
  virtual Status on_inputs(const NamedTensors& /*inputs*/) { return OkStatus(); }
  // Called after each node.
  virtual Status on_node(const NodeEvent& ev) = 0;
};

struct ExecOptions {
  Backend backend = Backend::kCpu;
  int threads = 0;  // 0: keep the process-wide setting
  // Symbolic dim values (--dims name=value) used to validate inputs and synthesise data.
  std::map<std::string, int64_t> dims;
  // Plan-time fusion for plain runs (execution only; the model is never changed): BatchNormalization
  // folded into a preceding Conv's constant weights, a following Relu, bias Add or erf-GELU run as the
  // Conv/MatMul epilogue. Runs with an Observer or extra outputs always take the unfused plan, so
  // every original node's output is seen.
  bool fuse = true;
};

struct UnsupportedNode {
  size_t node_index;
  std::string name, op_type, domain;
  int opset;
  std::string reason;
};

// Nodes of `graph` that no kernel in `reg` covers (op, domain, opset), plus subgraph-carrying nodes.
std::vector<UnsupportedNode> find_unsupported(const Graph& graph, const KernelRegistry& reg,
                                              Backend backend = Backend::kCpu);

struct ExecPlan;  // the fused plan (executor.cpp)

class Executor {
 public:
  // Builds the plan; fails with kUnsupported naming the first node without a kernel.
  static StatusOr<std::unique_ptr<Executor>> create(std::shared_ptr<const Model> model,
                                                    const ExecOptions& opts = {});

  // Runs once. `inputs` are bound by name; every graph input must be present with a matching dtype
  // and rank (and dims where the model fixes them). Returns the graph outputs in declared order.
  StatusOr<NamedTensors> run(const NamedTensors& inputs, Observer* observer = nullptr);
  // Like run() but also returns the listed intermediate tensors (kept alive until the end).
  StatusOr<NamedTensors> run_with_extra(const NamedTensors& inputs, const std::vector<std::string>& extra,
                                        Observer* observer = nullptr);

  const Graph& graph() const { return graph_; }
  const Model& model() const { return *model_; }
  // Checks an input set against the graph's declared inputs (names, dtypes, ranks, fixed dims).
  Status validate_inputs(const NamedTensors& inputs) const;
  // How many original nodes the fused plan folds into a neighbour (0 when fusion is off or found
  // nothing to fuse).
  size_t fused_node_count() const;

 private:
  Executor() = default;
  std::shared_ptr<const Model> model_;
  Graph graph_;
  ExecOptions opts_;
  std::vector<std::unique_ptr<Kernel>> kernels_;     // by node index
  std::map<std::string, Tensor> constants_;          // initializers as tensors
  std::map<std::string, size_t> last_use_;           // tensor -> topo position of last consumer
  std::shared_ptr<ExecPlan> fused_;                  // null when opts_.fuse is off or nothing fuses
};

}  // namespace frugal
