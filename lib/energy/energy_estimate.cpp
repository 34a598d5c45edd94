// Counts -> time, energy and carbon on a device profile; the JSON and text reports of `frugal energy`.
#include <algorithm>
#include <cmath>

#include "frugal/energy.h"

namespace frugal {

namespace {

constexpr double kJoulesPerKwh = 3.6e6;

double peak_ops(const DeviceProfile& p, const std::string& dtype, bool sparse) {
  std::string key = dtype == "other" || dtype == "fp64" ? "fp32" : dtype;
  if (sparse) {
    auto it = p.peak_tops.find(key + "_sparse");
    if (it != p.peak_tops.end()) return it->second.value * 1e12;
  }
  auto it = p.peak_tops.find(key);
  if (it == p.peak_tops.end()) it = p.peak_tops.find("fp32");
  return it->second.value * 1e12;
}

double pj_mac(const DeviceProfile& p, const std::string& dtype) {
  auto it = p.pj_per_mac.find(dtype);
  if (it == p.pj_per_mac.end()) it = p.pj_per_mac.find("fp32");
  return it->second.value;
}

// Whether a node's 2:4 weight sparsity is exploited on this device (sparse tensor cores with a sparse
// peak for the node's dtype).
bool sparse_used(const NodeCost& c, const DeviceProfile& p) {
  return c.pattern_2_4 && p.sparse_tensor_cores && p.peak_tops.count(c.compute_dtype + "_sparse");
}

Json sourced_json(const Sourced& s) {
  Json j;
  j["value"] = s.value;
  j["source"] = s.source;
  return j;
}

struct FamilyRow {
  int64_t nodes = 0;
  double macs = 0, flops = 0, bytes = 0, time_s = 0, energy_j = 0;
  int64_t params = 0;
};

std::map<std::string, FamilyRow> by_family(const ModelCost& m, const EnergyEstimate& e) {
  std::map<std::string, FamilyRow> out;
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    const auto& c = m.nodes[i];
    if (c.folded) continue;
    auto& r = out[c.family];
    r.nodes++;
    r.macs += c.macs;
    r.flops += c.flops;
    r.bytes += c.bytes();
    r.params += c.params;
    r.time_s += e.node_time_s[i];
    r.energy_j += e.node_energy_j[i];
  }
  return out;
}

Json model_json(const ModelCost& m, const EnergyEstimate& e, const DeviceProfile& p, bool with_nodes) {
  Json j;
  j["path"] = m.model_path;
  j["file_bytes"] = m.file_bytes;
  Json shapes = Json::object();
  for (const auto& kv : m.input_shapes) shapes[kv.first] = kv.second;
  j["input_shapes"] = shapes;
  Json t;
  t["params"] = m.params;
  t["weight_bytes"] = m.weight_bytes;
  t["macs"] = m.macs;
  Json by = Json::object();
  for (const auto& kv : m.macs_by_dtype) by[kv.first] = kv.second;
  t["macs_by_dtype"] = by;
  t["flops_other"] = m.flops;
  t["activation_read_bytes"] = m.act_read_bytes;
  t["activation_write_bytes"] = m.act_write_bytes;
  t["total_bytes"] = m.weight_bytes + m.act_read_bytes + m.act_write_bytes;
  Json sp;
  sp["macs_2_4_sparse"] = m.macs_2_4;
  sp["exploited_on_device"] = p.sparse_tensor_cores && m.macs_2_4 > 0;
  sp["unstructured_zero_weight_macs_upper_bound"] = m.macs_zero_weights;
  sp["note"] = "2:4 sparsity halves MACs only on sparse tensor cores; unstructured zeros are an upper bound on "
               "skippable MACs, not a speedup on dense hardware";
  t["sparsity"] = sp;
  j["totals"] = t;

  Json est;
  est["label"] = "estimate";
  Json r;
  r["time_s"] = e.time_s;
  r["compute_time_s"] = e.compute_time_s;
  r["memory_time_s"] = e.memory_time_s;
  r["energy_j"] = e.roofline_energy_j;
  r["dynamic_energy_j"] = e.roofline_dynamic_j;
  r["energy_per_1m_inferences_kwh"] = e.roofline_energy_j * 1e6 / kJoulesPerKwh;
  est["roofline"] = r;
  Json po;
  po["energy_j"] = e.per_op_energy_j;
  po["compute_j"] = e.per_op_compute_j;
  po["memory_j"] = e.per_op_memory_j;
  po["energy_per_1m_inferences_kwh"] = e.per_op_energy_j * 1e6 / kJoulesPerKwh;
  est["per_op"] = po;
  Json cb;
  cb["g_per_inference_roofline"] = e.carbon_g_roofline;
  cb["g_per_inference_per_op"] = e.carbon_g_per_op;
  cb["kg_per_1m_inferences_roofline"] = e.carbon_g_roofline * 1e6 / 1e3;
  cb["kg_per_1m_inferences_per_op"] = e.carbon_g_per_op * 1e6 / 1e3;
  est["carbon"] = cb;
  j["estimate"] = est;

  Json fams = Json::array();
  for (const auto& kv : by_family(m, e)) {
    Json f;
    f["family"] = kv.first;
    f["nodes"] = kv.second.nodes;
    f["macs"] = kv.second.macs;
    f["flops_other"] = kv.second.flops;
    f["params"] = kv.second.params;
    f["bytes"] = kv.second.bytes;
    f["time_s"] = kv.second.time_s;
    f["energy_j"] = kv.second.energy_j;
    fams.push_back(f);
  }
  j["families"] = fams;
  if (with_nodes) {
    Json nodes = Json::array();
    for (size_t i = 0; i < m.nodes.size(); ++i) {
      const auto& c = m.nodes[i];
      if (c.folded) continue;
      Json n;
      n["name"] = c.name;
      n["op_type"] = c.op_type;
      n["family"] = c.family;
      n["compute_dtype"] = c.compute_dtype;
      n["macs"] = c.macs;
      n["flops_other"] = c.flops;
      n["params"] = c.params;
      n["weight_bytes"] = c.weight_bytes;
      n["activation_bytes"] = c.act_read_bytes + c.act_write_bytes;
      n["weight_zero_fraction"] = c.weight_zero_fraction;
      n["sparse_2_4"] = c.pattern_2_4;
      n["time_s"] = e.node_time_s[i];
      n["energy_j"] = e.node_energy_j[i];
      nodes.push_back(n);
    }
    j["nodes"] = nodes;
  }
  return j;
}

double ratio(double a, double b) { return b > 0 ? a / b : 0; }

std::string fmt_joules(double j) {
  const double a = std::fabs(j);
  if (a >= 1) return fmt_fixed(j, 3) + " J";
  if (a >= 1e-3) return fmt_fixed(j * 1e3, 3) + " mJ";
  if (a >= 1e-6 || a == 0) return fmt_fixed(j * 1e6, 3) + " uJ";
  return fmt_fixed(j * 1e9, 3) + " nJ";
}

std::string fmt_kwh(double kwh) {
  if (kwh >= 1) return fmt_fixed(kwh, 3) + " kWh";
  if (kwh >= 1e-3) return fmt_fixed(kwh * 1e3, 3) + " Wh";
  return fmt_fixed(kwh * 1e6, 3) + " mWh";
}

std::string fmt_grams(double g) {
  if (g >= 1e3) return fmt_fixed(g / 1e3, 3) + " kg";
  if (g >= 1) return fmt_fixed(g, 3) + " g";
  return fmt_fixed(g * 1e3, 3) + " mg";
}

}  // namespace

