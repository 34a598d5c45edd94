// Layer-wise reconstruction for pruning: the second-order statistics of a layer's input
// (H = sum over samples of x x^T, accumulated streaming by an Observer on the Executor) and a
// SparseGPT-style solver that prunes a weight matrix while updating the surviving weights to keep
// the layer's output on that data close to the dense layer's output.
//
// Weight matrices here are "reduction views": rows = output features (filters), cols = the
// reduction axis (MatMul/Gemm: K; Conv: kernel position major, input channel minor, i.e.
// col = (kh*KW + kw) * C_in + c, the layout sparse tensor cores group along). Row-major float.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "frugal/executor.h"
#include "frugal/status.h"

namespace frugal {

// How a layer's activation input maps to the columns of its reduction view.
struct HessianLayer {
  size_t node_index = 0;      // the node whose input 0 is observed
  std::string op_type;        // "MatMul", "Gemm" or "Conv" (2-D, group 1)
  int64_t cols = 0;           // reduction size
  bool trans_a = false;       // Gemm transA
  // Conv geometry (2-D): kernel, strides, dilations, pads (top, left, bottom, right), auto_pad.
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t pt = 0, pl = 0, pb = 0, pr = 0;
  std::string auto_pad = "NOTSET";
  bool full = true;  // accumulate the full cols x cols matrix; false: only its diagonal
};

// Accumulates H = X^T X (double precision) for each registered layer's input as the Executor runs.
// Memory is O(cols^2) per layer, independent of the number of samples.
class HessianObserver : public Observer {
 public:
  void add_layer(const HessianLayer& layer);
  Status on_node(const NodeEvent& ev) override;

  bool has(size_t node_index) const { return stats_.count(node_index) != 0; }
  // Row-major cols x cols (the full matrix; only the diagonal is filled when full == false).
  const std::vector<double>& hessian(size_t node_index) const { return stats_.at(node_index).h; }
  // Per-column sum of squares (the diagonal of H): ||X_j||_2^2.
  std::vector<double> column_sq_norms(size_t node_index) const;
  // Number of rows of X seen (samples x positions).
  int64_t rows_seen(size_t node_index) const { return stats_.at(node_index).rows; }
  const HessianLayer& layer(size_t node_index) const { return stats_.at(node_index).layer; }

 private:
  struct Stat {
    HessianLayer layer;
    std::vector<double> h;
    int64_t rows = 0;
  };
  std::map<size_t, Stat> stats_;
};

// Adds a block X (n x cols, row-major) to H (cols x cols, row-major, symmetric, both halves kept).
void accumulate_xtx(const float* x, int64_t n, int64_t cols, std::vector<double>& h, bool full = true);

struct SparseGptOptions {
  double damp = 0.01;       // relative damping: lambda = damp * mean(diag(H))
  int64_t block_size = 128;  // columns per lazy-update block (rounded up to a multiple of M for N:M)
  int64_t prune_count = 0;   // unstructured: exact number of weights to zero in the whole matrix
  int nm_n = 0, nm_m = 0;    // N:M: keep at most N of every M consecutive columns in each row
};

// SparseGPT (Frantar & Alistarh 2023): walks the columns left to right, zeroing the chosen weights and
// spreading each one's error onto the not-yet-visited columns through the Cholesky factor of the damped
// inverse Hessian. `w` (rows x cols) is updated in place; `pruned` (same size) marks zeros chosen.
// Columns whose diagonal in H is zero (never activated) are pruned first: they cost nothing.
Status sparsegpt_prune(std::vector<float>& w, int64_t rows, int64_t cols, const std::vector<double>& h,
                       const SparseGptOptions& opts, std::vector<uint8_t>* pruned);

// Relative output error of replacing `dense` by `sparse` on the data behind H:
// tr(dW H dW^T) / tr(W H W^T) = ||X dW^T||^2 / ||X W^T||^2. 0 when the layer's output is zero.
double relative_output_error(const std::vector<float>& dense, const std::vector<float>& sparse, int64_t rows,
                             int64_t cols, const std::vector<double>& h);

}  // namespace frugal
