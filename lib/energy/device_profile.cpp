// Device profiles and the grid-intensity table: data files compiled into the binary, or a user's file.
#include <algorithm>
#include <cmath>

#include "frugal/embedded_data.h"
#include "frugal/energy.h"
#include "frugal/file_util.h"

namespace frugal {

namespace {

// Reads {"value": number > 0 (or >= 0), "source": non-empty string}; the error names the field path.
Status read_sourced(const Json& j, const std::string& path, const std::string& what, bool allow_zero, Sourced* out) {
  if (!j.is_object()) return InvalidData(what + ": field '" + path + "' must be an object {\"value\", \"source\"}");
  if (!j.contains("value")) return InvalidData(what + ": field '" + path + ".value' is missing");
  if (!j["value"].is_number()) return InvalidData(what + ": field '" + path + ".value' must be a number");
  double v = j["value"].get<double>();
  if (!std::isfinite(v) || v < 0 || (!allow_zero && v == 0))
    return InvalidData(what + ": field '" + path + ".value' must be " + (allow_zero ? ">= 0" : "> 0") + ", got " +
                       j["value"].dump());
  if (!j.contains("source")) return InvalidData(what + ": field '" + path + ".source' is missing");
  if (!j["source"].is_string() || j["source"].get<std::string>().empty())
    return InvalidData(what + ": field '" + path + ".source' must be a non-empty string");
  out->value = v;
  out->source = j["source"].get<std::string>();
  return OkStatus();
}

Status read_field(const Json& root, const std::string& key, const std::string& what, bool allow_zero, Sourced* out) {
  if (!root.contains(key)) return InvalidData(what + ": field '" + key + "' is missing");
  return read_sourced(root[key], key, what, allow_zero, out);
}

Status read_map(const Json& root, const std::string& key, const std::vector<std::string>& required,
                const std::vector<std::string>& optional, const std::string& what, std::map<std::string, Sourced>* out) {
  if (!root.contains(key)) return InvalidData(what + ": field '" + key + "' is missing");
  const Json& m = root[key];
  if (!m.is_object()) return InvalidData(what + ": field '" + key + "' must be an object keyed by dtype");
  for (const auto& k : required) {
    if (!m.contains(k)) return InvalidData(what + ": field '" + key + "." + k + "' is missing");
    FRUGAL_RETURN_IF_ERROR(read_sourced(m[k], key + "." + k, what, false, &(*out)[k]));
  }
  for (const auto& k : optional)
    if (m.contains(k)) FRUGAL_RETURN_IF_ERROR(read_sourced(m[k], key + "." + k, what, false, &(*out)[k]));
  for (auto it = m.begin(); it != m.end(); ++it)
    if (std::find(required.begin(), required.end(), it.key()) == required.end() &&
        std::find(optional.begin(), optional.end(), it.key()) == optional.end())
      return InvalidData(what + ": field '" + key + "." + it.key() + "' is not a known dtype key");
  return OkStatus();
}

}  // namespace

StatusOr<DeviceProfile> parse_device_profile(const std::string& json_text, const std::string& what) {
  Json j = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidData(what + ": not valid JSON");
  if (!j.is_object()) return InvalidData(what + ": a device profile must be a JSON object");
  DeviceProfile p;
  if (!j.contains("name") || !j["name"].is_string() || j["name"].get<std::string>().empty())
    return InvalidData(what + ": field 'name' is missing or not a non-empty string");
  p.name = j["name"].get<std::string>();
  p.description = j.value("description", p.name);
  p.kind = j.value("kind", "gpu");
  if (p.kind != "gpu" && p.kind != "cpu" && p.kind != "soc")
    return InvalidData(what + ": field 'kind' must be \"gpu\", \"cpu\" or \"soc\"");
  if (j.contains("sparse_tensor_cores")) {
    if (!j["sparse_tensor_cores"].is_boolean()) return InvalidData(what + ": field 'sparse_tensor_cores' must be true or false");
    p.sparse_tensor_cores = j["sparse_tensor_cores"].get<bool>();
  }
  FRUGAL_RETURN_IF_ERROR(read_map(j, "peak_tops", {"fp32", "fp16", "int8"}, {"bf16", "fp16_sparse", "int8_sparse", "fp64"},
                                  what, &p.peak_tops));
  FRUGAL_RETURN_IF_ERROR(read_field(j, "vector_tflops", what, false, &p.vector_tflops));
  FRUGAL_RETURN_IF_ERROR(read_field(j, "memory_bandwidth_gbs", what, false, &p.memory_bandwidth_gbs));
  FRUGAL_RETURN_IF_ERROR(read_field(j, "tdp_w", what, false, &p.tdp_w));
  FRUGAL_RETURN_IF_ERROR(read_field(j, "idle_w", what, true, &p.idle_w));
  if (p.idle_w.value > p.tdp_w.value) return InvalidData(what + ": field 'idle_w.value' is above 'tdp_w.value'");
  FRUGAL_RETURN_IF_ERROR(read_map(j, "pj_per_mac", {"fp32", "fp16", "int8"}, {"bf16", "fp64"}, what, &p.pj_per_mac));
  FRUGAL_RETURN_IF_ERROR(read_field(j, "pj_per_flop", what, false, &p.pj_per_flop));
  FRUGAL_RETURN_IF_ERROR(read_field(j, "pj_per_dram_byte", what, false, &p.pj_per_dram_byte));
  if (j.contains("pue")) {
    FRUGAL_RETURN_IF_ERROR(read_field(j, "pue", what, false, &p.pue));
    if (p.pue.value < 1) return InvalidData(what + ": field 'pue.value' must be >= 1");
  } else {
    p.pue = {1.0, "default 1.0 (profile gives no PUE)"};
  }
  if (p.sparse_tensor_cores && !p.peak_tops.count("int8_sparse") && !p.peak_tops.count("fp16_sparse"))
    return InvalidData(what + ": 'sparse_tensor_cores' is true but neither 'peak_tops.int8_sparse' nor "
                              "'peak_tops.fp16_sparse' is given");
  if (!p.peak_tops.count("bf16")) p.peak_tops["bf16"] = {p.peak_tops["fp32"].value, "no bf16 peak: fp32 rate assumed"};
  if (!p.pj_per_mac.count("bf16")) p.pj_per_mac["bf16"] = p.pj_per_mac["fp16"];
  p.source_file = what;
  return p;
}

StatusOr<DeviceProfile> load_device_profile(const std::filesystem::path& path) {
  FRUGAL_ASSIGN_OR_RETURN(std::string text, read_file_bytes(path, "device profile"));
  return parse_device_profile(text, "device profile " + path.string());
}

std::vector<std::string> builtin_profile_names() {
  std::vector<std::string> names;
  for (const auto& kv : embedded_files()) {
    const std::string& f = kv.first;
    if (f == "regions.json" || f.size() < 6 || f.substr(f.size() - 5) != ".json") continue;
    names.push_back(f.substr(0, f.size() - 5));
  }
  return names;
}

StatusOr<DeviceProfile> builtin_profile(const std::string& name) {
  auto it = embedded_files().find(name + ".json");
  if (name == "regions" || it == embedded_files().end()) {
    std::string list;
    for (const auto& n : builtin_profile_names()) list += (list.empty() ? "" : ", ") + n;
    return InvalidArgument("--profile '" + name + "' is not a built-in device profile (built in: " + list +
                           "; or give --device-profile FILE)");
  }
  auto p = parse_device_profile(it->second, "builtin:" + name + ".json");
  if (!p.ok()) return Internal(p.status().message());
  return p;
}

std::vector<Region> builtin_regions() {
  std::vector<Region> out;
  auto it = embedded_files().find("regions.json");
  if (it == embedded_files().end()) return out;
  Json j = Json::parse(it->second, nullptr, false);
  if (j.is_discarded() || !j.contains("regions")) return out;
  for (const auto& r : j["regions"])
    out.push_back({r.value("code", ""), r.value("name", ""), r.value("grid_g_per_kwh", 0.0), r.value("source", ""),
                   r.value("year", 0)});
  return out;
}

StatusOr<Region> find_region(const std::string& code) {
  std::string lower = code;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  std::string list;
  for (const auto& r : builtin_regions()) {
    if (r.code == lower) return r;
    list += (list.empty() ? "" : ", ") + r.code;
  }
  return InvalidArgument("--region '" + code + "' is not in the region table (known: " + list +
                         "; or give --grid-intensity G_PER_KWH)");
}

StatusOr<DeviceProfile> resolve_profile(const EnergyOptions& opts) {
  if (!opts.profile_file.empty()) return load_device_profile(opts.profile_file);
  return builtin_profile(opts.profile);
}

StatusOr<Region> resolve_region(const EnergyOptions& opts) {
  if (opts.grid_g_per_kwh) {
    if (!(*opts.grid_g_per_kwh >= 0) || !std::isfinite(*opts.grid_g_per_kwh))
      return InvalidArgument("--grid-intensity must be a number >= 0 (gCO2e/kWh)");
    auto r = find_region(opts.region);
    Region out = r.ok() ? r.value() : Region{opts.region, opts.region, 0, "", 0};
    out.grid_g_per_kwh = *opts.grid_g_per_kwh;
    out.source = "--grid-intensity (user value)";
    out.year = 0;
    return out;
  }
  return find_region(opts.region);
}

}  // namespace frugal
