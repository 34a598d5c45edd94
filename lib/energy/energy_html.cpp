// The HTML energy report: one self-contained file (inline CSS, inline SVG drawn here; no scripts, no
// fonts, no external resources) so it opens offline and can be attached to a CI run.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "frugal/energy.h"

namespace frugal {

namespace {

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string num(double v, int decimals = 1) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

std::string energy_str(double j) {
  if (j >= 1) return num(j, 3) + " J";
  if (j >= 1e-3) return num(j * 1e3, 3) + " mJ";
  return num(j * 1e6, 3) + " µJ";
}

std::string base_name(const std::string& p) {
  auto k = p.find_last_of('/');
  return k == std::string::npos ? p : p.substr(k + 1);
}

const char* kColorA = "#2f6fb0";
const char* kColorB = "#e08a1e";

// Horizontal bars of the per-layer energy (per-op model) of the costliest layers.
std::string layer_chart(const ModelCost& m, const EnergyEstimate& e, const char* color, size_t top) {
  std::vector<size_t> idx;
  for (size_t i = 0; i < m.nodes.size(); ++i)
    if (!m.nodes[i].folded && e.node_energy_j[i] > 0) idx.push_back(i);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return e.node_energy_j[a] > e.node_energy_j[b]; });
  const size_t shown = std::min(top, idx.size());
  std::sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(shown));  // graph order for reading
  double mx = 0;
  for (size_t k = 0; k < shown; ++k) mx = std::max(mx, e.node_energy_j[idx[k]]);
  const int row = 18, label_w = 300, bar_w = 520, h = static_cast<int>(shown) * row + 30;
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << label_w + bar_w + 130 << "' height='" << h
    << "' role='img' aria-label='per-layer energy'>";
  for (size_t k = 0; k < shown; ++k) {
    const size_t i = idx[k];
    const auto& c = m.nodes[i];
    const int y = static_cast<int>(k) * row + 4;
    const double w = mx > 0 ? e.node_energy_j[i] / mx * bar_w : 0;
    std::string label = (c.name.empty() ? "#" + std::to_string(i) : c.name) + " (" + c.op_type + ")";
    if (label.size() > 44) label = label.substr(0, 41) + "...";
    s << "<text x='" << label_w - 6 << "' y='" << y + 12 << "' text-anchor='end' class='lbl'>" << esc(label) << "</text>";
    s << "<rect x='" << label_w << "' y='" << y << "' width='" << num(std::max(w, 1.0)) << "' height='" << row - 4
      << "' fill='" << color << "'><title>" << esc(c.name) << ": " << esc(energy_str(e.node_energy_j[i])) << ", "
      << esc(c.compute_dtype) << "</title></rect>";
    s << "<text x='" << label_w + w + 6 << "' y='" << y + 12 << "' class='val'>" << esc(energy_str(e.node_energy_j[i]))
      << "</text>";
  }
  s << "<text x='" << label_w << "' y='" << h - 6 << "' class='note'>" << shown << " of " << idx.size()
    << " layers with energy, costliest first selected, shown in graph order (per-op model, estimate)</text>";
  s << "</svg>";
  return s.str();
}

// Grouped bars: each metric of the second model relative to the first (first = 100%).
std::string compare_chart(const std::vector<std::tuple<std::string, double, double>>& metrics) {
  const int row = 46, label_w = 190, bar_w = 560;
  const int h = static_cast<int>(metrics.size()) * row + 34;
  double mx = 1;
  for (const auto& m : metrics)
    if (std::get<1>(m) > 0) mx = std::max(mx, std::get<2>(m) / std::get<1>(m));
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << label_w + bar_w + 120 << "' height='" << h
    << "' role='img' aria-label='comparison'>";
  for (size_t k = 0; k < metrics.size(); ++k) {
    const auto& [name, a, b] = metrics[k];
    const int y = static_cast<int>(k) * row + 6;
    const double r = a > 0 ? b / a : 0;
    const double wa = bar_w / mx, wb = r * bar_w / mx;
    s << "<text x='" << label_w - 8 << "' y='" << y + 24 << "' text-anchor='end' class='lbl'>" << esc(name) << "</text>";
    s << "<rect x='" << label_w << "' y='" << y << "' width='" << num(wa) << "' height='16' fill='" << kColorA << "'/>";
    s << "<rect x='" << label_w << "' y='" << y + 19 << "' width='" << num(std::max(wb, 1.0)) << "' height='16' fill='"
      << kColorB << "'/>";
    s << "<text x='" << label_w + wa + 6 << "' y='" << y + 13 << "' class='val'>100%</text>";
    s << "<text x='" << label_w + std::max(wb, 1.0) + 6 << "' y='" << y + 32 << "' class='val'>" << num(r * 100, 1)
      << "%</text>";
  }
  s << "<rect x='" << label_w << "' y='" << h - 18 << "' width='12' height='12' fill='" << kColorA << "'/>";
  s << "<text x='" << label_w + 18 << "' y='" << h - 8 << "' class='lbl'>original</text>";
  s << "<rect x='" << label_w + 110 << "' y='" << h - 18 << "' width='12' height='12' fill='" << kColorB << "'/>";
  s << "<text x='" << label_w + 128 << "' y='" << h - 8 << "' class='lbl'>compressed</text>";
  s << "</svg>";
  return s.str();
}

