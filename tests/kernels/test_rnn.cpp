// Recurrent kernels (LSTM, GRU, RNN) against a step-by-step reference written plainly from the ONNX
// equations: one batch row, one time step, one hidden unit at a time, in double precision. Covers
// forward/reverse/bidirectional, sequence_lens, initial states, peepholes, clip, input_forget,
// linear_before_reset, non-default activations with alpha/beta, and layout 1.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "frugal/kernel.h"
#include "kernel_test_util.h"

using namespace frugal;
using namespace frugal::testing;

namespace {

NodeDef rnode(const std::string& op, int64_t hidden, const std::string& dir, size_t n_in, size_t n_out) {
  NodeDef n = xy_node(op, 22, n_in, n_out, "r");
  set_int(n, "hidden_size", hidden);
  set_str(n, "direction", dir);
  return n;
}

using Fn = std::function<double(double)>;
double sigm(double x) { return 1.0 / (1.0 + std::exp(-x)); }

std::vector<float> vals(size_t n, uint32_t seed, float scale = 0.5f) {
  std::vector<float> v(n);
  for (auto& x : v) {
    seed = seed * 1664525u + 1013904223u;
    x = scale * (static_cast<float>((seed >> 8) % 2000) / 1000.0f - 1.0f);
  }
  return v;
}

void check_close(const Tensor& t, const std::vector<double>& want, double tol = 2e-5) {
  REQUIRE(t.dtype() == DType::kFloat);
  REQUIRE(static_cast<size_t>(t.numel()) == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    CHECK(t.data<float>()[i] == Approx(want[i]).margin(tol));
  }
}

enum class Op { kRnn, kGru, kLstm };

// The reference problem: layout-0 tensors as flat vectors.
struct Problem {
  Op op;
  int64_t T, B, I, H, dirs;
  bool reverse_only = false;
  std::vector<float> x, w, r, b, p, h0, c0;
  std::vector<int32_t> lens;  // empty: all T
  double clip = 0;
  bool input_forget = false, lbr = false;
  std::vector<Fn> acts;  // per direction: RNN f; GRU f,g; LSTM f,g,h
};

struct RefOut {
  std::vector<double> y, yh, yc;
};

RefOut reference(const Problem& pb) {
  const int64_t T = pb.T, B = pb.B, I = pb.I, H = pb.H, D = pb.dirs;
  const int64_t G = pb.op == Op::kRnn ? 1 : pb.op == Op::kGru ? 3 : 4;
  RefOut o;
  o.y.assign(static_cast<size_t>(T * D * B * H), 0.0);
  o.yh.assign(static_cast<size_t>(D * B * H), 0.0);
  o.yc.assign(static_cast<size_t>(D * B * H), 0.0);
  const size_t na = pb.op == Op::kRnn ? 1 : pb.op == Op::kGru ? 2 : 3;
  auto at = [](const std::vector<float>& v, int64_t i) { return static_cast<double>(v[static_cast<size_t>(i)]); };
  auto clipf = [&](double v) { return pb.clip > 0 ? std::clamp(v, -pb.clip, pb.clip) : v; };
  for (int64_t d = 0; d < D; ++d) {
    const bool rev = pb.reverse_only || d == 1;
    const Fn& f = pb.acts[static_cast<size_t>(d) * na];
    const Fn& g = pb.acts[std::min(static_cast<size_t>(d) * na + 1, pb.acts.size() - 1)];
    const Fn& hf = pb.acts[std::min(static_cast<size_t>(d) * na + 2, pb.acts.size() - 1)];
    for (int64_t bi = 0; bi < B; ++bi) {
      const int64_t len = pb.lens.empty() ? T : pb.lens[static_cast<size_t>(bi)];
      std::vector<double> h(static_cast<size_t>(H), 0.0), c(static_cast<size_t>(H), 0.0);
      for (int64_t j = 0; j < H; ++j) {
        if (!pb.h0.empty()) h[static_cast<size_t>(j)] = at(pb.h0, (d * B + bi) * H + j);
        if (!pb.c0.empty()) c[static_cast<size_t>(j)] = at(pb.c0, (d * B + bi) * H + j);
      }
      for (int64_t s = 0; s < len; ++s) {
        const int64_t t = rev ? len - 1 - s : s;
        // wx[gate*H + j] = X_t · W_gate,jᵀ + Wb ; rh = H_{t-1} · R_gate,jᵀ + Rb
        auto wx = [&](int64_t row) {
          double acc = pb.b.empty() ? 0.0 : at(pb.b, d * 2 * G * H + row);
          for (int64_t k = 0; k < I; ++k) acc += at(pb.x, (t * B + bi) * I + k) * at(pb.w, (d * G * H + row) * I + k);
          return acc;
        };
        auto rh = [&](int64_t row, const std::vector<double>& hv) {
          double acc = pb.b.empty() ? 0.0 : at(pb.b, d * 2 * G * H + G * H + row);
          for (int64_t k = 0; k < H; ++k) acc += hv[static_cast<size_t>(k)] * at(pb.r, (d * G * H + row) * H + k);
          return acc;
        };
        std::vector<double> hn(static_cast<size_t>(H)), cn(static_cast<size_t>(H));
        for (int64_t j = 0; j < H; ++j) {
          const size_t u = static_cast<size_t>(j);
          if (pb.op == Op::kRnn) {
            hn[u] = f(clipf(wx(j) + rh(j, h)));
          } else if (pb.op == Op::kGru) {
            const double z = f(clipf(wx(j) + rh(j, h)));
            double ht;
            if (pb.lbr) {
              const double r = f(clipf(wx(H + j) + rh(H + j, h)));
              ht = g(clipf(wx(2 * H + j) + r * rh(2 * H + j, h)));
            } else {
              // (r ⊙ H_{t-1}) · Rhᵀ needs r for every unit k.
              std::vector<double> rhv(static_cast<size_t>(H));
              for (int64_t k = 0; k < H; ++k)
                rhv[static_cast<size_t>(k)] = f(clipf(wx(H + k) + rh(H + k, h))) * h[static_cast<size_t>(k)];
              ht = g(clipf(wx(2 * H + j) + rh(2 * H + j, rhv)));
            }
            hn[u] = (1 - z) * ht + z * h[u];
          } else {
            const double pi = pb.p.empty() ? 0 : at(pb.p, d * 3 * H + j);
            const double po = pb.p.empty() ? 0 : at(pb.p, d * 3 * H + H + j);
            const double pf = pb.p.empty() ? 0 : at(pb.p, d * 3 * H + 2 * H + j);
            const double it = f(clipf(wx(j) + rh(j, h) + pi * c[u]));
            const double ft = pb.input_forget ? 1 - it : f(clipf(wx(2 * H + j) + rh(2 * H + j, h) + pf * c[u]));
            const double ct = g(clipf(wx(3 * H + j) + rh(3 * H + j, h)));
            cn[u] = ft * c[u] + it * ct;
            const double ot = f(clipf(wx(H + j) + rh(H + j, h) + po * cn[u]));
            hn[u] = ot * hf(cn[u]);
          }
        }
        h = hn;
        if (pb.op == Op::kLstm) c = cn;
        for (int64_t j = 0; j < H; ++j) o.y[static_cast<size_t>(((t * D + d) * B + bi) * H + j)] = h[static_cast<size_t>(j)];
      }
      // Rows of length 0 report zero final states, as onnxruntime does.
      if (len == 0) continue;
      for (int64_t j = 0; j < H; ++j) {
        o.yh[static_cast<size_t>((d * B + bi) * H + j)] = h[static_cast<size_t>(j)];
        o.yc[static_cast<size_t>((d * B + bi) * H + j)] = c[static_cast<size_t>(j)];
      }
    }
  }
  return o;
}

Problem make_problem(Op op, int64_t T, int64_t B, int64_t I, int64_t H, int64_t dirs, uint32_t seed) {
  Problem pb;
  pb.op = op;
  pb.T = T, pb.B = B, pb.I = I, pb.H = H, pb.dirs = dirs;
  const int64_t G = op == Op::kRnn ? 1 : op == Op::kGru ? 3 : 4;
  pb.x = vals(static_cast<size_t>(T * B * I), seed, 1.0f);
  pb.w = vals(static_cast<size_t>(dirs * G * H * I), seed + 1);
  pb.r = vals(static_cast<size_t>(dirs * G * H * H), seed + 2);
  pb.b = vals(static_cast<size_t>(dirs * 2 * G * H), seed + 3);
  pb.h0 = vals(static_cast<size_t>(dirs * B * H), seed + 4);
  if (op == Op::kLstm) {
    pb.c0 = vals(static_cast<size_t>(dirs * B * H), seed + 5);
    pb.p = vals(static_cast<size_t>(dirs * 3 * H), seed + 6);
  }
  const size_t na = op == Op::kRnn ? 1 : op == Op::kGru ? 2 : 3;
  for (int64_t d = 0; d < dirs; ++d) {
    if (op == Op::kRnn) pb.acts.push_back([](double v) { return std::tanh(v); });
    else pb.acts.push_back(sigm);
    for (size_t k = 1; k < na; ++k) pb.acts.push_back([](double v) { return std::tanh(v); });
  }
  return pb;
}

std::vector<Tensor> inputs_of(const Problem& pb) {
  const int64_t G = pb.op == Op::kRnn ? 1 : pb.op == Op::kGru ? 3 : 4;
  const int64_t D = pb.dirs, H = pb.H;
  std::vector<Tensor> in = {tf({pb.T, pb.B, pb.I}, pb.x), tf({D, G * H, pb.I}, pb.w), tf({D, G * H, H}, pb.r),
                            tf({D, 2 * G * H}, pb.b)};
  in.push_back(pb.lens.empty() ? Tensor() : Tensor::from_vector<int32_t>({pb.B}, pb.lens));
  in.push_back(tf({D, pb.B, H}, pb.h0));
  if (pb.op == Op::kLstm) {
    in.push_back(tf({D, pb.B, H}, pb.c0));
    in.push_back(pb.p.empty() ? Tensor() : tf({D, 3 * H}, pb.p));
  }
  return in;
}

const char* op_name(Op op) { return op == Op::kRnn ? "RNN" : op == Op::kGru ? "GRU" : "LSTM"; }

void run_and_check(const Problem& pb, NodeDef n) {
  const auto out = run(n, inputs_of(pb));
  const RefOut ref = reference(pb);
  check_close(out[0], ref.y);
  check_close(out[1], ref.yh);
  if (pb.op == Op::kLstm) check_close(out[2], ref.yc);
}

}  // namespace