EnergyEstimate estimate_energy(const ModelCost& cost, const DeviceProfile& p, const Region& region,
                               std::optional<double> grid_override, std::optional<double> pue_override) {
  EnergyEstimate e;
  const double bw = p.memory_bandwidth_gbs.value * 1e9;
  const double vec = p.vector_tflops.value * 1e12;
  e.node_time_s.assign(cost.nodes.size(), 0);
  e.node_energy_j.assign(cost.nodes.size(), 0);
  for (size_t i = 0; i < cost.nodes.size(); ++i) {
    const NodeCost& c = cost.nodes[i];
    if (c.folded) continue;
    const bool sparse = sparse_used(c, p);
    // A MAC is 2 operations in the vendors' T(FL)OPS; sparse peaks already count the skipped half.
    const double t_compute = 2 * c.macs / peak_ops(p, c.compute_dtype, sparse) + c.flops / vec;
    const double t_memory = c.bytes() / bw;
    e.compute_time_s += t_compute;
    e.memory_time_s += t_memory;
    e.node_time_s[i] = std::max(t_compute, t_memory);
    e.time_s += e.node_time_s[i];
    const double macs_done = sparse ? c.macs / 2 : c.macs;
    const double ej_compute = (macs_done * pj_mac(p, c.compute_dtype) + c.flops * p.pj_per_flop.value) * 1e-12;
    const double ej_memory = c.bytes() * p.pj_per_dram_byte.value * 1e-12;
    e.per_op_compute_j += ej_compute;
    e.per_op_memory_j += ej_memory;
    e.node_energy_j[i] = ej_compute + ej_memory;
  }
  e.per_op_energy_j = e.per_op_compute_j + e.per_op_memory_j;
  e.roofline_energy_j = e.time_s * p.tdp_w.value;
  e.roofline_dynamic_j = e.time_s * (p.tdp_w.value - p.idle_w.value);
  e.pue = pue_override ? *pue_override : p.pue.value;
  e.grid_g_per_kwh = grid_override ? *grid_override : region.grid_g_per_kwh;
  e.region = region.code;
  e.carbon_g_roofline = e.roofline_energy_j / kJoulesPerKwh * e.pue * e.grid_g_per_kwh;
  e.carbon_g_per_op = e.per_op_energy_j / kJoulesPerKwh * e.pue * e.grid_g_per_kwh;
  return e;
}

