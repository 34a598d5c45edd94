// Normalisation ops: BatchNormalization (inference and training_mode), LayerNormalization,
// RMSNormalization, InstanceNormalization, GroupNormalization, LpNormalization.
// 16-bit float inputs are computed in float32. Row statistics are two-pass (mean, then centred sum of
// squares) with double accumulators, so large offsets do not cancel; rows run in parallel.
#include <algorithm>
#include <cmath>
#include <memory>

#include "families.h"
#include "frugal/parallel.h"
#include "kernel_util.h"

namespace frugal::kernels {
namespace {

bool is_norm_float(DType t) { return t == DType::kFloat || t == DType::kDouble || is_half_type(t); }

Status check_float(const NodeDef& node, const Tensor& t, const char* what) {
  if (!is_norm_float(t.dtype()))
    return node.error(StatusCode::kUnsupported, std::string(what) + " dtype " + dtype_name(t.dtype()) + " not supported");
  return OkStatus();
}

// Rows of `n` elements: grain so that a chunk holds roughly 16k elements.
int64_t row_grain(int64_t n) { return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(n, 1)); }

struct RowStats {
  double mean = 0, var = 0;
};

// Sum and centred sum of squares with 8 independent float lanes (vectorisable, short dependency
// chains), combined in double. Two passes keep the variance exact for rows with large offsets.
template <bool kSquare>
inline double lane_sum(const float* x, int64_t n, float centre) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) {
      const float d = x[j + k] - centre;
      acc[k] += kSquare ? d * d : d;
    }
  double total = 0;
  for (int k = 0; k < 8; ++k) total += acc[k];
  for (; j < n; ++j) {
    const double d = static_cast<double>(x[j]) - centre;
    total += kSquare ? d * d : d;
  }
  return total;
}

inline RowStats row_stats(const float* x, int64_t n) {
  RowStats s;
  if (n == 0) return s;
  // Centre the first pass on x[0] so the float lanes sum small deviations, not large offsets.
  const float c0 = x[0];
  s.mean = c0 + lane_sum<false>(x, n, c0) / static_cast<double>(n);
  s.var = lane_sum<true>(x, n, static_cast<float>(s.mean)) / static_cast<double>(n);
  return s;
}

// Index of each element of `target` shape into a tensor of shape `src` broadcast to it (right
// aligned, unidirectional). Empty when src does not broadcast.
std::vector<int64_t> broadcast_index(const Shape& src, const Shape& target) {
  Shape s = src;
  while (s.size() > target.size() && s.front() == 1) s.erase(s.begin());
  if (s.size() > target.size()) return {};
  for (size_t i = 0; i < s.size(); ++i) {
    const int64_t t = target[target.size() - s.size() + i];
    if (s[i] != t && s[i] != 1) return {};
  }
  const auto st = broadcast_strides(s, target);
  std::vector<int64_t> idx(static_cast<size_t>(shape_numel(target)));
  const std::vector<int64_t> arr[1] = {st};
  for_each_broadcast<1>(target, arr, [&](int64_t o, const int64_t* offs) { idx[static_cast<size_t>(o)] = offs[0]; });
  return idx;
}

// ---- BatchNormalization ---------------------------------------------------------------------

