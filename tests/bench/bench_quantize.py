#!/usr/bin/env python3
"""Peer benchmark: frugal vs onnxruntime.quantization.quantize_static (QDQ, per-channel).

Same model, same calibration samples. For each calibration method (MinMax, Percentile, Entropy)
both tools run in their own subprocess, so wall time and peak RSS (ru_maxrss of the child, forked by
the small tests/bench/peak_rss.c rather than by Python) are measured the same way; both quantized models are then run in onnxruntime on held-out samples and
compared with the float model (cosine, top-1 agreement). Prints one table and the frugal/ORT ratios.
With --repeat N each tool runs N times, the two tools taking turns, and the table shows the median of
each tool's runs, every run's time listed after it: on a machine whose speed drifts, a single pair of
runs can land one tool in a slow phase and the other in a fast one. Which tool goes first flips with
every pair, over methods and repeats (frugal first for the first pair): a run right after onnxruntime's
multi-GB percentile or entropy run measured 20-40% slower than one after its minmax run, so a fixed
order would charge that to one tool.

  .venv/bin/python tests/bench/bench_quantize.py --model tests/models/digits_cnn.onnx \
      --calib tests/models/data/digits_cnn_calib.npz --heldout tests/models/data/digits_cnn_heldout.npz
  .venv/bin/python tests/bench/bench_quantize.py --model M.onnx --synthetic 32   # random inputs
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import machine  # tests/bench/machine.py: the fingerprint printed at the start and end

REPO = Path(__file__).resolve().parents[2]
FRUGAL = Path(os.environ.get("FRUGAL_BIN", REPO / "build" / "apps" / "frugal" / "frugal"))

ORT_CHILD = r'''
import sys, numpy as np
from onnxruntime.quantization import quantize_static, CalibrationDataReader, QuantFormat, QuantType, CalibrationMethod
model, calib, out, method = sys.argv[1:5]
import os, tempfile
z = np.load(calib)
names = list(z.keys())
# Each array is unpacked once to a .npy and memory-mapped, so the reader streams samples as frugal's
# does (indexing the NpzFile would decompress the whole array per sample).
tmp = tempfile.mkdtemp()
arrs = {}
for k in names:
    f = os.path.join(tmp, str(len(arrs)) + ".npy")
    np.save(f, z[k])
    arrs[k] = np.load(f, mmap_mode="r")
n = arrs[names[0]].shape[0]
class R(CalibrationDataReader):
    def __init__(self): self.i = 0
    def get_next(self):
        if self.i >= n: return None
        d = {k: np.ascontiguousarray(arrs[k][self.i]) for k in names}; self.i += 1; return d
m = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}[method]
quantize_static(model, out, R(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=m)
'''


class ChildFailed(RuntimeError):
    pass


_PEAK_RSS = None


def peak_rss_tool():
    """tests/bench/peak_rss.c, compiled once per run into a temporary folder (cc is part of the build
    stack). See that file for why the measuring parent must be small."""
    global _PEAK_RSS
    if _PEAK_RSS is None:
        out = Path(tempfile.mkdtemp(prefix="peak_rss_")) / "peak_rss"
        subprocess.run(["cc", "-O2", "-o", str(out), str(Path(__file__).with_name("peak_rss.c"))], check=True)
        _PEAK_RSS = out
    return _PEAK_RSS


def run_child(cmd, mem_cap_gb=0.0):
    """Runs cmd under peak_rss (one fork, no interpreter in between); returns (wall s, peak RSS MiB) of
    cmd alone, timed from just before its fork to its exit. With mem_cap_gb the child's address space
    is capped (RLIMIT_AS), so a tool that would exhaust the machine fails fast instead."""
    cap = int(mem_cap_gb * (1 << 30))
    p = subprocess.run([str(peak_rss_tool()), str(cap)] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    rc, rss_kb, wall = json.loads(p.stdout.strip().splitlines()[-1])
    if rc != 0:
        tail = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        raise ChildFailed(f"exit {rc} after {wall:.1f} s, peak {rss_kb / 1024.0:.0f} MiB: {tail[-300:]}")
    return wall, rss_kb / 1024.0


def quality(float_model, q_model, samples):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sf = ort.InferenceSession(str(float_model), so, providers=["CPUExecutionProvider"])
    sq = ort.InferenceSession(str(q_model), so, providers=["CPUExecutionProvider"])
    cos, agree, rows = [], 0, 0
    for s in samples:
        a = sf.run(None, s)[0].astype(np.float64)
        b = sq.run(None, s)[0].astype(np.float64)
        cos.append(float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)))
        if a.ndim >= 2 and a.shape[-1] > 1:
            agree += int(np.sum(a.reshape(-1, a.shape[-1]).argmax(1) == b.reshape(-1, b.shape[-1]).argmax(1)))
            rows += a.reshape(-1, a.shape[-1]).shape[0]
    return float(np.mean(cos)), (agree / rows if rows else float("nan"))


def synthetic(model, count, seed, dims):
    import onnx
    m = onnx.load(str(model), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    rng = np.random.default_rng(seed)
    out = {}
    for i in m.graph.input:
        if i.name in inits:
            continue
        shape = [d.dim_value if d.dim_value > 0 else dims.get(d.dim_param, 1) for d in i.type.tensor_type.shape.dim]
        et = i.type.tensor_type.elem_type
        if et == onnx.TensorProto.INT64:
            out[i.name] = rng.integers(0, 100, size=[count] + shape).astype(np.int64)
        else:
            out[i.name] = rng.standard_normal([count] + shape).astype(np.float32)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib", help=".npz with a leading sample axis")
    ap.add_argument("--heldout", help=".npz with a leading sample axis (default: synthetic, other seed)")
    ap.add_argument("--synthetic", type=int, default=0, help="N random calibration samples instead of --calib")
    ap.add_argument("--dims", default="", help="symbolic dims for synthetic data, name=value,...")
    ap.add_argument("--methods", default="minmax,percentile,entropy")
    ap.add_argument("--heldout-count", type=int, default=16)
    ap.add_argument("--ort-mem-cap", type=float, default=0.0,
                    help="cap onnxruntime's address space at this many GB (0: none); a capped failure is reported")
    ap.add_argument("--skip-ort", action="store_true", help="frugal only (e.g. sample counts onnxruntime cannot hold)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool, taking turns; the table shows medians")
    a = ap.parse_args()
    dims = dict((kv.split("=")[0], int(kv.split("=")[1])) for kv in a.dims.split(",") if kv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_quantize_"))
    calib = Path(a.calib) if a.calib else tmp / "calib.npz"
    if not a.calib:
        np.savez(calib, **synthetic(a.model, a.synthetic, 1, dims))
    held = Path(a.heldout) if a.heldout else tmp / "held.npz"
    if not a.heldout:
        np.savez(held, **synthetic(a.model, a.heldout_count, 2, dims))
    # onnxruntime's quantize_static writes per-channel DequantizeLinear (axis, opset 13) without raising
    # the opset, so an older model comes out invalid; both tools get the model converted to opset 13.
    import onnx
    from onnx import version_converter
    src = onnx.load(a.model)
    if max(o.version for o in src.opset_import if o.domain in ("", "ai.onnx")) < 13:
        conv = tmp / (Path(a.model).stem + "_opset13.onnx")
        onnx.save(version_converter.convert_version(src, 13), str(conv))
        print(f"converted {a.model} to opset 13 for both tools: {conv}")
        a.model = str(conv)
    hz = np.load(held)
    samples = [{k: hz[k][i] for k in hz.keys()} for i in range(hz[list(hz.keys())[0]].shape[0])]
    n_calib = np.load(calib)[list(np.load(calib).keys())[0]].shape[0]
    print(f"model {a.model}, {n_calib} calibration samples, {len(samples)} held-out samples")
    print(machine.describe("at start"), flush=True)
    print(f"{'method':<11} {'tool':<7} {'wall s':>8} {'peak MiB':>9} {'cosine':>9} {'top1 agr':>9}")
    pair = 0  # pairs of runs so far: even ones start with frugal, odd ones with onnxruntime
    for method in a.methods.split(","):
        res = {}
        fq = tmp / f"frugal_{method}.onnx"
        oq = tmp / f"ort_{method}.onnx"
        fcmd = [str(FRUGAL), "-q", "quantize", a.model, "-o", str(fq), "--data", str(calib), "--method", method,
                "--sqnr-samples", "0", "--no-fidelity"]
        if dims:
            for k, v in dims.items():
                fcmd += ["--dims", f"{k}={v}"]
        ort_cmd = [sys.executable, "-c", ORT_CHILD, a.model, str(calib), str(oq), method]
        runs = {"frugal": [], "ort": []}
        ort_ok = not a.skip_ort
        for _ in range(max(1, a.repeat)):
            order = ("frugal", "ort") if pair % 2 == 0 else ("ort", "frugal")
            pair += 1
            for tool in order:
                if tool == "frugal":
                    runs["frugal"].append(run_child(fcmd))
                elif ort_ok:
                    try:
                        runs["ort"].append(run_child(ort_cmd, a.ort_mem_cap))
                    except ChildFailed as e:
                        ort_ok = False
                        runs["ort"] = []
                        print(f"{method:<11} ort     FAILED ({'cap ' + str(a.ort_mem_cap) + ' GB, ' if a.ort_mem_cap else ''}{e})")
        tools = [(t, p) for t, p in (("frugal", fq), ("ort", oq)) if runs[t]]
        for tool, _ in tools:
            res[tool] = (float(np.median([w for w, _ in runs[tool]])), float(np.median([m for _, m in runs[tool]])))
        for tool, path in tools:
            c, t = quality(a.model, path, samples)
            res[tool] = res[tool] + (c, t)
            w, m, c, t = res[tool]
            every = "" if len(runs[tool]) < 2 else "   runs: " + " ".join(f"{x:.2f}" for x, _ in runs[tool])
            print(f"{method:<11} {tool:<7} {w:8.2f} {m:9.1f} {c:9.6f} {t:9.4f}{every}", flush=True)
        if "ort" in res:
            print(f"{method:<11} ratio   ORT/frugal time {res['ort'][0] / res['frugal'][0]:.2f}x, "
                  f"ORT/frugal peak RSS {res['ort'][1] / res['frugal'][1]:.2f}x", flush=True)


if __name__ == "__main__":
    main()
    print(machine.describe("at end"), flush=True)