Json energy_report_json(const ModelCost& model, const EnergyEstimate& est, const ModelCost* compare,
                        const EnergyEstimate* compare_est, const DeviceProfile& p, const Region& region,
                        const EnergyOptions& opts) {
  Json j;
  j["schema"] = "frugal.energy/1";
  j["label"] = "estimate";
  Json d;
  d["name"] = p.name;
  d["description"] = p.description;
  d["kind"] = p.kind;
  d["profile"] = p.source_file;
  Json peaks;
  for (const auto& kv : p.peak_tops) peaks[kv.first] = sourced_json(kv.second);
  d["peak_tops"] = peaks;
  d["vector_tflops"] = sourced_json(p.vector_tflops);
  d["memory_bandwidth_gbs"] = sourced_json(p.memory_bandwidth_gbs);
  d["tdp_w"] = sourced_json(p.tdp_w);
  d["idle_w"] = sourced_json(p.idle_w);
  Json pj;
  for (const auto& kv : p.pj_per_mac) pj[kv.first] = sourced_json(kv.second);
  d["pj_per_mac"] = pj;
  d["pj_per_flop"] = sourced_json(p.pj_per_flop);
  d["pj_per_dram_byte"] = sourced_json(p.pj_per_dram_byte);
  d["sparse_tensor_cores"] = p.sparse_tensor_cores;
  j["device"] = d;
  Json a;
  a["roofline"] = "time = sum over nodes of max(compute time at dtype peak, bytes / memory bandwidth); "
                  "energy = time x TDP (board at full power while busy); dynamic energy = time x (TDP - idle)";
  a["per_op"] = "energy = MACs x pJ/MAC(dtype) + other FLOPs x pJ/FLOP + (weight + activation bytes) x pJ/DRAM byte";
  a["carbon"] = "g CO2e = energy (kWh) x PUE x grid intensity (g/kWh)";
  a["pue"] = est.pue;
  a["pue_source"] = opts.pue ? std::string("--pue (user value)") : p.pue.source;
  a["region"] = region.code;
  a["grid_g_per_kwh"] = est.grid_g_per_kwh;
  a["grid_source"] = region.source;
  a["grid_year"] = region.year;
  std::string dims;
  for (const auto& kv : opts.cost.dims) dims += (dims.empty() ? "" : ",") + kv.first + "=" + std::to_string(kv.second);
  a["dims"] = dims.empty() ? "unset symbolic dims = 1" : dims + " (other symbolic dims = 1)";
  a["inference"] = "one forward pass at the input shapes listed per model";
  j["assumptions"] = a;
  Json models = Json::array();
  models.push_back(model_json(model, est, p, true));
  if (compare && compare_est) models.push_back(model_json(*compare, *compare_est, p, true));
  j["models"] = models;
  if (compare && compare_est) {
    Json c;
    c["label"] = "second model / first model";
    c["params"] = ratio(static_cast<double>(compare->params), static_cast<double>(model.params));
    c["file_bytes"] = ratio(static_cast<double>(compare->file_bytes), static_cast<double>(model.file_bytes));
    c["weight_bytes"] = ratio(compare->weight_bytes, model.weight_bytes);
    c["macs"] = ratio(compare->macs, model.macs);
    c["time"] = ratio(compare_est->time_s, est.time_s);
    c["energy_roofline"] = ratio(compare_est->roofline_energy_j, est.roofline_energy_j);
    c["energy_per_op"] = ratio(compare_est->per_op_energy_j, est.per_op_energy_j);
    c["carbon_per_op"] = ratio(compare_est->carbon_g_per_op, est.carbon_g_per_op);
    j["comparison"] = c;
  }
  return j;
}

