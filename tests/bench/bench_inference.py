#!/usr/bin/env python3
"""Inference latency and throughput: frugal's CPU executor vs onnxruntime (CPU), same machine, same
thread counts, same model, same run. Prints a table with frugal/onnxruntime ratios (< 1: frugal is
faster) and, with --markdown, the rows for docs/BENCHMARKS.md.

Models: a random-weight ResNet-50 (light/ architecture, weights drawn by tests/models/randomize_light.py,
224x224) and a BERT-base-sized encoder (tests/models/make_encoder.py: hidden 768, 12 heads, FFN 3072,
seq 128; --layers sets the depth).

    .venv/bin/python tests/bench/bench_inference.py [--threads 1,2] [--layers 12] [--iterations 20]

Not part of the test run: timings depend on the machine. onnxruntime runs with its default graph
optimisations (ORT_ENABLE_ALL) and intra_op_num_threads = inter_op_num_threads... = the thread count;
frugal with --threads.
"""
import argparse
import json
import os
import platform
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


def frugal_bin() -> Path:
    return Path(os.environ.get("FRUGAL_BIN", REPO / "build" / "apps" / "frugal" / "frugal"))


def ort_latency(model: Path, feeds, threads: int, warmup: int, iterations: int):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), statistics.mean(times)


def frugal_latency(model: Path, data: Path, threads: int, warmup: int, iterations: int):
    cmd = [str(frugal_bin()), "--threads", str(threads), "-q", "bench", str(model), "--data", str(data),
           "--warmup", str(warmup), "--iterations", str(iterations), "--json"]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    lat = json.loads(out)["latency"]
    return lat["p50_s"], lat["mean_s"]


def make_models(work: Path, layers: int):
    import randomize_light
    import make_encoder  # noqa: F401  (run as a script below for its CLI defaults)

    src = REPO.parent / "shared/testdata/onnx-onnx/onnx/backend/test/data/light/light_resnet50.onnx"
    m, _ = randomize_light.randomize(onnx.load(str(src)), 0)
    resnet = work / "resnet50.onnx"
    onnx.save(m, str(resnet))
    feed = randomize_light.make_feed(m, 1)
    np.savez(work / "resnet50_input.npz", **feed)

    enc = work / "encoder.onnx"
    subprocess.run([sys.executable, str(REPO / "tests/models/make_encoder.py"), "--layers", str(layers),
                    "--out", str(enc), "--emit-data", str(work), "--samples", "1"], check=True,
                   stdout=subprocess.DEVNULL)
    z = np.load(work / "encoder_inputs.npz")
    enc_feed = {k: v[0] for k, v in z.items()}
    np.savez(work / "encoder_input.npz", **enc_feed)
    return [("resnet50 (random weights, 1x3x224x224)", resnet, feed, work / "resnet50_input.npz"),
            (f"BERT-base-sized encoder ({layers} layers, seq 128)", enc, enc_feed, work / "encoder_input.npz")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, feed, data in make_models(Path(tmp), a.layers):
            for t in threads:
                o50, omean = ort_latency(model, feed, t, a.warmup, a.iterations)
                f50, fmean = frugal_latency(model, data, t, a.warmup, a.iterations)
                rows.append((label, t, o50, f50, f50 / o50))
                print(f"{label:45s} threads {t}: onnxruntime p50 {o50*1e3:9.2f} ms  frugal p50 {f50*1e3:9.2f} ms  "
                      f"ratio {f50/o50:5.2f}  (means {omean*1e3:.2f} / {fmean*1e3:.2f} ms)", flush=True)
    if a.markdown:
        print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}")
        print("| model | threads | onnxruntime p50 (ms) | frugal p50 (ms) | frugal / onnxruntime |")
        print("|---|---:|---:|---:|---:|")
        for label, t, o, f, r in rows:
            print(f"| {label} | {t} | {o*1e3:.2f} | {f*1e3:.2f} | {r:.2f} |")


if __name__ == "__main__":
    main()
