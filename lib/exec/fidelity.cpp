#include "frugal/fidelity.h"

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

}  // namespace frugal
