#include "frugal/report.h"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "frugal/file_util.h"

namespace frugal {

Status write_json(const std::filesystem::path& path, const Json& j) { return write_file_atomic(path, j.dump(2) + "\n"); }

std::string TextTable::str() const {
  std::vector<size_t> w(headers_.size(), 0);
  for (size_t i = 0; i < headers_.size(); ++i) w[i] = headers_[i].size();
  for (const auto& r : rows_)
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
  std::ostringstream out;
  auto line = [&](const std::vector<std::string>& r) {
    for (size_t i = 0; i < w.size(); ++i) {
      const std::string cell = i < r.size() ? r[i] : "";
      // first column left-aligned (names), the rest right-aligned (numbers)
      if (i == 0) out << cell << std::string(w[i] - cell.size(), ' ');
      else out << "  " << std::string(w[i] - cell.size(), ' ') << cell;
    }
    out << "\n";
  };
  auto rule = [&] {
    size_t total = 0;
    for (size_t i = 0; i < w.size(); ++i) total += w[i] + (i ? 2 : 0);
    out << std::string(total, '-') << "\n";
  };
  line(headers_);
  rule();
  for (const auto& r : rows_) {
    if (r.empty()) rule();
    else line(r);
  }
  return out.str();
}

std::string fmt_fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string fmt_count(double v) {
  const double a = std::fabs(v);
  if (a >= 1e12) return fmt_fixed(v / 1e12, 2) + " T";
  if (a >= 1e9) return fmt_fixed(v / 1e9, 2) + " G";
  if (a >= 1e6) return fmt_fixed(v / 1e6, 2) + " M";
  if (a >= 1e3) return fmt_fixed(v / 1e3, 2) + " k";
  return fmt_fixed(v, v == std::floor(v) ? 0 : 2);
}

std::string fmt_bytes(double b) {
  const double a = std::fabs(b);
  if (a >= 1024.0 * 1024 * 1024) return fmt_fixed(b / (1024.0 * 1024 * 1024), 2) + " GiB";
  if (a >= 1024.0 * 1024) return fmt_fixed(b / (1024.0 * 1024), 2) + " MiB";
  if (a >= 1024.0) return fmt_fixed(b / 1024.0, 1) + " KiB";
  return fmt_fixed(b, 0) + " B";
}

std::string fmt_seconds(double s) {
  const double a = std::fabs(s);
  if (a >= 1.0) return fmt_fixed(s, 2) + " s";
  if (a >= 1e-3) return fmt_fixed(s * 1e3, 2) + " ms";
  if (a >= 1e-6) return fmt_fixed(s * 1e6, 2) + " us";
  return fmt_fixed(s * 1e9, 1) + " ns";
}

}  // namespace frugal
