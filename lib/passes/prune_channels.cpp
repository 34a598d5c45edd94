// Structured channel pruning. Output channels of Conv layers are followed forward through every op
// that keeps the channel axis (BatchNormalization, activations, pools, elementwise with per-channel
// constants); residual Adds/Muls tie the channel spaces of their inputs into one group, pruned
// together. Consumers have their input channels cut (Conv weight axis 1; Gemm/MatMul rows after
// Flatten or Reshape [N,-1], in blocks of H*W). A group reaching anything else (Concat, Reshape that
// mixes channels, a grouped Conv, a graph output...) is left alone and the report says why.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <set>

#include "frugal/prune.h"

namespace frugal {

namespace {

struct Slice {
  std::string init;
  int64_t axis = 0;
  int64_t block = 1;  // elements along `axis` per channel (H*W for flattened consumers)
};

struct Group {
  int64_t channels = 0;
  int64_t data_rank = 4;
  std::vector<size_t> sources;  // Conv node indices
  std::vector<Slice> slices;
  std::vector<std::string> tensors;  // channel-space and flattened tensors (value_info to drop)
  std::string invalid;
};

const std::set<std::string> kUnary = {"Relu",     "LeakyRelu", "Sigmoid",  "Tanh",        "Clip",    "HardSigmoid",
                                      "HardSwish", "Elu",      "Selu",     "Celu",        "Softplus", "Softsign",
                                      "Gelu",     "Identity",  "Dropout",  "Neg",         "Abs",     "Exp",
                                      "Sqrt",     "Erf",       "Mish",     "ThresholdedRelu", "Swish", "Cast"};
const std::set<std::string> kPool = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool",
                                     "GlobalLpPool"};
const std::set<std::string> kBinary = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "PRelu"};

class Channels {
 public:
  Channels(const Graph& g, const std::map<std::string, int>& uses) : g_(g), uses_(uses) {}

  int find(int a) {
    while (parent_[a] != a) a = parent_[a] = parent_[parent_[a]];
    return a;
  }
  int make(int64_t channels, int64_t rank) {
    parent_.push_back(static_cast<int>(groups_.size()));
    Group gr;
    gr.channels = channels;
    gr.data_rank = rank;
    groups_.push_back(std::move(gr));
    return parent_.back();
  }
  void unite(int a, int b, const std::string& why_if_mismatch) {
    a = find(a), b = find(b);
    if (a == b) return;
    Group &A = groups_[a], &B = groups_[b];
    if (A.channels != B.channels && A.invalid.empty()) A.invalid = why_if_mismatch;
    if (A.invalid.empty()) A.invalid = B.invalid;
    A.sources.insert(A.sources.end(), B.sources.begin(), B.sources.end());
    A.slices.insert(A.slices.end(), B.slices.begin(), B.slices.end());
    A.tensors.insert(A.tensors.end(), B.tensors.begin(), B.tensors.end());
    parent_[b] = a;
  }
  void invalidate(int a, const std::string& why) {
    Group& G = groups_[find(a)];
    if (G.invalid.empty()) G.invalid = why;
  }
  Group& group(int a) { return groups_[find(a)]; }
  size_t count() const { return groups_.size(); }
  bool is_root(int a) const { return parent_[a] == a; }

  // Whether `name` is an initializer used by exactly one node (so slicing it changes nothing else).
  bool own_init(const std::string& name) const {
    auto it = uses_.find(name);
    return g_.initializer(name) && it != uses_.end() && it->second == 1;
  }

 private:
  const Graph& g_;
  const std::map<std::string, int>& uses_;
  std::vector<int> parent_;
  std::vector<Group> groups_;
};

std::string node_label(const NodeDef& n) { return "node '" + n.name + "' (" + n.op_type + ")"; }

StatusOr<Tensor> slice_channels(const Tensor& t, int64_t axis, int64_t block, int64_t channels,
                                const std::vector<int64_t>& keep) {
  const size_t es = storage_bytes(t.dtype(), 1);
  if (es == 0 || storage_bytes(t.dtype(), 8) != 8 * es) return Unsupported("sub-byte tensor cannot be sliced");
  if (axis >= t.rank() || t.dim(axis) != channels * block)
    return Internal("channel slice does not match tensor shape " + shape_str(t.shape()));
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= t.dim(d);
  for (int64_t d = axis + 1; d < t.rank(); ++d) inner *= t.dim(d);
  Shape ns = t.shape();
  ns[axis] = static_cast<int64_t>(keep.size()) * block;
  Tensor out = Tensor::uninitialized(t.dtype(), ns);
  const char* s = static_cast<const char*>(t.raw());
  char* d = static_cast<char*>(out.raw_mut());
  const size_t run = static_cast<size_t>(block * inner) * es;
  for (int64_t o = 0; o < outer; ++o)
    for (size_t k = 0; k < keep.size(); ++k)
      std::memcpy(d + ((o * static_cast<int64_t>(keep.size()) + static_cast<int64_t>(k)) * block * inner) * es,
                  s + ((o * channels + keep[k]) * block * inner) * es, run);
  return out;
}

}  // namespace

