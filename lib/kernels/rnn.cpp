// Recurrent ops: RNN, GRU, LSTM (ai.onnx). The input projection of all time steps is one Eigen GEMM
// per direction (X · Wᵀ + biases); each time step then does the recurrent GEMM (H_{t-1} · Rᵀ) and the
// gate arithmetic. sequence_lens is honoured per batch row: the reverse direction walks each row from
// its own last valid step, padded steps of Y stay zero and Y_h/Y_c hold the last valid state.
#include <Eigen/Core>
#include <algorithm>
#include <memory>

#include "families.h"
#include "kernel_util.h"
#include "rnn_activation.h"

namespace frugal::kernels {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using CMap = Eigen::Map<const RowMat>;
using MMap = Eigen::Map<RowMat>;

enum class Cell { kRnn, kGru, kLstm };

int gates_of(Cell c) { return c == Cell::kRnn ? 1 : c == Cell::kGru ? 3 : 4; }

class RecurrentKernel : public Kernel {
 public:
  static StatusOr<std::unique_ptr<Kernel>> create(const NodeDef& node, Cell cell) {
    auto k = std::unique_ptr<RecurrentKernel>(new RecurrentKernel(node, cell));
    const std::string dir = node.get_string("direction", "forward");
    if (dir == "forward") k->dirs_ = 1;
    else if (dir == "reverse") { k->dirs_ = 1; k->reverse_only_ = true; }
    else if (dir == "bidirectional") k->dirs_ = 2;
    else return node.error(StatusCode::kInvalidModel, "direction '" + dir + "' is not forward/reverse/bidirectional");
    k->hidden_ = node.get_int("hidden_size", 0);
    k->layout_ = node.get_int("layout", 0);
    if (k->layout_ != 0 && k->layout_ != 1) return node.error(StatusCode::kInvalidModel, "layout must be 0 or 1");
    k->clip_ = node.has("clip") ? node.get_float("clip", 0.0f) : -1.0f;
    k->input_forget_ = node.get_int("input_forget", 0) != 0;
    k->linear_before_reset_ = node.get_int("linear_before_reset", 0) != 0;
    std::vector<std::string> defaults = cell == Cell::kRnn   ? std::vector<std::string>{"Tanh"}
                                        : cell == Cell::kGru ? std::vector<std::string>{"Sigmoid", "Tanh"}
                                                             : std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"};
    FRUGAL_ASSIGN_OR_RETURN(k->acts_, parse_rnn_activations(node, defaults, k->dirs_));
    return std::unique_ptr<Kernel>(std::move(k));
  }

  Status compute(KernelContext& ctx) override;

 private:
  RecurrentKernel(const NodeDef& node, Cell cell) : node_(node), cell_(cell) {}

  // Runs direction d over every batch row; writes Y (if any), and the final h (and c).
  struct Dims {
    int64_t seq, batch, in, hidden;
  };
  void run_direction(const Dims& dm, int d, bool reverse, const float* x, const float* w, const float* r, const float* b,
                     const float* p, const int32_t* lens, const float* h0, const float* c0, float* y, float* yh,
                     float* yc) const;

