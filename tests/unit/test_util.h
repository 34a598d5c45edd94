// Helpers shared by the unit tests: models from ONNX's textual syntax, temporary directories.
#pragma once

#include <catch2/catch.hpp>

#include <onnx/defs/parser.h>

#include <filesystem>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "frugal/model.h"

namespace frugal::testing {

// Parses an ONNX textual model (onnx/defs/parser.h syntax) and adds `inits` as initializers.
inline std::shared_ptr<Model> parse_model(const std::string& text,
                                          const std::vector<std::pair<std::string, Tensor>>& inits = {}) {
  onnx::ModelProto mp;
  auto st = onnx::OnnxParser::Parse(mp, text.c_str());
  INFO(st.ErrorMessage());
  REQUIRE(st.IsOK());
  for (const auto& kv : inits) {
    auto* t = mp.mutable_graph()->add_initializer();
    tensor_to_proto(kv.second, t);
    t->set_name(kv.first);
  }
  return Model::from_proto(mp);
}

// A fresh directory under the system temp dir, removed with its contents.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() / ("frugal_test_" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

}  // namespace frugal::testing
