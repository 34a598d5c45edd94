// Loop engines shared by the elementwise and activation kernels: a threaded unary map and a binary
// broadcast engine that collapses the output into rows whose innermost run has input stride 0 or 1,
// so every hot loop is a plain indexed loop the compiler can vectorise (same shape, scalar, channel
// and last-axis broadcasts all land there).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "frugal/parallel.h"
#include "kernel_util.h"

namespace frugal::kernels {

// Elements per thread chunk: small tensors stay on one thread.
constexpr int64_t kElementwiseGrain = 16384;

// out[i] = f(in[i]) for i in [0, n), split across threads.
template <typename I, typename O, typename F>
void unary_map(const I* in, O* out, int64_t n, F f) {
  parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = f(in[i]);
  });
}

// How two inputs walk a broadcast output. The output is viewed as rows of `inner` elements; the
// outer dims give each input's row offset.
struct BinaryPlan {
  Shape out;                  // broadcast output shape
  int64_t total = 0;          // output elements
  int64_t inner = 1;          // elements per row (innermost collapsed dim)
  int64_t a_step = 1, b_step = 1;  // innermost stride of each input (0 or 1)
  std::vector<int64_t> outer;      // collapsed outer dims (outermost first)
  std::vector<int64_t> a_str, b_str;  // their strides per input
};

inline StatusOr<BinaryPlan> make_binary_plan(const Shape& a, const Shape& b, const NodeDef& node) {
  BinaryPlan p;
  FRUGAL_ASSIGN_OR_RETURN(p.out, broadcast_shapes({a, b}, node));
  p.total = shape_numel(p.out);
  const auto sa = broadcast_strides(a, p.out), sb = broadcast_strides(b, p.out);
  // Collapse from the innermost dim outwards; size-1 dims vanish.
  std::vector<int64_t> dims, da, db;  // innermost first
  for (int64_t i = static_cast<int64_t>(p.out.size()) - 1; i >= 0; --i) {
    const size_t u = static_cast<size_t>(i);
    const int64_t d = p.out[u];
    if (d == 1) continue;
    if (!dims.empty() && sa[u] == da.back() * dims.back() && sb[u] == db.back() * dims.back()) {
      dims.back() *= d;
      continue;
    }
    dims.push_back(d);
    da.push_back(sa[u]);
    db.push_back(sb[u]);
  }
  if (dims.empty()) {
    p.inner = 1;
    p.a_step = p.b_step = 0;
    return p;
  }
  p.inner = dims[0];
  p.a_step = da[0];
  p.b_step = db[0];
  for (size_t k = dims.size(); k-- > 1;) {
    p.outer.push_back(dims[k]);
    p.a_str.push_back(da[k]);
    p.b_str.push_back(db[k]);
  }
  return p;
}

// One row: the four stride patterns are separate loops so each one vectorises.
template <typename A, typename B, typename O, typename F>
inline void binary_row(const A* a, int64_t sa, const B* b, int64_t sb, O* o, int64_t n, F& f) {
  if (sa && sb) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
  } else if (sa) {
    const B bv = *b;
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
  } else if (sb) {
    const A av = *a;
    for (int64_t i = 0; i < n; ++i) o[i] = f(av, b[i]);
  } else {
    const O v = f(*a, *b);
    for (int64_t i = 0; i < n; ++i) o[i] = v;
  }
}

// o = f(a, b) over the plan; rows are split across threads.
template <typename A, typename B, typename O, typename F>
void binary_apply(const BinaryPlan& p, const A* a, const B* b, O* o, F f) {
  if (p.total == 0) return;
  const int64_t rows = p.total / p.inner;
  const int64_t nd = static_cast<int64_t>(p.outer.size());
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / p.inner);
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    // Decompose the first row index, then walk an odometer.
    std::vector<int64_t> idx(static_cast<size_t>(nd), 0);
    int64_t oa = 0, ob = 0, rem = r0;
    for (int64_t d = nd - 1; d >= 0; --d) {
      const size_t u = static_cast<size_t>(d);
      idx[u] = rem % p.outer[u];
      rem /= p.outer[u];
      oa += idx[u] * p.a_str[u];
      ob += idx[u] * p.b_str[u];
    }
    for (int64_t r = r0; r < r1; ++r) {
      binary_row(a + oa, p.a_step, b + ob, p.b_step, o + r * p.inner, p.inner, f);
      for (int64_t d = nd - 1; d >= 0; --d) {
        const size_t u = static_cast<size_t>(d);
        oa += p.a_str[u];
        ob += p.b_str[u];
        if (++idx[u] < p.outer[u]) break;
        oa -= p.a_str[u] * p.outer[u];
        ob -= p.b_str[u] * p.outer[u];
        idx[u] = 0;
      }
    }
  });
}

// Three-input walk (Where): the output as rows of its last dim, split across threads; f(o_index_base,
// row_len, offsets[3], inner_strides[3]) handles one row.
template <typename F>
void ternary_rows(const Shape& out, const std::vector<int64_t> (&st)[3], F f) {
  const int64_t total = shape_numel(out);
  if (total == 0) return;
  const int64_t rank = static_cast<int64_t>(out.size());
  const int64_t inner = rank ? out.back() : 1;
  const int64_t rows = total / inner;
  int64_t step[3];
  for (int k = 0; k < 3; ++k) step[k] = rank ? st[k].back() : 0;
  parallel_for(rows, std::max<int64_t>(1, kElementwiseGrain / inner), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t off[3] = {0, 0, 0}, rem = r;
      for (int64_t d = rank - 2; d >= 0; --d) {
        const size_t u = static_cast<size_t>(d);
        const int64_t i = rem % out[u];
        rem /= out[u];
        for (int k = 0; k < 3; ++k) off[k] += i * st[k][u];
      }
      f(r * inner, inner, off, step);
    }
  });
}

}  // namespace frugal::kernels