  NodeDef node_;
  Cell cell_;
  int dirs_ = 1;
  bool reverse_only_ = false;
  int64_t hidden_ = 0, layout_ = 0;
  float clip_ = -1.0f;
  bool input_forget_ = false, linear_before_reset_ = false;
  std::vector<RnnActivation> acts_;
};

Status RecurrentKernel::compute(KernelContext& ctx) {
  const Tensor& x_in = ctx.input(0);
  for (size_t i : {size_t{0}, size_t{1}, size_t{2}}) {
    if (!dtype_is_float(ctx.input(i).dtype()))
      return node_.error(StatusCode::kUnsupported, std::string("dtype ") + dtype_name(ctx.input(i).dtype()));
  }
  if (x_in.rank() != 3) return node_.error(StatusCode::kInvalidModel, "X must have rank 3");
  const Tensor& w_in = ctx.input(1);
  const Tensor& r_in = ctx.input(2);
  const int64_t g = gates_of(cell_);
  const int64_t seq_ = layout_ == 0 ? x_in.dim(0) : x_in.dim(1);
  const int64_t batch_ = layout_ == 0 ? x_in.dim(1) : x_in.dim(0);
  const int64_t in_ = x_in.dim(2);
  const int64_t h = hidden_ > 0 ? hidden_ : (r_in.rank() == 3 ? r_in.dim(2) : 0);
  if (w_in.shape() != Shape{dirs_, g * h, in_})
    return node_.error(StatusCode::kInvalidModel, "W shape " + shape_str(w_in.shape()) + " should be " +
                                                      shape_str({dirs_, g * h, in_}));
  if (r_in.shape() != Shape{dirs_, g * h, h})
    return node_.error(StatusCode::kInvalidModel, "R shape " + shape_str(r_in.shape()) + " should be " +
                                                      shape_str({dirs_, g * h, h}));
  const Dims dm{seq_, batch_, in_, h};
  const Tensor x = x_in.to_float(), w = w_in.to_float(), r = r_in.to_float();
  Tensor b, p, h0, c0;
  if (ctx.has_input(3)) {
    b = ctx.input(3).to_float();
    if (b.numel() != dirs_ * 2 * g * h) return node_.error(StatusCode::kInvalidModel, "B has the wrong size");
  }
  std::vector<int32_t> lens(static_cast<size_t>(batch_), static_cast<int32_t>(seq_));
  if (ctx.has_input(4)) {
    const auto v = ctx.input(4).to_int64_vector();
    if (static_cast<int64_t>(v.size()) != batch_)
      return node_.error(StatusCode::kInvalidModel, "sequence_lens must have batch_size elements");
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] < 0 || v[i] > seq_) return node_.error(StatusCode::kInvalidData, "sequence_lens value out of range");
      lens[i] = static_cast<int32_t>(v[i]);
    }
  }
  const int64_t state_n = dirs_ * batch_ * h;
  if (ctx.has_input(5)) {
    h0 = ctx.input(5).to_float();
    if (h0.numel() != state_n) return node_.error(StatusCode::kInvalidModel, "initial_h has the wrong size");
  }
  if (cell_ == Cell::kLstm && ctx.has_input(6)) {
    c0 = ctx.input(6).to_float();
    if (c0.numel() != state_n) return node_.error(StatusCode::kInvalidModel, "initial_c has the wrong size");
  }
  if (cell_ == Cell::kLstm && ctx.has_input(7)) {
    p = ctx.input(7).to_float();
    if (p.numel() != dirs_ * 3 * h) return node_.error(StatusCode::kInvalidModel, "P has the wrong size");
  }
  const DType out_t = x_in.dtype();
  const Shape y_shape = layout_ == 0 ? Shape{seq_, dirs_, batch_, h} : Shape{batch_, seq_, dirs_, h};
  const Shape s_shape = layout_ == 0 ? Shape{dirs_, batch_, h} : Shape{batch_, dirs_, h};
  // Outputs are computed in float32; zero-filled so padded steps read 0.
  Tensor y = Tensor::zeros(DType::kFloat, y_shape);
  Tensor yh = Tensor::zeros(DType::kFloat, s_shape);
  Tensor yc = Tensor::zeros(DType::kFloat, s_shape);
  const auto ptr = [](const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; };
  for (int d = 0; d < dirs_; ++d) {
    const bool rev = reverse_only_ || d == 1;
    run_direction(dm, d, rev, x.data<float>(), w.data<float>() + d * g * h * in_, r.data<float>() + d * g * h * h,
                  b.defined() ? b.data<float>() + d * 2 * g * h : nullptr,
                  p.defined() ? p.data<float>() + d * 3 * h : nullptr, lens.data(), ptr(h0), ptr(c0),
                  y.mut<float>(), yh.mut<float>(), yc.mut<float>());
  }
  auto emit = [&](size_t i, const Tensor& t) {
    if (i < ctx.num_outputs()) ctx.set_output(i, out_t == DType::kFloat ? t : from_float32(t, out_t));
  };
  emit(0, y);
  emit(1, yh);
  if (cell_ == Cell::kLstm) emit(2, yc);
  return OkStatus();
}

