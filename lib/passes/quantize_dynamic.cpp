// Dynamic (weight-only) quantization: int8 weights behind DequantizeLinear, activations stay float.
// The model shrinks about 4x in weights; runtimes fold or fuse the DequantizeLinear as they can.
#include "frugal/quantize.h"

namespace frugal {

StatusOr<QuantizeResult> quantize_weight_only(const Model& model, const QuantizeOptions& opts);  // quantize_static.cpp

StatusOr<QuantizeResult> quantize_dynamic(const Model& model, const QuantizeOptions& opts) {
  QuantizeOptions o = opts;
  o.dynamic = true;
  FRUGAL_ASSIGN_OR_RETURN(QuantizeResult r, quantize_weight_only(model, o));
  r.notes.push_back("dynamic: weight-only int8 (DequantizeLinear on weights); activations stay float");
  return r;
}

}  // namespace frugal
