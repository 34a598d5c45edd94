#!/usr/bin/env python3
"""Structured channel pruning pays off in any runtime: onnxruntime latency before and after
`frugal prune --pattern channels`, with MACs from frugal's report, on the trained digits CNN and a
random-weight ResNet-50 (light/ architecture via tests/models/randomize_light.py).

    .venv/bin/python tests/bench/bench_prune_latency.py [--sparsity 0.3] [--threads 1]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "models"))
FRUGAL = Path(os.environ.get("FRUGAL_BIN", REPO / "build" / "apps" / "frugal" / "frugal"))


def latency(model, feed, threads, reps):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    for _ in range(3):
        s.run(None, feed)
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        s.run(None, feed)
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sparsity", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--channel-multiple", type=int, default=1)
    a = ap.parse_args()
    import randomize_light
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = REPO.parent / "shared/testdata/onnx-onnx/onnx/backend/test/data/light/light_resnet50.onnx"
        m, _ = randomize_light.randomize(onnx.load(str(src)), 0)
        onnx.save(m, str(tmp / "resnet50.onnx"))
        r50_feed = randomize_light.make_feed(m, 1)
        digits = np.load(REPO / "tests/models/data/digits_cnn_heldout.npz")["input"][:64].reshape(64, 1, 8, 8)
        cases = [("digits CNN (batch 64)", REPO / "tests/models/digits_cnn.onnx", {"input": digits}),
                 ("ResNet-50, random weights (1x3x224x224)", tmp / "resnet50.onnx", r50_feed)]
        print(f"sparsity {a.sparsity} (channels, multiple of {a.channel_multiple}), onnxruntime {ort.__version__}, {a.threads} thread(s), median of {a.reps}")
        print("| model | MACs before | MACs after | onnxruntime before (ms) | after (ms) | speed-up |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, model, feed in cases:
            out, rep = tmp / "pruned.onnx", tmp / "report.json"
            subprocess.run([str(FRUGAL), "-q", "--report", str(rep), "prune", str(model), "-o", str(out),
                            "--pattern", "channels", "--sparsity", str(a.sparsity), "--fidelity-samples", "1",
                            "--channel-multiple", str(a.channel_multiple)],
                           check=True)
            t = json.loads(rep.read_text())["totals"]
            b, f = latency(model, feed, a.threads, a.reps), latency(out, feed, a.threads, a.reps)
            print(f"| {label} | {t['macs_before']/1e6:.1f} M | {t['macs_after']/1e6:.1f} M | {b*1e3:.2f} | {f*1e3:.2f} | {b/f:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
