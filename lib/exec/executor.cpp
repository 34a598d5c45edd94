#include "frugal/executor.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "frugal/dataset.h"
#include "frugal/parallel.h"
#include <algorithm>

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


// ---- plan-time fusion ------------------------------------------------------------------------------

struct ExecPlan {
  struct Step {
    size_t node_index;  // the first original node the step covers
    NodeDef node;       // as executed (a fused node carries the private epilogue attributes)
    std::unique_ptr<Kernel> kernel;
    std::string op_label;  // "Conv+BatchNormalization+Relu" for profiles
  };
  std::vector<Step> steps;
  std::map<std::string, Tensor> constants;            // folded weights and biases
  std::unordered_map<std::string, size_t> last_use;   // tensor -> step position of its last reader
  size_t fused_nodes = 0;
};

namespace {

// Per-op-type wall time, printed to stderr at exit when FRUGAL_PROFILE_OPS is set (any value but 0;
// "shapes" adds the input shapes to each row).
struct OpProfile {
  std::mutex mu;
  std::map<std::string, std::pair<double, int64_t>> by_op;  // seconds, calls
  static OpProfile& get() {
    static OpProfile* p = [] {
      auto* q = new OpProfile();
      std::atexit([] { OpProfile::get().print(); });
      return q;
    }();
    return *p;
  }
  void add(const std::string& op, double s) {
    std::lock_guard<std::mutex> l(mu);
    auto& e = by_op[op];
    e.first += s;
    ++e.second;
  }
  void print() {
    std::lock_guard<std::mutex> l(mu);
    double total = 0;
    for (const auto& kv : by_op) total += kv.second.first;
    std::vector<std::pair<double, std::string>> rows;
    for (const auto& kv : by_op) rows.emplace_back(kv.second.first, kv.first);
    std::sort(rows.rbegin(), rows.rend());
    std::fprintf(stderr, "op profile (all runs, warm-up included): %.3f s in kernels\n", total);
    std::fprintf(stderr, "  %-60s %10s %7s %10s\n", "op", "total ms", "share", "calls");
    for (const auto& r : rows)
      std::fprintf(stderr, "  %-60s %10.2f %6.1f%% %10lld\n", r.second.c_str(), r.first * 1e3,
                   total > 0 ? 100.0 * r.first / total : 0.0, static_cast<long long>(by_op[r.second].second));
  }
};

// FRUGAL_PROFILE_OPS, read once: unset, empty or 0 (off), "shapes" (rows per op and input shapes,
// "Conv 1x64x56x56 64x64x3x3 64"), anything else (rows per op).
enum class ProfileMode { kOff, kOps, kShapes };

ProfileMode profile_mode() {
  static const ProfileMode m = [] {
    const char* v = std::getenv("FRUGAL_PROFILE_OPS");
    if (!v || !*v || std::string(v) == "0") return ProfileMode::kOff;
    return std::string(v) == "shapes" ? ProfileMode::kShapes : ProfileMode::kOps;
  }();
  return m;
}

std::string profile_label(const std::string& op, const std::vector<const Tensor*>& ins) {
  if (profile_mode() != ProfileMode::kShapes) return op;
  std::string s = op;
  for (const Tensor* t : ins) {
    s += ' ';
    if (!t) {
      s += '-';  // an optional input left out
      continue;
    }
    const auto& d = t->shape();
    for (size_t i = 0; i < d.size(); ++i) s += (i ? "x" : "") + std::to_string(d[i]);
  }
  return s;
}

class Fuser {
 public:
  // `visible`: tensors that must stay visible besides the graph outputs (extra outputs, the
  // tensors an observer watches); no fusion hides them.
  Fuser(const Graph& g, const std::map<std::string, Tensor>& constants, const std::set<std::string>& visible)
      : g_(g), constants_(constants), graph_outputs_(visible) {
    for (const auto& o : g.outputs()) graph_outputs_.insert(o.name);
    for (const auto& in : g.inputs()) graph_inputs_.insert(in.name);
    for (size_t i = 0; i < g.nodes().size(); ++i)
      for (const auto& in : g.nodes()[i].inputs)
        if (!in.empty()) readers_[in].push_back(i);
  }

  // A float32 constant (an initializer no graph input can override).
  const Tensor* const_f32(const std::string& name) const {
    if (name.empty() || graph_inputs_.count(name)) return nullptr;
    auto it = constants_.find(name);
    return it != constants_.end() && it->second.dtype() == DType::kFloat ? &it->second : nullptr;
  }

