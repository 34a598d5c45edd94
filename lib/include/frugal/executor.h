// Executor: runs a model's main graph on a backend. Plans once (kernel per node, topological order,
// last use of every tensor) and frees each intermediate after its last consumer, so a run holds only
// the live tensors. Observers see every node's outputs as they are produced and keep what they need:
// calibration and distillation memory never grows with the number of samples.
#pragma once

#include <map>
#include <memory>
#include <set>
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
  // The tensors this observer reads, when it reads only node outputs by name (a calibration
  // observer); nullptr (the default) means it needs every node's inputs and outputs. Naming them
  // lets the executor keep plan-time fusion: fusions never hide a named tensor, and a fused step is
  // reported as one event carrying the step's node as executed (its own inputs, its final outputs),
  // so every named tensor is still seen exactly once.
  virtual const std::set<std::string>* watched() const { return nullptr; }
};

struct ExecOptions {
  Backend backend = Backend::kCpu;
  int threads = 0;  // 0: keep the process-wide setting
  // Symbolic dim values (--dims name=value) used to validate inputs and synthesise data.
  std::map<std::string, int64_t> dims;
  // Plan-time fusion (execution only; the model is never changed): BatchNormalization folded into a
  // preceding Conv's constant weights, a following Relu, bias Add or erf-GELU run as the Conv/MatMul
  // epilogue. Graph outputs, extra outputs and the tensors an Observer names (Observer::watched) are
  // never fused away; an Observer that names nothing gets the unfused plan and sees every node.
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
  // A run for what `observer` reads, nothing else: with an observer that names its tensors
  // (Observer::watched), only the nodes those tensors depend on execute and no graph output is made
  // (calibration's ranges need none of the layers after the last quantized input). An observer that
  // names nothing sees a whole run.
  Status observe(const NamedTensors& inputs, Observer& observer);

  // Another executor of the same model, to run beside this one on another thread: its own kernels and
  // activations, this one's weights, and this one's folded weights (BatchNormalization into Conv) for
  // the plan runs observed by `observer` use, built here first if need be. Not thread-safe against
  // runs of this executor while it is being made.
  StatusOr<std::unique_ptr<Executor>> sibling(const Observer* observer);

  const Graph& graph() const { return graph_; }
  const Model& model() const { return *model_; }
  // Checks an input set against the graph's declared inputs (names, dtypes, ranks, fixed dims).
  Status validate_inputs(const NamedTensors& inputs) const;
  // How many original nodes the fused plan of a plain run folds into a neighbour (0 when fusion is
  // off or found nothing to fuse).
  size_t fused_node_count();

 private:
  Executor() = default;
  std::shared_ptr<const Model> model_;
  Graph graph_;
  ExecOptions opts_;
  std::vector<std::unique_ptr<Kernel>> kernels_;     // by node index
  std::map<std::string, Tensor> constants_;          // initializers as tensors
  std::map<std::string, size_t> last_use_;           // tensor -> topo position of last consumer
  // The fused plan for the last set of tensors that had to stay visible (graph outputs always do),
  // built on first use; null when fusion is off or nothing fuses for that set. One plan is kept:
  // BatchNormalization folding copies Conv weights, so plans are not accumulated.
  const ExecPlan* fused_plan(const std::set<std::string>& visible);
  StatusOr<NamedTensors> run_impl(const NamedTensors& inputs, const std::vector<std::string>& extra,
                                  Observer* observer, bool outputs);
  std::shared_ptr<ExecPlan> fused_;
  std::shared_ptr<const ExecPlan> donor_;  // a sibling's plan whose folded weights this one borrows
  Status make_kernels();
  std::set<std::string> fused_visible_;
  bool fused_built_ = false;
};

}  // namespace frugal
