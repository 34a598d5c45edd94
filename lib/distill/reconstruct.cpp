#include "frugal/reconstruct.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <Eigen/Cholesky>
#include <Eigen/Core>

namespace frugal {

namespace {

using RowMatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Rows of im2col patches are built in chunks so memory stays bounded for large feature maps.
constexpr int64_t kPatchChunkRows = 2048;

Status accumulate_conv(const HessianLayer& L, const Tensor& x, std::vector<double>& h, int64_t* rows) {
  if (x.rank() != 4) return Unsupported("data-aware statistics for Conv need a 4-D input, got " + shape_str(x.shape()));
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  if (C * L.kh * L.kw != L.cols)
    return InvalidData("Conv input " + shape_str(x.shape()) + " does not match the weight's reduction size " +
                       std::to_string(L.cols));
  int64_t pt = L.pt, pl = L.pl, pb = L.pb, pr = L.pr;
  const int64_t ekh = (L.kh - 1) * L.dh + 1, ekw = (L.kw - 1) * L.dw + 1;
  if (L.auto_pad == "SAME_UPPER" || L.auto_pad == "SAME_LOWER") {
    auto same = [&](int64_t in, int64_t s, int64_t ek, int64_t* b, int64_t* e) {
      int64_t out = (in + s - 1) / s;
      int64_t total = std::max<int64_t>((out - 1) * s + ek - in, 0);
      *b = L.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      *e = total - *b;
    };
    same(H, L.sh, ekh, &pt, &pb);
    same(W, L.sw, ekw, &pl, &pr);
  } else if (L.auto_pad == "VALID") {
    pt = pl = pb = pr = 0;
  }
  const int64_t OH = (H + pt + pb - ekh) / L.sh + 1, OW = (W + pl + pr - ekw) / L.sw + 1;
  if (OH <= 0 || OW <= 0) return InvalidData("Conv output would be empty for input " + shape_str(x.shape()));
  Tensor xf = x.dtype() == DType::kFloat ? x : x.to_float();
  const float* src = xf.data<float>();
  std::vector<float> patch(static_cast<size_t>(kPatchChunkRows * L.cols));
  int64_t filled = 0;
  auto flush = [&] {
    if (filled) accumulate_xtx(patch.data(), filled, L.cols, h, L.full);
    *rows += filled;
    filled = 0;
  };
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        float* p = patch.data() + filled * L.cols;
        for (int64_t ki = 0; ki < L.kh; ++ki)
          for (int64_t kj = 0; kj < L.kw; ++kj) {
            const int64_t ih = oh * L.sh - pt + ki * L.dh, iw = ow * L.sw - pl + kj * L.dw;
            float* dst = p + (ki * L.kw + kj) * C;
            const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
            for (int64_t c = 0; c < C; ++c) dst[c] = inside ? src[((n * C + c) * H + ih) * W + iw] : 0.0f;
          }
        if (++filled == kPatchChunkRows) flush();
      }
  flush();
  return OkStatus();
}

}  // namespace

void accumulate_xtx(const float* x, int64_t n, int64_t cols, std::vector<double>& h, bool full) {
  Eigen::Map<const RowMatF> X(x, n, cols);
  if (!full) {
    for (int64_t j = 0; j < cols; ++j) h[j * cols + j] += X.col(j).cast<double>().squaredNorm();
    return;
  }
  Eigen::Map<RowMatD> H(h.data(), cols, cols);
  RowMatD Xd = X.cast<double>();
  H.noalias() += Xd.transpose() * Xd;
}

void HessianObserver::add_layer(const HessianLayer& layer) {
  Stat s;
  s.layer = layer;
  s.h.assign(static_cast<size_t>(layer.cols * layer.cols), 0.0);
  stats_[layer.node_index] = std::move(s);
}

std::vector<double> HessianObserver::column_sq_norms(size_t node_index) const {
  const Stat& s = stats_.at(node_index);
  std::vector<double> d(static_cast<size_t>(s.layer.cols));
  for (int64_t j = 0; j < s.layer.cols; ++j) d[j] = s.h[j * s.layer.cols + j];
  return d;
}

