#!/usr/bin/env python3
"""Single-op timing: frugal vs onnxruntime (CPU) on ResNet-50 / BERT-base shaped Conv, MatMul, Gemm and
pool nodes. Builds each one-node model with onnx.helper, times onnxruntime in-process and frugal through
`frugal bench --json`, and prints the ratio frugal/ort for 1 and 2 threads. Not part of the test run.

    .venv/bin/python tests/bench/bench_kernels.py [--frugal build/apps/frugal/frugal] [--threads 1,2]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import machine  # tests/bench/machine.py: the fingerprint printed at the start and end

rng = np.random.default_rng(0)


def conv_model(name, x_shape, w_shape, strides=(1, 1), pads=(0, 0, 0, 0), group=1):
    w = numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32) * 0.05, "W")
    b = numpy_helper.from_array(rng.standard_normal(w_shape[0]).astype(np.float32), "B")
    node = helper.make_node("Conv", ["X", "W", "B"], ["Y"], strides=list(strides), pads=list(pads), group=group)
    g = helper.make_graph([node], name, [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], [w, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def matmul_model(name, a_shape, b_shape, b_const=True):
    inits, inputs = [], [helper.make_tensor_value_info("A", TensorProto.FLOAT, a_shape)]
    if b_const:
        inits.append(numpy_helper.from_array(rng.standard_normal(b_shape).astype(np.float32), "B"))
    else:
        inputs.append(helper.make_tensor_value_info("B", TensorProto.FLOAT, b_shape))
    node = helper.make_node("MatMul", ["A", "B"], ["Y"])
    g = helper.make_graph([node], name, inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def gemm_model(name, m, k, n):
    w = numpy_helper.from_array(rng.standard_normal((n, k)).astype(np.float32), "W")
    c = numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "C")
    node = helper.make_node("Gemm", ["A", "W", "C"], ["Y"], transB=1)
    g = helper.make_graph([node], name, [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], [w, c])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def pool_model(name, op, x_shape, **attrs):
    node = helper.make_node(op, ["X"], ["Y"], **attrs)
    g = helper.make_graph([node], name, [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


CASES = [
    ("conv7x7s2_3-64_224", conv_model("c", [1, 3, 224, 224], [64, 3, 7, 7], (2, 2), (3, 3, 3, 3))),
    ("conv3x3_64-64_56", conv_model("c", [1, 64, 56, 56], [64, 64, 3, 3], (1, 1), (1, 1, 1, 1))),
    ("conv1x1_256-64_56", conv_model("c", [1, 256, 56, 56], [64, 256, 1, 1])),
    ("conv1x1s2_512-1024_28", conv_model("c", [1, 512, 28, 28], [1024, 512, 1, 1], (2, 2))),
    ("conv3x3_256-256_14", conv_model("c", [1, 256, 14, 14], [256, 256, 3, 3], (1, 1), (1, 1, 1, 1))),
    ("conv1x1_1024-256_14", conv_model("c", [1, 1024, 14, 14], [256, 1024, 1, 1])),
    ("conv3x3_512-512_7", conv_model("c", [1, 512, 7, 7], [512, 512, 3, 3], (1, 1), (1, 1, 1, 1))),
    ("conv1x1_512-2048_7", conv_model("c", [1, 512, 7, 7], [2048, 512, 1, 1])),
    ("conv1x1_2048-512_7", conv_model("c", [1, 2048, 7, 7], [512, 2048, 1, 1])),
    ("dwconv3x3_256_28", conv_model("c", [1, 256, 28, 28], [256, 1, 3, 3], (1, 1), (1, 1, 1, 1), group=256)),
    ("matmul_128x768x3072", matmul_model("m", [1, 128, 768], [768, 3072])),
    ("matmul_128x3072x768", matmul_model("m", [1, 128, 3072], [3072, 768])),
    ("attn_qk_12x128x64x128", matmul_model("m", [1, 12, 128, 64], [1, 12, 64, 128], b_const=False)),
    ("gemm_transB_128x768x768", gemm_model("g", 128, 768, 768)),
    ("maxpool3x3s2_64_112", pool_model("p", "MaxPool", [1, 64, 112, 112], kernel_shape=[3, 3], strides=[2, 2],
                                       pads=[1, 1, 1, 1])),
    ("gap_2048_7", pool_model("p", "GlobalAveragePool", [1, 2048, 7, 7])),
]


def time_ort(path, feeds, threads, min_s=1.0):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    s.run(None, feeds)
    n, t0 = 0, time.perf_counter()
    times = []
    while time.perf_counter() - t0 < min_s or n < 5:
        t = time.perf_counter()
        s.run(None, feeds)
        times.append(time.perf_counter() - t)
        n += 1
    return float(np.median(times)) * 1e3


def time_frugal(exe, path, threads, min_s=1.0):
    out = subprocess.run([exe, "--threads", str(threads), "bench", path, "--json", "--min-seconds", str(min_s),
                          "--iterations", "5"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip() or out.stdout.strip())
    rep = json.loads(out.stdout)
    return find_ms(rep)


def find_ms(rep):
    """The median latency in ms from frugal's bench JSON (searched by key name, schema-tolerant)."""
    stack = [rep]
    while stack:
        d = stack.pop()
        if isinstance(d, dict):
            if isinstance(d.get("p50_s"), (int, float)):
                return float(d["p50_s"]) * 1e3
            for k in ("p50_ms", "median_ms", "mean_ms"):
                if k in d and isinstance(d[k], (int, float)):
                    return float(d[k])
            for k, v in d.items():
                if k in ("p50", "median") and isinstance(v, dict) and "value" in v:
                    return float(v["value"]) * (1e3 if v.get("unit") == "s" else 1.0)
                stack.append(v)
        elif isinstance(d, list):
            stack.extend(d)
    raise RuntimeError("no latency in frugal bench JSON")


def main():
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--frugal", default=os.path.join(root, "build/apps/frugal/frugal"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--filter", default="")
    ap.add_argument("--min-seconds", type=float, default=1.0)
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    print(machine.describe("at start"), flush=True)
    print(f"{'case':28s}" + "".join(f" {'ort' + str(t):>9s} {'frugal' + str(t):>9s} {'ratio':>6s}" for t in threads))
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in CASES:
            if args.filter and args.filter not in name:
                continue
            path = os.path.join(tmp, name + ".onnx")
            onnx.save(model, path)
            feeds = {}
            for i in model.graph.input:
                shape = [d.dim_value for d in i.type.tensor_type.shape.dim]
                feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
            line = f"{name:28s}"
            for t in threads:
                o = time_ort(path, feeds, t, args.min_seconds)
                try:
                    f = time_frugal(args.frugal, path, t, args.min_seconds)
                    line += f" {o:8.3f}m {f:8.3f}m {f / o:6.2f}"
                except Exception as e:  # noqa: BLE001 - report and continue
                    line += f" {o:8.3f}m {'error':>9s} {'-':>6s}"
                    print(f"  {name}: {e}", file=sys.stderr)
            print(line, flush=True)


if __name__ == "__main__":
    main()
    print(machine.describe("at end"), flush=True)
