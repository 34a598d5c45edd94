#!/usr/bin/env python3
"""Gives the onnx "light" model-zoo stand-ins real random weights.

onnx/backend/test/data/light/light_*.onnx keep the real architectures but produce every float weight
with a ConstantOfShape node filled with 0.02 (see ../shared/testdata/INVENTORY.md). Every channel then
computes the same thing and the outputs are degenerate (uniform softmax), which hides kernel bugs.
This script replaces each such ConstantOfShape by an initializer of the same name and shape, drawn
with a fixed seed according to how the tensor is used:

  Conv / Gemm weight           He-normal, std sqrt(2 / fan_in)
  Conv / Gemm bias             N(0, 0.01)
  BatchNormalization scale     U(0.8, 1.2)     bias N(0, 0.05)   mean N(0, 0.05)   var U(0.8, 1.2)
  Mul operand (scale)          U(0.8, 1.2)     Add operand (bias) N(0, 0.05)
  anything else                N(0, 0.02)

(through Unsqueeze/Reshape chains, as densenet121/inception_v2 apply BN scale/bias with Mul/Add).
Everything else in the model stays as it is (IR 3: the new initializers are also listed as graph
inputs, as IR < 4 requires; the then unused *__SHAPE tensors are dropped). Finally the layer feeding
the Softmax is rescaled so the logits have a standard deviation of about 3 on a N(0,1) input, which
keeps the softmax away from both uniform and one-hot.

  python randomize_light.py --out DIR [--src LIGHT_DIR] [--seed 0] [--only resnet50,squeezenet] [--check]
"""
import argparse
import sys
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SRC = (REPO / ".." / "shared" / "testdata" / "onnx-onnx" / "onnx" / "backend" / "test" / "data" / "light")
PASS_THROUGH = {"Unsqueeze", "Reshape", "Squeeze", "Identity", "Flatten", "Cast"}
HOMOGENEOUS = {"Relu", "GlobalAveragePool", "AveragePool", "MaxPool", "Reshape", "Flatten", "Dropout",
               "Identity", "Squeeze", "Unsqueeze"}
LOGIT_STD = 3.0


def _role(name, consumers, nodes_by_output):
    """(op, input index, node) of the first real consumer of `name`, skipping reshaping ops."""
    seen = 0
    cur = name
    while seen < 8:
        seen += 1
        cons = consumers.get(cur, [])
        if not cons:
            return None
        node, idx = cons[0]
        if node.op_type in PASS_THROUGH and idx == 0:
            cur = node.output[0]
            continue
        return node.op_type, idx, node
    return None


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _draw(rng, shape, role):
    shape = tuple(int(s) for s in shape)
    if role is None:
        return rng.normal(0, 0.02, shape)
    op, idx, node = role
    if op == "Conv":
        if idx == 1:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            return rng.normal(0, np.sqrt(2.0 / max(1, fan_in)), shape)
        return rng.normal(0, 0.01, shape)
    if op == "Gemm":
        if idx == 1:
            fan_in = shape[1] if _attr(node, "transB", 0) else shape[0]
            return rng.normal(0, np.sqrt(2.0 / max(1, fan_in)), shape)
        if idx == 0:
            fan_in = shape[0] if _attr(node, "transA", 0) else shape[1]
            return rng.normal(0, np.sqrt(2.0 / max(1, fan_in)), shape)
        return rng.normal(0, 0.01, shape)
    if op == "BatchNormalization":
        if idx in (1, 4):
            return rng.uniform(0.8, 1.2, shape)
        return rng.normal(0, 0.05, shape)
    if op == "Mul":
        return rng.uniform(0.8, 1.2, shape)
    if op in ("Add", "Sum", "Sub"):
        return rng.normal(0, 0.05, shape)
    return rng.normal(0, 0.02, shape)


