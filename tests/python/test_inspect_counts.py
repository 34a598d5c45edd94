"""`frugal inspect MODEL --json` against counts computed independently with the onnx package, for
every .onnx under ../shared/testdata (~1900 models; frugal runs once per model, two at a time).

Checked per model: parameters.count (sum of element counts of the main graph's initializers),
parameters.by_dtype counts (and bytes for byte-sized types), parameters.bytes = sum over dtypes,
the op histogram (collections.Counter of the main graph's node.op_type; ops of other domains may be
keyed "domain.op"), the real inputs (graph inputs that are not initializers, in order, with dtype
and rank), the opset imports, and sparsity (exact zeros among the parameters; fraction = zeros /
count).
"""
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

import frugal_testlib as tl

# Models frugal may reject as invalid, each with the reason. There should be none: every model in the
# shared test data loads in the onnx package.
EXPECTED_REJECTIONS = {
    # "relative/path/model.onnx": "reason",
}

# Sub-byte and other types without a whole byte per element: bytes are not checked per dtype.
_BITS = {TensorProto.UINT4: 4, TensorProto.INT4: 4, TensorProto.FLOAT4E2M1: 4}
for _n in ("UINT2", "INT2"):
    if hasattr(TensorProto, _n):
        _BITS[getattr(TensorProto, _n)] = 2
_NUMPY_STYLE = {
    "FLOAT": "float32", "DOUBLE": "float64", "FLOAT16": "float16", "BFLOAT16": "bfloat16",
}


def _dtype_keys(code):
    """Both spellings frugal may use for a TensorProto data type: "float32" and "FLOAT"."""
    onnx_name = TensorProto.DataType.Name(code)
    np_name = _NUMPY_STYLE.get(onnx_name, onnx_name.lower())
    return onnx_name, np_name


def _normalize_dtype_key(key):
    for code in TensorProto.DataType.values():
        if key in _dtype_keys(code) or key.upper() == TensorProto.DataType.Name(code):
            return code
    return None