  // The single node reading `t` (exactly once), when `t` is not visible; else -1.
  int64_t sole_reader(const std::string& t) const {
    if (graph_outputs_.count(t)) return -1;
    auto it = readers_.find(t);
    if (it == readers_.end() || it->second.size() != 1) return -1;
    return static_cast<int64_t>(it->second[0]);
  }
  const std::vector<size_t>& readers(const std::string& t) const {
    static const std::vector<size_t> none;
    auto it = readers_.find(t);
    return it == readers_.end() ? none : it->second;
  }
  bool is_graph_output(const std::string& t) const { return graph_outputs_.count(t) != 0; }

  const NodeDef& node(size_t i) const { return g_.nodes()[i]; }

  static bool is_op(const NodeDef& n, const char* op) { return n.domain.empty() && n.op_type == op; }

  // Only output 0 is produced (the others omitted).
  static bool single_output(const NodeDef& n) {
    for (size_t k = 1; k < n.outputs.size(); ++k)
      if (!n.outputs[k].empty()) return false;
    return !n.outputs.empty() && !n.outputs[0].empty();
  }

  // The other input of a binary node whose input `self` is one of its two inputs.
  static const std::string* other_input(const NodeDef& n, const std::string& self) {
    if (n.inputs.size() != 2) return nullptr;
    if (n.inputs[0] == self && n.inputs[1] != self) return &n.inputs[1];
    if (n.inputs[1] == self && n.inputs[0] != self) return &n.inputs[0];
    return nullptr;
  }

  // A float32 constant holding one value close to `v`.
  bool const_scalar_near(const std::string& name, float v) const {
    const Tensor* t = const_f32(name);
    return t && t->numel() == 1 && std::fabs(t->data<float>()[0] - v) <= 1e-6f * std::fabs(v);
  }