std::string energy_report_text(const ModelCost& model, const EnergyEstimate& est, const ModelCost* compare,
                               const EnergyEstimate* compare_est) {
  std::string out;
  auto family_table = [&](const ModelCost& m, const EnergyEstimate& e) {
    TextTable t({"family", "nodes", "MACs", "other FLOPs", "params", "bytes", "time (est.)", "energy, per-op (est.)"});
    for (const auto& kv : by_family(m, e))
      t.add_row({kv.first, std::to_string(kv.second.nodes), fmt_count(kv.second.macs), fmt_count(kv.second.flops),
                 fmt_count(static_cast<double>(kv.second.params)), fmt_bytes(kv.second.bytes),
                 fmt_seconds(kv.second.time_s), fmt_joules(kv.second.energy_j)});
    return t.str();
  };
  out += "model: " + model.model_path + "\n" + family_table(model, est);
  if (compare && compare_est) out += "\nmodel: " + compare->model_path + "\n" + family_table(*compare, *compare_est);
  std::vector<std::string> hdr = {"total (per inference)", compare ? "first" : "value"};
  if (compare) {
    hdr.push_back("second");
    hdr.push_back("ratio");
  }
  TextTable t(hdr);
  auto row = [&](const std::string& name, double a, double b, const std::string& fa, const std::string& fb) {
    std::vector<std::string> r = {name, fa};
    if (compare) {
      r.push_back(fb);
      r.push_back(fmt_fixed(ratio(b, a), 3));
    }
    t.add_row(r);
  };
  const ModelCost& c = compare ? *compare : model;
  const EnergyEstimate& ce = compare_est ? *compare_est : est;
  row("params", static_cast<double>(model.params), static_cast<double>(c.params), fmt_count(static_cast<double>(model.params)),
      fmt_count(static_cast<double>(c.params)));
  row("file size", static_cast<double>(model.file_bytes), static_cast<double>(c.file_bytes),
      fmt_bytes(static_cast<double>(model.file_bytes)), fmt_bytes(static_cast<double>(c.file_bytes)));
  row("weight bytes", model.weight_bytes, c.weight_bytes, fmt_bytes(model.weight_bytes), fmt_bytes(c.weight_bytes));
  row("MACs", model.macs, c.macs, fmt_count(model.macs), fmt_count(c.macs));
  auto bytes = [](const ModelCost& m) { return m.weight_bytes + m.act_read_bytes + m.act_write_bytes; };
  row("memory traffic", bytes(model), bytes(c), fmt_bytes(bytes(model)), fmt_bytes(bytes(c)));
  row("time, roofline (est.)", est.time_s, ce.time_s, fmt_seconds(est.time_s), fmt_seconds(ce.time_s));
  row("energy, roofline x TDP (est.)", est.roofline_energy_j, ce.roofline_energy_j, fmt_joules(est.roofline_energy_j),
      fmt_joules(ce.roofline_energy_j));
  row("energy, per-op model (est.)", est.per_op_energy_j, ce.per_op_energy_j, fmt_joules(est.per_op_energy_j),
      fmt_joules(ce.per_op_energy_j));
  row("energy / 1M inferences, per-op (est.)", est.per_op_energy_j, ce.per_op_energy_j,
      fmt_kwh(est.per_op_energy_j * 1e6 / kJoulesPerKwh), fmt_kwh(ce.per_op_energy_j * 1e6 / kJoulesPerKwh));
  row("carbon / 1M inferences, per-op (est.)", est.carbon_g_per_op, ce.carbon_g_per_op,
      fmt_grams(est.carbon_g_per_op * 1e6), fmt_grams(ce.carbon_g_per_op * 1e6));
  out += "\n" + t.str();
  return out;
}