TEST_CASE("LSTM forward, reverse, bidirectional with peepholes and sequence_lens", "[rnn]") {
  for (const char* dir : {"forward", "reverse", "bidirectional"}) {
    const int64_t D = std::string(dir) == "bidirectional" ? 2 : 1;
    Problem pb = make_problem(Op::kLstm, 5, 3, 4, 3, D, 100);
    pb.reverse_only = std::string(dir) == "reverse";
    pb.lens = {5, 2, 0};
    INFO(dir);
    run_and_check(pb, rnode("LSTM", 3, dir, 8, 3));
  }
}

TEST_CASE("LSTM clip, input_forget and custom activations", "[rnn]") {
  Problem pb = make_problem(Op::kLstm, 4, 2, 3, 5, 2, 200);
  pb.clip = 0.7;
  pb.input_forget = true;
  pb.p.clear();
  // forward: HardSigmoid(0.3, 0.6), LeakyRelu(0.1), Affine(2, 0.5); reverse: Sigmoid, Tanh, Relu
  pb.acts = {[](double v) { return std::clamp(0.3 * v + 0.6, 0.0, 1.0); },
             [](double v) { return v >= 0 ? v : 0.1 * v; },
             [](double v) { return 2 * v + 0.5; },
             sigm,
             [](double v) { return std::tanh(v); },
             [](double v) { return std::max(v, 0.0); }};
  auto n = rnode("LSTM", 5, "bidirectional", 8, 3);
  set_float(n, "clip", 0.7f);
  set_int(n, "input_forget", 1);
  set_strings(n, "activations", {"HardSigmoid", "LeakyRelu", "Affine", "Sigmoid", "Tanh", "Relu"});
  set_floats(n, "activation_alpha", {0.3f, 0.1f, 2.0f});
  set_floats(n, "activation_beta", {0.6f, 0.5f});
  run_and_check(pb, n);
}

