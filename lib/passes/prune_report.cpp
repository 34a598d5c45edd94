// The prune pass's report section (schema: docs/formats/prune-report.md) and its text table.
#include <sstream>

#include "frugal/prune.h"

namespace frugal {

namespace {

Json num_or_null(double v) { return v < 0 ? Json(nullptr) : Json(v); }

const char* pattern_name(PrunePattern p) {
  switch (p) {
    case PrunePattern::kUnstructured: return "unstructured";
    case PrunePattern::kNM: return "n:m";
    case PrunePattern::kChannels: return "channels";
  }
  return "?";
}

}  // namespace

Json prune_report_json(const PruneResult& r, const PruneOptions& o) {
  Json j;
  j["method"] = r.method;
  Json opts = {{"pattern", pattern_name(o.pattern)},
               {"sparsity", o.sparsity},
               {"scope", o.scope == PruneScope::kGlobal ? "global" : "layer"},
               {"normalize_scores", o.normalize_scores},
               {"include", o.include},
               {"exclude", o.exclude},
               {"skip_first_conv", o.skip_first_conv},
               {"skip_final_classifier", o.skip_final_classifier},
               {"reconstruct", o.reconstruct},
               {"sparse_storage", o.sparse_storage}};
  if (o.pattern == PrunePattern::kNM) opts["n"] = o.nm_n, opts["m"] = o.nm_m;
  if (o.reconstruct) opts["damp"] = o.damp, opts["block_size"] = o.block_size;
  Json ls = Json::array();
  for (const auto& l : o.layer_sparsity) ls.push_back({{"regex", l.regex}, {"sparsity", l.sparsity}});
  opts["layer_sparsity"] = ls;
  j["options"] = opts;

  Json layers = Json::array();
  int64_t pb = 0, pa = 0, nz = 0;
  double mb = 0, ma = 0;
  bool macs_known = true;
  for (const auto& s : r.layers) {
    Json l;
    l["name"] = s.node_name;
    l["op_type"] = s.op_type;
    l["weight"] = s.weight_name;
    l["pruned"] = !s.skipped;
    l["method"] = s.method;
    l["shape_before"] = s.shape_before;
    l["shape_after"] = s.shape_after;
    l["params_before"] = s.params_before;
    l["params_after"] = s.params_after;
    l["nonzero_after"] = s.nonzero_after;
    l["sparsity"] = s.sparsity;
    l["macs_before"] = num_or_null(s.macs_before);
    l["macs_after"] = num_or_null(s.macs_after);
    l["output_error"] = num_or_null(s.output_error);
    l["output_error_reconstructed"] = num_or_null(s.output_error_reconstructed);
    if (!s.note.empty()) l["note"] = s.note;
    layers.push_back(l);
    pb += s.params_before;
    pa += s.params_after;
    nz += s.nonzero_after;
    if (s.macs_before < 0 || s.macs_after < 0) macs_known = false;
    mb += s.macs_before;
    ma += s.macs_after;
  }
  j["layers"] = layers;
  j["totals"] = {{"params_before", pb},
                 {"params_after", pa},
                 {"nonzero_after", nz},
                 {"sparsity", pb ? 1.0 - double(nz) / double(pb) : 0.0},
                 {"macs_before", macs_known ? Json(mb) : Json(nullptr)},
                 {"macs_after", macs_known ? Json(ma) : Json(nullptr)},
                 {"macs_note", o.pattern == PrunePattern::kChannels
                                   ? "per sample, dense MACs of the prunable layers"
                                   : "per sample, prunable layers; after = MACs with a non-zero weight (realised only "
                                     "by sparse kernels)"}};
  if (o.pattern == PrunePattern::kChannels) {
    Json gs = Json::array();
    for (const auto& g : r.channel_groups) {
      Json e = {{"sources", g.sources}, {"channels_before", g.channels_before},
                {"channels_after", g.channels_after}, {"pruned", g.pruned}};
      if (!g.reason.empty()) e["reason"] = g.reason;
      gs.push_back(e);
    }
    j["channel_groups"] = gs;
  }
  j["sparse_initializers"] = r.sparse_initializers;
  j["warnings"] = r.warnings;
  return j;
}

std::string prune_report_table(const PruneResult& r) {
  TextTable t({"layer", "op", "shape", "sparsity", "params", "MACs", "out err", "out err rec", "note"});
  auto err = [](double e) { return e < 0 ? std::string("-") : fmt_fixed(e, 5); };
  for (const auto& s : r.layers) {
    std::string shape = shape_str(s.shape_before);
    if (s.shape_after != s.shape_before) shape += " -> " + shape_str(s.shape_after);
    std::string macs = s.macs_before < 0 ? "-" : fmt_count(s.macs_before) + " -> " + fmt_count(s.macs_after);
    t.add_row({s.node_name, s.op_type, shape, s.skipped ? "skipped" : fmt_fixed(s.sparsity * 100, 1) + "%",
               fmt_count(double(s.params_before)) + " -> " + fmt_count(double(s.nonzero_after)),
               macs, err(s.output_error), err(s.output_error_reconstructed), s.note});
  }
  std::ostringstream os;
  os << "method: " << r.method << "\n" << t.str();
  for (const auto& g : r.channel_groups) {
    os << "channel group [";
    for (size_t i = 0; i < g.sources.size(); ++i) os << (i ? ", " : "") << g.sources[i];
    os << "]: " << g.channels_before << " -> " << g.channels_after;
    if (!g.reason.empty()) os << " (" << g.reason << ")";
    os << "\n";
  }
  for (const auto& w : r.warnings) os << "warning: " << w << "\n";
  return os.str();
}

}  // namespace frugal
