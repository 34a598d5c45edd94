// The activation functions the ONNX recurrent ops (RNN, GRU, LSTM) name in their `activations`
// attribute, with activation_alpha/activation_beta handed out in list order to the functions that
// take them (as onnxruntime does); a function whose value is missing from the list gets its default.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <string>
#include <vector>

#include "frugal/kernel.h"

namespace frugal::kernels {

struct RnnActivation {
  enum class Kind { kSigmoid, kTanh, kRelu, kAffine, kLeakyRelu, kThresholdedRelu, kScaledTanh, kHardSigmoid,
                    kElu, kSoftsign, kSoftplus };
  Kind kind = Kind::kSigmoid;
  float alpha = 0, beta = 0;

  float operator()(float x) const {
    switch (kind) {
      case Kind::kSigmoid: return 1.0f / (1.0f + std::exp(-x));
      case Kind::kTanh: return std::tanh(x);
      case Kind::kRelu: return std::max(x, 0.0f);
      case Kind::kAffine: return alpha * x + beta;
      case Kind::kLeakyRelu: return x >= 0 ? x : alpha * x;
      case Kind::kThresholdedRelu: return x > alpha ? x : 0.0f;
      case Kind::kScaledTanh: return alpha * std::tanh(beta * x);
      case Kind::kHardSigmoid: return std::clamp(alpha * x + beta, 0.0f, 1.0f);
      case Kind::kElu: return x >= 0 ? x : alpha * (std::exp(x) - 1.0f);
      case Kind::kSoftsign: return x / (1.0f + std::fabs(x));
      case Kind::kSoftplus: return std::log1p(std::exp(x));
    }
    return x;
  }
};

// Parses `activations` (or `defaults` when absent) for `dirs` directions of `per_dir` functions each.
// A list of exactly `per_dir` names is reused for both directions. Result: dirs * per_dir entries.
inline StatusOr<std::vector<RnnActivation>> parse_rnn_activations(const NodeDef& node,
                                                                  const std::vector<std::string>& defaults,
                                                                  int dirs) {
  using K = RnnActivation::Kind;
  const size_t per_dir = defaults.size();
  std::vector<std::string> names;
  if (node.has("activations")) names = node.attrs.at("activations").strings;
  const bool given = !names.empty();
  if (!given)
    for (int d = 0; d < dirs; ++d) names.insert(names.end(), defaults.begin(), defaults.end());
  if (names.size() == per_dir && dirs == 2) names.insert(names.end(), names.begin(), names.end());
  if (names.size() != per_dir * static_cast<size_t>(dirs))
    return node.error(StatusCode::kInvalidModel, "activations needs " + std::to_string(per_dir * dirs) + " names, got " +
                                                     std::to_string(names.size()));
  const std::vector<float> alphas = given ? node.get_floats("activation_alpha") : std::vector<float>{};
  const std::vector<float> betas = given ? node.get_floats("activation_beta") : std::vector<float>{};
  size_t ai = 0, bi = 0;
  std::vector<RnnActivation> out;
  for (const auto& raw : names) {
    std::string n = raw;
    std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    RnnActivation a;
    bool takes_alpha = false, takes_beta = false;
    float da = 0, db = 0;
    if (n == "sigmoid") a.kind = K::kSigmoid;
    else if (n == "tanh") a.kind = K::kTanh;
    else if (n == "relu") a.kind = K::kRelu;
    else if (n == "affine") { a.kind = K::kAffine; takes_alpha = takes_beta = true; da = 1.0f; }
    else if (n == "leakyrelu") { a.kind = K::kLeakyRelu; takes_alpha = true; da = 0.01f; }
    else if (n == "thresholdedrelu") { a.kind = K::kThresholdedRelu; takes_alpha = true; da = 1.0f; }
    else if (n == "scaledtanh") { a.kind = K::kScaledTanh; takes_alpha = takes_beta = true; da = db = 1.0f; }
    else if (n == "hardsigmoid") { a.kind = K::kHardSigmoid; takes_alpha = takes_beta = true; da = 0.2f; db = 0.5f; }
    else if (n == "elu") { a.kind = K::kElu; takes_alpha = true; da = 1.0f; }
    else if (n == "softsign") a.kind = K::kSoftsign;
    else if (n == "softplus") a.kind = K::kSoftplus;
    else return node.error(StatusCode::kUnsupported, "activation '" + raw + "' not supported");
    a.alpha = takes_alpha ? (ai < alphas.size() ? alphas[ai++] : da) : 0.0f;
    a.beta = takes_beta ? (bi < betas.size() ? betas[bi++] : db) : 0.0f;
    out.push_back(a);
  }
  return out;
}

}  // namespace frugal::kernels