TEST_CASE("LSTM default activations hand value", "[rnn]") {
  // H = I = 1, one step, W = [1,1,1,1], R = 0, no bias: i = o = f = sigmoid(x), c~ = tanh(x).
  auto n = rnode("LSTM", 1, "forward", 3, 3);
  const auto out = run(n, {tf({1, 1, 1}, {0.5f}), tf({1, 4, 1}, {1, 1, 1, 1}), tf({1, 4, 1}, {0, 0, 0, 0})});
  const double s = sigm(0.5), c = s * std::tanh(0.5), h = s * std::tanh(c);
  check_close(out[0], {h}, 1e-6);
  check_close(out[1], {h}, 1e-6);
  check_close(out[2], {c}, 1e-6);
}

TEST_CASE("GRU linear_before_reset 0 and 1, both directions", "[rnn]") {
  for (int lbr : {0, 1}) {
    for (const char* dir : {"forward", "reverse", "bidirectional"}) {
      const int64_t D = std::string(dir) == "bidirectional" ? 2 : 1;
      Problem pb = make_problem(Op::kGru, 4, 3, 2, 4, D, 300 + static_cast<uint32_t>(lbr));
      pb.reverse_only = std::string(dir) == "reverse";
      pb.lbr = lbr != 0;
      pb.lens = {4, 3, 1};
      auto n = rnode("GRU", 4, dir, 6, 2);
      set_int(n, "linear_before_reset", lbr);
      INFO(dir << " lbr " << lbr);
      run_and_check(pb, n);
    }
  }
}