Status batch_norm(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x_in = ctx.input(0);
  FRUGAL_RETURN_IF_ERROR(check_float(node, x_in, "X"));
  if (x_in.rank() < 2) return node.error(StatusCode::kInvalidModel, "X must be N x C x ... (rank >= 2)");
  const int64_t n = x_in.dim(0), c = x_in.dim(1);
  const int64_t spatial = c == 0 || n == 0 ? 0 : x_in.numel() / (n * c);
  for (int i = 1; i <= 4; ++i)
    if (ctx.input(static_cast<size_t>(i)).numel() != c)
      return node.error(StatusCode::kInvalidModel, "scale/B/mean/var must have C = " + std::to_string(c) + " elements");
  const Tensor x = x_in.to_float();
  const Tensor sc = ctx.input(1).to_float(), bi = ctx.input(2).to_float();
  const Tensor mn = ctx.input(3).to_float(), vr = ctx.input(4).to_float();
  const float eps = node.get_float("epsilon", 1e-5f);
  const float momentum = node.get_float("momentum", 0.9f);
  const bool training = node.opset >= 14 && node.get_int("training_mode", 0) != 0;
  const float* xp = x.data<float>();

  std::vector<float> mean(static_cast<size_t>(c)), var(static_cast<size_t>(c));
  if (training) {
    // Batch statistics over N and the spatial axes (population variance, as the spec's reference).
    parallel_for(c, 1, [&](int64_t b, int64_t e) {
      for (int64_t ch = b; ch < e; ++ch) {
        double sum = 0;
        for (int64_t i = 0; i < n; ++i) {
          const float* p = xp + (i * c + ch) * spatial;
          for (int64_t j = 0; j < spatial; ++j) sum += p[j];
        }
        const double cnt = static_cast<double>(n * spatial);
        const double m = cnt > 0 ? sum / cnt : 0;
        double sq = 0;
        for (int64_t i = 0; i < n; ++i) {
          const float* p = xp + (i * c + ch) * spatial;
          for (int64_t j = 0; j < spatial; ++j) sq += (p[j] - m) * (p[j] - m);
        }
        mean[static_cast<size_t>(ch)] = static_cast<float>(m);
        var[static_cast<size_t>(ch)] = static_cast<float>(cnt > 0 ? sq / cnt : 0);
      }
    });
  } else {
    for (int64_t ch = 0; ch < c; ++ch) {
      mean[static_cast<size_t>(ch)] = mn.data<float>()[ch];
      var[static_cast<size_t>(ch)] = vr.data<float>()[ch];
    }
  }
  // y = x * a + b per channel
  std::vector<float> a(static_cast<size_t>(c)), b(static_cast<size_t>(c));
  for (int64_t ch = 0; ch < c; ++ch) {
    const size_t k = static_cast<size_t>(ch);
    a[k] = sc.data<float>()[ch] / std::sqrt(var[k] + eps);
    b[k] = bi.data<float>()[ch] - mean[k] * a[k];
  }
  Tensor y = Tensor::uninitialized(DType::kFloat, x.shape());
  float* yp = y.mut<float>();
  parallel_for(n * c, row_grain(spatial), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const size_t k = static_cast<size_t>(r % c);
      const float* p = xp + r * spatial;
      float* q = yp + r * spatial;
      for (int64_t j = 0; j < spatial; ++j) q[j] = p[j] * a[k] + b[k];
    }
  });
  ctx.set_output(0, x_in.dtype() == DType::kFloat ? y : from_float32(y, x_in.dtype()));
  if (training) {
    for (size_t o = 1; o < 3 && o < ctx.num_outputs(); ++o) {
      const Tensor& running_in = o == 1 ? mn : vr;
      const std::vector<float>& cur = o == 1 ? mean : var;
      Tensor t = Tensor::uninitialized(DType::kFloat, {c});
      for (int64_t ch = 0; ch < c; ++ch)
        t.mut<float>()[ch] = running_in.data<float>()[ch] * momentum + cur[static_cast<size_t>(ch)] * (1 - momentum);
      const DType dt = ctx.input(o == 1 ? 3 : 4).dtype();
      ctx.set_output(o, dt == DType::kFloat ? t : from_float32(t, dt));
    }
  }
  return OkStatus();
}

// ---- LayerNormalization / RMSNormalization --------------------------------------------------

