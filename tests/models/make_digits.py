#!/usr/bin/env python3
"""Trains two small real classifiers on scikit-learn's bundled 8x8 digits and exports them to ONNX.

  digits_mlp.onnx  input "input" float [N,64] (pixels / 16) -> Gemm 128 -> Relu -> Gemm 64 -> Relu
                   -> Gemm 10 -> "logits"
  digits_cnn.onnx  input "input" float [N,1,8,8] (pixels / 16) -> Conv3x3 16 p1 -> Relu -> Conv3x3 32 p1
                   -> Relu -> MaxPool 2 -> Conv3x3 32 -> Relu -> Flatten -> Gemm 10 -> "logits"

Training is plain numpy (hand-written backprop, Adam), fixed seed, fixed split: a permutation of
the 1797 samples with seed 0; the first 1297 train, the last 500 are held out. Data files follow
frugal's .npz stacking rule (leading sample axis, each sample keeps the model input's rank):

  data/digits_mlp_calib.npz    {"input": float32 [256, 1, 64]}       first 256 training samples
  data/digits_mlp_heldout.npz  {"input": float32 [500, 1, 64]}
  data/digits_cnn_calib.npz    {"input": float32 [256, 1, 1, 8, 8]}
  data/digits_cnn_heldout.npz  {"input": float32 [500, 1, 1, 8, 8]}
  data/digits_heldout_labels.npy  int64 [500]

Usage: python make_digits.py [--out DIR]   (DIR defaults to this script's directory)
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 0
N_TRAIN = 1297
N_CALIB = 256


def load_split():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.data.astype(np.float32) / 16.0)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(SEED).permutation(len(y))
    x, y = x[perm], y[perm]
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


class Adam:
    def __init__(self, params, lr):
        self.p = params
        self.lr = lr
        self.m = [np.zeros_like(q) for q in params]
        self.v = [np.zeros_like(q) for q in params]
        self.t = 0

    def step(self, grads, b1=0.9, b2=0.999, eps=1e-8):
        self.t += 1
        for q, g, m, v in zip(self.p, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            mh = m / (1 - b1 ** self.t)
            vh = v / (1 - b2 ** self.t)
            q -= (self.lr * mh / (np.sqrt(vh) + eps)).astype(q.dtype)


def softmax_xent(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(len(y)), y] + 1e-12))
    g = p
    g[np.arange(len(y)), y] -= 1
    return loss, g / len(y)


def he(rng, shape, fan_in):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


# ---------------------------------------------------------------- MLP

def mlp_init(rng):
    # Gemm weights stored [out, in] (transB=1), as PyTorch exports Linear layers.
    return [he(rng, (128, 64), 64), np.zeros(128, np.float32),
            he(rng, (64, 128), 128), np.zeros(64, np.float32),
            he(rng, (10, 64), 64), np.zeros(10, np.float32)]


def mlp_forward(p, x, keep=False):
    w1, b1, w2, b2, w3, b3 = p
    h1 = np.maximum(x @ w1.T + b1, 0)
    h2 = np.maximum(h1 @ w2.T + b2, 0)
    out = h2 @ w3.T + b3
    return (out, (x, h1, h2)) if keep else out


def mlp_backward(p, cache, g):
    w1, b1, w2, b2, w3, b3 = p
    x, h1, h2 = cache
    gw3, gb3 = g.T @ h2, g.sum(0)
    g2 = (g @ w3) * (h2 > 0)
    gw2, gb2 = g2.T @ h1, g2.sum(0)
    g1 = (g2 @ w2) * (h1 > 0)
    gw1, gb1 = g1.T @ x, g1.sum(0)
    return [gw1, gb1, gw2, gb2, gw3, gb3]


# ---------------------------------------------------------------- CNN

def im2col(x, pad):
    """x [N,C,H,W] -> cols [N*Ho*Wo, C*9] for a 3x3 stride-1 kernel."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))  # N,C,Ho,Wo,3,3
    n, c, ho, wo = win.shape[:4]
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * ho * wo, c * 9), (n, c, ho, wo)


def conv_fwd(x, w, b, pad):
    cols, (n, c, ho, wo) = im2col(x, pad)
    out = cols @ w.reshape(w.shape[0], -1).T + b
    return out.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2), cols