TEST_CASE("GRU clip and custom activations", "[rnn]") {
  Problem pb = make_problem(Op::kGru, 3, 2, 3, 2, 1, 400);
  pb.clip = 0.4;
  pb.acts = {[](double v) { return std::clamp(0.2 * v + 0.5, 0.0, 1.0); }, [](double v) { return std::max(v, 0.0); }};
  auto n = rnode("GRU", 2, "forward", 6, 2);
  set_float(n, "clip", 0.4f);
  set_strings(n, "activations", {"HardSigmoid", "Relu"});
  run_and_check(pb, n);
}

TEST_CASE("RNN with Relu and Tanh", "[rnn]") {
  Problem pb = make_problem(Op::kRnn, 4, 2, 3, 3, 2, 500);
  pb.acts = {[](double v) { return std::max(v, 0.0); }, [](double v) { return std::tanh(v); }};
  pb.lens = {4, 2};
  auto n = rnode("RNN", 3, "bidirectional", 6, 2);
  set_strings(n, "activations", {"Relu", "Tanh"});
  run_and_check(pb, n);
}

TEST_CASE("layout 1 is the batch-major transpose of layout 0", "[rnn]") {
  for (Op op : {Op::kLstm, Op::kGru, Op::kRnn}) {
    Problem pb = make_problem(op, 3, 2, 3, 2, 2, 600);
    auto n0 = rnode(op_name(op), 2, "bidirectional", op == Op::kLstm ? 8 : 6, op == Op::kLstm ? 3 : 2);
    auto n1 = n0;
    set_int(n1, "layout", 1);
    const RefOut ref = reference(pb);
    auto in = inputs_of(pb);
    // X [T,B,I] -> [B,T,I]; initial states [D,B,H] -> [B,D,H]
    auto transpose3 = [](const std::vector<float>& v, int64_t a, int64_t b, int64_t c) {
      std::vector<float> o(v.size());
      for (int64_t i = 0; i < a; ++i)
        for (int64_t j = 0; j < b; ++j)
          for (int64_t k = 0; k < c; ++k) o[static_cast<size_t>((j * a + i) * c + k)] = v[static_cast<size_t>((i * b + j) * c + k)];
      return o;
    };
    in[0] = tf({pb.B, pb.T, pb.I}, transpose3(pb.x, pb.T, pb.B, pb.I));
    in[5] = tf({pb.B, 2, pb.H}, transpose3(pb.h0, 2, pb.B, pb.H));
    if (op == Op::kLstm) in[6] = tf({pb.B, 2, pb.H}, transpose3(pb.c0, 2, pb.B, pb.H));
    const auto out = run(n1, in);
    // Y [T,D,B,H] -> [B,T,D,H]
    std::vector<double> y1(ref.y.size());
    for (int64_t t = 0; t < pb.T; ++t)
      for (int64_t d = 0; d < 2; ++d)
        for (int64_t b = 0; b < pb.B; ++b)
          for (int64_t h = 0; h < pb.H; ++h)
            y1[static_cast<size_t>(((b * pb.T + t) * 2 + d) * pb.H + h)] =
                ref.y[static_cast<size_t>(((t * 2 + d) * pb.B + b) * pb.H + h)];
    auto state1 = [&](const std::vector<double>& s) {
      std::vector<double> o(s.size());
      for (int64_t d = 0; d < 2; ++d)
        for (int64_t b = 0; b < pb.B; ++b)
          for (int64_t h = 0; h < pb.H; ++h)
            o[static_cast<size_t>((b * 2 + d) * pb.H + h)] = s[static_cast<size_t>((d * pb.B + b) * pb.H + h)];
      return o;
    };
    INFO(op_name(op));
    CHECK(out[0].shape() == Shape{pb.B, pb.T, 2, pb.H});
    check_close(out[0], y1);
    check_close(out[1], state1(ref.yh));
    if (op == Op::kLstm) check_close(out[2], state1(ref.yc));
  }
}