Status layer_norm(const NodeDef& node, KernelContext& ctx, bool rms) {
  const Tensor& x_in = ctx.input(0);
  FRUGAL_RETURN_IF_ERROR(check_float(node, x_in, "X"));
  FRUGAL_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(node.get_int("axis", -1), x_in.rank(), node));
  const float eps = node.get_float("epsilon", 1e-5f);
  const Shape& xs = x_in.shape();
  int64_t rows = 1;
  for (int64_t d = 0; d < axis; ++d) rows *= xs[static_cast<size_t>(d)];
  const Shape norm_shape(xs.begin() + axis, xs.end());
  const int64_t n = shape_numel(norm_shape);
  const Tensor x = x_in.to_float();
  const Tensor sc = ctx.input(1).to_float();
  const bool has_bias = !rms && ctx.has_input(2);
  const Tensor bi = has_bias ? ctx.input(2).to_float() : Tensor();
  // Scale/B usually have exactly the normalised shape; otherwise map them by broadcasting.
  std::vector<int64_t> sidx, bidx;
  if (sc.numel() != n || sc.rank() > static_cast<int64_t>(norm_shape.size())) {
    sidx = broadcast_index(sc.shape(), norm_shape);
    if (sidx.empty() && n > 0)
      return node.error(StatusCode::kInvalidModel, "Scale shape " + shape_str(sc.shape()) +
                                                       " does not broadcast to " + shape_str(norm_shape));
  }
  if (has_bias && (bi.numel() != n || bi.rank() > static_cast<int64_t>(norm_shape.size()))) {
    bidx = broadcast_index(bi.shape(), norm_shape);
    if (bidx.empty() && n > 0)
      return node.error(StatusCode::kInvalidModel, "B shape " + shape_str(bi.shape()) + " does not broadcast to " +
                                                       shape_str(norm_shape));
  }
  const float* xp = x.data<float>();
  const float* sp = sc.data<float>();
  const float* bp = has_bias ? bi.data<float>() : nullptr;
  Tensor y = Tensor::uninitialized(DType::kFloat, xs);
  float* yp = y.mut<float>();
  Shape stat_shape = xs;
  for (size_t d = static_cast<size_t>(axis); d < stat_shape.size(); ++d) stat_shape[d] = 1;
  std::vector<float> means(static_cast<size_t>(rows)), invs(static_cast<size_t>(rows));
  parallel_for(rows, row_grain(n), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const float* p = xp + r * n;
      float* q = yp + r * n;
      float mean = 0, inv;
      if (rms) {
        const double sq = lane_sum<true>(p, n, 0.0f);
        inv = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(std::max<int64_t>(n, 1)) + eps));
      } else {
        const RowStats s = row_stats(p, n);
        mean = static_cast<float>(s.mean);
        inv = static_cast<float>(1.0 / std::sqrt(s.var + eps));
      }
      means[static_cast<size_t>(r)] = mean;
      invs[static_cast<size_t>(r)] = inv;
      if (sidx.empty() && bidx.empty()) {
        if (bp)
          for (int64_t j = 0; j < n; ++j) q[j] = (p[j] - mean) * inv * sp[j] + bp[j];
        else
          for (int64_t j = 0; j < n; ++j) q[j] = (p[j] - mean) * inv * sp[j];
      } else {
        for (int64_t j = 0; j < n; ++j) {
          const size_t u = static_cast<size_t>(j);
          float v = (p[j] - mean) * inv * sp[sidx.empty() ? j : sidx[u]];
          if (bp) v += bp[bidx.empty() ? j : bidx[u]];
          q[j] = v;
        }
      }
    }
  });
  ctx.set_output(0, x_in.dtype() == DType::kFloat ? y : from_float32(y, x_in.dtype()));
  if (!rms) {
    // Mean and InvStdDev are in the stash type (float32 unless stash_type says otherwise).
    const DType stash = static_cast<DType>(node.get_int("stash_type", 1));
    for (size_t o = 1; o < 3 && o < ctx.num_outputs(); ++o) {
      Tensor t = Tensor::from_vector(stat_shape, o == 1 ? means : invs);
      ctx.set_output(o, stash == DType::kFloat ? t : from_float32(t, stash));
    }
  }
  return OkStatus();
}

// ---- InstanceNormalization / GroupNormalization ---------------------------------------------