def conv_bwd(g, x_shape, cols, w, pad):
    n, c, h, wd = x_shape
    o = w.shape[0]
    gf = g.transpose(0, 2, 3, 1).reshape(-1, o)
    gw = (gf.T @ cols).reshape(w.shape)
    gb = gf.sum(0)
    ho, wo = g.shape[2], g.shape[3]
    gcols = (gf @ w.reshape(o, -1)).reshape(n, ho, wo, c, 3, 3)
    gxp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), np.float32)
    for i in range(3):
        for j in range(3):
            gxp[:, :, i:i + ho, j:j + wo] += gcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    gx = gxp[:, :, pad:pad + h, pad:pad + wd] if pad else gxp
    return gx, gw, gb


def cnn_init(rng):
    return [he(rng, (16, 1, 3, 3), 9), np.zeros(16, np.float32),
            he(rng, (32, 16, 3, 3), 144), np.zeros(32, np.float32),
            he(rng, (32, 32, 3, 3), 288), np.zeros(32, np.float32),
            he(rng, (10, 128), 128), np.zeros(10, np.float32)]


def cnn_forward(p, x, keep=False):
    w1, b1, w2, b2, w3, b3, w4, b4 = p
    z1, c1 = conv_fwd(x, w1, b1, 1)
    a1 = np.maximum(z1, 0)
    z2, c2 = conv_fwd(a1, w2, b2, 1)
    a2 = np.maximum(z2, 0)
    n, c, h, w = a2.shape
    blk = a2.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    arg = blk.argmax(-1)
    m = np.take_along_axis(blk, arg[..., None], -1)[..., 0]
    z3, c3 = conv_fwd(m, w3, b3, 0)
    a3 = np.maximum(z3, 0)
    f = a3.reshape(n, -1)
    out = f @ w4.T + b4
    if not keep:
        return out
    return out, (x, c1, z1, a1, c2, z2, a2.shape, arg, m, c3, z3, f)


def cnn_backward(p, cache, g):
    w1, b1, w2, b2, w3, b3, w4, b4 = p
    x, c1, z1, a1, c2, z2, a2_shape, arg, m, c3, z3, f = cache
    gw4, gb4 = g.T @ f, g.sum(0)
    gf = (g @ w4).reshape(z3.shape) * (z3 > 0)
    gm, gw3, gb3 = conv_bwd(gf, m.shape, c3, w3, 0)
    n, c, h, w = a2_shape
    gblk = np.zeros((n, c, h // 2, w // 2, 4), np.float32)
    np.put_along_axis(gblk, arg[..., None], gm[..., None], -1)
    ga2 = gblk.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)
    gz2 = ga2 * (z2 > 0)
    ga1, gw2, gb2 = conv_bwd(gz2, a1.shape, c2, w2, 1)
    gz1 = ga1 * (z1 > 0)
    _, gw1, gb1 = conv_bwd(gz1, x.shape, c1, w1, 1)
    return [gw1, gb1, gw2, gb2, gw3, gb3, gw4, gb4]


def train(params, fwd, bwd, x, y, epochs, lr, batch, rng, name):
    opt = Adam(params, lr)
    for ep in range(epochs):
        perm = rng.permutation(len(y))
        tot = 0.0
        for s in range(0, len(y), batch):
            idx = perm[s:s + batch]
            out, cache = fwd(params, x[idx], keep=True)
            loss, g = softmax_xent(out.astype(np.float64), y[idx])
            tot += loss * len(idx)
            opt.step(bwd(params, cache, g.astype(np.float32)))
        print(f"  {name} epoch {ep + 1}/{epochs}: loss {tot / len(y):.4f}", flush=True)
    return params


# ---------------------------------------------------------------- ONNX export

def make_model(name, nodes, inits, in_shape, doc):
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(a, n) for n, a in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="frugal-tests/make_digits.py", doc_string=doc)
    model.ir_version = 7
    onnx.checker.check_model(model, full_check=True)
    return model


