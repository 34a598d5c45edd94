// MatMul, Gemm, MatMulInteger, QLinearMatMul. Float products go through gemm.h (frugal's own SGEMM on
// AVX-512, Eigen elsewhere; no copies of contiguous inputs); the integer ops widen to int32 with
// the zero points subtracted and use the exact int32 GEMM, then requantize with quant_math.h.
#include <algorithm>
#include <cstring>

#include "families.h"
#include "frugal/parallel.h"
#include "gemm.h"
#include "gemm_epilogue.h"
#include "gemm_util.h"
#include "kernel_util.h"

namespace frugal::kernels {

namespace {

// numpy.matmul geometry: 1-D operands are promoted (and the added dim dropped from the output),
// batch dims broadcast.
struct MatMulPlan {
  int64_t M = 0, K = 0, N = 0;
  Shape out_shape;
  // Offsets (in matrices, not elements) of A and B for each output batch.
  std::vector<int64_t> a_batch, b_batch;
  bool b_shared = false;  // B has a single matrix: the batches of A fold into M
  int64_t a_batches = 1, b_batches = 1;
};

StatusOr<MatMulPlan> plan_matmul(const Shape& as, const Shape& bs, const NodeDef& node) {
  if (as.empty() || bs.empty()) return node.error(StatusCode::kInvalidArgument, "MatMul operands must not be scalars");
  MatMulPlan p;
  Shape a = as, b = bs;
  const bool a_vec = a.size() == 1, b_vec = b.size() == 1;
  if (a_vec) a.insert(a.begin(), 1);
  if (b_vec) b.push_back(1);
  p.M = a[a.size() - 2];
  p.K = a[a.size() - 1];
  p.N = b[b.size() - 1];
  if (b[b.size() - 2] != p.K)
    return node.error(StatusCode::kInvalidArgument,
                      "inner dimensions differ: " + shape_str(as) + " x " + shape_str(bs));
  Shape ab(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
  FRUGAL_ASSIGN_OR_RETURN(Shape ob, broadcast_shapes({ab, bb}, node));
  p.a_batches = shape_numel(ab);
  p.b_batches = shape_numel(bb);
  p.out_shape = ob;
  if (!a_vec) p.out_shape.push_back(p.M);
  if (!b_vec) p.out_shape.push_back(p.N);
  p.b_shared = p.b_batches == 1 && p.a_batches == shape_numel(ob);
  if (!p.b_shared) {
    const std::vector<int64_t> st[2] = {broadcast_strides(ab, ob), broadcast_strides(bb, ob)};
    const int64_t nb = shape_numel(ob);
    p.a_batch.resize(static_cast<size_t>(nb));
    p.b_batch.resize(static_cast<size_t>(nb));
    for_each_broadcast<2>(ob, st, [&](int64_t o, const int64_t* offs) {
      p.a_batch[static_cast<size_t>(o)] = offs[0];
      p.b_batch[static_cast<size_t>(o)] = offs[1];
    });
  }
  return p;
}

// Runs f(a_matrix_index, b_matrix_index, out_matrix_index, m_rows) over the plan's products. Small
// products are spread over threads one batch each (GEMM serial inside); large ones thread the GEMM.
template <typename F>
void for_each_product(const MatMulPlan& p, F&& f) {
  if (p.b_shared) {
    f(int64_t{0}, int64_t{0}, int64_t{0}, p.M * p.a_batches);
    return;
  }
  const int64_t nb = static_cast<int64_t>(p.a_batch.size());
  const double flops = static_cast<double>(p.M) * p.N * p.K;
  const bool by_batch = nb >= 2 && num_threads() > 1 && (flops < 4.0e6 || nb >= 8 * num_threads());
  auto body = [&](int64_t b0, int64_t b1) {
    for (int64_t i = b0; i < b1; ++i)
      f(p.a_batch[static_cast<size_t>(i)], p.b_batch[static_cast<size_t>(i)], i, p.M);
  };
  if (by_batch)
    parallel_for(nb, 1, body);
  else
    body(0, nb);
}

template <typename T>
void naive_matmul(int64_t M, int64_t N, int64_t K, const T* a, const T* b, T* c) {
  for (int64_t i = 0; i < M; ++i) {
    T* crow = c + i * N;
    std::fill(crow, crow + N, T(0));
    for (int64_t k = 0; k < K; ++k) {
      const T av = a[i * K + k];
      const T* brow = b + k * N;
      for (int64_t j = 0; j < N; ++j) crow[j] = static_cast<T>(crow[j] + av * brow[j]);
    }
  }
}

Status matmul_compute(const NodeDef& node, KernelContext& ctx) {
  const Tensor& A = ctx.input(0);
  const Tensor& B = ctx.input(1);
  if (A.dtype() != B.dtype()) return node.error(StatusCode::kInvalidArgument, "A and B dtypes differ");
  FRUGAL_ASSIGN_OR_RETURN(MatMulPlan p, plan_matmul(A.shape(), B.shape(), node));
  const int64_t M = p.M, N = p.N, K = p.K;
  const Activation act = activation_of(node);
  const Tensor* bias_in = node.get_int(kBiasAttr, 0) != 0 && ctx.has_input(2) ? &ctx.input(2) : nullptr;
  if ((bias_in || act != Activation::kNone) &&
      (A.dtype() != DType::kFloat || (bias_in && (bias_in->dtype() != DType::kFloat || bias_in->numel() != N))))
    return node.error(StatusCode::kInternal, "fused MatMul epilogue needs float32 operands and N bias values");
  return dispatch_numeric(A.dtype(), node, [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    // Every element is written (GEMM with beta 0 or the naive loop's fill).
    Tensor& Y = ctx.allocate_output_uninitialized(0, A.dtype(), p.out_shape);
    const T* a = A.data<T>();
    const T* b = B.data<T>();
    T* y = Y.mut<T>();
    for_each_product(p, [&](int64_t ai, int64_t bi, int64_t oi, int64_t rows) {
      if constexpr (std::is_floating_point_v<T>)
        gemm(false, false, rows, N, K, T(1), a + ai * M * K, K, b + bi * K * N, N, T(0), y + oi * M * N, N);
      else
        naive_matmul<T>(rows, N, K, a + ai * M * K, b + bi * K * N, y + oi * M * N);
    });
    if constexpr (std::is_same_v<T, float>) {
      // Fused epilogue (plan-time fusion of a following bias Add and activation): one pass over Y.
      const float* bias = bias_in ? bias_in->data<float>() : nullptr;
      if (bias || act != Activation::kNone) {
        const int64_t rows = Y.numel() / std::max<int64_t>(N, 1);
        parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(N, 1)), [&](int64_t r0, int64_t r1) {
          row_bias_act(y + r0 * N, r1 - r0, N, bias, act);
        });
      }
    }
    return OkStatus();
  });
}

// --- Gemm ---------------------------------------------------------------------------------------

struct GemmAttrs {
  bool ta = false, tb = false;
  float alpha = 1, beta = 1;
};

template <typename T>
Status gemm_typed(const NodeDef& node, const GemmAttrs& g, KernelContext& ctx) {
  const Tensor& A = ctx.input(0);
  const Tensor& B = ctx.input(1);
  if (A.rank() != 2 || B.rank() != 2)
    return node.error(StatusCode::kInvalidArgument,
                      "A and B must be 2-D, got " + shape_str(A.shape()) + " and " + shape_str(B.shape()));
  const int64_t M = g.ta ? A.dim(1) : A.dim(0), K = g.ta ? A.dim(0) : A.dim(1);
  const int64_t N = g.tb ? B.dim(0) : B.dim(1), KB = g.tb ? B.dim(1) : B.dim(0);
  if (K != KB)
    return node.error(StatusCode::kInvalidArgument,
                      "inner dimensions differ: " + shape_str(A.shape()) + " x " + shape_str(B.shape()));
  Tensor& Y = ctx.allocate_output(0, A.dtype(), {M, N});
  T* y = Y.mut<T>();
  T beta = static_cast<T>(g.beta);
  const bool has_c = ctx.has_input(2) && ctx.input(2).numel() > 0 && g.beta != 0.0f;
  if (has_c) {
    const Tensor& C = ctx.input(2);
    const Shape out{M, N};
    if (C.rank() > 2) return node.error(StatusCode::kInvalidArgument, "C must have rank <= 2");
    for (int64_t d = 0; d < C.rank(); ++d) {
      const int64_t cd = C.dim(C.rank() - 1 - d), od = out[static_cast<size_t>(1 - d)];
      if (cd != 1 && cd != od)
        return node.error(StatusCode::kInvalidArgument,
                          "C " + shape_str(C.shape()) + " does not broadcast to " + shape_str(out));
    }
    const std::vector<int64_t> st[1] = {broadcast_strides(C.shape(), out)};
    const T* c = C.data<T>();
    for_each_broadcast<1>(out, st, [&](int64_t o, const int64_t* offs) { y[o] = c[offs[0]]; });
  } else {
    beta = T(0);
  }
  const T* a = A.data<T>();
  const T* b = B.data<T>();
  if constexpr (std::is_floating_point_v<T>) {
    gemm(g.ta, g.tb, M, N, K, static_cast<T>(g.alpha), a, A.dim(1), b, B.dim(1), beta, y, N);
  } else {
    const T alpha = static_cast<T>(g.alpha);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        T acc = 0;
        for (int64_t k = 0; k < K; ++k) {
          const T av = g.ta ? a[k * M + i] : a[i * K + k];
          const T bv = g.tb ? b[j * K + k] : b[k * N + j];
          acc = static_cast<T>(acc + av * bv);
        }
        y[i * N + j] = static_cast<T>(alpha * acc + beta * y[i * N + j]);
      }
  }
  return OkStatus();
}