// Normalises rows of `row_len` elements; row r's element j is affine-mapped with channel
// ch(r, j) = (r % groups_per_n) * ch_per_row + j / spatial.
Status grouped_norm(const NodeDef& node, KernelContext& ctx, int64_t groups, bool per_group_affine) {
  const Tensor& x_in = ctx.input(0);
  FRUGAL_RETURN_IF_ERROR(check_float(node, x_in, "X"));
  if (x_in.rank() < 2) return node.error(StatusCode::kInvalidModel, "X must be N x C x ... (rank >= 2)");
  const int64_t n = x_in.dim(0), c = x_in.dim(1);
  if (groups <= 0 || c % groups != 0)
    return node.error(StatusCode::kInvalidModel,
                      "num_groups " + std::to_string(groups) + " must divide C = " + std::to_string(c));
  const int64_t spatial = n * c == 0 ? 0 : x_in.numel() / (n * c);
  const int64_t cpg = c / groups;
  const int64_t row_len = cpg * spatial;
  const int64_t affine_n = per_group_affine ? groups : c;
  const Tensor sc = ctx.input(1).to_float(), bi = ctx.input(2).to_float();
  if (sc.numel() != affine_n || bi.numel() != affine_n)
    return node.error(StatusCode::kInvalidModel, "scale and bias must have " + std::to_string(affine_n) + " elements");
  const float eps = node.get_float("epsilon", 1e-5f);
  const Tensor x = x_in.to_float();
  const float* xp = x.data<float>();
  const float* sp = sc.data<float>();
  const float* bp = bi.data<float>();
  Tensor y = Tensor::uninitialized(DType::kFloat, x.shape());
  float* yp = y.mut<float>();
  parallel_for(n * groups, row_grain(row_len), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const int64_t g = r % groups;
      const float* p = xp + r * row_len;
      float* q = yp + r * row_len;
      const RowStats s = row_stats(p, row_len);
      const float mean = static_cast<float>(s.mean);
      const float inv = static_cast<float>(1.0 / std::sqrt(s.var + eps));
      for (int64_t k = 0; k < cpg; ++k) {
        const int64_t ch = per_group_affine ? g : g * cpg + k;
        const float a = sp[ch] * inv, b = bp[ch];
        const float* pk = p + k * spatial;
        float* qk = q + k * spatial;
        for (int64_t j = 0; j < spatial; ++j) qk[j] = (pk[j] - mean) * a + b;
      }
    }
  });
  ctx.set_output(0, x_in.dtype() == DType::kFloat ? y : from_float32(y, x_in.dtype()));
  return OkStatus();
}

// ---- LpNormalization ------------------------------------------------------------------------

Status lp_norm(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x_in = ctx.input(0);
  FRUGAL_RETURN_IF_ERROR(check_float(node, x_in, "input"));
  FRUGAL_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(node.get_int("axis", -1), x_in.rank(), node));
  const int64_t p = node.get_int("p", 2);
  if (p != 1 && p != 2) return node.error(StatusCode::kInvalidModel, "p must be 1 or 2");
  const Shape& xs = x_in.shape();
  int64_t outer = 1, inner = 1;
  const int64_t dim = xs.empty() ? 1 : xs[static_cast<size_t>(axis)];
  for (int64_t d = 0; d < axis; ++d) outer *= xs[static_cast<size_t>(d)];
  for (size_t d = static_cast<size_t>(axis) + 1; d < xs.size(); ++d) inner *= xs[d];
  const Tensor x = x_in.to_float();
  const float* xp = x.data<float>();
  Tensor y = Tensor::uninitialized(DType::kFloat, xs);
  float* yp = y.mut<float>();
  parallel_for(outer * inner, row_grain(dim), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t o = r / inner, i = r % inner;
      const float* px = xp + o * dim * inner + i;
      float* py = yp + o * dim * inner + i;
      double acc = 0;
      for (int64_t k = 0; k < dim; ++k) acc += p == 1 ? std::fabs(px[k * inner]) : px[k * inner] * px[k * inner];
      const float norm = static_cast<float>(p == 1 ? acc : std::sqrt(acc));
      // A zero vector stays zero (the ONNX reference output), rather than 0/0.
      for (int64_t k = 0; k < dim; ++k) py[k * inner] = norm == 0.0f ? 0.0f : px[k * inner] / norm;
    }
  });
  ctx.set_output(0, x_in.dtype() == DType::kFloat ? y : from_float32(y, x_in.dtype()));
  return OkStatus();
}

