// Whole-file reads and crash-safe writes: outputs go to a temporary file beside the target and are
// renamed into place only once complete, so a failed run never leaves a half-written file.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "frugal/status.h"

namespace frugal {

// Reads a regular file. `what` names it in errors ("model", "tensor file"). Directories, missing
// files and unreadable files give distinct messages.
StatusOr<std::string> read_file_bytes(const std::filesystem::path& path, const std::string& what);

// A temporary file beside `target` that is removed unless commit() renames it over `target`.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path target);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  const std::filesystem::path& temp_path() const { return temp_; }
  const std::filesystem::path& target() const { return target_; }
  Status commit();

 private:
  std::filesystem::path target_, temp_;
  bool committed_ = false;
};

Status write_file_atomic(const std::filesystem::path& path, const std::string& bytes);

// Whether two paths name the same existing file (after symlinks).
bool same_file(const std::filesystem::path& a, const std::filesystem::path& b);

// sha256 of bytes / of a file, lowercase hex.
std::string sha256_hex(const void* data, size_t size);
StatusOr<std::string> sha256_file(const std::filesystem::path& path);

}  // namespace frugal
