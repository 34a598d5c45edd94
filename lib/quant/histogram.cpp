// Power-of-two-range histograms and the range choices made from them (percentile, entropy, mse).
#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "frugal/calibration.h"
#include "frugal/parallel.h"
#include "histogram_simd.h"

namespace frugal {

namespace {

// max |x| over the finite values; -1 when there are none.
double finite_absmax(const float* x, int64_t n) {
  float m = -1.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    m = a <= std::numeric_limits<float>::max() && a > m ? a : m;  // NaN and inf compare false
  }
  return m;
}

// The bin of a finite x: floor(x * scale) + nb, where scale = bins / R is a power-of-two multiple of
// an integer, so the product is exact in double and so is the floor. Clamped for safety only.
inline int64_t bin_of(float v, double scale, int64_t nb) {
  const double y = static_cast<double>(v) * scale;
  int64_t t = static_cast<int64_t>(y);  // truncates toward zero
  t -= y < static_cast<double>(t);      // floor for negatives
  t += nb;
  return t < 0 ? 0 : (t >= 2 * nb ? 2 * nb - 1 : t);
}

// The same bin with float arithmetic, for power-of-two bin counts: scale is then a power of two, so
// v * scale is exact unless it underflows, and an underflow to -0 still has v < 0 (floor -1).
inline int64_t bin_of_f(float v, float scale, int64_t nb) {
  const float y = v * scale;
  int64_t t = static_cast<int64_t>(y);
  t -= (y < static_cast<float>(t)) | ((v < 0.0f) & (t == 0) & (y == 0.0f));
  t += nb;
  return t < 0 ? 0 : (t >= 2 * nb ? 2 * nb - 1 : t);
}

// Counts x[0:n) into out (2 * nb bins) and its exact zeros (+0 and -0, which sit in bin nb) into
// *zeros. Four interleaved 32-bit tables keep runs of equal values (the zeros after a Relu) from
// serialising on one counter; they are folded into `out` under `mu`. Each table has one extra slot
// that collects the non-finite values, which are then dropped.
void count_slice(const float* x, int64_t n, double scale, int64_t nb, uint64_t* out, uint64_t* zeros, std::mutex* mu) {
  const int64_t width = 2 * nb;
  // Float arithmetic is exact when the scale is a power of two within float's normal range.
  const bool pow2 = (nb & (nb - 1)) == 0 && scale < 1e37 && scale > 1e-37;
  const bool wide = quant_simd::avx512();
  if (n < (wide ? 2048 : 4 * width) || !pow2) {
    // Alone, count straight into `out`; beside other slices, into a local table merged under the lock.
    std::vector<uint64_t> local(mu ? static_cast<size_t>(width) : 0, 0);
    uint64_t* dst = mu ? local.data() : out;
    uint64_t z = 0;
    if (pow2) {
      const float sf = static_cast<float>(scale);
      for (int64_t i = 0; i < n; ++i)
        if (x[i] - x[i] == 0.0f) ++dst[bin_of_f(x[i], sf, nb)], z += x[i] == 0.0f;
    } else {
      for (int64_t i = 0; i < n; ++i)
        if (x[i] - x[i] == 0.0f) ++dst[bin_of(x[i], scale, nb)], z += x[i] == 0.0f;
    }
    if (mu) {
      std::lock_guard<std::mutex> lock(*mu);
      for (int64_t b = 0; b < width; ++b) out[b] += local[static_cast<size_t>(b)];
      *zeros += z;
    } else {
      *zeros += z;
    }
    return;
  }
  const int64_t stride = width + 1;
  std::vector<uint32_t> t(static_cast<size_t>(4 * stride + quant_simd::kScratchSlots), 0);
  uint32_t* t0 = t.data();
  uint32_t* t1 = t0 + stride;
  uint32_t* t2 = t1 + stride;
  uint32_t* t3 = t2 + stride;
  uint64_t z = 0;  // exact zeros
  auto flush = [&] {
    std::unique_lock<std::mutex> lock;
    if (mu) lock = std::unique_lock<std::mutex>(*mu);
    for (int64_t b = 0; b < width; ++b) out[b] += uint64_t{t0[b]} + t1[b] + t2[b] + t3[b];
    *zeros += z;
    z = 0;
  };
#if defined(__SSE2__)
  const __m128 vscale = _mm_set1_ps(static_cast<float>(scale));
  const __m128 fzero = _mm_setzero_ps();
  const __m128i izero = _mm_setzero_si128();
  const __m128i vnb = _mm_set1_epi32(static_cast<int32_t>(nb));
  const __m128i vlast = _mm_set1_epi32(static_cast<int32_t>(width - 1));
  const __m128i vdrop = _mm_set1_epi32(static_cast<int32_t>(width));
#endif
  // 32-bit counters: flush before any of them could wrap.
  constexpr int64_t kBlock = int64_t{1} << 30;
  const float sf = static_cast<float>(scale);
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t stop = std::min(n, start + kBlock);
    int64_t i = start;
    if (wide) {
      const uint64_t zb = quant_simd::count_bins_avx512(x + i, stop - i, sf, static_cast<int32_t>(nb), t0, stride);
      t0[nb] += static_cast<uint32_t>(zb);  // exact zeros sit in bin nb
      z += zb;
      i = stop;
    }
#if defined(__SSE2__)
    __m128i vz = _mm_setzero_si128();  // exact zeros per lane (at most 2^28 per block)
    // bin_of_f on four values at once (non-finite values go to the drop slot), into out.
    auto bins4 = [&](int64_t j, int32_t* out) {
      const __m128 v = _mm_loadu_ps(x + j);
      vz = _mm_sub_epi32(vz, _mm_castps_si128(_mm_cmpeq_ps(v, fzero)));  // all-ones lanes add 1
      const __m128 finite = _mm_cmpeq_ps(_mm_sub_ps(v, v), fzero);
      const __m128 y = _mm_mul_ps(v, vscale);
      __m128i q = _mm_cvttps_epi32(y);
      const __m128 below = _mm_cmplt_ps(y, _mm_cvtepi32_ps(q));
      const __m128 under = _mm_and_ps(_mm_cmplt_ps(v, fzero), _mm_castsi128_ps(_mm_cmpeq_epi32(q, izero)));
      q = _mm_add_epi32(q, _mm_castps_si128(_mm_or_ps(below, under)));  // all-ones lanes subtract 1
      q = _mm_add_epi32(q, vnb);
      q = _mm_and_si128(q, _mm_cmpgt_epi32(q, _mm_set1_epi32(-1)));     // < 0 -> 0
      const __m128i over = _mm_cmpgt_epi32(q, vlast);                    // > last -> last
      q = _mm_or_si128(_mm_and_si128(over, vlast), _mm_andnot_si128(over, q));
      const __m128i fin = _mm_castps_si128(finite);
      q = _mm_or_si128(_mm_and_si128(fin, q), _mm_andnot_si128(fin, vdrop));
      _mm_store_si128(reinterpret_cast<__m128i*>(out), q);
    };
    auto count4 = [&](const int32_t* b) {
      ++t0[b[0]];
      ++t1[b[1]];
      ++t2[b[2]];
      ++t3[b[3]];
    };
    // Software-pipelined like the AVX-512 kernel: the next four bins are worked out before this
    // four's increments.
    alignas(16) int32_t idx[2][4];
    if (i + 4 <= stop) {
      bins4(i, idx[0]);
      int cur = 0;
      for (i += 4; i + 4 <= stop; i += 4) {
        bins4(i, idx[cur ^ 1]);
        count4(idx[cur]);
        cur ^= 1;
      }
      count4(idx[cur]);
    }
    alignas(16) uint32_t z4[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(z4), vz);
    z += uint64_t{z4[0]} + z4[1] + z4[2] + z4[3];
#endif
    for (; i < stop; ++i)
      if (x[i] - x[i] == 0.0f) ++t0[bin_of_f(x[i], sf, nb)], z += x[i] == 0.0f;
    if (stop < n) {
      flush();
      std::fill(t.begin(), t.end(), 0u);
    }
  }
  flush();
}

}  // namespace