void RecurrentKernel::run_direction(const Dims& dm, int d, bool reverse, const float* x, const float* w, const float* r,
                                    const float* b, const float* p, const int32_t* lens, const float* h0,
                                    const float* c0, float* y, float* yh, float* yc) const {
  const int64_t H = dm.hidden, G = gates_of(cell_), GH = G * H, B = dm.batch, T = dm.seq;
  const int64_t dirs = dirs_;
  // Row of X / offset of Y for (time t, batch row bi).
  auto x_row = [&](int64_t t, int64_t bi) { return layout_ == 0 ? t * B + bi : bi * T + t; };
  auto y_off = [&](int64_t t, int64_t bi) {
    return (layout_ == 0 ? (t * dirs + d) * B + bi : (bi * T + t) * dirs + d) * H;
  };
  auto s_off = [&](int64_t bi) { return (layout_ == 0 ? d * B + bi : bi * dirs + d) * H; };

  // Input projection for all steps: XW[T*B, GH] = X · Wᵀ (+ Wb, + Rb where it sits outside the gates'
  // reset product).
  RowMat xw = CMap(x, T * B, dm.in) * CMap(w, GH, dm.in).transpose();
  const bool rbh_inside = cell_ == Cell::kGru && linear_before_reset_;
  if (b) {
    Eigen::Matrix<float, 1, Eigen::Dynamic> bias(GH);
    for (int64_t j = 0; j < GH; ++j) {
      const bool keep_rb_out = rbh_inside && j >= 2 * H;
      bias[j] = b[j] + (keep_rb_out ? 0.0f : b[GH + j]);
    }
    xw.rowwise() += bias;
  }
  const float* rbh = rbh_inside && b ? b + GH + 2 * H : nullptr;

  RowMat hs(B, H), cs(B, H), gates(B, GH), rec(B, GH), hr(B, H);
  hs.setZero();
  cs.setZero();
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t j = 0; j < H; ++j) {
      if (h0) hs(bi, j) = h0[s_off(bi) + j];
      if (c0) cs(bi, j) = c0[s_off(bi) + j];
    }
  const RnnActivation* act = acts_.data() + d * (cell_ == Cell::kRnn ? 1 : cell_ == Cell::kGru ? 2 : 3);
  const bool clip = clip_ > 0;
  auto cl = [&](float v) { return clip ? std::clamp(v, -clip_, clip_) : v; };
  const CMap rm(r, GH, H);

  for (int64_t s = 0; s < T; ++s) {
    // Gather this step's projected inputs; row bi is at time t(bi) (reverse walks each row's own span).
    for (int64_t bi = 0; bi < B; ++bi) {
      if (s >= lens[bi]) continue;
      const int64_t t = reverse ? lens[bi] - 1 - s : s;
      gates.row(bi) = xw.row(x_row(t, bi));
    }
    if (cell_ == Cell::kGru && !linear_before_reset_) {
      rec.leftCols(2 * H).noalias() = hs * rm.topRows(2 * H).transpose();
    } else {
      rec.noalias() = hs * rm.transpose();
    }
    if (cell_ == Cell::kGru) {
      // z, r first; the candidate needs r.
      for (int64_t bi = 0; bi < B; ++bi) {
        if (s >= lens[bi]) continue;
        for (int64_t j = 0; j < 2 * H; ++j) gates(bi, j) = act[0](cl(gates(bi, j) + rec(bi, j)));
        for (int64_t j = 0; j < H; ++j) hr(bi, j) = gates(bi, H + j) * hs(bi, j);  // r ⊙ H_{t-1}
      }
      if (!linear_before_reset_) rec.rightCols(H).noalias() = hr * rm.bottomRows(H).transpose();
    }
    for (int64_t bi = 0; bi < B; ++bi) {
      if (s >= lens[bi]) continue;
      const int64_t t = reverse ? lens[bi] - 1 - s : s;
      float* gt = &gates(bi, 0);
      const float* rc = &rec(bi, 0);
      float* hrow = &hs(bi, 0);
      float* yrow = y + y_off(t, bi);
      if (cell_ == Cell::kRnn) {
        for (int64_t j = 0; j < H; ++j) hrow[j] = act[0](cl(gt[j] + rc[j]));
      } else if (cell_ == Cell::kGru) {
        for (int64_t j = 0; j < H; ++j) {
          const float z = gt[j], rr = gt[H + j];
          const float pre = linear_before_reset_ ? gt[2 * H + j] + rr * (rc[2 * H + j] + (rbh ? rbh[j] : 0.0f))
                                                 : gt[2 * H + j] + rc[2 * H + j];
          const float hh = act[1](cl(pre));
          hrow[j] = (1.0f - z) * hh + z * hrow[j];
        }
      } else {
        float* crow = &cs(bi, 0);
        for (int64_t j = 0; j < H; ++j) {
          // Gate order in W/R/B: i, o, f, c. Peepholes P: i, o, f.
          const float cprev = crow[j];
          float ip = gt[j] + rc[j], op = gt[H + j] + rc[H + j], fp = gt[2 * H + j] + rc[2 * H + j];
          const float cp = gt[3 * H + j] + rc[3 * H + j];
          if (p) {
            ip += p[j] * cprev;
            fp += p[2 * H + j] * cprev;
          }
          const float ig = act[0](cl(ip));
          const float fg = input_forget_ ? 1.0f - ig : act[0](cl(fp));
          const float cg = act[1](cl(cp));
          const float cn = fg * cprev + ig * cg;
          if (p) op += p[H + j] * cn;
          const float og = act[0](cl(op));
          crow[j] = cn;
          hrow[j] = og * act[2](cn);
        }
      }
      std::copy(hrow, hrow + H, yrow);
    }
  }
  for (int64_t bi = 0; bi < B; ++bi) {
    // A row with sequence length 0 reports zero final states (onnxruntime does; the spec is silent).
    if (lens[bi] == 0) continue;
    std::copy(&hs(bi, 0), &hs(bi, 0) + H, yh + s_off(bi));
    std::copy(&cs(bi, 0), &cs(bi, 0) + H, yc + s_off(bi));
  }
}

}  // namespace

void register_rnn_kernels(KernelRegistry& r) {
  // Opset 14 added `layout`; earlier versions read it as absent (0), so one entry serves all.
  r.add("RNN", 7, kMaxOpset, [](const NodeDef& n) { return RecurrentKernel::create(n, Cell::kRnn); });
  r.add("GRU", 7, kMaxOpset, [](const NodeDef& n) { return RecurrentKernel::create(n, Cell::kGru); });
  r.add("LSTM", 7, kMaxOpset, [](const NodeDef& n) { return RecurrentKernel::create(n, Cell::kLstm); });
}

}  // namespace frugal::kernels