 private:
  const Graph& g_;
  const std::map<std::string, Tensor>& constants_;
  std::set<std::string> graph_outputs_, graph_inputs_;
  std::unordered_map<std::string, std::vector<size_t>> readers_;
};

void set_string_attr(NodeDef& n, const std::string& key, const std::string& v) {
  Attribute a;
  a.kind = Attribute::Kind::kString;
  a.s = v;
  n.attrs[key] = a;
}

void set_int_attr(NodeDef& n, const std::string& key, int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  n.attrs[key] = a;
}

// Matches the erf GELU written out as x*0.5*(1+Erf(x/sqrt2)) (either Mul/Div form for the scaling)
// starting from its input `h`; returns the final output and the nodes it covers.
bool match_gelu(const Fuser& f, const std::string& h, std::vector<size_t>& covered, std::string& out) {
  if (f.is_graph_output(h)) return false;
  const auto& rd = f.readers(h);
  if (rd.size() != 2 || rd[0] == rd[1]) return false;
  int64_t scale_node = -1, half_node = -1;
  for (size_t r : rd) {
    const NodeDef& n = f.node(r);
    const std::string* c = Fuser::other_input(n, h);
    if (!c || !Fuser::single_output(n)) return false;
    const bool h_first = n.inputs[0] == h;
    if (Fuser::is_op(n, "Mul") && f.const_scalar_near(*c, 0.70710678f))
      scale_node = static_cast<int64_t>(r);
    else if (Fuser::is_op(n, "Div") && h_first && f.const_scalar_near(*c, 1.41421356f))
      scale_node = static_cast<int64_t>(r);
    else if (Fuser::is_op(n, "Mul") && f.const_scalar_near(*c, 0.5f))
      half_node = static_cast<int64_t>(r);
    else
      return false;
  }
  if (scale_node < 0 || half_node < 0) return false;
  const std::string& scaled = f.node(static_cast<size_t>(scale_node)).outputs[0];
  const int64_t erf = f.sole_reader(scaled);
  if (erf < 0 || !Fuser::is_op(f.node(static_cast<size_t>(erf)), "Erf") ||
      !Fuser::single_output(f.node(static_cast<size_t>(erf))))
    return false;
  const std::string& e = f.node(static_cast<size_t>(erf)).outputs[0];
  const int64_t add1 = f.sole_reader(e);
  if (add1 < 0) return false;
  const NodeDef& an = f.node(static_cast<size_t>(add1));
  const std::string* one = Fuser::other_input(an, e);
  if (!Fuser::is_op(an, "Add") || !one || !f.const_scalar_near(*one, 1.0f) || !Fuser::single_output(an)) return false;
  const std::string& half = f.node(static_cast<size_t>(half_node)).outputs[0];
  const int64_t mul = f.sole_reader(an.outputs[0]);
  if (mul < 0 || mul != f.sole_reader(half)) return false;
  const NodeDef& mn = f.node(static_cast<size_t>(mul));
  if (!Fuser::is_op(mn, "Mul") || !Fuser::single_output(mn) || Fuser::other_input(mn, half) == nullptr) return false;
  covered = {static_cast<size_t>(scale_node), static_cast<size_t>(half_node), static_cast<size_t>(erf),
             static_cast<size_t>(add1), static_cast<size_t>(mul)};
  out = mn.outputs[0];
  return true;
}

// Builds the fused plan; returns null when nothing fuses.
// `donor` (may be null): a plan another executor built for the same model, whose folded weights are
// taken as they are (shared, not recomputed) where this plan folds the same nodes.
StatusOr<std::shared_ptr<ExecPlan>> build_fused_plan(const Graph& g, const std::map<std::string, Tensor>& constants,
                                                     const KernelRegistry& reg, Backend backend,
                                                     const std::set<std::string>& visible, const ExecPlan* donor) {
  Fuser f(g, constants, visible);
  auto plan = std::make_shared<ExecPlan>();
  std::vector<bool> absorbed(g.nodes().size(), false);
  for (size_t ni : g.topo_order()) {
    if (absorbed[ni]) continue;
    const NodeDef& n = g.nodes()[ni];
    NodeDef exec = n;
    std::string label = n.op_type;
    std::vector<size_t> covered;
    const bool conv = Fuser::is_op(n, "Conv") && n.inputs.size() >= 2 && f.const_f32(n.inputs[1]) &&
                      (n.inputs.size() < 3 || n.inputs[2].empty() || f.const_f32(n.inputs[2])) &&
                      Fuser::single_output(n);
    const bool matmul = Fuser::is_op(n, "MatMul") && n.inputs.size() == 2 && f.const_f32(n.inputs[1]) &&
                        f.const_f32(n.inputs[1])->rank() == 2 && Fuser::single_output(n);
    std::string cur = n.outputs.empty() ? std::string() : n.outputs[0];
    // A Relu that alone reads `cur` runs as the step's epilogue.
    auto absorb_relu = [&] {
      const int64_t r = f.sole_reader(cur);
      if (r < 0) return;
      const NodeDef& rn = g.nodes()[static_cast<size_t>(r)];
      if (!Fuser::is_op(rn, "Relu") || !Fuser::single_output(rn)) return;
      set_string_attr(exec, "_frugal_activation", "Relu");
      covered.push_back(static_cast<size_t>(r));
      cur = rn.outputs[0];
      label += "+Relu";
    };
    if (conv) {
      const Tensor& W = *f.const_f32(n.inputs[1]);
      const int64_t M = W.rank() >= 1 ? W.dim(0) : 0;
      const int64_t bn = f.sole_reader(cur);
      if (M > 0 && bn >= 0) {
        const NodeDef& b = g.nodes()[static_cast<size_t>(bn)];
        bool ok = Fuser::is_op(b, "BatchNormalization") && b.inputs.size() == 5 && b.inputs[0] == cur &&
                  Fuser::single_output(b) && b.get_int("training_mode", 0) == 0 && b.get_int("spatial", 1) == 1;
        for (size_t k = 1; ok && k < 5; ++k) ok = f.const_f32(b.inputs[k]) && f.const_f32(b.inputs[k])->numel() == M;
        if (ok) {
          const float* gamma = f.const_f32(b.inputs[1])->data<float>();
          const float* beta = f.const_f32(b.inputs[2])->data<float>();
          const float* mean = f.const_f32(b.inputs[3])->data<float>();
          const float* var = f.const_f32(b.inputs[4])->data<float>();
          const float eps = b.get_float("epsilon", 1e-5f);
          const Tensor* B0 = n.inputs.size() >= 3 && !n.inputs[2].empty() ? f.const_f32(n.inputs[2]) : nullptr;
          if (B0 && B0->numel() != M) ok = false;
          if (ok) {
            const std::string wn = "\x01fused/" + n.name + "/" + std::to_string(ni) + "/W";
            const std::string bnm = "\x01fused/" + n.name + "/" + std::to_string(ni) + "/B";
            auto donated = [&](const std::string& name) -> const Tensor* {
              if (!donor) return nullptr;
              auto it = donor->constants.find(name);
              return it == donor->constants.end() ? nullptr : &it->second;
            };
            const Tensor* dw = donated(wn);
            const Tensor* db = donated(bnm);
            if (dw && db) {
              plan->constants[wn] = *dw;
              plan->constants[bnm] = *db;
            } else {
              Tensor W2 = Tensor::uninitialized(DType::kFloat, W.shape());
              Tensor B2 = Tensor::uninitialized(DType::kFloat, {M});
              const int64_t per = W.numel() / M;
              for (int64_t m = 0; m < M; ++m) {
                // Same arithmetic as the BatchNormalization kernel: y = x * s + (beta - mean * s).
                const float s = gamma[m] / std::sqrt(var[m] + eps);
                const float* wi = W.data<float>() + m * per;
                float* wo = W2.mut<float>() + m * per;
                for (int64_t i = 0; i < per; ++i) wo[i] = wi[i] * s;
                const float b0 = B0 ? B0->data<float>()[m] : 0.0f;
                B2.mut<float>()[m] = b0 * s + (beta[m] - mean[m] * s);
              }
              plan->constants[wn] = std::move(W2);
              plan->constants[bnm] = std::move(B2);
            }
            exec.inputs = {n.inputs[0], wn, bnm};
            covered.push_back(static_cast<size_t>(bn));
            cur = b.outputs[0];
            label += "+BatchNormalization";
          }
        }
      }
      absorb_relu();
    } else if (matmul) {
      const int64_t N = f.const_f32(n.inputs[1])->dim(1);
      const int64_t add = f.sole_reader(cur);
      if (add >= 0) {
        const NodeDef& a = g.nodes()[static_cast<size_t>(add)];
        const std::string* bias = Fuser::other_input(a, cur);
        if (Fuser::is_op(a, "Add") && bias && f.const_f32(*bias) && f.const_f32(*bias)->rank() == 1 &&
            f.const_f32(*bias)->numel() == N && Fuser::single_output(a)) {
          exec.inputs = {n.inputs[0], n.inputs[1], *bias};
          set_int_attr(exec, "_frugal_bias", 1);
          covered.push_back(static_cast<size_t>(add));
          cur = a.outputs[0];
          label += "+Add";
          std::vector<size_t> gelu;
          std::string out;
          if (match_gelu(f, cur, gelu, out)) {
            set_string_attr(exec, "_frugal_activation", "Gelu");
            covered.insert(covered.end(), gelu.begin(), gelu.end());
            cur = out;
            label += "+Gelu";
          } else {
            absorb_relu();
          }
        }
      }
    }
    // Add / Sum (residual joins) followed by Relu: the Relu runs in place on the sum.
    const bool join = (Fuser::is_op(n, "Add") && n.opset >= 7 && n.inputs.size() == 2) ||
                      (Fuser::is_op(n, "Sum") && n.inputs.size() >= 2);
    if (join && Fuser::single_output(n)) absorb_relu();
    ExecPlan::Step step{ni, std::move(exec), nullptr, std::move(label)};
    if (!covered.empty()) {
      step.node.outputs = {cur};
      for (size_t c : covered) absorbed[c] = true;
      plan->fused_nodes += covered.size();
    }
    const KernelEntry* e = reg.find(step.node.domain, step.node.op_type, step.node.opset, backend);
    if (!e) return step.node.error(StatusCode::kUnsupported, "no kernel");
    FRUGAL_ASSIGN_OR_RETURN(step.kernel, e->create(step.node));
    plan->steps.push_back(std::move(step));
  }
  if (plan->fused_nodes == 0) return std::shared_ptr<ExecPlan>();
  for (size_t pos = 0; pos < plan->steps.size(); ++pos)
    for (const auto& in : plan->steps[pos].node.inputs)
      if (!in.empty()) plan->last_use[in] = pos;
  return plan;
}

}  // namespace

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
    // Inline raw_data is used in place (the view keeps the model alive), so weights are held once.
    if (auto v = tensor_view_of_proto(*kv.second, ex->model_)) {
      ex->constants_[kv.first] = std::move(*v);
      continue;
    }
    auto t = ex->model_->initializer(*kv.second);
    if (!t.ok()) return t.status().with_context("initializer '" + kv.first + "'");
    ex->constants_[kv.first] = std::move(t).value();
  }
  for (const auto& kv : ex->graph_.sparse_initializers()) {
    auto t = tensor_from_sparse_proto(*kv.second, ex->model_->resolver());
    if (!t.ok()) return t.status();
    ex->constants_[kv.first] = std::move(t).value();
  }
  FRUGAL_RETURN_IF_ERROR(ex->make_kernels());
  return ex;
}

