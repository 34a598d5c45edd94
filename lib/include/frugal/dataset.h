// Datasets: iterators of named input sets for a model.
//   - a directory of ONNX test_data_set_N/ folders (input_K.pb bound by tensor name, or by position
//     when names are empty), or one such folder;
//   - a single .npz (keys = input names, or arr_0.. bound by position): arrays of the input's rank
//     are one sample; arrays of rank + 1 are a stack of samples along axis 0;
//   - a directory of .npz files (or .npy files for single-input models), each one sample or a stack
//     of samples by the same rule, taken file by file in name order;
//   - a single .pb or .npy file for a single-input model;
//   - synthetic inputs drawn from the declared shapes (symbolic dims from --dims).
// Readers check dtype and shape against the model and name the input that is wrong.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "frugal/executor.h"
#include "frugal/model.h"
#include "frugal/status.h"

namespace frugal {

class Dataset {
 public:
  virtual ~Dataset() = default;
  // Number of samples when known up front.
  virtual size_t size() const = 0;
  // Reads sample i (0 <= i < size()).
  virtual StatusOr<NamedTensors> get(size_t i) = 0;
  // A description for reports ("3 test_data_set dirs under data/").
  virtual std::string describe() const = 0;
  // A fingerprint of the data (sha256 over file names and contents, or of the synthetic recipe).
  virtual std::string fingerprint() const = 0;
  // Reference outputs for sample i when the source has them (output_K.pb); empty otherwise.
  virtual StatusOr<NamedTensors> expected(size_t /*i*/) { return NamedTensors{}; }
};

struct DatasetOptions {
  std::map<std::string, int64_t> dims;  // symbolic dim values
  size_t synthetic_count = 0;           // > 0: synthetic data instead of a path
  uint64_t seed = 0;
};

// Opens a dataset for `graph` from a path (test_data_set dirs, .pb, .npy, .npz) or synthetic options.
StatusOr<std::unique_ptr<Dataset>> open_dataset(const Graph& graph, const std::filesystem::path& path,
                                                const DatasetOptions& opts);
StatusOr<std::unique_ptr<Dataset>> synthetic_dataset(const Graph& graph, const DatasetOptions& opts);

// Resolves the concrete shape of a graph input: declared dims, symbolic ones from `dims`.
StatusOr<Shape> concrete_input_shape(const ValueInfo& vi, const std::map<std::string, int64_t>& dims);

// Checks a named input set against the graph inputs (names, dtypes, ranks, fixed dims and symbolic
// dims given in `dims`); the message names the wrong input.
Status check_inputs(const Graph& graph, const NamedTensors& inputs, const std::map<std::string, int64_t>& dims = {});

// Reference outputs for sample `sample` from DIR laid out like ONNX test data or `frugal run -o`:
// DIR/test_data_set_<sample>/output_K.pb (or DIR/output_K.pb when DIR is one set and sample is 0).
// Bound to graph outputs by tensor name, else by position.
StatusOr<NamedTensors> read_reference_outputs(const Graph& graph, const std::filesystem::path& dir, size_t sample);

// numpy formats.
struct NpyHeader {
  DType dtype = DType::kUndefined;
  Shape shape;
  size_t data_offset = 0;  // where the array data starts
};
StatusOr<NpyHeader> parse_npy_header(const void* data, size_t size, const std::string& what);
StatusOr<NpyHeader> read_npy_header(const std::filesystem::path& path);
// Headers of every array of an .npz, read without decompressing the data.
StatusOr<std::vector<std::pair<std::string, NpyHeader>>> read_npz_headers(const std::filesystem::path& path);
StatusOr<Tensor> read_npy(const std::filesystem::path& path);
StatusOr<Tensor> parse_npy(const void* data, size_t size, const std::string& what);
Status write_npy(const std::filesystem::path& path, const Tensor& t);
// All arrays of an .npz (stored or deflated), keyed by name without the .npy suffix, in file order.
StatusOr<NamedTensors> read_npz(const std::filesystem::path& path);

}  // namespace frugal