Status HessianObserver::on_node(const NodeEvent& ev) {
  auto it = stats_.find(ev.node_index);
  if (it == stats_.end()) return OkStatus();
  Stat& s = it->second;
  const HessianLayer& L = s.layer;
  if (ev.inputs.empty() || !ev.inputs[0]) return OkStatus();
  const Tensor& x = *ev.inputs[0];
  if (L.op_type == "Conv") return accumulate_conv(L, x, s.h, &s.rows).with_context(ev.node.label());
  Tensor xf = x.dtype() == DType::kFloat ? x : x.to_float();
  if (L.trans_a) {
    if (xf.rank() != 2 || xf.dim(0) != L.cols)
      return ev.node.error(StatusCode::kInvalidData, "input A " + shape_str(x.shape()) + " does not match K=" +
                                                         std::to_string(L.cols));
    // A is [K, M]: the rows of X are its columns.
    const int64_t M = xf.dim(1);
    std::vector<float> t(static_cast<size_t>(M * L.cols));
    const float* a = xf.data<float>();
    for (int64_t k = 0; k < L.cols; ++k)
      for (int64_t m = 0; m < M; ++m) t[m * L.cols + k] = a[k * M + m];
    accumulate_xtx(t.data(), M, L.cols, s.h, L.full);
    s.rows += M;
    return OkStatus();
  }
  if (xf.rank() < 1 || xf.dim(-1) != L.cols)
    return ev.node.error(StatusCode::kInvalidData,
                         "input " + shape_str(x.shape()) + " does not match K=" + std::to_string(L.cols));
  const int64_t n = xf.numel() / L.cols;
  accumulate_xtx(xf.data<float>(), n, L.cols, s.h, L.full);
  s.rows += n;
  return OkStatus();
}