StatusOr<std::unique_ptr<Kernel>> make_gemm(const NodeDef& node) {
  GemmAttrs g;
  g.ta = node.get_int("transA", 0) != 0;
  g.tb = node.get_int("transB", 0) != 0;
  g.alpha = node.get_float("alpha", 1.0f);
  g.beta = node.get_float("beta", 1.0f);
  return make_fn_kernel([node, g](KernelContext& ctx) -> Status {
    if (is_half_type(ctx.input(0).dtype()))
      return with_half_as_float(ctx, [&](KernelContext& c) { return gemm_typed<float>(node, g, c); });
    return dispatch_numeric(ctx.input(0).dtype(), node, [&](auto tag) -> Status {
      using T = typename decltype(tag)::type;
      return gemm_typed<T>(node, g, ctx);
    });
  });
}

// --- MatMulInteger / QLinearMatMul ------------------------------------------------------------------

// Zero point (or scale) values of A are per tensor (1 value), per row (M) or per batch row; those of B
// per tensor, per column (N) or per batch column. Returns the value for matrix `mat`, index `i`.
template <typename V>
V per_index(const std::vector<V>& v, int64_t mat, int64_t i, int64_t len) {
  if (v.size() == 1) return v[0];
  const int64_t n = static_cast<int64_t>(v.size());
  if (n == len) return v[static_cast<size_t>(i)];
  return v[static_cast<size_t>((mat * len + i) % n)];
}

