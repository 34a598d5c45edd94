// INT8 quantization of ONNX models (DESIGN.md section 5).
//
// quantize_static: QDQ form loadable by onnxruntime and TensorRT. Activations get one
//   QuantizeLinear/DequantizeLinear pair per tensor (per-tensor; uint8 asymmetric or int8 symmetric),
//   read by the quantized consumers only; weights become int8 symmetric initializers (per output
//   channel: Conv 0, ConvTranspose 1, MatMul [K,N] 1, Gemm 0 if transB else 1) behind a
//   DequantizeLinear; biases become int32 with scale s_x * s_w and zero point 0. Relu/Clip/Concat
//   inputs share their output's parameters and Reshape/Transpose/MaxPool/Flatten/Squeeze/Unsqueeze
//   outputs share their input's, as onnxruntime's and TensorRT's QDQ fusions expect.
// quantize_dynamic: two forms. Weight-only (default): int8 weights behind DequantizeLinear, activations
//   stay float. Integer (onnxruntime's quantize_dynamic form): MatMul/Gemm with a constant weight become
//   DynamicQuantizeLinear(x) -> MatMulInteger(x_q, W_q int8, x_zp, w_zp) -> Cast float -> Mul by
//   x_scale * w_scale (per tensor or a [N] per-column vector) [-> Add bias for Gemm]; the other compute
//   ops (Conv, ConvTranspose, Gemm that does not fit) take the weight-only form, and the node report
//   says why.
// run_quantize: the whole `frugal quantize` flow (calibrate or read a table, quantize, per-layer SQNR,
//   fidelity on held-out data, --max-drop loop, save), returning the report.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "frugal/calibration.h"
#include "frugal/dtype.h"
#include "frugal/executor.h"
#include "frugal/fidelity.h"
#include "frugal/model.h"
#include "frugal/quant_math.h"
#include "frugal/report.h"

