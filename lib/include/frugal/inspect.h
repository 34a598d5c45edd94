// What `frugal inspect` reports about a model: IR version, opsets, producer, inputs and outputs,
// op histogram, parameters by dtype, initializer sparsity, external data, the ONNX checker's verdict
// and the nodes frugal cannot execute. The JSON schema is documented in docs/formats/inspect.md.
#pragma once

#include <string>

#include "frugal/model.h"
#include "frugal/report.h"

namespace frugal {

struct CheckerResult {
  bool ran = false;     // false: skipped, see `note`
  bool ok = false;
  std::string note;     // the checker's message, or why it was skipped
};

// Runs ONNX 1.12's checker where it applies (IR <= 8, ai.onnx opset <= 17, known domains); newer
// models are skipped with the reason, never rejected for it.
CheckerResult run_onnx_checker(const Model& model);

// The inspect report as JSON ("frugal.inspect/1").
StatusOr<Json> inspect_model(const Model& model);

// The human table for an inspect report.
std::string inspect_text(const Json& report);

// The kernel registry as a table (`frugal inspect --kernels`).
std::string kernel_table_text();

}  // namespace frugal