def randomize(model: onnx.ModelProto, seed: int = 0):
    """Returns (new model, {tensor name: role string}). `model` is not modified."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    consumers = defaultdict(list)
    for n in g.node:
        for i, x in enumerate(n.input):
            consumers[x].append((n, i))
    roles = {}
    new_nodes = []
    new_inits = []
    dropped = []
    for n in g.node:
        if n.op_type != "ConstantOfShape" or not n.input or n.input[0] not in inits:
            new_nodes.append(n)
            continue
        val = _attr(n, "value", None)
        if val is None or val.data_type != onnx.TensorProto.FLOAT:
            new_nodes.append(n)
            continue
        shape = numpy_helper.to_array(inits[n.input[0]]).astype(np.int64).tolist()
        out = n.output[0]
        role = _role(out, consumers, None)
        # A per-tensor seed keeps each weight the same whatever else changes in the model.
        rng = np.random.default_rng([seed, zlib.crc32(out.encode())])
        arr = _draw(rng, shape, role).astype(np.float32)
        new_inits.append(numpy_helper.from_array(arr, out))
        roles[out] = f"{role[0]}[{role[1]}]" if role else "unknown"
        dropped.append(n.input[0])
    del g.node[:]
    g.node.extend(new_nodes)
    used = {x for n in g.node for x in n.input}
    drop = {d for d in dropped if d not in used}
    keep_inits = [t for t in g.initializer if t.name not in drop]
    del g.initializer[:]
    g.initializer.extend(keep_inits + new_inits)
    keep_inputs = [i for i in g.input if i.name not in drop]
    if m.ir_version < 4:
        keep_inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in new_inits]
    del g.input[:]
    g.input.extend(keep_inputs)
    _calibrate_logits(m, seed)
    return m, roles


def real_inputs(model):
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def make_feed(model, seed=0):
    """N(0,1) float data for every real input (all light models take one [1,3,224,224] image)."""
    rng = np.random.default_rng(seed)
    feed = {}
    for i in real_inputs(model):
        shape = [d.dim_value if d.dim_value > 0 else 1 for d in i.type.tensor_type.shape.dim]
        feed[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feed


def _session(model):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])


def _calibrate_logits(m, seed):
    """Scales the Conv/Gemm feeding each output Softmax so the logits have std LOGIT_STD."""
    g = m.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    outs = {o.name for o in g.output}
    for sm in [n for n in g.node if n.op_type == "Softmax" and n.output[0] in outs]:
        logits = sm.input[0]
        layer = producer.get(logits)
        while layer is not None and layer.op_type in HOMOGENEOUS:
            layer = producer.get(layer.input[0])
        if layer is None or layer.op_type not in ("Conv", "Gemm"):
            continue
        probe = onnx.ModelProto()
        probe.CopyFrom(m)
        probe.graph.output.append(helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, None))
        sess = _session(probe)
        z = sess.run([logits], make_feed(m, seed + 1))[0]
        s = float(np.std(z))
        if not np.isfinite(s) or s == 0:
            continue
        k = LOGIT_STD / s
        for name in layer.input[1:]:
            # Weights may reach the layer through Reshape/Unsqueeze (inception_v1's classifier).
            while name not in inits and name in producer and producer[name].op_type in PASS_THROUGH:
                name = producer[name].input[0]
            if name in inits:
                t = inits[name]
                t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(k), name))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(DEFAULT_SRC))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated model names (e.g. resnet50,squeezenet)")
    ap.add_argument("--check", action="store_true", help="run each result in onnxruntime and check outputs")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    only = {s.strip() for s in a.only.split(",") if s.strip()}
    bad = 0
    for src in sorted(Path(a.src).glob("light_*.onnx")):
        short = src.stem[len("light_"):]
        if only and short not in only:
            continue
        m, roles = randomize(onnx.load(str(src)), a.seed)
        dst = out / src.name
        onnx.save(m, str(dst))
        counts = defaultdict(int)
        for r in roles.values():
            counts[r] += 1
        line = f"{src.name}: {len(roles)} weights randomized ({dict(counts)})"
        if a.check:
            sess = _session(m)
            y0 = sess.run(None, make_feed(m, 1))[0]
            y1 = sess.run(None, make_feed(m, 2))[0]
            ok = np.all(np.isfinite(y0)) and float(np.std(y0)) > 1e-4 and float(np.max(np.abs(y0 - y1))) > 1e-3 * float(np.max(np.abs(y0)))
            line += (f"; ort out {y0.shape} max {y0.max():.4f} std {y0.std():.2e} "
                     f"|y(x1)-y(x2)| {np.max(np.abs(y0 - y1)):.3e} {'OK' if ok else 'DEGENERATE'}")
            bad += 0 if ok else 1
        print(line, flush=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