def export_mlp(p):
    w1, b1, w2, b2, w3, b3 = p
    nodes = [
        helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["fc1_out"], name="fc1", transB=1),
        helper.make_node("Relu", ["fc1_out"], ["relu1_out"], name="relu1"),
        helper.make_node("Gemm", ["relu1_out", "fc2.weight", "fc2.bias"], ["fc2_out"], name="fc2", transB=1),
        helper.make_node("Relu", ["fc2_out"], ["relu2_out"], name="relu2"),
        helper.make_node("Gemm", ["relu2_out", "fc3.weight", "fc3.bias"], ["logits"], name="fc3", transB=1),
    ]
    inits = [("fc1.weight", w1), ("fc1.bias", b1), ("fc2.weight", w2), ("fc2.bias", b2),
             ("fc3.weight", w3), ("fc3.bias", b3)]
    return make_model("digits_mlp", nodes, inits, ["N", 64], "MLP 64-128-64-10 trained on sklearn digits")


def export_cnn(p):
    w1, b1, w2, b2, w3, b3, w4, b4 = p
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["conv1_out"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv1_out"], ["relu1_out"], name="relu1"),
        helper.make_node("Conv", ["relu1_out", "conv2.weight", "conv2.bias"], ["conv2_out"], name="conv2",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv2_out"], ["relu2_out"], name="relu2"),
        helper.make_node("MaxPool", ["relu2_out"], ["pool_out"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool_out", "conv3.weight", "conv3.bias"], ["conv3_out"], name="conv3",
                         kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv3_out"], ["relu3_out"], name="relu3"),
        helper.make_node("Flatten", ["relu3_out"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    inits = [("conv1.weight", w1), ("conv1.bias", b1), ("conv2.weight", w2), ("conv2.bias", b2),
             ("conv3.weight", w3), ("conv3.bias", b3), ("fc.weight", w4), ("fc.bias", b4)]
    return make_model("digits_cnn", nodes, inits, ["N", 1, 8, 8], "small CNN trained on sklearn digits")


def ort_logits(path, x):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input": x})[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    args = ap.parse_args()
    out = Path(args.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    xtr, ytr, xte, yte = load_split()
    print(f"digits: {len(ytr)} train, {len(yte)} held out")

    rng = np.random.default_rng(SEED)
    mlp = train(mlp_init(rng), mlp_forward, mlp_backward, xtr, ytr, epochs=40, lr=2e-3, batch=32, rng=rng, name="mlp")
    xtr_img, xte_img = xtr.reshape(-1, 1, 8, 8), xte.reshape(-1, 1, 8, 8)
    rng = np.random.default_rng(SEED + 1)
    cnn = train(cnn_init(rng), cnn_forward, cnn_backward, xtr_img, ytr, epochs=15, lr=2e-3, batch=32, rng=rng,
                name="cnn")

    results = {}
    for name, model, x_te, x_tr, fwd, p in (
            ("mlp", export_mlp(mlp), xte, xtr, mlp_forward, mlp),
            ("cnn", export_cnn(cnn), xte_img, xtr_img, cnn_forward, cnn)):
        path = out / f"digits_{name}.onnx"
        onnx.save(model, str(path))
        np_acc = float(np.mean(fwd(p, x_te).argmax(1) == yte))
        ort_out = ort_logits(path, x_te)
        ort_acc = float(np.mean(ort_out.argmax(1) == yte))
        diff = float(np.max(np.abs(ort_out - fwd(p, x_te))))
        print(f"{name}: held-out accuracy numpy {np_acc:.4f}, onnxruntime {ort_acc:.4f}, "
              f"max |numpy - ort| logits {diff:.2e}, {path.stat().st_size} bytes")
        if np_acc != ort_acc:
            sys.exit(f"{name}: onnxruntime accuracy {ort_acc} differs from numpy {np_acc}")
        results[name] = np_acc
        # Stacking rule: [S, *input shape with N=1].
        np.savez_compressed(out / "data" / f"digits_{name}_calib.npz", input=x_tr[:N_CALIB][:, None])
        np.savez_compressed(out / "data" / f"digits_{name}_heldout.npz", input=x_te[:, None])
    np.save(out / "data" / "digits_heldout_labels.npy", yte.astype(np.int64))
    if results["mlp"] < 0.95 or results["cnn"] < 0.97:
        sys.exit(f"accuracy below target: {results}")
    print(f"done in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