Status Executor::make_kernels() {
  const KernelRegistry& reg = default_registry();
  kernels_.resize(graph_.nodes().size());
  for (size_t i : graph_.topo_order()) {
    const NodeDef& n = graph_.nodes()[i];
    const KernelEntry* e = reg.find(n.domain, n.op_type, n.opset, opts_.backend);
    auto k = e->create(n);
    if (!k.ok()) {
      const auto& st = k.status();
      return st.message().rfind("node '", 0) == 0 ? st : st.with_context(n.label());
    }
    kernels_[i] = std::move(k).value();
  }
  last_use_.clear();
  const auto& order = graph_.topo_order();
  for (size_t pos = 0; pos < order.size(); ++pos)
    for (const auto& in : graph_.nodes()[order[pos]].inputs)
      if (!in.empty()) last_use_[in] = pos;
  return OkStatus();
}

StatusOr<std::unique_ptr<Executor>> Executor::sibling(const Observer* observer) {
  // Build this executor's plan for what the observer watches first, so the sibling can borrow it.
  const std::set<std::string>* watched = observer ? observer->watched() : nullptr;
  if (!observer || watched) fused_plan(watched ? *watched : std::set<std::string>{});
  std::unique_ptr<Executor> ex(new Executor());
  ex->model_ = model_;
  ex->opts_ = opts_;
  ex->opts_.threads = 0;  // the thread count is process-wide: only the first executor sets it
  FRUGAL_ASSIGN_OR_RETURN(ex->graph_, Graph::build(*ex->model_));
  ex->constants_ = constants_;  // tensors share their storage
  ex->donor_ = fused_;
  FRUGAL_RETURN_IF_ERROR(ex->make_kernels());
  return ex;
}