Histogram::Histogram(int bins) : bins_(std::max(bins, 16)) {}

double Histogram::limit() const { return empty() ? 0.0 : std::ldexp(1.0, exp_); }
double Histogram::bin_width() const { return empty() ? 0.0 : std::ldexp(1.0, exp_) / bins_; }

void Histogram::grow_to(int e) {
  if (e <= exp_) return;
  const int d = std::min(e - exp_, 62);
  const int64_t nb = bins_;
  std::vector<uint64_t> g(counts_.size(), 0);
  // Old bin b holds floor(y) - nb for y = x * bins / R; at R * 2^d its values sit in
  // floor(y / 2^d) = floor(floor(y) / 2^d): an arithmetic shift of (b - nb).
  for (int64_t b = 0; b < 2 * nb; ++b) {
    const uint64_t c = counts_[static_cast<size_t>(b)];
    if (c) g[static_cast<size_t>(((b - nb) >> d) + nb)] += c;
  }
  counts_.swap(g);
  exp_ = e;
}

void Histogram::add(const float* x, int64_t n, double absmax) {
  if (n <= 0) return;
  if (!(absmax >= 0) || !std::isfinite(absmax)) absmax = finite_absmax(x, n);
  if (absmax < 0) return;  // nothing finite
  int e = -100;            // all zeros: any range holds them; the first non-zero value widens it
  if (absmax > 0) std::frexp(absmax, &e);  // absmax = m * 2^e, m in [0.5, 1): absmax < 2^e
  if (empty()) {
    exp_ = e;
    counts_.assign(static_cast<size_t>(2 * bins_), 0);
  } else if (e > exp_) {
    grow_to(e);
  }
  const double scale = std::ldexp(static_cast<double>(bins_), -exp_);
  const int64_t nb = bins_;
  const int threads = num_threads();
  constexpr int64_t kParallelMin = int64_t{1} << 16;  // values per task
  if (threads > 1 && n >= 2 * kParallelMin && !parallel_region_active()) {
    const int64_t tasks = std::min<int64_t>(threads, n / kParallelMin);
    std::mutex mu;
    parallel_for(tasks, 1, [&](int64_t b, int64_t e2) {
      for (int64_t t = b; t < e2; ++t) {
        const int64_t s = n * t / tasks, f = n * (t + 1) / tasks;
        count_slice(x + s, f - s, scale, nb, counts_.data(), &zeros_, &mu);
      }
    });
  } else {
    count_slice(x, n, scale, nb, counts_.data(), &zeros_, nullptr);
  }
}

