// Pruning: the `frugal prune` pass. One entry point (prune_model) and the building blocks it uses,
// public so tests can check them one at a time.
//
// Methods, from plain to data-aware (the report says which was used):
//   - unstructured L1 magnitude, per layer or with one global threshold (scores optionally normalised
//     per layer), with per-layer overrides and include/exclude filters;
//   - N:M semi-structured along the reduction axis (the layout sparse tensor cores use);
//   - structured output-channel removal with dependency groups (BatchNormalization, activations,
//     pools, residual Adds, consumer Conv/Gemm/MatMul input channels rewritten);
//   - with data: Wanda-style scores |W| x ||X_j||_2 and SparseGPT-style reconstruction (reconstruct.h).
//
// Weights are seen through a "reduction view" (rows = output features, cols = reduction axis; see
// reconstruct.h for the column order). The input model is never changed: prune_model returns a copy.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "frugal/dataset.h"
#include "frugal/model.h"
#include "frugal/report.h"
#include "frugal/status.h"

namespace frugal {

enum class PrunePattern { kUnstructured, kNM, kChannels };
enum class PruneScope { kLayer, kGlobal };

struct LayerSparsityOverride {
  std::string regex;  // matched (std::regex_search) against the node name
  double sparsity = 0;
};

struct PruneOptions {
  double sparsity = 0.5;  // fraction of weights (unstructured) or channels (channels) to remove
  PrunePattern pattern = PrunePattern::kUnstructured;
  int nm_n = 2, nm_m = 4;  // N:M: keep N of every M
  PruneScope scope = PruneScope::kLayer;
  bool normalize_scores = false;  // global scope: divide each layer's scores by its mean score
  std::vector<LayerSparsityOverride> layer_sparsity;
  // Node filters: a node is considered when it matches an include (any, or no includes given) and no
  // exclude. A filter matches when it equals the op type or std::regex_search-es the node name.
  std::vector<std::string> include, exclude;
  bool skip_first_conv = true;       // the first Conv (reads the raw input; tiny, sensitive)
  bool skip_final_classifier = true;  // the last Gemm/MatMul before a graph output
  bool gemm_layout = true;  // N:M: rewrite MatMul [K,N] / Gemm transB=0 as Gemm transB=1 where legal
  // Channels: keep a multiple of this many channels per group (rounding the kept count up). Runtimes'
  // blocked conv kernels (onnxruntime NCHWc, tensor cores) want multiples of 8; odd counts can make
  // a pruned model slower than the original even with fewer MACs.
  int64_t channel_multiple = 1;
  // Data-aware: with a dataset, scores are |W| x ||X_j||_2; reconstruct runs SparseGPT.
  bool reconstruct = false;
  double damp = 0.01;
  int64_t block_size = 128;
  size_t max_samples = 0;  // 0: all samples of the calibration data
  int64_t max_hessian_cols = 8192;  // larger layers get activation norms only (no reconstruction)
  bool sparse_storage = false;
  std::map<std::string, int64_t> dims;  // symbolic dim values for running the calibration data
};

// A prunable layer: a Conv/ConvTranspose/Gemm/MatMul whose weight is an initializer.
struct PrunableLayer {
  size_t node_index = 0;
  std::string node_name, op_type, weight_name;
  Shape weight_shape;
  int64_t rows = 0, cols = 0;  // reduction view
  int64_t group = 1;           // Conv/ConvTranspose groups
  // flat index into the weight tensor of view element (r, c), row-major over the view.
  std::vector<int64_t> index;
  bool skipped = false;
  std::string skip_reason;  // "first conv (default)", "final classifier (default)", "excluded by ..."
  double target_sparsity = 0;
};

// Finds the prunable layers of a model in topological order and applies filters and defaults.
StatusOr<std::vector<PrunableLayer>> find_prunable_layers(const Model& model, const Graph& graph,
                                                          const PruneOptions& opts);
// The reduction-view index of a weight (see PrunableLayer::index). `group` for Conv/ConvTranspose.
std::vector<int64_t> reduction_view_index(const std::string& op_type, const Shape& wshape, int64_t group,
                                          bool trans_b);

// Marks (1) the `count` lowest scores; ties broken by position (earlier first).
std::vector<uint8_t> lowest_k_mask(const std::vector<float>& scores, int64_t count);
// N:M: in each row of a rows x cols score matrix, within every M consecutive columns (the last group
// may be shorter), marks (1) all but the N highest scores.
std::vector<uint8_t> nm_mask(const std::vector<float>& scores, int64_t rows, int64_t cols, int n, int m);
// Global magnitude: the number of weights to prune in each layer when the lowest `total` scores
// across all layers go (scores normalised by each layer's mean when asked).
std::vector<int64_t> global_prune_counts(const std::vector<std::vector<float>>& layer_scores, int64_t total,
                                         bool normalize);

// Per-layer outcome, for the report.
struct LayerPruneStats {
  std::string node_name, op_type, weight_name, method;
  Shape shape_before, shape_after;
  int64_t params_before = 0, nonzero_after = 0, params_after = 0;
  double sparsity = 0;                   // zeros / params_after in the written weight
  double macs_before = -1, macs_after = -1;  // per sample, -1 when shapes are unknown
  double output_error = -1;               // relative, on the data, dense vs pruned (no reconstruction)
  double output_error_reconstructed = -1;  // the same after reconstruction
  std::string note;
  bool skipped = false;
};

struct ChannelGroupReport {
  std::vector<std::string> sources;  // producing Conv nodes
  int64_t channels_before = 0, channels_after = 0;
  bool pruned = false;
  std::string reason;  // why a group was left alone
};

struct PruneResult {
  std::shared_ptr<Model> model;        // what to write (sparse_initializer where asked)
  std::shared_ptr<Model> dense_model;  // the same values, every weight dense (for executors)
  std::vector<LayerPruneStats> layers;
  std::vector<ChannelGroupReport> channel_groups;
  std::vector<std::string> warnings;
  std::string method;  // "magnitude", "wanda", "sparsegpt", "n:m magnitude", "channels l1" ...
  std::vector<std::string> sparse_initializers;  // weights written as sparse_initializer
};

// Prunes a copy of `model`. `data` (may be null) enables the data-aware variants.
StatusOr<PruneResult> prune_model(const Model& model, const PruneOptions& opts, Dataset* data);

// Structured channel pruning on `proto` in place (used by prune_model).
Status prune_channels(onnx::ModelProto& proto, const Model& source, const PruneOptions& opts,
                      const std::vector<PrunableLayer>& layers, PruneResult* result);

// Rewrites float initializers as sparse_initializer (COO, int64 linear indices) where that is smaller;
// records the converted names. Exact: values and positions are kept bit for bit.
Status convert_to_sparse_storage(onnx::ModelProto& proto, const std::vector<std::string>& candidates,
                                 std::vector<std::string>* converted);

// Per-sample MACs of each node (by index) from ONNX shape inference; -1 where unknown.
std::vector<double> node_macs(const onnx::ModelProto& proto);

// The report as JSON (the pass's own section) and as a text table.
Json prune_report_json(const PruneResult& r, const PruneOptions& opts);
std::string prune_report_table(const PruneResult& r);

}  // namespace frugal