const ExecPlan* Executor::fused_plan(const std::set<std::string>& visible) {
  if (!opts_.fuse || opts_.backend != Backend::kCpu) return nullptr;
  if (!fused_built_ || visible != fused_visible_) {
    fused_.reset();  // release the old plan's folded weights before building the next
    auto plan = build_fused_plan(graph_, constants_, default_registry(), opts_.backend, visible, donor_.get());
    // Every fused node's kernel was checked buildable with its original attributes; should a fused
    // variant still fail to build, the unfused plan runs (fusion is only an optimisation).
    fused_ = plan.ok() ? std::move(plan).value() : nullptr;
    fused_visible_ = visible;
    fused_built_ = true;
  }
  return fused_.get();
}

size_t Executor::fused_node_count() {
  const ExecPlan* p = fused_plan({});
  return p ? p->fused_nodes : 0;
}

Status Executor::validate_inputs(const NamedTensors& inputs) const { return check_inputs(graph_, inputs, opts_.dims); }

StatusOr<NamedTensors> Executor::run(const NamedTensors& inputs, Observer* observer) {
  return run_with_extra(inputs, {}, observer);
}

StatusOr<NamedTensors> Executor::run_with_extra(const NamedTensors& inputs, const std::vector<std::string>& extra,
                                                Observer* observer) {
  return run_impl(inputs, extra, observer, true);
}

Status Executor::observe(const NamedTensors& inputs, Observer& observer) {
  return run_impl(inputs, {}, &observer, observer.watched() == nullptr).status();
}