Status Histogram::merge(const Histogram& o) {
  if (o.bins_ != bins_) return InvalidArgument("cannot merge histograms with different bin counts");
  if (o.empty()) return OkStatus();
  if (empty()) {
    *this = o;
    return OkStatus();
  }
  zeros_ += o.zeros_;  // exact zeros stay in bin nb whatever the range
  if (o.exp_ > exp_) grow_to(o.exp_);
  if (o.exp_ < exp_) {
    Histogram g = o;
    g.grow_to(exp_);
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += g.counts_[i];
  } else {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
  }
  return OkStatus();
}

uint64_t Histogram::total() const {
  uint64_t t = 0;
  for (uint64_t c : counts_) t += c;
  return t;
}

std::vector<uint64_t> Histogram::magnitude_counts() const {
  std::vector<uint64_t> m(static_cast<size_t>(bins_), 0);
  if (empty()) return m;
  // Signed bin nb + k holds [k w, (k+1) w); signed bin nb - 1 - k holds [-(k+1) w, -k w), whose
  // magnitudes fall in (k w, (k+1) w] (a value exactly on an edge lands one bin lower than |x| would).
  for (int64_t k = 0; k < bins_; ++k)
    m[static_cast<size_t>(k)] = counts_[static_cast<size_t>(bins_ + k)] + counts_[static_cast<size_t>(bins_ - 1 - k)];
  return m;
}