namespace frugal {

enum class DynamicForm { kWeightOnly, kInteger };
const char* dynamic_form_name(DynamicForm f);  // "weight-only", "integer"

struct QuantizeOptions {
  bool dynamic = false;                  // dynamic quantization (no calibration), in `dynamic_form`
  DynamicForm dynamic_form = DynamicForm::kWeightOnly;
  DType activation_type = DType::kUInt8;  // kUInt8 (asymmetric) or kInt8 (symmetric)
  bool per_channel = true;
  bool reduce_range = false;  // 7-bit weights ([-63, 63]) for CPUs whose int8 dot products overflow
  std::vector<std::string> include, exclude;  // node name regex (full match) or op type
  std::set<std::string> keep_float;           // node names forced to stay float (--max-drop)
};

// Per-channel axis of a weight initializer for an op: Conv 0, ConvTranspose 1, MatMul rank-1 axis of
// the [.., K, N] weight, Gemm 0 when transB=1 else 1; -1 when it must be per-tensor (rank < 2).
int weight_channel_axis(const NodeDef& node, int64_t weight_rank);

// Symmetric int8 quantization of a weight, per channel along `axis` (-1: per tensor).
struct QuantizedWeight {
  Tensor q;                   // int8, same shape
  std::vector<float> scales;  // one per channel (one for per-tensor)
  int axis = -1;
  double min = 0, max = 0;    // float range of the weight
};
QuantizedWeight quantize_weight(const Tensor& w, int axis, quant::QRange range);
// The same, writing the int8 values (w.numel() of them, w's layout) to `q`; the result's q stays empty.
QuantizedWeight quantize_weight_to(const Tensor& w, int axis, quant::QRange range, int8_t* q);

// Activation parameters from a calibrated range.
quant::QParams activation_params(double range_min, double range_max, DType activation_type);

struct NodeQuantInfo {
  std::string name, op_type;
  bool quantized = false;
  std::string form;         // when quantized: "qdq", "weight-only" or "integer"
  std::string reason;       // why skipped; for a quantized node, why it took a fallback form (else empty)
  int weight_axis = -2;     // -2: no weight, -1: per tensor, else the channel axis
  double weight_min = 0, weight_max = 0;
  std::string input_tensor, output_tensor;  // first activation input / first output
  double input_min = 0, input_max = 0;      // calibrated range of the first activation input
  bool has_input_range = false;
  double sqnr_db = std::numeric_limits<double>::quiet_NaN();  // filled by run_quantize
};

struct QuantizeResult {
  std::shared_ptr<Model> model;
  std::vector<NodeQuantInfo> nodes;  // every node considered, in graph order
  std::vector<std::string> notes;    // opset raised, fallbacks, ...
  int opset_before = 0, opset_after = 0;
  int quantized_count() const;
};

StatusOr<QuantizeResult> quantize_static(const Model& model, const CalibrationTable& table, const QuantizeOptions& opts);
StatusOr<QuantizeResult> quantize_dynamic(const Model& model, const QuantizeOptions& opts);
// The activation tensors quantize_static reads ranges for with these options, assuming calibration
// records every tensor it can: calibrating only these gives the same quantized model, observing a
// fraction of the tensors (in a BERT layer, not the GELU, LayerNorm or softmax internals).
StatusOr<std::vector<std::string>> static_quantization_tensors(const Model& model, const QuantizeOptions& opts);

// Raises the default-domain opset to `target` in place, converting the ops whose signature changed
// on the way (Clip, Squeeze, Unsqueeze, ReduceSum, Split, Softmax family, BatchNormalization,
// Dropout). Fails with kUnsupported naming the first op it cannot convert; `proto` is then unchanged.
Status upgrade_default_opset(onnx::ModelProto& proto, int target, std::vector<std::string>* notes);

// Per-layer SQNR: runs the float and the quantized model side by side on up to `max_samples` samples
// and compares each listed tensor (float vs quantized value of that node's output). dB by tensor.
StatusOr<std::map<std::string, double>> layer_sqnr(std::shared_ptr<const Model> float_model,
                                                   std::shared_ptr<const Model> quant_model,
                                                   const std::vector<std::string>& tensors, Dataset& data,
                                                   size_t max_samples, const ExecOptions& exec);

// --max-drop METRIC=VALUE: "top1=0.5%" (top-1 agreement may drop by at most 0.5 points),
// "cosine=0.999" (min cosine at least 0.999).
struct MaxDrop {
  std::string metric;  // "top1" or "cosine"
  double value = 0;    // top1: allowed drop as a fraction; cosine: minimum cosine
  bool holds(const Fidelity& f) const;
  std::string describe() const;
};
StatusOr<MaxDrop> parse_max_drop(const std::string& s);

struct QuantizeJob {
  std::filesystem::path model_path, output_path;
  std::filesystem::path data_path;     // calibration data (or empty with a table)
  std::filesystem::path table_path;    // --table
  std::filesystem::path holdout_path;  // held-out data for fidelity (default: the calibration data)
  CalibOptions calib;
  QuantizeOptions quant;
  std::optional<MaxDrop> max_drop;
  size_t sqnr_samples = 8;       // samples used for per-layer SQNR
  size_t fidelity_samples = 0;   // 0: all held-out samples
  bool measure_fidelity = true;  // false: skip the held-out comparison (benchmarks); --max-drop needs it
  // false: the report's model.sha256 is null and the model file is not hashed (a 150 MB model costs
  // about 0.6 s of CPU), unless a --table has to be checked against it. The CLI hashes only when the
  // JSON report is written.
  bool hash_model = true;
  // false: no energy estimate (the report's energy is null, the table has no energy line), and
  // calibration's first sample runs like the others instead of unfused with a cost recorder. The CLI
  // estimates only when the report or the table is shown.
  bool estimate_energy = true;
  DatasetOptions data_opts;
};

struct QuantizeRunResult {
  Json report;       // the JSON report (docs/formats/quantize-report.md)
  std::string text;  // the human table
  Status gate;       // kQualityGate when --max-drop could not be met (then no model is written)
};

StatusOr<QuantizeRunResult> run_quantize(const QuantizeJob& job);

}  // namespace frugal