// ---- LRN (local response normalisation across channels; AlexNet, Inception v1) -----------------------

Status lrn(const NodeDef& node, KernelContext& ctx) {
  const Tensor& x_in = ctx.input(0);
  FRUGAL_RETURN_IF_ERROR(check_float(node, x_in, "input"));
  if (x_in.rank() < 3) return node.error(StatusCode::kInvalidData, "input must be [N,C,D1,...]");
  const int64_t size = node.get_int("size", 0);
  if (size <= 0) return node.error(StatusCode::kInvalidModel, "attribute 'size' must be a positive integer");
  const double alpha = node.get_float("alpha", 1e-4f), beta = node.get_float("beta", 0.75f),
               bias = node.get_float("bias", 1.0f);
  const Shape& xs = x_in.shape();
  const int64_t n = xs[0], c = xs[1], inner = x_in.numel() / std::max<int64_t>(n * c, 1);
  // Window of channels c - floor((size-1)/2) .. c + ceil((size-1)/2), as the ONNX spec defines it.
  const int64_t lo = (size - 1) / 2, hi = size - 1 - lo;
  const Tensor x = x_in.to_float();
  const float* xp = x.data<float>();
  Tensor y = Tensor::uninitialized(DType::kFloat, xs);
  float* yp = y.mut<float>();
  parallel_for(n * c, row_grain(inner), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t img = r / c, ch = r % c;
      const int64_t c0 = std::max<int64_t>(0, ch - lo), c1 = std::min<int64_t>(c - 1, ch + hi);
      for (int64_t i = 0; i < inner; ++i) {
        double sq = 0;
        for (int64_t k = c0; k <= c1; ++k) {
          const double v = xp[(img * c + k) * inner + i];
          sq += v * v;
        }
        const int64_t at = (img * c + ch) * inner + i;
        yp[at] = static_cast<float>(xp[at] / std::pow(bias + alpha / static_cast<double>(size) * sq, beta));
      }
    }
  });
  ctx.set_output(0, x_in.dtype() == DType::kFloat ? y : from_float32(y, x_in.dtype()));
  return OkStatus();
}

template <typename Fn>
KernelFactory make(Fn fn) {
  return [fn](const NodeDef& n) -> StatusOr<std::unique_ptr<Kernel>> {
    return std::unique_ptr<Kernel>(new FnKernel([n, fn](KernelContext& ctx) { return fn(n, ctx); }));
  };
}

}  // namespace

void register_norm_kernels(KernelRegistry& r) {
  r.add("BatchNormalization", 6, kMaxOpset, make(batch_norm));
  r.add("LayerNormalization", 17, kMaxOpset,
        make([](const NodeDef& n, KernelContext& ctx) { return layer_norm(n, ctx, false); }));
  r.add("RMSNormalization", 23, kMaxOpset,
        make([](const NodeDef& n, KernelContext& ctx) { return layer_norm(n, ctx, true); }));
  r.add("InstanceNormalization", 6, kMaxOpset, make([](const NodeDef& n, KernelContext& ctx) {
          const int64_t c = ctx.input(0).rank() >= 2 ? ctx.input(0).dim(1) : 0;
          return grouped_norm(n, ctx, c, false);
        }));
  // Opset 18 GroupNormalization has scale/bias per group; opset 21 changed them to per channel.
  r.add("GroupNormalization", 18, 20, make([](const NodeDef& n, KernelContext& ctx) {
          return grouped_norm(n, ctx, n.get_int("num_groups", 0), true);
        }));
  r.add("GroupNormalization", 21, kMaxOpset, make([](const NodeDef& n, KernelContext& ctx) {
          return grouped_norm(n, ctx, n.get_int("num_groups", 0), false);
        }));
  r.add("LpNormalization", 1, kMaxOpset, make(lp_norm));
  r.add("LRN", 1, kMaxOpset, make(lrn));
}

}  // namespace frugal::kernels