std::pair<double, double> percentile_range(const Histogram& h, double percentile, double obs_min, double obs_max) {
  const uint64_t total = h.total();
  if (total == 0) return {obs_min, obs_max};
  const double pc = std::clamp(percentile, 0.0, 100.0);
  const auto& c = h.counts();
  const int64_t width = static_cast<int64_t>(c.size());
  // Lower end: the lower edge of the first bin at which the cumulative count passes (100-p)%.
  const double lo_target = (100.0 - pc) / 100.0 * static_cast<double>(total);
  uint64_t cum = 0;
  int64_t lo_bin = 0;
  for (int64_t b = 0; b < width; ++b) {
    cum += c[static_cast<size_t>(b)];
    if (static_cast<double>(cum) > lo_target) {
      lo_bin = b;
      break;
    }
  }
  // Upper end: the upper edge of the first bin at which the cumulative count reaches p%.
  const double hi_target = pc / 100.0 * static_cast<double>(total);
  cum = 0;
  int64_t hi_bin = width - 1;
  for (int64_t b = 0; b < width; ++b) {
    cum += c[static_cast<size_t>(b)];
    if (static_cast<double>(cum) >= hi_target) {
      hi_bin = b;
      break;
    }
  }
  const double lo = std::clamp(h.bin_lo(lo_bin), obs_min, obs_max);
  const double hi = std::clamp(h.bin_lo(hi_bin + 1), obs_min, obs_max);
  return {std::min(lo, hi), hi};
}

int entropy_search(const std::vector<uint64_t>& mag, int levels) {
  int64_t last = static_cast<int64_t>(mag.size()) - 1;
  while (last >= 0 && mag[static_cast<size_t>(last)] == 0) --last;
  const int64_t L = last + 1;  // candidates end at the bin holding max |x|
  if (L <= levels) return static_cast<int>(std::max<int64_t>(L, 1));
  // Prefix sums over bins: counts C, sum of c log c X, non-zero bins Z.
  std::vector<double> C(static_cast<size_t>(L) + 1, 0.0), X(static_cast<size_t>(L) + 1, 0.0);
  std::vector<int64_t> Z(static_cast<size_t>(L) + 1, 0);
  for (int64_t k = 0; k < L; ++k) {
    const double c = static_cast<double>(mag[static_cast<size_t>(k)]);
    C[static_cast<size_t>(k) + 1] = C[static_cast<size_t>(k)] + c;
    X[static_cast<size_t>(k) + 1] = X[static_cast<size_t>(k)] + (c > 0 ? c * std::log(c) : 0.0);
    Z[static_cast<size_t>(k) + 1] = Z[static_cast<size_t>(k)] + (c > 0);
  }
  const double S = C[static_cast<size_t>(L)];
  auto at = [](const auto& v, int64_t k) { return v[static_cast<size_t>(k)]; };
  // With P the counts p_k and Q the spread group masses q_k (sums Sp = S and Sq = C[i]):
  //   KL(P/Sp || Q/Sq) = (1/Sp) sum_k p_k log(p_k / q_k) + log(Sq / Sp),
  // and over a group of mass M with nz non-zero bins, sum p_k log(p_k / q_k) = sum p log p - (sum p) log(M / nz).
  // All groups but the last depend only on m = i / levels: their sum is computed once per m.
  double best_kl = std::numeric_limits<double>::infinity();
  int64_t best_i = L;
  int64_t cur_m = -1;
  double head = 0;  // groups 0 .. levels-2 for cur_m
  for (int64_t i = levels; i <= L; ++i) {
    const int64_t m = i / levels;
    if (m != cur_m) {
      cur_m = m;
      head = 0;
      for (int64_t j = 0; j + 1 < levels; ++j) {
        const int64_t s = j * m, e = s + m;
        const double M = at(C, e) - at(C, s);
        if (M <= 0) continue;
        const double nz = static_cast<double>(at(Z, e) - at(Z, s));
        head += (at(X, e) - at(X, s)) - M * std::log(M / nz);
      }
    }
    // Last group [s, i): bins s .. i-2 as counted, bin i-1 plus the outliers.
    const int64_t s = (levels - 1) * m;
    const double outliers = S - at(C, i);
    const double pl = static_cast<double>(mag[static_cast<size_t>(i - 1)]) + outliers;
    const double M = at(C, i) - at(C, s);
    double tail = 0;
    if (M > 0 || pl > 0) {
      if (M <= 0) continue;  // Q is zero where P is not: infinite KL
      const double nz = static_cast<double>(at(Z, i - 1) - at(Z, s) + (pl > 0));
      const double plogp = (at(X, i - 1) - at(X, s)) + (pl > 0 ? pl * std::log(pl) : 0.0);
      tail = plogp - (M + outliers) * std::log(M / nz);
    }
    const double kl = (head + tail) / S + std::log(at(C, i) / S);
    if (kl < best_kl) {  // strictly smaller: the smallest threshold wins ties
      best_kl = kl;
      best_i = i;
    }
  }
  return static_cast<int>(best_i);
}

