// Reports: a JSON tree with stable key order (insertion order) for machines and a plain-text table
// for people. Every figure carries its unit in the key name or beside it; estimates say so.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "frugal/status.h"

namespace frugal {

using Json = nlohmann::ordered_json;

// Writes JSON (2-space indent, trailing newline) atomically.
Status write_json(const std::filesystem::path& path, const Json& j);

// A fixed-width text table. Numbers should be pre-formatted by the caller.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void add_row(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void add_separator() { rows_.push_back({}); }
  std::string str() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// Human formatting: 1234567 -> "1.23 M", bytes -> "1.2 MiB", seconds -> "3.4 ms".
std::string fmt_count(double v);
std::string fmt_bytes(double bytes);
std::string fmt_seconds(double s);
std::string fmt_fixed(double v, int decimals);

}  // namespace frugal