// `outputs` false (an observer naming its tensors): the steps no watched tensor depends on are
// skipped, and nothing is returned.
StatusOr<NamedTensors> Executor::run_impl(const NamedTensors& inputs, const std::vector<std::string>& extra,
                                          Observer* observer, bool outputs) {
  FRUGAL_RETURN_IF_ERROR(validate_inputs(inputs));
  if (opts_.threads > 0 && opts_.threads != num_threads()) set_num_threads(opts_.threads);

  std::unordered_map<std::string, Tensor> live;
  live.reserve(graph_.nodes().size() * 2);
  std::set<std::string> keep;
  if (outputs) {
    for (const auto& o : graph_.outputs()) keep.insert(o.name);
    for (const auto& e : extra) keep.insert(e);
  }
  for (const auto& kv : inputs) live[kv.first] = kv.second;
  if (observer) FRUGAL_RETURN_IF_ERROR(observer->on_inputs(inputs));

  // The fused plan keeps the graph outputs, the extra outputs and whatever the observer watches
  // visible; an observer that watches everything gets the unfused plan.
  const std::set<std::string>* watched = observer ? observer->watched() : nullptr;
  const ExecPlan* plan = nullptr;
  if (!observer || watched) {
    std::set<std::string> visible(extra.begin(), extra.end());
    if (watched) visible.insert(watched->begin(), watched->end());
    plan = fused_plan(visible);
  }
  auto lookup = [&](const std::string& name) -> const Tensor* {
    auto it = live.find(name);
    if (it != live.end()) return &it->second;
    auto c = constants_.find(name);
    if (c != constants_.end()) return &c->second;
    if (plan) {
      auto pc = plan->constants.find(name);
      if (pc != plan->constants.end()) return &pc->second;
    }
    return nullptr;
  };
  // Last readers among the steps that run, when some are skipped (below).
  std::unordered_map<std::string, size_t> run_last_use;
  bool skipping = false;
  auto is_read_later = [&](const std::string& name) {
    if (skipping) return run_last_use.count(name) != 0;
    return plan ? plan->last_use.count(name) != 0 : last_use_.count(name) != 0;
  };
  auto last_reader_is = [&](const std::string& name, size_t pos) {
    if (skipping) {
      auto lu = run_last_use.find(name);
      return lu != run_last_use.end() && lu->second == pos;
    }
    if (plan) {
      auto lu = plan->last_use.find(name);
      return lu != plan->last_use.end() && lu->second == pos;
    }
    auto lu = last_use_.find(name);
    return lu != last_use_.end() && lu->second == pos;
  };
  const bool profile = profile_mode() != ProfileMode::kOff;

  const auto& order = graph_.topo_order();
  const size_t steps = plan ? plan->steps.size() : order.size();
  auto step_node = [&](size_t pos) -> const NodeDef& {
    return plan ? plan->steps[pos].node : graph_.nodes()[order[pos]];
  };
  // Without outputs: walking back from the last step, a step runs when it makes a watched tensor or
  // an input of a step that runs. (Subgraphs read outer values their node does not list: a graph
  // with any runs whole.)
  std::vector<bool> skip;
  if (!outputs && watched && graph_.nodes_with_subgraphs().empty()) {
    skip.assign(steps, true);
    std::unordered_set<std::string> wanted(watched->begin(), watched->end());
    for (size_t pos = steps; pos-- > 0;) {
      const NodeDef& node = step_node(pos);
      bool runs = false;
      for (const auto& o : node.outputs) runs = runs || (!o.empty() && wanted.count(o));
      if (!runs) continue;
      skip[pos] = false;
      for (const auto& in : node.inputs)
        if (!in.empty()) wanted.insert(in);
    }
    skipping = true;
    for (size_t pos = 0; pos < steps; ++pos)
      if (!skip[pos])
        for (const auto& in : step_node(pos).inputs)
          if (!in.empty()) run_last_use[in] = pos;
  }
  std::vector<const Tensor*> in_ptrs;
  for (size_t pos = 0; pos < steps; ++pos) {
    if (!skip.empty() && skip[pos]) continue;
    const size_t ni = plan ? plan->steps[pos].node_index : order[pos];
    const NodeDef& node = step_node(pos);
    Kernel* kernel = plan ? plan->steps[pos].kernel.get() : kernels_[ni].get();
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
    const auto t0 = profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    try {
      st = kernel->compute(ctx);
    } catch (const std::bad_alloc&) {
      return node.error(StatusCode::kOutOfMemory, "out of memory");
    } catch (const std::exception& e) {
      return node.error(StatusCode::kInternal, std::string("kernel threw: ") + e.what());
    }
    if (profile)
      OpProfile::get().add(profile_label(plan ? plan->steps[pos].op_label : node.op_type, in_ptrs),
                           std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
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
      if (!keep.count(name) && !is_read_later(name)) continue;  // nobody reads it
      live[name] = std::move(outs[k]);
    }
    // Free what this node was the last reader of.
    for (const auto& in : node.inputs) {
      if (in.empty() || keep.count(in)) continue;
      if (last_reader_is(in, pos)) live.erase(in);
    }
  }

  NamedTensors result;
  if (!outputs) return result;
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