def _expected(path):
    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    by_dtype = Counter()
    count = 0
    for t in g.initializer:
        n = int(np.prod(t.dims)) if len(t.dims) else 1
        count += n
        by_dtype[t.data_type] += n
    # Zeros: exact zeros among numeric parameters (external data loaded where present).
    zeros_all = 0
    zeros_float = 0
    try:
        full = onnx.load(str(path)) if any(t.data_location == TensorProto.EXTERNAL for t in g.initializer) else model
        for t in full.graph.initializer:
            if t.data_type == TensorProto.STRING:
                continue
            try:
                a = numpy_helper.to_array(t)
            except Exception:  # noqa: BLE001 - exotic types (e.g. float8) the installed numpy lacks
                continue
            z = int(np.count_nonzero(a.astype(np.float64) == 0)) if a.dtype.kind in "fiucb" else 0
            zeros_all += z
            if t.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16):
                zeros_float += z
        zeros_ok = True
    except Exception:  # noqa: BLE001
        zeros_ok = False
    inits = {t.name for t in g.initializer}
    inputs = [(i.name, i.type.tensor_type.elem_type, len(i.type.tensor_type.shape.dim))
              for i in g.input if i.name not in inits]
    return {
        "count": count, "by_dtype": dict(by_dtype), "ops": Counter(n.op_type for n in g.node),
        # Ops outside the default domain may be reported qualified ("ai.onnx.ml.Binarizer").
        "ops_qualified": [Counter((f"{n.domain}{sep}{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type)
                                  for n in g.node) for sep in (".", "::", ":")],
        "inputs": inputs, "opsets": {o.domain: o.version for o in model.opset_import},
        "zeros": (zeros_all, zeros_float) if zeros_ok else None,
    }


def _check(path, proc):
    """Returns a list of mismatch strings for one model."""
    errs = []
    try:
        j = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        return [f"stdout is not JSON ({e}): {proc.stdout[:200]!r}"]
    exp = _expected(path)
    p = j.get("parameters", {})
    if p.get("count") != exp["count"]:
        errs.append(f"parameters.count {p.get('count')} != {exp['count']}")
    got_dt = {}
    for k, v in (p.get("by_dtype") or {}).items():
        code = _normalize_dtype_key(k)
        if code is None:
            errs.append(f"unknown dtype key {k!r}")
            continue
        got_dt[code] = v
    if {k: v.get("count") for k, v in got_dt.items() if v.get("count")} != \
            {k: v for k, v in exp["by_dtype"].items() if v}:
        errs.append(f"by_dtype counts {({TensorProto.DataType.Name(k): v.get('count') for k, v in got_dt.items()})} "
                    f"!= {({TensorProto.DataType.Name(k): v for k, v in exp['by_dtype'].items()})}")
    for code, v in got_dt.items():
        size = onnx.helper.tensor_dtype_to_np_dtype(code).itemsize if code not in _BITS and code != TensorProto.STRING \
            else None
        if size and v.get("bytes") != v.get("count", 0) * size:
            errs.append(f"by_dtype[{TensorProto.DataType.Name(code)}].bytes {v.get('bytes')} != count*{size}")
    if got_dt and p.get("bytes") != sum(v.get("bytes", 0) for v in got_dt.values()):
        errs.append(f"parameters.bytes {p.get('bytes')} != sum over dtypes")
    got_ops_hist = Counter(j.get("ops", {}))
    if got_ops_hist != exp["ops"] and got_ops_hist not in exp["ops_qualified"]:
        errs.append(f"ops {dict(j.get('ops', {}))} != {dict(exp['ops'])}")
    got_in = [i for i in j.get("inputs", [])]
    got_names = [i.get("name") for i in got_in]
    exp_names = [n for n, _, _ in exp["inputs"]]
    if got_names != exp_names:
        errs.append(f"inputs {got_names} != {exp_names}")
    else:
        for gi, (n, et, rank) in zip(got_in, exp["inputs"]):
            if et and _normalize_dtype_key(str(gi.get("dtype"))) != et:
                errs.append(f"input {n} dtype {gi.get('dtype')} != {TensorProto.DataType.Name(et)}")
            shp = gi.get("shape")
            if isinstance(shp, list) and rank and len(shp) != rank:
                errs.append(f"input {n} shape {shp} has rank {len(shp)}, model says {rank}")
    got_ops = {("" if k in ("", "ai.onnx") else k): v for k, v in (j.get("opsets") or {}).items()}
    exp_ops = {("" if k in ("", "ai.onnx") else k): v for k, v in exp["opsets"].items()}
    if got_ops != exp_ops:
        errs.append(f"opsets {got_ops} != {exp_ops}")
    sp = j.get("sparsity")
    if not isinstance(sp, dict) or not isinstance(sp.get("zeros"), int) or not isinstance(sp.get("fraction"), (int, float)):
        errs.append(f"sparsity missing or malformed: {sp}")
    else:
        if exp["zeros"] is not None and sp["zeros"] not in exp["zeros"]:
            errs.append(f"sparsity.zeros {sp['zeros']} not in {exp['zeros']} (all numeric, float only)")
        float_count = sum(v for c, v in exp["by_dtype"].items()
                          if c in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16))
        denominators = [d for d in (exp["count"], float_count) if d]
        if denominators and not any(abs(sp["fraction"] - sp["zeros"] / d) <= 1e-6 for d in denominators):
            errs.append(f"sparsity.fraction {sp['fraction']} != zeros / count")
        if not 0.0 <= sp["fraction"] <= 1.0:
            errs.append(f"sparsity.fraction {sp['fraction']} outside [0, 1]")
    return errs


def _all_models(root):
    return sorted(p for p in Path(root).rglob("*.onnx") if p.is_file())


def test_inspect_counts_every_model(frugal_bin, testdata):
    models = _all_models(testdata)
    assert len(models) > 1000, f"expected ~1900 models under {testdata}, found {len(models)}"

    def run(p):
        return p, tl.run_frugal(["inspect", p, "--json"], timeout=120)

    failures = []
    rejected = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for path, proc in pool.map(run, models):
            rel = os.path.relpath(path, testdata)
            if proc.returncode != 0:
                rejected[rel] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
                continue
            errs = _check(path, proc)
            if errs:
                failures.append(f"{rel}: " + "; ".join(errs))
    unexpected = {k: v for k, v in rejected.items() if k not in EXPECTED_REJECTIONS}
    missing = [k for k in EXPECTED_REJECTIONS if k not in rejected]
    msg = []
    if unexpected:
        msg.append(f"{len(unexpected)} models rejected by frugal inspect (not in EXPECTED_REJECTIONS):\n  " +
                   "\n  ".join(f"{k}: {v}" for k, v in list(unexpected.items())[:40]))
    if missing:
        msg.append(f"listed as rejected but accepted now: {missing}")
    if failures:
        msg.append(f"{len(failures)} of {len(models)} models disagree with the onnx package:\n  " +
                   "\n  ".join(failures[:40]))
    print(f"inspect: {len(models)} models, {len(rejected)} rejected, {len(failures)} mismatched")
    assert not msg, "\n".join(msg)
