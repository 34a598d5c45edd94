// Energy and carbon: what a model costs per inference on a given device.
//
//   CostModel    per node: MACs (multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul and their
//                quantized forms) and other FLOPs by compute dtype, weight bytes (stored dtype), activation
//                bytes read and written, weight sparsity (exact zeros; 2:4 groups along the reduction axis).
//                Shapes come from one run of the Executor on synthetic inputs (symbolic dims from --dims).
//   DeviceProfile peak throughput per dtype, memory bandwidth, board power, pJ per MAC and per DRAM byte,
//                each number with its source (lib/energy/data/<name>.json, or a user file).
//   Estimate     roofline time x board power, and a per-op energy model; carbon = energy x PUE x grid
//                intensity (lib/energy/data/regions.json). Every figure here is an estimate and says so.
//   Measurement  RAPL (powercap sysfs) and NVML (dlopen'd libnvidia-ml) energy counters for `frugal bench`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "frugal/dtype.h"
#include "frugal/executor.h"
#include "frugal/kernel.h"
#include "frugal/model.h"
#include "frugal/report.h"
#include "frugal/status.h"
#include "frugal/tensor.h"

namespace frugal {

// ---- Cost model -------------------------------------------------------------------------------

// What the cost model knows about one node input.
struct CostInput {
  Shape shape;
  DType dtype = DType::kUndefined;  // the dtype the node sees
  bool is_weight = false;           // a constant (initializer, or computed from constants only)
  DType stored_dtype = DType::kUndefined;  // weights: dtype as stored (int8 for a QDQ weight); else = dtype
  // Activations: 8-bit type when the value comes from DequantizeLinear of an 8-bit tensor (QDQ), so
  // a runtime that fuses Q/DQ reads 1 byte per element and computes in int8.
  DType quantized_from = DType::kUndefined;
  int64_t zeros = 0;                // weights: exact zeros in the stored tensor (-1: unknown)
  bool pattern_2_4 = false;         // weights: every group of 4 along the reduction axis has >= 2 zeros
};

struct CostOutput {
  Shape shape;
  DType dtype = DType::kUndefined;
  bool quantized_consumers = false;  // every consumer is QuantizeLinear to 8 bits: written as 1 byte
};

struct NodeCost {
  std::string name, op_type, family;  // family: "conv", "matmul", "elementwise", "activation", ...
  std::string compute_dtype;          // "fp32", "fp16", "bf16", "fp64", "int8", "other"
  double macs = 0;                    // multiply-accumulates
  double flops = 0;                   // other arithmetic operations (not MACs)
  int64_t params = 0;                 // weight elements read by the node
  double weight_bytes = 0;            // by stored dtype
  double act_read_bytes = 0, act_write_bytes = 0;
  double weight_zero_fraction = 0;    // exact zeros / params for the MAC operand weight
  bool pattern_2_4 = false;           // MAC weight is 2:4 sparse along the reduction axis
  bool folded = false;                // all inputs constant: a runtime folds it; costs nothing per inference
  bool fused = false;                 // Q/DQ on activations: fused into neighbours by QDQ runtimes
  double bytes() const { return weight_bytes + act_read_bytes + act_write_bytes; }
};

// The cost of one node from its definition and shapes. Pure: unit tests call it with hand-made shapes.
StatusOr<NodeCost> node_cost(const NodeDef& node, const std::vector<CostInput>& inputs,
                             const std::vector<CostOutput>& outputs);

// Whether `w` (any numeric dtype) is 2:4 sparse along `axis`: every run of 4 consecutive elements along
// that axis has at least 2 exact zeros (elements equal to `zero`). False when the axis length is not a
// multiple of 4.
bool is_2_4_sparse(const Tensor& w, int64_t axis, double zero = 0.0);

struct ModelCost {
  std::string model_path;
  std::vector<std::pair<std::string, Shape>> input_shapes;  // the shapes the cost was computed for
  std::vector<NodeCost> nodes;  // in topological order
  // Totals over nodes that are not folded.
  double macs = 0, flops = 0, weight_bytes = 0, act_read_bytes = 0, act_write_bytes = 0;
  int64_t params = 0;
  std::map<std::string, double> macs_by_dtype;
  double macs_2_4 = 0;               // MACs whose weight is 2:4 sparse (halved on sparse tensor cores)
  double macs_zero_weights = 0;      // MACs multiplying an exact-zero weight (unstructured upper bound)
  uintmax_t file_bytes = 0;
};

struct CostOptions {
  std::map<std::string, int64_t> dims;  // symbolic dim values; unset symbolic dims default to 1
};

// Runs `model` once on synthetic inputs (zeros of the declared shapes) and records every node's shapes.
StatusOr<ModelCost> model_cost(std::shared_ptr<const Model> model, const CostOptions& opts = {});
// The input shapes model_cost runs at: declared dims, symbolic ones from opts.dims or 1.
StatusOr<std::vector<std::pair<std::string, Shape>>> cost_input_shapes(const Graph& graph, const CostOptions& opts = {});

// The cost of a model from a run that happens anyway (calibration's first sample) instead of a run of
// its own: attach it as the Observer of exactly one run, then finish(). It needs every node, so that
// run is not fused. The result equals model_cost's when the run's input shapes (input_shapes())
// equal cost_input_shapes(); the caller checks that.
class CostRecorder : public Observer {
 public:
  CostRecorder(const Model& model, const Graph& graph);  // both must outlive the recorder
  ~CostRecorder() override;
  Status on_inputs(const NamedTensors& inputs) override;
  Status on_node(const NodeEvent& ev) override;
  const std::vector<std::pair<std::string, Shape>>& input_shapes() const;
  // name -> (shape, dtype) of every tensor the run produced or read.
  const std::map<std::string, std::pair<Shape, DType>>& shapes() const;
  StatusOr<ModelCost> finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The cost of a model derived from another (a quantized copy) without running it: tensors named in
// `known` (from a run of the source) keep their shapes, and the outputs a quantizer adds are sized
// through QuantizeLinear, DequantizeLinear, Identity and Cast (element-preserving). Fails (NotFound)
// when some output cannot be sized that way; the caller then runs model_cost. Weight sparsity of
// DequantizeLinear outputs is read from the integer initializers (zero where q equals the zero point).
StatusOr<ModelCost> model_cost_derived(const Model& model, const std::map<std::string, std::pair<Shape, DType>>& known);

// The same from recorded shapes (the executor-free half; tests and other commands that already ran).
// `shapes` maps tensor name -> (shape, dtype) for every node input and output that is not an initializer.
StatusOr<ModelCost> model_cost_from_shapes(const Model& model,
                                           const std::map<std::string, std::pair<Shape, DType>>& shapes);

// ---- Device profiles, regions ------------------------------------------------------------------

struct Sourced {
  double value = 0;
  std::string source;
};

struct DeviceProfile {
  std::string name, description, kind;  // kind: "gpu" | "cpu" | "soc"
  std::map<std::string, Sourced> peak_tops;  // dense tensor/SIMD peak per dtype in T(FL)OPS (1 MAC = 2 ops):
                                             // fp32, fp16, bf16, int8; optional fp16_sparse, int8_sparse
  Sourced vector_tflops;       // peak for non-MAC arithmetic (fp32 SIMD/CUDA cores)
  Sourced memory_bandwidth_gbs;
  Sourced tdp_w, idle_w;
  std::map<std::string, Sourced> pj_per_mac;  // fp32, fp16, bf16, int8
  Sourced pj_per_flop;         // non-MAC arithmetic
  Sourced pj_per_dram_byte;
  Sourced pue;                 // default PUE for where this device usually runs
  bool sparse_tensor_cores = false;
  std::string source_file;     // "builtin:h100.json" or the user's path
};

// The profiles shipped with frugal, by name ("h100", "a100", "l4", "t4", "xeon", "laptop", "jetson-orin").
std::vector<std::string> builtin_profile_names();
StatusOr<DeviceProfile> builtin_profile(const std::string& name);
// Parses and validates a profile; the error names `what` and the missing or bad field (kInvalidData).
StatusOr<DeviceProfile> parse_device_profile(const std::string& json_text, const std::string& what);
StatusOr<DeviceProfile> load_device_profile(const std::filesystem::path& path);

struct Region {
  std::string code, name;
  double grid_g_per_kwh = 0;
  std::string source;
  int year = 0;
};
std::vector<Region> builtin_regions();
StatusOr<Region> find_region(const std::string& code);

// ---- Estimates ---------------------------------------------------------------------------------

struct EnergyOptions {
  std::string profile = "h100";        // builtin name, ignored when profile_file is set
  std::filesystem::path profile_file;  // --device-profile
  std::string region = "world";
  std::optional<double> grid_g_per_kwh;  // overrides the region's value
  std::optional<double> pue;             // overrides the profile's default
  CostOptions cost;
};

struct EnergyEstimate {
  double time_s = 0;              // roofline: sum over nodes of max(compute, memory)
  double compute_time_s = 0, memory_time_s = 0;
  double roofline_energy_j = 0;   // time_s x TDP
  double roofline_dynamic_j = 0;  // time_s x (TDP - idle)
  double per_op_energy_j = 0;     // pJ/MAC x MACs + pJ/FLOP x FLOPs + pJ/byte x DRAM bytes
  double per_op_compute_j = 0, per_op_memory_j = 0;
  std::vector<double> node_time_s, node_energy_j;  // per node (per-op model), parallel to ModelCost::nodes
  double pue = 1, grid_g_per_kwh = 0;
  std::string region;
  double carbon_g_roofline = 0, carbon_g_per_op = 0;  // per inference, after PUE
};

// Turns counts into time, energy and carbon on `profile`. `region` gives the grid intensity unless
// `grid_override` is set; `pue_override` replaces the profile's default PUE.
EnergyEstimate estimate_energy(const ModelCost& cost, const DeviceProfile& profile, const Region& region,
                               std::optional<double> grid_override = {}, std::optional<double> pue_override = {});

// Resolves the profile and region named in `opts` (errors name the flag or file at fault).
StatusOr<DeviceProfile> resolve_profile(const EnergyOptions& opts);
StatusOr<Region> resolve_region(const EnergyOptions& opts);

// The JSON report of `frugal energy` (schema in docs/formats/energy.md). `compare` may be null.
Json energy_report_json(const ModelCost& model, const EnergyEstimate& est, const ModelCost* compare,
                        const EnergyEstimate* compare_est, const DeviceProfile& profile, const Region& region,
                        const EnergyOptions& opts);
// The human table (per op family and totals; side by side when `compare` is set).
std::string energy_report_text(const ModelCost& model, const EnergyEstimate& est, const ModelCost* compare,
                               const EnergyEstimate* compare_est);
// One self-contained HTML page (inline CSS and SVG, no scripts, no external resources).
// `fidelity` (optional) is a fidelity_json() object shown in the comparison.
std::string energy_report_html(const ModelCost& model, const EnergyEstimate& est, const ModelCost* compare,
                               const EnergyEstimate* compare_est, const DeviceProfile& profile,
                               const Region& region, const Json* fidelity = nullptr);

// The energy section other commands put in their reports: original vs compressed on opts' profile.
StatusOr<Json> energy_section(const Model& original, const Model& compressed, const EnergyOptions& opts);
// The same from costs the caller already has (CostRecorder, model_cost_derived).
StatusOr<Json> energy_section(const ModelCost& original, const ModelCost& compressed, const EnergyOptions& opts);
// Two lines for the human table of those commands, from an energy_section() object (or its error).
std::string energy_section_text(const Json& section);

// ---- Measured energy ---------------------------------------------------------------------------

// A cumulative energy counter (RAPL package domains summed, or an NVML GPU).
class EnergyMeter {
 public:
  virtual ~EnergyMeter() = default;
  virtual std::string name() const = 0;  // "RAPL (intel-rapl:0, intel-rapl:1)", "NVML GPU 0 (NVIDIA H100...)"
  // Joules since an arbitrary origin; wraps are handled inside (call at least once per wrap period).
  virtual StatusOr<double> read_joules() = 0;
};

// RAPL via powercap sysfs under `root` (default /sys/class/powercap): every top-level
// intel-rapl:N/energy_uj (package domains), with max_energy_range_uj wrap handling. The error says
// why it cannot be read (no powercap directory, no RAPL domains, permission denied).
StatusOr<std::unique_ptr<EnergyMeter>> open_rapl_meter(const std::filesystem::path& root = "/sys/class/powercap");
// NVML via dlopen("libnvidia-ml.so.1"), nvmlDeviceGetTotalEnergyConsumption of GPU `index`.
StatusOr<std::unique_ptr<EnergyMeter>> open_nvml_meter(unsigned index = 0);

}  // namespace frugal