template <typename V>
Status check_per_index(const std::vector<V>& v, int64_t len, int64_t mats, const NodeDef& node,
                       const char* what) {
  const int64_t n = static_cast<int64_t>(v.size());
  if (n == 1 || n == len || n == len * mats) return OkStatus();
  return node.error(StatusCode::kInvalidArgument,
                    std::string(what) + " has " + std::to_string(n) + " values; expected 1, " +
                        std::to_string(len) + " or " + std::to_string(len * mats));
}

bool is_8bit(DType t) { return t == DType::kUInt8 || t == DType::kInt8; }

// int32 products of (A - a_zp) x (B - b_zp) into `acc` (laid out like the output).
Status integer_matmul(const NodeDef& node, const Tensor& A, const Tensor& B, const std::vector<int32_t>& azp,
                      const std::vector<int32_t>& bzp, const MatMulPlan& p, int32_t* acc) {
  if (!is_8bit(A.dtype()) || !is_8bit(B.dtype()))
    return node.error(StatusCode::kUnsupported, std::string("inputs must be uint8/int8, got ") +
                                                    dtype_name(A.dtype()) + " and " + dtype_name(B.dtype()));
  const int64_t M = p.M, N = p.N, K = p.K;
  FRUGAL_RETURN_IF_ERROR(check_per_index(azp, M, p.a_batches, node, "a_zero_point"));
  FRUGAL_RETURN_IF_ERROR(check_per_index(bzp, N, p.b_batches, node, "b_zero_point"));
  std::vector<int32_t> aw(static_cast<size_t>(A.numel())), bw(static_cast<size_t>(B.numel()));
  widen_to_i32(A, aw.data());
  widen_to_i32(B, bw.data());
  for (int64_t m = 0; m < p.a_batches; ++m)
    for (int64_t i = 0; i < M; ++i) {
      const int32_t z = per_index(azp, m, i, M);
      if (z == 0) continue;
      int32_t* row = aw.data() + (m * M + i) * K;
      for (int64_t k = 0; k < K; ++k) row[k] -= z;
    }
  for (int64_t m = 0; m < p.b_batches; ++m)
    for (int64_t k = 0; k < K; ++k) {
      int32_t* row = bw.data() + (m * K + k) * N;
      for (int64_t j = 0; j < N; ++j) row[j] -= per_index(bzp, m, j, N);
    }
  for_each_product(p, [&](int64_t ai, int64_t bi, int64_t oi, int64_t rows) {
    gemm_s32(rows, N, K, aw.data() + ai * M * K, K, bw.data() + bi * K * N, N, acc + oi * M * N, N);
  });
  return OkStatus();
}