StatusOr<Json> energy_section(const Model& original, const Model& compressed, const EnergyOptions& opts) {
  // The models outlive this call; the executor only borrows them.
  std::shared_ptr<const Model> a(&original, [](const Model*) {});
  std::shared_ptr<const Model> b(&compressed, [](const Model*) {});
  auto ca = model_cost(a, opts.cost);
  if (!ca.ok()) return ca.status().with_context("energy estimate of the original model");
  auto cb = model_cost(b, opts.cost);
  if (!cb.ok()) return cb.status().with_context("energy estimate of the compressed model");
  return energy_section(*ca, *cb, opts);
}

StatusOr<Json> energy_section(const ModelCost& original, const ModelCost& compressed, const EnergyOptions& opts) {
  FRUGAL_ASSIGN_OR_RETURN(DeviceProfile p, resolve_profile(opts));
  FRUGAL_ASSIGN_OR_RETURN(Region r, resolve_region(opts));
  EnergyEstimate ea = estimate_energy(original, p, r, opts.grid_g_per_kwh, opts.pue);
  EnergyEstimate eb = estimate_energy(compressed, p, r, opts.grid_g_per_kwh, opts.pue);
  Json j = energy_report_json(original, ea, &compressed, &eb, p, r, opts);
  // Other commands' reports keep the summary; per-node detail stays in `frugal energy`.
  for (auto& m : j["models"]) m.erase("nodes");
  return j;
}

std::string energy_section_text(const Json& section) {
  if (section.contains("error")) return "energy estimate: " + section["error"].get<std::string>() + "\n";
  const Json& a = section["models"][0]["estimate"];
  const Json& b = section["models"][1]["estimate"];
  const Json& c = section["comparison"];
  auto joules = [](const Json& e, const char* model) { return fmt_joules(e[model]["energy_j"].get<double>()); };
  std::string out = "energy per inference (estimate, " + section["device"]["name"].get<std::string>() +
                    "): roofline x TDP " + joules(a, "roofline") + " -> " + joules(b, "roofline") + " (x" +
                    fmt_fixed(c["energy_roofline"].get<double>(), 3) + "), per-op " + joules(a, "per_op") + " -> " +
                    joules(b, "per_op") + " (x" + fmt_fixed(c["energy_per_op"].get<double>(), 3) + ")\n";
  out += "carbon per 1M inferences, per-op (region " + section["assumptions"]["region"].get<std::string>() + "): " +
         fmt_grams(a["carbon"]["g_per_inference_per_op"].get<double>() * 1e6) + " -> " +
         fmt_grams(b["carbon"]["g_per_inference_per_op"].get<double>() * 1e6) + "\n";
  return out;
}

}  // namespace frugal
