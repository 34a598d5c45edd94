// Copies of a model's structure without its weight bytes, for passes that only need names, types,
// shapes and small constants (node selection, shape inference). Internal to lib/passes.
#pragma once

#include <onnx/onnx_pb.h>

namespace frugal::passes {

// A tensor with the name, type and shape of `t` but none of its data.
inline void tensor_shell(const onnx::TensorProto& t, onnx::TensorProto* out) {
  out->set_name(t.name());
  out->set_data_type(t.data_type());
  *out->mutable_dims() = t.dims();
}

// The model without the bytes of its initializers (names, types and shapes kept): what node
// selection needs, at a fraction of a full copy's memory. Initializers of at most `keep_bytes`
// serialized bytes keep their data (ONNX shape inference reads small shape and axes constants).
inline onnx::ModelProto structure_copy(const onnx::ModelProto& src, size_t keep_bytes = 0) {
  onnx::ModelProto m;
  m.set_ir_version(src.ir_version());
  *m.mutable_opset_import() = src.opset_import();
  m.set_producer_name(src.producer_name());
  m.set_producer_version(src.producer_version());
  m.set_domain(src.domain());
  m.set_model_version(src.model_version());
  *m.mutable_functions() = src.functions();
  const onnx::GraphProto& g = src.graph();
  onnx::GraphProto* o = m.mutable_graph();
  o->set_name(g.name());
  *o->mutable_node() = g.node();
  *o->mutable_input() = g.input();
  *o->mutable_output() = g.output();
  *o->mutable_value_info() = g.value_info();
  for (const auto& t : g.initializer()) {
    if (keep_bytes && t.ByteSizeLong() <= keep_bytes)
      *o->add_initializer() = t;
    else
      tensor_shell(t, o->add_initializer());
  }
  for (const auto& s : g.sparse_initializer()) {
    onnx::SparseTensorProto* d = o->add_sparse_initializer();
    tensor_shell(s.values(), d->mutable_values());
    tensor_shell(s.indices(), d->mutable_indices());
    *d->mutable_dims() = s.dims();
  }
  return m;
}

}  // namespace frugal::passes
