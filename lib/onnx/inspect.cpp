#include "frugal/inspect.h"

#include <onnx/checker.h>

#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "frugal/executor.h"

namespace frugal {

namespace {
constexpr int kCheckerMaxIr = 8;      // ONNX 1.12
constexpr int kCheckerMaxOpset = 17;  // ai.onnx in ONNX 1.12
}  // namespace

CheckerResult run_onnx_checker(const Model& model) {
  CheckerResult r;
  const auto& p = model.proto();
  if (p.ir_version() > kCheckerMaxIr) {
    r.note = "skipped: IR version " + std::to_string(p.ir_version()) + " is newer than the checker (ONNX 1.12, IR <= 8)";
    return r;
  }
  for (const auto& o : p.opset_import()) {
    const std::string d = o.domain();
    if ((d.empty() || d == "ai.onnx") && o.version() > kCheckerMaxOpset) {
      r.note = "skipped: ai.onnx opset " + std::to_string(o.version()) + " is newer than the checker knows (<= 17)";
      return r;
    }
    if (!d.empty() && d != "ai.onnx" && d != "ai.onnx.ml" && d != "ai.onnx.training" && d != "ai.onnx.preview.training") {
      bool used = false;
      for (const auto& n : p.graph().node()) used |= n.domain() == d;
      if (used) {
        r.note = "skipped: custom domain '" + d + "' is unknown to the checker";
        return r;
      }
    }
  }
  r.ran = true;
  try {
    // The path form re-reads the whole file (a second copy of every weight in memory, and protobuf's
    // 2 GB limit); it is only needed to check external data files against the model's folder.
    if (!model.path().empty() && model.has_external_data()) onnx::checker::check_model(model.path().string());
    else onnx::checker::check_model(p);
    r.ok = true;
    r.note = "passed (ONNX 1.12 checker)";
  } catch (const std::exception& e) {
    r.ok = false;
    std::string msg = e.what();
    const auto nl = msg.find('\n');
    if (nl != std::string::npos) msg = msg.substr(0, nl);
    r.note = "failed: " + msg;
  }
  return r;
}

namespace {

Json shape_json(const ValueInfo& vi) {
  if (!vi.has_shape) return nullptr;
  Json s = Json::array();
  for (size_t d = 0; d < vi.dims.size(); ++d) {
    if (vi.dims[d] >= 0) s.push_back(vi.dims[d]);
    else if (!vi.dim_params[d].empty()) s.push_back(vi.dim_params[d]);
    else s.push_back(nullptr);
  }
  return s;
}

Json io_json(const std::vector<ValueInfo>& v) {
  Json a = Json::array();
  for (const auto& vi : v) {
    Json x;
    x["name"] = vi.name;
    x["dtype"] = dtype_name(vi.dtype);
    x["shape"] = shape_json(vi);
    a.push_back(x);
  }
  return a;
}

}  // namespace

StatusOr<Json> inspect_model(const Model& model) {
  const auto& p = model.proto();
  FRUGAL_ASSIGN_OR_RETURN(Graph g, Graph::build(model));
  Json j;
  j["schema"] = "frugal.inspect/1";
  j["model"] = model.path().string();
  j["file_bytes"] = model.file_size();
  j["ir_version"] = p.ir_version();
  j["producer"] = {{"name", p.producer_name()}, {"version", p.producer_version()}};
  j["graph_name"] = p.graph().name();
  Json opsets = Json::object();
  for (const auto& o : p.opset_import()) opsets[o.domain().empty() ? "ai.onnx" : o.domain()] = o.version();
  j["opsets"] = opsets;
  j["inputs"] = io_json(g.inputs());
  j["outputs"] = io_json(g.outputs());
  j["nodes"] = p.graph().node_size();
  std::map<std::string, int64_t> ops;
  for (const auto& n : p.graph().node()) ops[(n.domain().empty() || n.domain() == "ai.onnx") ? n.op_type() : n.domain() + "." + n.op_type()]++;
  Json opj = Json::object();
  for (const auto& kv : ops) opj[kv.first] = kv.second;
  j["ops"] = opj;

  // Parameters: the main graph's initializers.
  int64_t count = 0, bytes = 0, zeros = 0, numeric = 0, ext_tensors = 0, ext_bytes = 0;
  std::map<std::string, std::pair<int64_t, int64_t>> by_dtype;
  std::set<std::string> ext_files;
  for (const auto& t : p.graph().initializer()) {
    int64_t n = 1;
    for (int64_t d : t.dims()) n *= d;
    const DType dt = static_cast<DType>(t.data_type());
    int64_t b = 0;
    if (dt == DType::kString) {
      for (const auto& s : t.string_data()) b += static_cast<int64_t>(s.size());
    } else {
      b = static_cast<int64_t>(storage_bytes(dt, n));
    }
    count += n;
    bytes += b;
    auto& e = by_dtype[dtype_name(dt)];
    e.first += n;
    e.second += b;
    if (is_external(t)) {
      ++ext_tensors;
      ext_bytes += b;
      for (const auto& kv : t.external_data())
        if (kv.key() == "location") ext_files.insert(kv.value());
    }
    if (dtype_is_supported(dt)) {
      FRUGAL_ASSIGN_OR_RETURN(Tensor v, model.initializer(t));
      zeros += count_zeros(v);
      numeric += n;
    }
  }
  Json bd = Json::object();
  for (const auto& kv : by_dtype) bd[kv.first] = {{"count", kv.second.first}, {"bytes", kv.second.second}};
  j["parameters"] = {{"count", count}, {"bytes", bytes}, {"initializers", p.graph().initializer_size()}, {"by_dtype", bd}};
  j["sparsity"] = {{"zeros", zeros}, {"fraction", numeric ? static_cast<double>(zeros) / static_cast<double>(numeric) : 0.0}};
  int64_t const_count = 0;
  for (const auto& n : p.graph().node())
    if (n.op_type() == "Constant")
      for (const auto& a : n.attribute())
        if (a.has_t()) {
          int64_t k = 1;
          for (int64_t d : a.t().dims()) k *= d;
          const_count += k;
        }
  j["constants"] = {{"nodes", ops.count("Constant") ? ops["Constant"] : 0}, {"elements", const_count}};
  Json files = Json::array();
  for (const auto& f : ext_files) files.push_back(f);
  j["external_data"] = {{"used", ext_tensors > 0}, {"tensors", ext_tensors}, {"bytes", ext_bytes}, {"files", files}};
  j["functions"] = p.functions_size();
  j["subgraph_nodes"] = g.nodes_with_subgraphs().size();
  const CheckerResult cr = run_onnx_checker(model);
  j["checker"] = {{"ran", cr.ran}, {"ok", cr.ok}, {"note", cr.note}};
  Json un = Json::array();
  for (const auto& u : find_unsupported(g, default_registry()))
    un.push_back({{"node", u.name}, {"op", u.op_type}, {"domain", u.domain}, {"opset", u.opset}, {"reason", u.reason}});
  j["unsupported"] = un;
  return j;
}

std::string inspect_text(const Json& r) {
  std::ostringstream out;
  auto shape = [](const Json& s) {
    if (s.is_null()) return std::string("?");
    std::string x = "[";
    for (size_t i = 0; i < s.size(); ++i) {
      if (i) x += ",";
      x += s[i].is_null() ? "?" : s[i].is_string() ? s[i].get<std::string>() : std::to_string(s[i].get<int64_t>());
    }
    return x + "]";
  };
  out << "model        " << r["model"].get<std::string>() << " (" << fmt_bytes(r["file_bytes"].get<double>()) << ")\n";
  out << "ir_version   " << r["ir_version"] << "    producer " << r["producer"]["name"].get<std::string>() << " "
      << r["producer"]["version"].get<std::string>() << "\n";
  out << "opsets      ";
  for (const auto& [d, v] : r["opsets"].items()) out << " " << d << " " << v;
  out << "\n";
  for (const char* k : {"inputs", "outputs"})
    for (const auto& io : r[k])
      out << (std::string(k) == "inputs" ? "input        " : "output       ") << io["name"].get<std::string>() << "  "
          << io["dtype"].get<std::string>() << " " << shape(io["shape"]) << "\n";
  const auto& pr = r["parameters"];
  out << "parameters   " << fmt_count(pr["count"].get<double>()) << " (" << fmt_bytes(pr["bytes"].get<double>()) << ")";
  for (const auto& [d, v] : pr["by_dtype"].items()) out << "  " << d << ": " << fmt_count(v["count"].get<double>());
  out << "\n";
  out << "sparsity     " << fmt_fixed(100.0 * r["sparsity"]["fraction"].get<double>(), 2) << "% exact zeros in initializers\n";
  const auto& ex = r["external_data"];
  out << "external     ";
  if (ex["used"].get<bool>()) {
    out << ex["tensors"] << " tensors, " << fmt_bytes(ex["bytes"].get<double>()) << " in";
    for (const auto& f : ex["files"]) out << " " << f.get<std::string>();
  } else {
    out << "none";
  }
  out << "\n";
  out << "checker      " << r["checker"]["note"].get<std::string>() << "\n";
  out << "nodes        " << r["nodes"] << "\n\n";
  TextTable t({"op", "count"});
  for (const auto& [op, n] : r["ops"].items()) t.add_row({op, std::to_string(n.get<int64_t>())});
  out << t.str();
  const auto& un = r["unsupported"];
  if (un.empty()) {
    out << "\nfrugal can execute every node.\n";
  } else {
    out << "\nfrugal cannot execute " << un.size() << " node(s):\n";
    for (const auto& u : un)
      out << "  " << u["node"].get<std::string>() << " (" << u["domain"].get<std::string>() << "::" << u["op"].get<std::string>()
          << ", opset " << u["opset"] << "): " << u["reason"].get<std::string>() << "\n";
  }
  return out.str();
}

std::string kernel_table_text() {
  TextTable t({"domain", "op", "opsets", "backend"});
  auto entries = cpu_registry().entries();
  std::sort(entries.begin(), entries.end(), [](const KernelEntry& a, const KernelEntry& b) {
    return std::tie(a.domain, a.op_type, a.since) < std::tie(b.domain, b.op_type, b.since);
  });
  for (const auto& e : entries)
    t.add_row({e.domain.empty() ? "ai.onnx" : e.domain, e.op_type,
               std::to_string(e.since) + "-" + (e.until >= kMaxOpset ? std::string("") : std::to_string(e.until)),
               backend_name(e.backend)});
  return t.str() + std::to_string(entries.size()) + " kernels\n";
}

}  // namespace frugal