Status matmul_integer_compute(const NodeDef& node, KernelContext& ctx) {
  const Tensor& A = ctx.input(0);
  const Tensor& B = ctx.input(1);
  FRUGAL_ASSIGN_OR_RETURN(MatMulPlan p, plan_matmul(A.shape(), B.shape(), node));
  Tensor& Y = ctx.allocate_output(0, DType::kInt32, p.out_shape);
  return integer_matmul(node, A, B, zero_points(ctx, 2), zero_points(ctx, 3), p, Y.mut<int32_t>());
}

Status qlinear_matmul_compute(const NodeDef& node, KernelContext& ctx) {
  const Tensor& A = ctx.input(0);
  const Tensor& B = ctx.input(3);
  FRUGAL_ASSIGN_OR_RETURN(MatMulPlan p, plan_matmul(A.shape(), B.shape(), node));
  const std::vector<float> as = float_values(ctx.input(1)), bs = float_values(ctx.input(4));
  const std::vector<float> ys = float_values(ctx.input(6));
  const std::vector<int32_t> yzp = zero_points(ctx, 7);
  if (ys.size() != 1 || yzp.size() != 1)
    return node.error(StatusCode::kInvalidArgument, "y_scale and y_zero_point must be scalars");
  FRUGAL_RETURN_IF_ERROR(check_per_index(as, p.M, p.a_batches, node, "a_scale"));
  FRUGAL_RETURN_IF_ERROR(check_per_index(bs, p.N, p.b_batches, node, "b_scale"));
  const DType out_t = ctx.has_input(7) ? ctx.input(7).dtype() : DType::kUInt8;
  if (!is_8bit(out_t)) return node.error(StatusCode::kUnsupported, "output must be uint8/int8");
  std::vector<int32_t> acc(static_cast<size_t>(shape_numel(p.out_shape)));
  FRUGAL_RETURN_IF_ERROR(integer_matmul(node, A, B, zero_points(ctx, 2), zero_points(ctx, 5), p, acc.data()));
  Tensor& Y = ctx.allocate_output(0, out_t, p.out_shape);
  void* y = Y.raw_mut();
  const quant::QRange r = qrange_of(out_t);
  const int64_t M = p.M, N = p.N;
  const int64_t mats = static_cast<int64_t>(acc.size()) / std::max<int64_t>(M * N, 1);
  for (int64_t o = 0; o < mats; ++o) {
    const int64_t am = p.b_shared ? o : p.a_batch[static_cast<size_t>(o)];
    const int64_t bm = p.b_shared ? 0 : p.b_batch[static_cast<size_t>(o)];
    for (int64_t i = 0; i < M; ++i) {
      const float sa = per_index(as, am, i, M);
      for (int64_t j = 0; j < N; ++j) {
        const float mult = sa * per_index(bs, bm, j, N) / ys[0];
        const int64_t idx = (o * M + i) * N + j;
        store_requantized(acc[static_cast<size_t>(idx)], mult, yzp[0], r, out_t, y, idx);
      }
    }
  }
  return OkStatus();
}

}  // namespace

void register_matmul_kernels(KernelRegistry& r) {
  auto matmul = [](const NodeDef& node) {
    return make_fn_kernel([node](KernelContext& ctx) -> Status {
      if (is_half_type(ctx.input(0).dtype()))
        return with_half_as_float(ctx, [&](KernelContext& c) { return matmul_compute(node, c); });
      return matmul_compute(node, ctx);
    });
  };
  r.add("MatMul", 1, kMaxOpset, matmul);
  // Opsets 1-6 carry the `broadcast` attribute for C; C broadcasting unidirectionally is accepted in
  // every opset (a model with broadcast=0 has C already of shape [M, N]). C is optional from 11.
  r.add("Gemm", 1, kMaxOpset, make_gemm);
  r.add("MatMulInteger", 10, kMaxOpset, [](const NodeDef& node) {
    return make_fn_kernel([node](KernelContext& ctx) { return matmul_integer_compute(node, ctx); });
  });
  r.add("QLinearMatMul", 10, kMaxOpset, [](const NodeDef& node) {
    return make_fn_kernel([node](KernelContext& ctx) { return qlinear_matmul_compute(node, ctx); });
  });
}

}  // namespace frugal::kernels