std::string card(const std::string& title, const std::string& value, const std::string& sub) {
  return "<div class='card'><div class='ct'>" + esc(title) + "</div><div class='cv'>" + esc(value) +
         "</div><div class='cs'>" + esc(sub) + "</div></div>";
}

}  // namespace

std::string energy_report_html(const ModelCost& model, const EnergyEstimate& est, const ModelCost* compare,
                               const EnergyEstimate* compare_est, const DeviceProfile& profile, const Region& region,
                               const Json* fidelity) {
  const bool cmp = compare && compare_est;
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
    << "<meta name='viewport' content='width=device-width, initial-scale=1'>"
    << "<title>frugal energy report: " << esc(base_name(model.model_path)) << "</title><style>"
    << "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',Arial,sans-serif;margin:24px 32px;"
       "color:#1d2733;background:#fbfcfd}"
    << "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #dde3ea;"
       "padding-bottom:4px}"
    << ".sub{color:#5b6b7c;font-size:13px}.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:10px;margin-top:14px}"
    << ".card{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:10px 14px;min-width:0}"
    << ".ct{font-size:12px;color:#5b6b7c}.cv{font-size:20px;font-weight:600;margin-top:2px}.cs{font-size:11px;"
       "color:#7a8896}"
    << "table{border-collapse:collapse;font-size:13px;background:#fff}td,th{border:1px solid #dde3ea;"
       "padding:4px 10px;text-align:right}th{background:#eef2f6}td:first-child,th:first-child{text-align:left}"
    << "svg text.lbl{font-size:12px;fill:#1d2733}svg text.val{font-size:11px;fill:#44525f}"
       "svg text.note{font-size:11px;fill:#7a8896}"
    << ".est{display:inline-block;background:#fff4d6;border:1px solid #f0d48a;border-radius:4px;padding:1px 6px;"
       "font-size:11px;margin-left:6px}"
    << ".assume{font-size:12px;color:#44525f;line-height:1.5}</style></head><body>\n";
  h << "<h1>Energy report <span class='est'>estimate</span></h1>";
  h << "<div class='sub'>" << esc(base_name(model.model_path));
  if (cmp) h << " vs " << esc(base_name(compare->model_path));
  h << " &middot; device " << esc(profile.description) << " &middot; region " << esc(region.code) << " ("
    << num(est.grid_g_per_kwh, 0) << " gCO2e/kWh, PUE " << num(est.pue, 2) << ")</div>\n";

  auto cards_for = [&](const ModelCost& m, const EnergyEstimate& e, const std::string& who) {
    h << "<div class='cards'>";
    h << card(who + " parameters", fmt_count(static_cast<double>(m.params)), fmt_bytes(m.weight_bytes) + " of weights");
    std::string mix;
    for (const auto& kv : m.macs_by_dtype)
      mix += (mix.empty() ? "" : ", ") + kv.first + " " + num(m.macs > 0 ? kv.second / m.macs * 100 : 0, 0) + "%";
    h << card("MACs / inference", fmt_count(m.macs), (mix.empty() ? "" : mix + "; ") + fmt_count(m.flops) + " other FLOPs");
    h << card("time (roofline)", fmt_seconds(e.time_s), "estimate");
    h << card("energy / inference", energy_str(e.per_op_energy_j), "per-op model; roofline x TDP " +
                                                                        energy_str(e.roofline_energy_j));
    const double kwh = e.per_op_energy_j * 1e6 / 3.6e6;
    h << card("energy / 1M inferences",
              kwh >= 1 ? num(kwh, 2) + " kWh" : kwh >= 1e-3 ? num(kwh * 1e3, 2) + " Wh" : num(kwh * 1e6, 2) + " mWh",
              "per-op model, estimate");
    const double kg = e.carbon_g_per_op * 1e3;  // g per inference x 1e6 inferences / 1e3 g per kg
    h << card("carbon / 1M inferences",
              kg >= 1 ? num(kg, 2) + " kg" : kg >= 1e-3 ? num(kg * 1e3, 2) + " g" : num(kg * 1e6, 2) + " mg",
              "CO2e, per-op model, estimate");
    h << "</div>\n";
  };
  cards_for(model, est, cmp ? "original" : "model");
  if (cmp) cards_for(*compare, *compare_est, "compressed");

  if (cmp) {
    h << "<h2>Size, energy and fidelity: compressed vs original</h2>\n";
    std::vector<std::tuple<std::string, double, double>> metrics = {
        {"file size", static_cast<double>(model.file_bytes), static_cast<double>(compare->file_bytes)},
        {"weight bytes", model.weight_bytes, compare->weight_bytes},
        {"MACs", model.macs, compare->macs},
        {"time (roofline)", est.time_s, compare_est->time_s},
        {"energy (per-op)", est.per_op_energy_j, compare_est->per_op_energy_j},
        {"energy (roofline)", est.roofline_energy_j, compare_est->roofline_energy_j},
    };
    h << compare_chart(metrics) << "\n";
    if (fidelity && fidelity->is_object() && fidelity->contains("outputs")) {
      h << "<h2 style='font-size:15px'>Fidelity of the compressed model <span class='est'>measured</span></h2>"
        << "<table><tr><th>output</th><th>cosine</th><th>SQNR (dB)</th><th>max |err|</th><th>top-1 agreement</th></tr>";
      for (const auto& o : (*fidelity)["outputs"]) {
        auto g = [&](const char* k) { return o.contains(k) && o[k].is_number() ? o[k].get<double>() : -1.0; };
        h << "<tr><td>" << esc(o.value("name", "")) << "</td><td>" << num(g("cosine"), 5) << "</td><td>"
          << num(g("sqnr_db"), 2) << "</td><td>" << num(g("max_abs_error"), 5) << "</td><td>"
          << (g("top1_agreement") < 0 ? std::string("n/a") : num(g("top1_agreement") * 100, 2) + "%") << "</td></tr>";
      }
      h << "</table>\n<p class='assume'>Fidelity measured on " << esc(fidelity->value("data", std::string("?")))
        << " (" << fidelity->value("samples", 0) << " samples).</p>\n";
    } else if (fidelity && fidelity->is_object() && fidelity->contains("error")) {
      h << "<p class='assume'>Fidelity: not measured: " << esc((*fidelity)["error"].get<std::string>()) << "</p>\n";
    } else {
      h << "<p class='assume'>Fidelity: not measured in this report (run frugal quantize/prune/compress with --data "
           "for output agreement).</p>\n";
    }
  }

  h << "<h2>Energy per layer" << (cmp ? ": original" : "") << " <span class='est'>estimate</span></h2>\n"
    << layer_chart(model, est, kColorA, 40) << "\n";
  if (cmp)
    h << "<h2>Energy per layer: compressed <span class='est'>estimate</span></h2>\n"
      << layer_chart(*compare, *compare_est, kColorB, 40) << "\n";

  h << "<h2>Per op family</h2>\n<pre style='font-size:12px;background:#fff;border:1px solid #dde3ea;padding:8px'>"
    << esc(energy_report_text(model, est, compare, compare_est)) << "</pre>\n";

  h << "<h2>How these figures are made</h2><div class='assume'><ul>"
    << "<li>All figures are <b>estimates</b> from counted MACs, FLOPs and bytes, not measurements.</li>"
    << "<li>Roofline: time = sum over layers of max(compute time at the device's peak for the layer's dtype, bytes / "
       "memory bandwidth); energy = time &times; TDP (" << num(profile.tdp_w.value, 0) << " W; idle "
    << num(profile.idle_w.value, 0) << " W).</li>"
    << "<li>Per-op model: MACs &times; pJ/MAC by dtype + other FLOPs &times; pJ/FLOP + DRAM bytes &times; "
    << num(profile.pj_per_dram_byte.value, 1) << " pJ/byte. Source: " << esc(profile.pj_per_mac.at("fp32").source)
    << ".</li>"
    << "<li>Carbon = energy &times; PUE " << num(est.pue, 2) << " &times; " << num(est.grid_g_per_kwh, 0)
    << " gCO2e/kWh (" << esc(region.name.empty() ? region.code : region.name) << ", " << esc(region.source)
    << (region.year ? ", " + std::to_string(region.year) : std::string()) << ").</li>"
    << "<li>Device profile: " << esc(profile.source_file) << "; peak fp32 " << num(profile.peak_tops.at("fp32").value, 2)
    << " TFLOPS, int8 " << num(profile.peak_tops.at("int8").value, 1) << " TOPS, memory "
    << num(profile.memory_bandwidth_gbs.value, 0) << " GB/s.</li></ul></div>\n";
  h << "<p class='sub'>Generated by frugal " << FRUGAL_VERSION << ".</p></body></html>\n";
  return h.str();
}

}  // namespace frugal
