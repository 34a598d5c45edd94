// Internal helpers of lib/onnx shared by tensor conversion, model I/O and the graph index.
#pragma once

#include <filesystem>
#include <string>

#include "frugal/file_util.h"
#include "frugal/model.h"

namespace frugal {

struct ExternalRef {
  std::string location;
  int64_t offset = 0;
  int64_t length = -1;  // -1: to the end of the file
};

std::string tensor_label(const onnx::TensorProto& t);
StatusOr<ExternalRef> parse_external_ref(const onnx::TensorProto& t);
// base_dir/location, refused when absolute, with '..', or resolving (through symlinks) outside base_dir.
StatusOr<std::filesystem::path> resolve_external_path(const std::filesystem::path& base_dir,
                                                      const onnx::TensorProto& t, const std::string& location);
// Validates dims against the data present (inline or external) without copying the data.
Status check_tensor_proto(const onnx::TensorProto& t, ExternalDataResolver* resolver);

}  // namespace frugal
