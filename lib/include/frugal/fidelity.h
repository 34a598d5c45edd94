// Fidelity of a compressed model against its original on the same inputs: what every command that
// writes a model reports. Streams over a Dataset; memory does not grow with the number of samples.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "frugal/dataset.h"
#include "frugal/executor.h"
#include "frugal/report.h"

namespace frugal {

struct OutputFidelity {
  std::string name;
  int64_t samples = 0;
  double max_abs = 0;       // max |candidate - reference| over all elements and samples
  double mean_abs = 0;      // mean |candidate - reference|
  double cosine = 1;        // mean over samples of cosine(candidate, reference), flattened
  double sqnr_db = 0;       // 10 log10(sum ref^2 / sum err^2) over everything
  double top1_agreement = -1;  // fraction of rows whose argmax over the last axis agrees; -1 if not
                               // meaningful (fewer than 2 classes, non-float output)
};

struct Fidelity {
  std::vector<OutputFidelity> outputs;
  int64_t samples = 0;
  // Worst (smallest) cosine and top-1 agreement over outputs, for gates.
  double min_cosine() const;
  double min_top1() const;  // -1 when no output has a top-1 figure
};

// Runs both executors on up to `max_samples` samples (0: all) of `data` and compares outputs by name.
StatusOr<Fidelity> measure_fidelity(Executor& reference, Executor& candidate, Dataset& data, size_t max_samples = 0);
Json fidelity_json(const Fidelity& f);

}  // namespace frugal