double entropy_threshold(const Histogram& h, int levels) {
  if (h.empty() || h.total() == 0) return 0.0;
  std::vector<uint64_t> mag = h.magnitude_counts();
  mag[0] -= std::min(mag[0], h.zeros());  // exact zeros all sit in magnitude bin 0
  return entropy_search(mag, levels) * h.bin_width();
}

int entropy_levels(double obs_min, double obs_max) { return obs_min >= 0 || obs_max <= 0 ? 256 : 128; }

std::pair<double, double> entropy_range(const Histogram& h, double obs_min, double obs_max) {
  const double t = entropy_threshold(h, entropy_levels(obs_min, obs_max));
  return {std::max(obs_min, -t), std::min(obs_max, t)};
}

std::pair<double, double> mse_range(const Histogram& h, double obs_min, double obs_max, int levels, int steps) {
  const double full_lo = std::min(obs_min, 0.0), full_hi = std::max(obs_max, 0.0);
  if (h.total() == 0 || !(full_hi - full_lo > 0)) return {obs_min, obs_max};
  // Non-empty bins as (centre, count).
  std::vector<std::pair<double, double>> cells;
  const auto& c = h.counts();
  const double w = h.bin_width();
  for (size_t b = 0; b < c.size(); ++b)
    if (c[b]) cells.emplace_back(h.bin_lo(static_cast<int64_t>(b)) + 0.5 * w, static_cast<double>(c[b]));
  double best_err = std::numeric_limits<double>::infinity();
  double best_lo = full_lo, best_hi = full_hi;
  // From the full range downwards; strictly smaller error wins, so ties keep the wider range.
  for (int k = steps; k >= 1; --k) {
    const double f = static_cast<double>(k) / steps;
    const double lo = full_lo * f, hi = full_hi * f;
    const double scale = (hi - lo) / (levels - 1);
    const double rounding = scale * scale / 12.0;
    double err = 0;
    for (const auto& [x, n] : cells) {
      double e;
      if (x < lo) e = (lo - x) * (lo - x);
      else if (x > hi) e = (x - hi) * (x - hi);
      else e = rounding;
      err += e * n;
    }
    if (err < best_err) {
      best_err = err;
      best_lo = lo;
      best_hi = hi;
    }
  }
  return {std::clamp(best_lo, obs_min, obs_max), std::clamp(best_hi, obs_min, obs_max)};
}

}  // namespace frugal
