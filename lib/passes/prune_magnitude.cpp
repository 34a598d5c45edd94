// Building blocks of magnitude pruning: which layers are prunable, how their weights are viewed as
// (output feature x reduction) matrices, and the masks (lowest-k, N:M, global thresholds).
#include <algorithm>
#include <numeric>
#include <regex>

#include "frugal/prune.h"

namespace frugal {

namespace {

bool filter_matches(const std::string& f, const NodeDef& n) {
  if (f == n.op_type) return true;
  try {
    return std::regex_search(n.name, std::regex(f));
  } catch (const std::regex_error&) {
    return false;  // validated by the caller (prune_model) with a clear message
  }
}

}  // namespace

std::vector<int64_t> reduction_view_index(const std::string& op_type, const Shape& ws, int64_t group, bool trans_b) {
  std::vector<int64_t> idx;
  if (op_type == "Conv") {
    const int64_t O = ws[0], Ig = ws[1];
    int64_t K = 1;
    for (size_t d = 2; d < ws.size(); ++d) K *= ws[d];
    const int64_t cols = Ig * K;
    idx.resize(static_cast<size_t>(O * cols));
    for (int64_t o = 0; o < O; ++o)
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t kpos = c / Ig, i = c % Ig;
        idx[o * cols + c] = (o * Ig + i) * K + kpos;
      }
  } else if (op_type == "ConvTranspose") {
    const int64_t Cin = ws[0], Og = ws[1], Cg = Cin / group;
    int64_t K = 1;
    for (size_t d = 2; d < ws.size(); ++d) K *= ws[d];
    const int64_t rows = Og * group, cols = Cg * K;
    idx.resize(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t gi = r / Og, o = r % Og, kpos = c / Cg, i = c % Cg;
        idx[r * cols + c] = ((gi * Cg + i) * Og + o) * K + kpos;
      }
  } else {  // Gemm / MatMul
    const int64_t N = trans_b ? ws[0] : ws[1], K = trans_b ? ws[1] : ws[0];
    idx.resize(static_cast<size_t>(N * K));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) idx[n * K + k] = trans_b ? n * K + k : k * N + n;
  }
  return idx;
}

StatusOr<std::vector<PrunableLayer>> find_prunable_layers(const Model& model, const Graph& graph,
                                                          const PruneOptions& opts) {
  (void)model;
  std::vector<PrunableLayer> out;
  std::map<std::string, int> weight_uses;
  for (const auto& n : graph.nodes())
    for (const auto& in : n.inputs)
      if (!in.empty() && graph.initializer(in)) weight_uses[in]++;
  for (size_t i : graph.topo_order()) {
    const NodeDef& n = graph.nodes()[i];
    if (!n.domain.empty()) continue;
    if (n.op_type != "Conv" && n.op_type != "ConvTranspose" && n.op_type != "Gemm" && n.op_type != "MatMul") continue;
    if (n.inputs.size() < 2) continue;
    const onnx::TensorProto* w = graph.initializer(n.inputs[1]);
    if (!w) continue;  // weight computed at run time (or a dynamic MatMul): nothing to prune
    // float32 only: half-precision weights would need a write-back path (prune before converting).
    if (w->data_type() != onnx::TensorProto::FLOAT) continue;
    PrunableLayer L;
    L.node_index = i;
    L.node_name = n.name;
    L.op_type = n.op_type;
    L.weight_name = n.inputs[1];
    L.weight_shape.assign(w->dims().begin(), w->dims().end());
    const Shape& ws = L.weight_shape;
    if (n.op_type == "MatMul" || n.op_type == "Gemm") {
      if (ws.size() != 2) continue;  // batched weights: not a layer in the usual sense
      const bool tb = n.op_type == "Gemm" && n.get_int("transB", 0) != 0;
      L.rows = tb ? ws[0] : ws[1];
      L.cols = tb ? ws[1] : ws[0];
      L.index = reduction_view_index(n.op_type, ws, 1, tb);
    } else {
      if (ws.size() < 3) continue;
      L.group = n.get_int("group", 1);
      if (L.group < 1) return n.error(StatusCode::kInvalidModel, "group must be >= 1");
      int64_t K = 1;
      for (size_t d = 2; d < ws.size(); ++d) K *= ws[d];
      if (n.op_type == "Conv") {
        L.rows = ws[0];
        L.cols = ws[1] * K;
      } else {
        if (ws[0] % L.group) return n.error(StatusCode::kInvalidModel, "weight channels not divisible by group");
        L.rows = ws[1] * L.group;
        L.cols = ws[0] / L.group * K;
      }
      L.index = reduction_view_index(n.op_type, ws, L.group, false);
    }
    L.target_sparsity = opts.sparsity;
    for (const auto& o : opts.layer_sparsity) {
      try {
        if (std::regex_search(n.name, std::regex(o.regex))) L.target_sparsity = o.sparsity;
      } catch (const std::regex_error& e) {
        return InvalidArgument("--layer-sparsity: bad regex '" + o.regex + "': " + e.what());
      }
    }
    if (weight_uses[L.weight_name] > 1) {
      L.skipped = true;
      L.skip_reason = "weight shared with another node";
    }
    bool inc = opts.include.empty();
    for (const auto& f : opts.include) inc = inc || filter_matches(f, n);
    if (!inc && !L.skipped) {
      L.skipped = true;
      L.skip_reason = "not matched by --include";
    }
    for (const auto& f : opts.exclude)
      if (!L.skipped && filter_matches(f, n)) {
        L.skipped = true;
        L.skip_reason = "excluded by --exclude '" + f + "'";
      }
    out.push_back(std::move(L));
  }
  // Defaults users expect: the first conv sees raw pixels (few weights, large effect) and the final
  // classifier maps features to logits; both stay dense unless asked.
  if (opts.skip_first_conv)
    for (auto& L : out)
      if (L.op_type == "Conv") {
        if (!L.skipped) {
          L.skipped = true;
          L.skip_reason = "first conv (skipped by default; --prune-first-conv to include)";
        }
        break;
      }
  if (opts.skip_final_classifier)
    for (auto it = out.rbegin(); it != out.rend(); ++it)
      if (it->op_type == "Gemm" || it->op_type == "MatMul") {
        if (!it->skipped) {
          it->skipped = true;
          it->skip_reason = "final classifier (skipped by default; --prune-classifier to include)";
        }
        break;
      }
  return out;
}

