// prune_model: unstructured / N:M pruning (magnitude or Wanda scores, optional SparseGPT update), or
// structured channels (prune_channels.cpp); MACs from shape inference; sparse storage on request.
#include <algorithm>
#include <cmath>
#include <map>
#include <regex>

#include <onnx/shape_inference/implementation.h>

#include "frugal/executor.h"
#include "frugal/prune.h"
#include "frugal/reconstruct.h"
#include "passes/proto_copy.h"

namespace frugal {

namespace {

using ShapeMap = std::map<std::string, std::vector<int64_t>>;

// Shapes from ONNX shape inference (on a copy; never required: a model the bundled ONNX cannot infer
// just gets no MAC figures). Unknown and symbolic dims are -1. The copy holds the small constants
// shape inference reads (shapes, axes) and only the names, types and dims of the weights.
ShapeMap infer_shapes(const onnx::ModelProto& proto) {
  ShapeMap m;
  onnx::ModelProto copy = passes::structure_copy(proto, 4096);
  try {
    onnx::shape_inference::InferShapes(copy);
  } catch (...) {
  }
  auto take = [&](const onnx::ValueInfoProto& v) {
    if (!v.type().has_tensor_type() || !v.type().tensor_type().has_shape()) return;
    std::vector<int64_t> d;
    for (const auto& dim : v.type().tensor_type().shape().dim()) d.push_back(dim.has_dim_value() ? dim.dim_value() : -1);
    m[v.name()] = d;
  };
  for (const auto& v : copy.graph().input()) take(v);
  for (const auto& v : copy.graph().output()) take(v);
  for (const auto& v : copy.graph().value_info()) take(v);
  for (const auto& t : copy.graph().initializer()) m[t.name()] = {t.dims().begin(), t.dims().end()};
  return m;
}

int64_t prod_from(const std::vector<int64_t>& d, size_t from) {
  int64_t p = 1;
  for (size_t i = from; i < d.size(); ++i) {
    if (d[i] < 0) return -1;
    p *= d[i];
  }
  return p;
}

int64_t attr_int(const onnx::NodeProto& n, const std::string& name, int64_t dflt) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return a.i();
  return dflt;
}

onnx::TensorProto* find_init(onnx::ModelProto& p, const std::string& name) {
  for (auto& t : *p.mutable_graph()->mutable_initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

void replace_init(onnx::ModelProto& p, const std::string& name, const Tensor& t) {
  onnx::TensorProto* dst = find_init(p, name);
  if (!dst) return;
  std::string doc = dst->doc_string();
  onnx::TensorProto np;
  tensor_to_proto(t, &np);
  np.set_name(name);
  if (!doc.empty()) np.set_doc_string(doc);
  *dst = std::move(np);
}

struct Work {
  PrunableLayer* L = nullptr;
  Tensor weight;                 // float32 original
  std::vector<float> view;       // reduction view, dense
  std::vector<float> scores;
  std::vector<uint8_t> mask;     // 1 = pruned
  std::vector<float> result;     // reduction view, written
  int64_t count = 0;
  bool global = false;
  bool has_stats = false, full_stats = false;
};

Status check_options(const PruneOptions& o) {
  if (!(o.sparsity >= 0 && o.sparsity < 1)) return InvalidArgument("--sparsity must be in [0, 1)");
  for (const auto& l : o.layer_sparsity)
    if (!(l.sparsity >= 0 && l.sparsity < 1))
      return InvalidArgument("--layer-sparsity " + l.regex + ": sparsity must be in [0, 1)");
  if (o.pattern == PrunePattern::kNM && (o.nm_m < 1 || o.nm_n < 0 || o.nm_n >= o.nm_m))
    return InvalidArgument("--pattern N:M needs 0 <= N < M");
  for (const auto* list : {&o.include, &o.exclude})
    for (const auto& f : *list) try {
        std::regex r(f);
      } catch (const std::regex_error& e) {
        return InvalidArgument("bad node filter regex '" + f + "': " + e.what());
      }
  if (o.damp < 0) return InvalidArgument("--damp must be >= 0");
  return OkStatus();
}

// Registers each layer the observer can follow; returns per-node whether statistics are full.
void plan_statistics(const Graph& g, std::vector<Work>& work, const PruneOptions& opts, HessianObserver* obs) {
  for (auto& w : work) {
    const PrunableLayer& L = *w.L;
    if (L.skipped) continue;
    const NodeDef& n = g.nodes()[L.node_index];
    HessianLayer h;
    h.node_index = L.node_index;
    h.op_type = L.op_type;
    h.cols = L.cols;
    h.full = L.cols <= opts.max_hessian_cols;
    if (L.op_type == "Gemm") {
      h.trans_a = n.get_int("transA", 0) != 0;
    } else if (L.op_type == "Conv") {
      if (L.weight_shape.size() != 4 || L.group != 1) continue;
      h.kh = L.weight_shape[2];
      h.kw = L.weight_shape[3];
      auto s = n.get_ints("strides", {1, 1}), d = n.get_ints("dilations", {1, 1}), p = n.get_ints("pads", {0, 0, 0, 0});
      if (s.size() != 2 || d.size() != 2 || p.size() != 4) continue;
      h.sh = s[0], h.sw = s[1], h.dh = d[0], h.dw = d[1];
      h.pt = p[0], h.pl = p[1], h.pb = p[2], h.pr = p[3];
      h.auto_pad = n.get_string("auto_pad", "NOTSET");
    } else if (L.op_type != "MatMul") {
      continue;
    }
    obs->add_layer(h);
    w.has_stats = true;
    w.full_stats = h.full;
  }
}

}  // namespace

std::vector<double> node_macs(const onnx::ModelProto& proto) {
  const ShapeMap shapes = infer_shapes(proto);
  const auto& g = proto.graph();
  std::vector<double> macs(static_cast<size_t>(g.node_size()), -1);
  auto shape_of = [&](const std::string& n) -> const std::vector<int64_t>* {
    auto it = shapes.find(n);
    return it == shapes.end() ? nullptr : &it->second;
  };
  for (int i = 0; i < g.node_size(); ++i) {
    const auto& n = g.node(i);
    if (n.input_size() < 2 || n.output_size() < 1) continue;
    const auto *x = shape_of(n.input(0)), *w = shape_of(n.input(1)), *y = shape_of(n.output(0));
    if (!w || !y) continue;
    double m = -1;
    if (n.op_type() == "Conv" && y->size() >= 3) {
      const int64_t sp = prod_from(*y, 2), kr = prod_from(*w, 1);
      if (sp > 0 && kr > 0 && (*y)[1] > 0) m = double((*y)[1]) * sp * kr;
    } else if (n.op_type() == "ConvTranspose" && x && x->size() >= 3) {
      const int64_t sp = prod_from(*x, 2), kr = prod_from(*w, 1);
      if (sp > 0 && kr > 0 && (*x)[1] > 0) m = double((*x)[1]) * sp * kr;
    } else if (n.op_type() == "Gemm" && w->size() == 2) {
      m = double((*w)[0]) * (*w)[1];
    } else if (n.op_type() == "MatMul" && w->size() == 2) {
      const int64_t rows = y->size() >= 3 ? prod_from(std::vector<int64_t>(y->begin(), y->end() - 1), 1) : 1;
      if (rows > 0) m = double(rows) * (*w)[0] * (*w)[1];
    }
    macs[i] = m;
  }
  return macs;
}

StatusOr<PruneResult> prune_model(const Model& model, const PruneOptions& opts, Dataset* data) {
  FRUGAL_RETURN_IF_ERROR(check_options(opts));
  PruneResult res;
  res.model = Model::from_proto(model.proto(), model.base_dir());
  FRUGAL_ASSIGN_OR_RETURN(Graph graph, Graph::build(*res.model));
  FRUGAL_ASSIGN_OR_RETURN(std::vector<PrunableLayer> layers, find_prunable_layers(*res.model, graph, opts));
  const std::vector<double> macs_before = node_macs(model.proto());

  if (opts.pattern == PrunePattern::kChannels) {
    res.method = "channels (L1 norm of filters)";
    FRUGAL_RETURN_IF_ERROR(prune_channels(res.model->mutable_proto(), *res.model, opts, layers, &res));
    const std::vector<double> macs_after = node_macs(res.model->proto());
    for (auto& s : res.layers)
      for (int i = 0; i < res.model->proto().graph().node_size(); ++i)
        if (graph.nodes()[i].name == s.node_name) {
          s.macs_before = macs_before[i];
          s.macs_after = macs_after[i];
        }
  } else {
    const bool nm = opts.pattern == PrunePattern::kNM;
    std::vector<Work> work(layers.size());
    for (size_t i = 0; i < layers.size(); ++i) {
      Work& w = work[i];
      w.L = &layers[i];
      FRUGAL_ASSIGN_OR_RETURN(Tensor t, res.model->initializer(*graph.initializer(layers[i].weight_name)));
      w.weight = t.to_float();
      const float* src = w.weight.data<float>();
      w.view.resize(layers[i].index.size());
      for (size_t e = 0; e < w.view.size(); ++e) w.view[e] = src[layers[i].index[e]];
      w.scores.resize(w.view.size());
      for (size_t e = 0; e < w.view.size(); ++e) w.scores[e] = std::fabs(w.view[e]);
    }

    // Data-aware statistics: one streaming pass of the dense model over the calibration data.
    HessianObserver obs;
    int64_t samples = 0;
    if (data) {
      plan_statistics(graph, work, opts, &obs);
      ExecOptions eo;
      eo.dims = opts.dims;
      FRUGAL_ASSIGN_OR_RETURN(auto ex, Executor::create(res.model, eo));
      const size_t n = opts.max_samples ? std::min(opts.max_samples, data->size()) : data->size();
      for (size_t s = 0; s < n; ++s) {
        FRUGAL_ASSIGN_OR_RETURN(NamedTensors in, data->get(s));
        auto out = ex->run(in, &obs);
        if (!out.ok()) return out.status().with_context("calibration sample " + std::to_string(s));
        ++samples;
      }
      if (samples == 0) return InvalidArgument("--data: the dataset has no samples");
      for (auto& w : work) {
        if (!w.has_stats) continue;
        // Wanda: |W_ij| x ||X_j||_2, the weight's contribution to the output on this data.
        const std::vector<double> sq = obs.column_sq_norms(w.L->node_index);
        for (int64_t r = 0; r < w.L->rows; ++r)
          for (int64_t c = 0; c < w.L->cols; ++c)
            w.scores[r * w.L->cols + c] = static_cast<float>(std::fabs(w.view[r * w.L->cols + c]) * std::sqrt(sq[c]));
      }
    }

    // How many weights each layer loses.
    std::vector<std::vector<float>> pool_scores;
    std::vector<size_t> pool_idx;
    int64_t pool_total = 0;
    for (size_t i = 0; i < work.size(); ++i) {
      Work& w = work[i];
      if (w.L->skipped) continue;
      const int64_t numel = w.L->rows * w.L->cols;
      w.count = std::llround(static_cast<double>(numel) * w.L->target_sparsity);
      bool overridden = w.L->target_sparsity != opts.sparsity;
      if (!nm && opts.scope == PruneScope::kGlobal && !overridden) {
        w.global = true;
        pool_scores.push_back(w.scores);
        pool_idx.push_back(i);
        pool_total += numel;
      }
    }
    if (!pool_idx.empty()) {
      auto counts = global_prune_counts(pool_scores, std::llround(static_cast<double>(pool_total) * opts.sparsity),
                                        opts.normalize_scores);
      for (size_t k = 0; k < pool_idx.size(); ++k) work[pool_idx[k]].count = counts[k];
    }

    for (auto& w : work) {
      const PrunableLayer& L = *w.L;
      LayerPruneStats st;
      st.node_name = L.node_name;
      st.op_type = L.op_type;
      st.weight_name = L.weight_name;
      st.shape_before = st.shape_after = L.weight_shape;
      st.params_before = st.params_after = L.rows * L.cols;
      st.macs_before = macs_before[L.node_index];
      if (L.skipped) {
        st.skipped = true;
        st.note = L.skip_reason;
        st.method = "none";
        st.nonzero_after = 0;
        for (float v : w.view) st.nonzero_after += v != 0;
        st.sparsity = 1.0 - double(st.nonzero_after) / std::max<int64_t>(1, st.params_after);
        st.macs_after = st.macs_before;
        res.layers.push_back(st);
        continue;
      }
      w.mask = nm ? nm_mask(w.scores, L.rows, L.cols, opts.nm_n, opts.nm_m) : lowest_k_mask(w.scores, w.count);
      std::vector<float> masked = w.view;
      for (size_t e = 0; e < masked.size(); ++e)
        if (w.mask[e]) masked[e] = 0;
      st.method = std::string(nm ? "n:m " : "") + (w.has_stats ? "wanda" : "magnitude");
      if (data && !w.has_stats) st.note = "no activation statistics for this layer kind: magnitude scores";
      if (w.full_stats) {
        const auto& h = obs.hessian(L.node_index);
        st.output_error = relative_output_error(w.view, masked, L.rows, L.cols, h);
        if (opts.reconstruct) {
          SparseGptOptions so;
          so.damp = opts.damp;
          so.block_size = opts.block_size;
          if (nm) so.nm_n = opts.nm_n, so.nm_m = opts.nm_m;
          else so.prune_count = w.count;
          std::vector<float> rec = w.view;
          FRUGAL_RETURN_IF_ERROR(sparsegpt_prune(rec, L.rows, L.cols, h, so, nullptr).with_context("layer '" + L.node_name + "'"));
          st.output_error_reconstructed = relative_output_error(w.view, rec, L.rows, L.cols, h);
          masked = std::move(rec);
          st.method = std::string(nm ? "n:m " : "") + "sparsegpt";
        }
      } else if (opts.reconstruct) {
        st.note = data && w.has_stats ? "reduction too large for a full Hessian: no reconstruction"
                                      : "no reconstruction for this layer kind";
      }
      w.result = std::move(masked);
      if (nm && std::min(L.rows, L.cols) < 256)
        res.warnings.push_back("layer '" + L.node_name + "' has " + std::to_string(L.rows) + " outputs x " +
                               std::to_string(L.cols) + " reduction: under 256 channels, sparse kernels rarely help");
      if (nm && L.cols % opts.nm_m)
        res.warnings.push_back("layer '" + L.node_name + "': reduction " + std::to_string(L.cols) +
                               " is not a multiple of " + std::to_string(opts.nm_m) + "; the last group is shorter");

      Tensor t = w.weight.clone();
      float* dst = t.mut<float>();
      for (size_t e = 0; e < w.result.size(); ++e) dst[L.index[e]] = w.result[e];
      replace_init(res.model->mutable_proto(), L.weight_name, t);
      st.nonzero_after = 0;
      for (float v : w.result) st.nonzero_after += v != 0;
      st.sparsity = 1.0 - double(st.nonzero_after) / std::max<int64_t>(1, st.params_after);
      if (st.macs_before >= 0) st.macs_after = st.macs_before * double(st.nonzero_after) / st.params_after;
      res.layers.push_back(st);
    }
    const bool any_wanda = data && std::any_of(work.begin(), work.end(), [](const Work& w) { return w.has_stats; });
    res.method = std::string(nm ? std::to_string(opts.nm_n) + ":" + std::to_string(opts.nm_m) + " " : "unstructured ") +
                 (opts.reconstruct && any_wanda ? "sparsegpt" : any_wanda ? "wanda (|W| x ||X||2)" : "l1 magnitude") +
                 (!nm && opts.scope == PruneScope::kGlobal ? ", global threshold" : ", per layer");

    // The layout TensorRT's sparse kernels take: Gemm with B as [N, K] (transB=1), 2:4 along K.
    if (nm && opts.gemm_layout) {
      const ShapeMap shapes = infer_shapes(res.model->proto());
      auto* gp = res.model->mutable_proto().mutable_graph();
      for (auto& w : work) {
        const PrunableLayer& L = *w.L;
        if (L.skipped || (L.op_type != "Gemm" && L.op_type != "MatMul")) continue;
        onnx::NodeProto* np = gp->mutable_node(static_cast<int>(L.node_index));
        if (L.op_type == "Gemm" && attr_int(*np, "transB", 0) != 0) continue;
        if (L.op_type == "MatMul") {
          auto it = shapes.find(np->input(0));
          if (it == shapes.end() || it->second.size() != 2 || res.model->opset() < 11) {
            for (auto& s : res.layers)
              if (s.node_name == L.node_name)
                s.note = "kept as MatMul (input rank not known to be 2 or opset < 11): no transB=1 Gemm layout";
            continue;
          }
        }
        onnx::TensorProto* init = find_init(res.model->mutable_proto(), L.weight_name);
        FRUGAL_ASSIGN_OR_RETURN(Tensor t, res.model->initializer(*init));
        const int64_t K = t.dim(0), N = t.dim(1);
        Tensor tt = Tensor::uninitialized(DType::kFloat, {N, K});
        const float* s = t.data<float>();
        float* d = tt.mut<float>();
        for (int64_t k = 0; k < K; ++k)
          for (int64_t n = 0; n < N; ++n) d[n * K + k] = s[k * N + n];
        replace_init(res.model->mutable_proto(), L.weight_name, tt);
        if (L.op_type == "MatMul") np->set_op_type("Gemm");
        bool found = false;
        for (auto& a : *np->mutable_attribute())
          if (a.name() == "transB") a.set_i(1), found = true;
        if (!found) {
          auto* a = np->add_attribute();
          a->set_name("transB");
          a->set_type(onnx::AttributeProto::INT);
          a->set_i(1);
        }
        for (auto& st : res.layers)
          if (st.node_name == L.node_name) {
            st.shape_after = {N, K};
            st.note = (L.op_type == "MatMul" ? "MatMul rewritten as " : "") + std::string("Gemm transB=1 (B stored [N,K])");
          }
      }
    }
  }

  res.dense_model = res.model;
  if (opts.sparse_storage) {
    res.dense_model = Model::from_proto(res.model->proto(), res.model->base_dir());
    std::vector<std::string> cands;
    for (const auto& s : res.layers)
      if (!s.skipped) cands.push_back(s.weight_name);
    FRUGAL_RETURN_IF_ERROR(convert_to_sparse_storage(res.model->mutable_proto(), cands, &res.sparse_initializers));
  }
  return res;
}

}  // namespace frugal