Status prune_channels(onnx::ModelProto& proto, const Model& source, const PruneOptions& opts,
                      const std::vector<PrunableLayer>& layers, PruneResult* result) {
  FRUGAL_ASSIGN_OR_RETURN(Graph g, Graph::build(source));
  std::map<std::string, int> uses;
  for (const auto& n : g.nodes())
    for (const auto& in : n.inputs)
      if (!in.empty()) uses[in]++;
  std::map<size_t, const PrunableLayer*> layer_of;
  for (const auto& L : layers) layer_of[L.node_index] = &L;

  Channels ch(g, uses);
  std::map<std::string, int> chan, flat;  // tensor -> group (channel axis 1 / flattened channel-major)
  auto init_dims = [&](const std::string& name) -> Shape {
    const auto* t = g.initializer(name);
    return t ? Shape(t->dims().begin(), t->dims().end()) : Shape{};
  };

  for (size_t i : g.topo_order()) {
    const NodeDef& n = g.nodes()[i];
    std::vector<std::pair<size_t, int>> cin, fin;
    for (size_t j = 0; j < n.inputs.size(); ++j) {
      if (chan.count(n.inputs[j])) cin.push_back({j, chan[n.inputs[j]]});
      if (flat.count(n.inputs[j])) fin.push_back({j, flat[n.inputs[j]]});
    }
    const std::string why = "consumed by " + node_label(n) + ", which the channel rewriter does not follow";
    auto out0 = [&](std::map<std::string, int>& m, int gid) {
      if (!n.outputs.empty() && !n.outputs[0].empty()) {
        m[n.outputs[0]] = ch.find(gid);
        ch.group(gid).tensors.push_back(n.outputs[0]);
      }
      for (size_t o = 1; o < n.outputs.size(); ++o)
        if (!n.outputs[o].empty() && !g.consumers(n.outputs[o]).empty())
          ch.invalidate(gid, "secondary output of " + node_label(n) + " is used");
    };
    if (n.domain.empty() && !cin.empty() && fin.empty()) {
      const int gid = cin[0].second;
      if (n.op_type == "Conv") {
        if (cin.size() != 1 || cin[0].first != 0) {
          ch.invalidate(gid, why);
        } else if (n.get_int("group", 1) != 1) {
          ch.invalidate(gid, "consumed by grouped/depthwise " + node_label(n));
        } else if (!ch.own_init(n.inputs[1])) {
          ch.invalidate(gid, "consumer " + node_label(n) + " has no weight initializer of its own");
        } else {
          ch.group(gid).slices.push_back({n.inputs[1], 1, 1});
        }
        // fall through: this Conv may also be a source below
      } else if (kUnary.count(n.op_type) || kPool.count(n.op_type)) {
        if (cin.size() != 1 || cin[0].first != 0) ch.invalidate(gid, why);
        else out0(chan, gid);
        continue;
      } else if (n.op_type == "BatchNormalization") {
        bool ok = cin.size() == 1 && cin[0].first == 0 && n.inputs.size() == 5;
        for (size_t j = 1; ok && j < 5; ++j) {
          Shape d = init_dims(n.inputs[j]);
          ok = ch.own_init(n.inputs[j]) && d.size() == 1 && d[0] == ch.group(gid).channels;
        }
        if (!ok) {
          ch.invalidate(gid, node_label(n) + " parameters are not per-channel initializers of its own");
          continue;
        }
        for (size_t j = 1; j < 5; ++j) ch.group(gid).slices.push_back({n.inputs[j], 0, 1});
        out0(chan, gid);
        continue;
      } else if (kBinary.count(n.op_type)) {
        bool ok = true;
        for (size_t k = 1; k < cin.size(); ++k)
          ch.unite(cin[0].second, cin[k].second, "residual " + node_label(n) + " joins tensors of different widths");
        const int root = ch.find(gid);
        std::vector<Slice> extra;
        for (size_t j = 0; j < n.inputs.size() && ok; ++j) {
          if (chan.count(n.inputs[j]) || n.inputs[j].empty()) continue;
          if (!g.initializer(n.inputs[j])) {
            ok = false;
            break;
          }
          Shape d = init_dims(n.inputs[j]);
          // Right-aligned broadcasting: the channel axis (1 of the data) lands at this index.
          const int64_t ax = static_cast<int64_t>(d.size()) - (ch.group(root).data_rank - 1);
          if (ax < 0 || d[ax] == 1) continue;
          if (d[ax] == ch.group(root).channels && ch.own_init(n.inputs[j])) extra.push_back({n.inputs[j], ax, 1});
          else ok = false;
        }
        if (!ok) {
          ch.invalidate(root, node_label(n) + " combines the channels with a tensor the rewriter cannot slice");
          continue;
        }
        for (auto& s : extra) ch.group(root).slices.push_back(s);
        out0(chan, root);
        continue;
      } else if ((n.op_type == "Flatten" && n.get_int("axis", 1) == 1) || n.op_type == "Reshape") {
        bool ok = cin[0].first == 0;
        if (ok && n.op_type == "Reshape") {
          const auto* sp = g.initializer(n.inputs.size() > 1 ? n.inputs[1] : "");
          ok = false;
          if (sp) {
            auto t = source.initializer(*sp);
            if (t.ok()) {
              auto v = t->to_int64_vector();
              ok = v.size() == 2 && v[1] == -1 && v[0] != -1;
            }
          }
        }
        if (!ok) {
          ch.invalidate(gid, "consumed by " + node_label(n) + ", which may mix channels");
          continue;
        }
        out0(flat, gid);
        continue;
      } else {
        ch.invalidate(gid, why);
        continue;
      }
    } else if (!cin.empty() || !fin.empty()) {
      if (n.domain.empty() && cin.empty() && fin.size() == 1 && fin[0].first == 0 &&
          (kUnary.count(n.op_type) != 0)) {
        out0(flat, fin[0].second);
        continue;
      }
      if (n.domain.empty() && cin.empty() && fin.size() == 1 && fin[0].first == 0 &&
          (n.op_type == "Gemm" || n.op_type == "MatMul")) {
        const int gid = fin[0].second;
        Shape d = init_dims(n.inputs.size() > 1 ? n.inputs[1] : "");
        const bool tb = n.op_type == "Gemm" && n.get_int("transB", 0) != 0;
        const bool ta = n.op_type == "Gemm" && n.get_int("transA", 0) != 0;
        const int64_t axis = tb ? 1 : 0;
        const int64_t C = ch.group(gid).channels;
        if (ta || d.size() != 2 || !ch.own_init(n.inputs[1]) || d[axis] % C != 0) {
          ch.invalidate(gid, "consumer " + node_label(n) + " has no 2-D weight of its own whose K is a multiple of " +
                                 std::to_string(C));
          continue;
        }
        ch.group(gid).slices.push_back({n.inputs[1], axis, d[axis] / C});
        continue;
      }
      for (auto& p : cin) ch.invalidate(p.second, why);
      for (auto& p : fin) ch.invalidate(p.second, why);
      continue;
    }
    // A Conv source: output channels are filters of a weight (and bias) it alone uses.
    if (n.domain.empty() && n.op_type == "Conv" && layer_of.count(i) && n.get_int("group", 1) == 1 &&
        ch.own_init(n.inputs[1]) && (n.inputs.size() < 3 || n.inputs[2].empty() || ch.own_init(n.inputs[2]))) {
      const PrunableLayer& L = *layer_of[i];
      const int gid = ch.make(L.weight_shape[0], static_cast<int64_t>(L.weight_shape.size()));
      Group& G = ch.group(gid);
      G.sources.push_back(i);
      G.slices.push_back({n.inputs[1], 0, 1});
      if (n.inputs.size() >= 3 && !n.inputs[2].empty()) G.slices.push_back({n.inputs[2], 0, 1});
      if (L.skipped) G.invalid = "source " + node_label(n) + ": " + L.skip_reason;
      out0(chan, gid);
    }
  }
  for (const auto& o : g.outputs()) {
    if (chan.count(o.name)) ch.invalidate(chan[o.name], "reaches graph output '" + o.name + "'");
    if (flat.count(o.name)) ch.invalidate(flat[o.name], "reaches graph output '" + o.name + "'");
  }

  // Prune each valid group: channels ranked by the summed L1 norms of their filters.
  std::map<std::string, Tensor> current;
  std::map<std::string, Shape> before;
  for (const auto& L : layers) before[L.weight_name] = L.weight_shape;
  std::set<std::string> changed_tensors;
  for (size_t gi = 0; gi < ch.count(); ++gi) {
    if (!ch.is_root(static_cast<int>(gi))) continue;
    Group& G = ch.group(static_cast<int>(gi));
    ChannelGroupReport rep;
    for (size_t s : G.sources) rep.sources.push_back(g.nodes()[s].name);
    rep.channels_before = rep.channels_after = G.channels;
    if (!G.invalid.empty()) {
      rep.reason = G.invalid;
      result->channel_groups.push_back(rep);
      continue;
    }
    double target = 0;
    for (size_t s : G.sources) target = std::max(target, layer_of[s]->target_sparsity);
    int64_t remove = std::min<int64_t>(G.channels - 1, static_cast<int64_t>(std::floor(G.channels * target)));
    if (opts.channel_multiple > 1) {
      const int64_t m = opts.channel_multiple;
      const int64_t kept = std::min<int64_t>(G.channels, (G.channels - remove + m - 1) / m * m);
      remove = G.channels - kept;
    }
    if (remove <= 0) {
      rep.reason = "nothing to remove at this sparsity";
      result->channel_groups.push_back(rep);
      continue;
    }
    std::vector<double> score(static_cast<size_t>(G.channels), 0.0);
    for (size_t s : G.sources) {
      FRUGAL_ASSIGN_OR_RETURN(Tensor w, source.initializer(*g.initializer(g.nodes()[s].inputs[1])));
      Tensor wf = w.to_float();
      const int64_t per = wf.numel() / G.channels;
      for (int64_t c = 0; c < G.channels; ++c)
        for (int64_t e = 0; e < per; ++e) score[c] += std::fabs(wf.data<float>()[c * per + e]);
    }
    std::vector<int64_t> order(static_cast<size_t>(G.channels));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return score[a] > score[b]; });
    std::vector<int64_t> keep(order.begin(), order.end() - remove);
    std::sort(keep.begin(), keep.end());
    for (const auto& sl : G.slices) {
      if (!current.count(sl.init)) {
        FRUGAL_ASSIGN_OR_RETURN(current[sl.init], source.initializer(*g.initializer(sl.init)));
      }
      auto t = slice_channels(current[sl.init], sl.axis, sl.block, G.channels, keep);
      if (!t.ok()) return t.status().with_context("initializer '" + sl.init + "'");
      current[sl.init] = std::move(t).value();
    }
    for (const auto& t : G.tensors) changed_tensors.insert(t);
    rep.channels_after = static_cast<int64_t>(keep.size());
    rep.pruned = true;
    result->channel_groups.push_back(rep);
  }

  auto* gp = proto.mutable_graph();
  for (auto& t : *gp->mutable_initializer()) {
    auto it = current.find(t.name());
    if (it == current.end()) continue;
    onnx::TensorProto np;
    tensor_to_proto(it->second, &np);
    np.set_name(t.name());
    t = std::move(np);
  }
  // Declared shapes of the rewritten tensors are stale; drop them (shape inference recomputes them).
  for (int i = gp->value_info_size() - 1; i >= 0; --i)
    if (changed_tensors.count(gp->value_info(i).name())) gp->mutable_value_info()->DeleteSubrange(i, 1);
  for (auto& in : *gp->mutable_input())
    if (current.count(in.name())) {
      auto* shp = in.mutable_type()->mutable_tensor_type()->mutable_shape();
      shp->clear_dim();
      for (int64_t d : current[in.name()].shape()) shp->add_dim()->set_dim_value(d);
    }

  for (const auto& L : layers) {
    LayerPruneStats st;
    st.node_name = L.node_name;
    st.op_type = L.op_type;
    st.weight_name = L.weight_name;
    st.method = "channels";
    st.shape_before = L.weight_shape;
    st.shape_after = current.count(L.weight_name) ? current[L.weight_name].shape() : L.weight_shape;
    st.params_before = shape_numel(st.shape_before);
    st.params_after = shape_numel(st.shape_after);
    st.nonzero_after = st.params_after;
    st.sparsity = 1.0 - double(st.params_after) / std::max<int64_t>(1, st.params_before);
    st.skipped = st.shape_after == st.shape_before;
    if (L.skipped) st.note = L.skip_reason;
    result->layers.push_back(st);
  }
  return OkStatus();
}

}  // namespace frugal