std::vector<uint8_t> lowest_k_mask(const std::vector<float>& scores, int64_t count) {
  const int64_t n = static_cast<int64_t>(scores.size());
  std::vector<uint8_t> mask(scores.size(), 0);
  count = std::clamp<int64_t>(count, 0, n);
  if (count == 0) return mask;
  std::vector<int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  auto less = [&](int64_t a, int64_t b) { return scores[a] < scores[b] || (scores[a] == scores[b] && a < b); };
  std::nth_element(order.begin(), order.begin() + (count - 1), order.end(), less);
  for (int64_t t = 0; t < count; ++t) mask[order[t]] = 1;
  return mask;
}

std::vector<uint8_t> nm_mask(const std::vector<float>& scores, int64_t rows, int64_t cols, int n, int m) {
  std::vector<uint8_t> mask(scores.size(), 0);
  std::vector<int64_t> order;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c0 = 0; c0 < cols; c0 += m) {
      const int64_t g = std::min<int64_t>(m, cols - c0);
      const int64_t drop = std::max<int64_t>(0, g - n);
      if (!drop) continue;
      order.resize(static_cast<size_t>(g));
      std::iota(order.begin(), order.end(), c0);
      const float* s = scores.data() + r * cols;
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return s[a] < s[b]; });
      for (int64_t t = 0; t < drop; ++t) mask[r * cols + order[t]] = 1;
    }
  return mask;
}

std::vector<int64_t> global_prune_counts(const std::vector<std::vector<float>>& layer_scores, int64_t total,
                                         bool normalize) {
  // Pool (score, layer) pairs; the lowest `total` go. Normalising by a layer's mean score puts layers
  // with different weight scales on one footing (otherwise one small-init layer takes all the pruning).
  std::vector<std::pair<float, uint32_t>> pool;
  for (size_t l = 0; l < layer_scores.size(); ++l) {
    double mean = 0;
    for (float s : layer_scores[l]) mean += s;
    mean = layer_scores[l].empty() ? 1 : mean / layer_scores[l].size();
    const double scale = normalize && mean > 0 ? 1.0 / mean : 1.0;
    for (float s : layer_scores[l]) pool.push_back({static_cast<float>(s * scale), static_cast<uint32_t>(l)});
  }
  std::vector<int64_t> counts(layer_scores.size(), 0);
  total = std::clamp<int64_t>(total, 0, static_cast<int64_t>(pool.size()));
  if (total == 0) return counts;
  std::nth_element(pool.begin(), pool.begin() + (total - 1), pool.end());
  for (int64_t t = 0; t < total; ++t) counts[pool[t].second]++;
  return counts;
}

}  // namespace frugal