Status sparsegpt_prune(std::vector<float>& w, int64_t rows, int64_t cols, const std::vector<double>& h,
                       const SparseGptOptions& opts, std::vector<uint8_t>* pruned) {
  if (static_cast<int64_t>(w.size()) != rows * cols || static_cast<int64_t>(h.size()) != cols * cols)
    return Internal("sparsegpt_prune: sizes do not match");
  const bool nm = opts.nm_m > 0;
  if (nm && (opts.nm_n < 0 || opts.nm_n >= opts.nm_m)) return InvalidArgument("N:M needs 0 <= N < M");
  RowMatD W = Eigen::Map<const RowMatF>(w.data(), rows, cols).cast<double>();
  RowMatD H = Eigen::Map<const RowMatD>(h.data(), cols, cols);
  std::vector<uint8_t> dead(static_cast<size_t>(cols), 0);
  for (int64_t j = 0; j < cols; ++j)
    if (H(j, j) <= 0) {
      // A column never activated on the data: its weights do not affect the output there.
      dead[j] = 1;
      H(j, j) = 1;
      W.col(j).setZero();
    }
  const double mean_diag = H.diagonal().mean();
  H.diagonal().array() += opts.damp * mean_diag;
  Eigen::LLT<Eigen::MatrixXd> llt(H);
  if (llt.info() != Eigen::Success)
    return Unsupported("the damped Hessian is not positive definite (raise --damp)");
  Eigen::MatrixXd Hinv = llt.solve(Eigen::MatrixXd::Identity(cols, cols));
  Eigen::LLT<Eigen::MatrixXd> llt2(Hinv);
  if (llt2.info() != Eigen::Success) return Unsupported("the inverse Hessian is not positive definite (raise --damp)");
  const Eigen::MatrixXd U = llt2.matrixU();  // Hinv = U^T U

  Eigen::Matrix<uint8_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> mask =
      Eigen::Matrix<uint8_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>::Zero(rows, cols);
  int64_t bs = std::max<int64_t>(1, opts.block_size);
  if (nm) bs = (bs + opts.nm_m - 1) / opts.nm_m * opts.nm_m;
  const __int128 total = static_cast<__int128>(rows) * cols;
  auto quota_until = [&](int64_t col_end) {  // cumulative unstructured quota, rounded down
    return total == 0 ? int64_t{0} : static_cast<int64_t>(static_cast<__int128>(opts.prune_count) * rows * col_end / total);
  };

  for (int64_t i1 = 0; i1 < cols; i1 += bs) {
    const int64_t i2 = std::min(i1 + bs, cols), count = i2 - i1;
    RowMatD W1 = W.middleCols(i1, count);
    RowMatD Q1 = RowMatD::Zero(rows, count), Err1 = RowMatD::Zero(rows, count);
    const Eigen::MatrixXd U1 = U.block(i1, i1, count, count);
    if (!nm) {
      // Exact per-block quota so the whole matrix ends at exactly prune_count zeros.
      int64_t k = quota_until(i2) - quota_until(i1);
      if (i2 == cols) k = opts.prune_count - quota_until(i1);
      std::vector<std::pair<double, int64_t>> sc(static_cast<size_t>(rows * count));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < count; ++c) {
          double d = U1(c, c);
          sc[r * count + c] = {W1(r, c) * W1(r, c) / (d * d), r * count + c};
        }
      k = std::clamp<int64_t>(k, 0, rows * count);
      if (k > 0) {
        std::nth_element(sc.begin(), sc.begin() + (k - 1), sc.end());
        for (int64_t t = 0; t < k; ++t) mask(sc[t].second / count, i1 + sc[t].second % count) = 1;
      }
    }
    for (int64_t i = 0; i < count; ++i) {
      if (nm && i % opts.nm_m == 0) {
        const int64_t g = std::min<int64_t>(opts.nm_m, count - i);
        const int64_t drop = std::max<int64_t>(0, g - opts.nm_n);
        std::vector<std::pair<double, int64_t>> sc(static_cast<size_t>(g));
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < g; ++c) {
            double d = U1(i + c, i + c);
            sc[c] = {W1(r, i + c) * W1(r, i + c) / (d * d), c};
          }
          std::stable_sort(sc.begin(), sc.end(), [](auto& a, auto& b) { return a.first < b.first; });
          for (int64_t t = 0; t < drop; ++t) mask(r, i1 + i + sc[t].second) = 1;
        }
      }
      Eigen::VectorXd wc = W1.col(i);
      Eigen::VectorXd q = wc;
      for (int64_t r = 0; r < rows; ++r)
        if (mask(r, i1 + i)) q(r) = 0;
      Q1.col(i) = q;
      const Eigen::VectorXd err = (wc - q) / U1(i, i);
      W1.rightCols(count - i).noalias() -= err * U1.row(i).tail(count - i);
      Err1.col(i) = err;
    }
    W.middleCols(i1, count) = Q1;
    if (i2 < cols) W.rightCols(cols - i2).noalias() -= Err1 * U.block(i1, i2, count, cols - i2);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      w[r * cols + c] = mask(r, c) ? 0.0f : static_cast<float>(W(r, c));
    }
  if (pruned) pruned->assign(mask.data(), mask.data() + rows * cols);
  (void)dead;
  return OkStatus();
}

double relative_output_error(const std::vector<float>& dense, const std::vector<float>& sparse, int64_t rows,
                             int64_t cols, const std::vector<double>& h) {
  Eigen::Map<const RowMatF> Wd(dense.data(), rows, cols), Ws(sparse.data(), rows, cols);
  Eigen::Map<const RowMatD> H(h.data(), cols, cols);
  RowMatD D = (Wd - Ws).cast<double>();
  RowMatD Wdd = Wd.cast<double>();
  const double num = (D * H).cwiseProduct(D).sum();
  const double den = (Wdd * H).cwiseProduct(Wdd).sum();
  return den > 0 ? num / den : 0.0;
}

}  // namespace frugal
