// Sparse storage for pruned weights: ONNX sparse_initializer in COO form with int64 linear indices
// (what the ONNX checker accepts and onnxruntime densifies at load). Written only when smaller than
// the dense tensor: 12 bytes per non-zero against 4 per element, so above ~67% sparsity.
#include <cstring>

#include "frugal/prune.h"

namespace frugal {

Status convert_to_sparse_storage(onnx::ModelProto& proto, const std::vector<std::string>& candidates,
                                 std::vector<std::string>* converted) {
  if (proto.ir_version() < 6) return OkStatus();  // sparse_initializer arrived with IR version 6
  auto* g = proto.mutable_graph();
  for (const auto& name : candidates) {
    int idx = -1;
    for (int i = 0; i < g->initializer_size(); ++i)
      if (g->initializer(i).name() == name) idx = i;
    if (idx < 0) continue;
    const onnx::TensorProto& t = g->initializer(idx);
    if (t.data_type() != onnx::TensorProto::FLOAT || !t.has_raw_data()) continue;
    int64_t numel = 1;
    for (auto d : t.dims()) numel *= d;
    if (static_cast<int64_t>(t.raw_data().size()) != numel * 4) continue;
    const char* raw = t.raw_data().data();
    // The "zero" that may be left out is +0.0 exactly (all bits clear): -0.0 and NaN are values and
    // are stored, so densifying gives back the same bits.
    std::vector<int64_t> idxs;
    std::string vals;
    for (int64_t e = 0; e < numel; ++e) {
      uint32_t bits;
      std::memcpy(&bits, raw + e * 4, 4);
      if (bits != 0) {
        idxs.push_back(e);
        vals.append(raw + e * 4, 4);
      }
    }
    const size_t sparse_bytes = idxs.size() * 12 + 64, dense_bytes = static_cast<size_t>(numel) * 4;
    if (sparse_bytes >= dense_bytes) continue;
    onnx::SparseTensorProto sp;
    for (auto d : t.dims()) sp.add_dims(d);
    auto* v = sp.mutable_values();
    v->set_name(name);
    v->set_data_type(onnx::TensorProto::FLOAT);
    v->add_dims(static_cast<int64_t>(idxs.size()));
    v->set_raw_data(vals);
    auto* ix = sp.mutable_indices();
    ix->set_data_type(onnx::TensorProto::INT64);
    ix->add_dims(static_cast<int64_t>(idxs.size()));
    ix->set_raw_data(std::string(reinterpret_cast<const char*>(idxs.data()), idxs.size() * 8));
    *g->add_sparse_initializer() = std::move(sp);
    g->mutable_initializer()->DeleteSubrange(idx, 1);
    // A sparse initializer may not double as a graph input.
    for (int i = 0; i < g->input_size(); ++i)
      if (g->input(i).name() == name) {
        g->mutable_input()->DeleteSubrange(i, 1);
        break;
      }
    if (converted) converted->push_back(name);
  }
  return OkStatus();
}

}  // namespace frugal
