#include "frugal/fidelity.h"

#include <cmath>

#include "frugal/quant_math.h"

namespace frugal {

double Fidelity::min_cosine() const {
  double m = 1;
  for (const auto& o : outputs) m = std::min(m, o.cosine);
  return m;
}

double Fidelity::min_top1() const {
  double m = -1;
  for (const auto& o : outputs)
    if (o.top1_agreement >= 0) m = m < 0 ? o.top1_agreement : std::min(m, o.top1_agreement);
  return m;
}

namespace {

struct Acc {
  double max_abs = 0, sum_abs = 0, sig_sq = 0, err_sq = 0, cos_sum = 0;
  int64_t elems = 0, samples = 0, rows = 0, agree = 0;
  bool top1 = true;
};

void accumulate(Acc& a, const Tensor& ref_t, const Tensor& cand_t) {
  const auto r = ref_t.to_double_vector(), c = cand_t.to_double_vector();
  double dot = 0, nr = 0, nc = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    const double d = std::fabs(c[i] - r[i]);
    a.max_abs = std::max(a.max_abs, d);
    a.sum_abs += d;
    a.sig_sq += r[i] * r[i];
    a.err_sq += (c[i] - r[i]) * (c[i] - r[i]);
    dot += r[i] * c[i];
    nr += r[i] * r[i];
    nc += c[i] * c[i];
  }
  a.elems += static_cast<int64_t>(r.size());
  // Two all-zero outputs agree perfectly; one zero and one not do not.
  a.cos_sum += (nr == 0 && nc == 0) ? 1.0 : (nr == 0 || nc == 0) ? 0.0 : dot / std::sqrt(nr * nc);
  ++a.samples;
  const int64_t classes = ref_t.rank() >= 1 ? ref_t.dim(-1) : 0;
  if (!dtype_is_float(ref_t.dtype()) || classes < 2) {
    a.top1 = false;
    return;
  }
  const size_t rows = r.size() / static_cast<size_t>(classes);
  for (size_t row = 0; row < rows; ++row) {
    size_t br = 0, bc = 0;
    for (size_t k = 1; k < static_cast<size_t>(classes); ++k) {
      if (r[row * classes + k] > r[row * classes + br]) br = k;
      if (c[row * classes + k] > c[row * classes + bc]) bc = k;
    }
    ++a.rows;
    a.agree += br == bc;
  }
}

}  // namespace

StatusOr<Fidelity> measure_fidelity(Executor& reference, Executor& candidate, Dataset& data, size_t max_samples) {
  const size_t n = max_samples ? std::min(max_samples, data.size()) : data.size();
  std::vector<std::string> names;
  for (const auto& o : reference.graph().outputs()) names.push_back(o.name);
  std::vector<Acc> acc(names.size());
  for (size_t i = 0; i < n; ++i) {
    FRUGAL_ASSIGN_OR_RETURN(NamedTensors in, data.get(i));
    FRUGAL_ASSIGN_OR_RETURN(NamedTensors ref, reference.run(in));
    FRUGAL_ASSIGN_OR_RETURN(NamedTensors cand, candidate.run(in));
    for (size_t k = 0; k < names.size(); ++k) {
      const Tensor* c = find_named(cand, names[k]);
      if (!c) return InvalidModel("compressed model has no output '" + names[k] + "'");
      const Tensor& r = ref[k].second;
      if (c->shape() != r.shape())
        return InvalidModel("output '" + names[k] + "' has shape " + shape_str(c->shape()) + " in the compressed model but " +
                            shape_str(r.shape()) + " in the original");
      accumulate(acc[k], r, *c);
    }
  }
  Fidelity f;
  f.samples = static_cast<int64_t>(n);
  for (size_t k = 0; k < names.size(); ++k) {
    const Acc& a = acc[k];
    OutputFidelity o;
    o.name = names[k];
    o.samples = a.samples;
    o.max_abs = a.max_abs;
    o.mean_abs = a.elems ? a.sum_abs / static_cast<double>(a.elems) : 0;
    o.cosine = a.samples ? a.cos_sum / static_cast<double>(a.samples) : 1;
    o.sqnr_db = quant::sqnr_db(a.sig_sq, a.err_sq);
    o.top1_agreement = a.top1 && a.rows ? static_cast<double>(a.agree) / static_cast<double>(a.rows) : -1;
    f.outputs.push_back(o);
  }
  return f;
}

Json fidelity_json(const Fidelity& f) {
  Json j;
  j["samples"] = f.samples;
  j["outputs"] = Json::array();
  for (const auto& o : f.outputs) {
    Json x;
    x["name"] = o.name;
    x["max_abs_error"] = o.max_abs;
    x["mean_abs_error"] = o.mean_abs;
    x["cosine"] = o.cosine;
    x["sqnr_db"] = o.sqnr_db;
    x["top1_agreement"] = o.top1_agreement >= 0 ? Json(o.top1_agreement) : Json(nullptr);
    j["outputs"].push_back(x);
  }
  return j;
}

}  // namespace frugal
