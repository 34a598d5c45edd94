// Histograms and the range choices made from them (percentile, entropy, mse).
#include <algorithm>
#include <cmath>
#include <limits>

#include "frugal/calibration.h"

namespace frugal {

Histogram::Histogram(double lo, double hi, int bins) : lo_(lo), hi_(hi), counts_(static_cast<size_t>(std::max(bins, 1)), 0) {}

int Histogram::index(float x) const {
  const int nb = bins();
  const double span = hi_ - lo_;
  if (!(span > 0)) return 0;
  // The same expression for every element and every batch, so a value always lands in the same bin.
  const double pos = (static_cast<double>(x) - lo_) * (static_cast<double>(nb) / span);
  if (!(pos > 0)) return 0;
  if (pos >= nb) return nb - 1;
  return static_cast<int>(pos);
}

void Histogram::add(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) continue;
    ++counts_[static_cast<size_t>(index(x[i]))];
  }
}

void Histogram::add_abs(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) continue;
    ++counts_[static_cast<size_t>(index(std::fabs(x[i])))];
  }
}

Status Histogram::merge(const Histogram& o) {
  if (o.lo_ != lo_ || o.hi_ != hi_ || o.counts_.size() != counts_.size())
    return InvalidArgument("cannot merge histograms with different ranges or bin counts");
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
  return OkStatus();
}

uint64_t Histogram::total() const {
  uint64_t t = 0;
  for (uint64_t c : counts_) t += c;
  return t;
}

std::pair<double, double> percentile_range(const Histogram& h, double percentile) {
  const uint64_t total = h.total();
  if (total == 0 || h.bins() == 0) return {h.lo(), h.hi()};
  const double p = std::clamp(percentile, 0.0, 100.0) / 100.0;
  const double w = h.bin_width();
  const auto& c = h.counts();
  const int nb = h.bins();
  // Lower end: the first bin at which the cumulative count passes (1-p) of the total.
  const double lo_target = (100.0 - std::clamp(percentile, 0.0, 100.0)) / 100.0 * static_cast<double>(total);
  uint64_t cum = 0;
  int lo_bin = 0;
  for (int i = 0; i < nb; ++i) {
    cum += c[static_cast<size_t>(i)];
    if (static_cast<double>(cum) > lo_target) {
      lo_bin = i;
      break;
    }
  }
  // Upper end: the first bin at which the cumulative count reaches p of the total.
  const double hi_target = p * static_cast<double>(total);
  cum = 0;
  int hi_bin = nb - 1;
  for (int i = 0; i < nb; ++i) {
    cum += c[static_cast<size_t>(i)];
    if (static_cast<double>(cum) >= hi_target) {
      hi_bin = i;
      break;
    }
  }
  double lo = h.lo() + lo_bin * w;
  double hi = h.lo() + (hi_bin + 1) * w;
  lo = std::clamp(lo, h.lo(), h.hi());
  hi = std::clamp(hi, h.lo(), h.hi());
  if (hi_bin == nb - 1) hi = h.hi();
  if (lo_bin == 0) lo = h.lo();
  return {lo, hi};
}

namespace {

// Replaces zeros by eps and takes the mass from the non-zero entries, so KL stays finite (as
// TensorRT/MXNet do). Returns false when everything is zero.
bool smooth(std::vector<double>& d, double eps = 1e-4) {
  size_t zeros = 0;
  for (double v : d) zeros += v == 0;
  const size_t nonzeros = d.size() - zeros;
  if (nonzeros == 0) return false;
  const double eps1 = eps * static_cast<double>(zeros) / static_cast<double>(nonzeros);
  for (double& v : d) v = v == 0 ? eps : v - eps1;
  return true;
}

double kl_divergence(const std::vector<double>& p, const std::vector<double>& q) {
  double sp = 0, sq = 0;
  for (size_t i = 0; i < p.size(); ++i) sp += p[i], sq += q[i];
  double kl = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double pi = p[i] / sp, qi = q[i] / sq;
    if (pi > 0 && qi > 0) kl += pi * std::log(pi / qi);
  }
  return kl;
}

}  // namespace

double entropy_threshold(const Histogram& h, int levels) {
  const int nb = h.bins();
  const double w = h.bin_width();
  if (h.total() == 0 || !(w > 0)) return h.hi();
  if (nb <= levels) return h.hi();
  const auto& hist = h.counts();
  double best_kl = std::numeric_limits<double>::infinity();
  int best_i = nb;
  std::vector<double> p, q;
  // Suffix sums give the outlier mass of each candidate in O(1).
  std::vector<double> suffix(static_cast<size_t>(nb) + 1, 0.0);
  for (int i = nb - 1; i >= 0; --i) suffix[static_cast<size_t>(i)] = suffix[static_cast<size_t>(i) + 1] + static_cast<double>(hist[static_cast<size_t>(i)]);
  for (int i = levels; i <= nb; ++i) {
    p.assign(hist.begin(), hist.begin() + i);
    p[static_cast<size_t>(i) - 1] += suffix[static_cast<size_t>(i)];
    // Q: hist[0:i] merged into `levels` groups, each group's mass spread evenly over its non-zero bins.
    q.assign(static_cast<size_t>(i), 0.0);
    const int merged = i / levels;
    for (int j = 0; j < levels; ++j) {
      const int start = j * merged;
      const int stop = j == levels - 1 ? i : start + merged;
      double mass = 0;
      int nonzero = 0;
      for (int k = start; k < stop; ++k) {
        mass += static_cast<double>(hist[static_cast<size_t>(k)]);
        nonzero += p[static_cast<size_t>(k)] != 0;
      }
      if (nonzero == 0) continue;
      for (int k = start; k < stop; ++k)
        if (p[static_cast<size_t>(k)] != 0) q[static_cast<size_t>(k)] = mass / nonzero;
    }
    if (!smooth(p) || !smooth(q)) continue;
    const double kl = kl_divergence(p, q);
    // Strictly smaller keeps the first (smallest) threshold on ties: deterministic.
    if (kl < best_kl) {
      best_kl = kl;
      best_i = i;
    }
  }
  return h.lo() + best_i * w;
}

std::pair<double, double> mse_range(const Histogram& h, int levels, int steps) {
  const double full_lo = std::min(h.lo(), 0.0), full_hi = std::max(h.hi(), 0.0);
  if (h.total() == 0 || !(full_hi - full_lo > 0)) return {h.lo(), h.hi()};
  const double w = h.bin_width();
  const auto& c = h.counts();
  double best_err = std::numeric_limits<double>::infinity();
  double best_lo = full_lo, best_hi = full_hi;
  // From the full range downwards; strictly smaller error wins, so ties keep the wider range.
  for (int k = steps; k >= 1; --k) {
    const double f = static_cast<double>(k) / steps;
    const double lo = full_lo * f, hi = full_hi * f;
    const double scale = (hi - lo) / (levels - 1);
    const double rounding = scale * scale / 12.0;
    double err = 0;
    for (int i = 0; i < h.bins(); ++i) {
      const uint64_t n = c[static_cast<size_t>(i)];
      if (!n) continue;
      const double x = h.lo() + (i + 0.5) * w;
      double e;
      if (x < lo) e = (lo - x) * (lo - x);
      else if (x > hi) e = (x - hi) * (x - hi);
      else e = rounding;
      err += e * static_cast<double>(n);
    }
    if (err < best_err) {
      best_err = err;
      best_lo = lo;
      best_hi = hi;
    }
  }
  return {std::max(best_lo, h.lo()), std::min(best_hi, h.hi())};
}

}  // namespace frugal
