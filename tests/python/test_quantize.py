"""frugal calibrate / frugal quantize against onnxruntime.

Every quantized model written here is checked by the onnx package, loaded in onnxruntime and compared
with the float model (also run in onnxruntime) on held-out data. Accuracy uses the digits labels.
"""
import hashlib
import json
import re

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import frugal_testlib as tl

DIGITS = ["digits_mlp", "digits_cnn"]


def _check_qdq_model(path, per_channel=True):
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    ops = [n.op_type for n in m.graph.node]
    assert "DequantizeLinear" in ops
    inits = {t.name: t for t in m.graph.initializer}
    int8_weights = [t for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2]
    assert int8_weights, "weights should be stored as int8 initializers"
    if per_channel:
        axes = [a.i for n in m.graph.node if n.op_type == "DequantizeLinear" for a in n.attribute if a.name == "axis"]
        assert axes, "per-channel DequantizeLinear nodes expected"
        assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 13
    # Weight DQ: symmetric int8 (zero point 0, values within [-127, 127]).
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].data_type == onnx.TensorProto.INT8:
            q = numpy_helper.to_array(inits[n.input[0]])
            zp = numpy_helper.to_array(inits[n.input[2]])
            assert np.all(zp == 0) and q.min() >= -127 and q.max() <= 127
    return m


@pytest.mark.parametrize("name", DIGITS)
@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile", "mse"])
def test_digits_static_per_channel_accuracy(frugal_bin, tmp_path, name, method):
    model = tl.MODELS_DIR / f"{name}.onnx"
    out = tmp_path / "q.onnx"
    rep = tmp_path / "r.json"
    tl.frugal_quantize(model, out, "--data", tl.MODELS_DATA / f"{name}_calib.npz", "--method", method,
                       "--holdout", tl.MODELS_DATA / f"{name}_heldout.npz", report=rep)
    _check_qdq_model(out)
    samples = tl.heldout_samples(name)
    labels = tl.digits_labels()
    ref = tl.ort_run_concat(model, samples)
    q = tl.ort_run_concat(out, samples)
    acc_f = tl.label_accuracy(ref, labels) * 100
    acc_q = tl.label_accuracy(q, labels) * 100
    assert acc_f - acc_q <= 0.5, f"{name}/{method}: float {acc_f:.2f}% vs int8 {acc_q:.2f}%"
    r = json.loads(rep.read_text())
    assert r["model"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    calib = tl.MODELS_DATA / f"{name}_calib.npz"
    assert r["calibration"]["dataset_fingerprint"] == hashlib.sha256(calib.read_bytes()).hexdigest()
    assert r["summary"]["nodes_quantized"] >= 3
    assert r["summary"]["size_after_bytes"] < r["summary"]["size_before_bytes"]
    # frugal's own top-1 agreement figure must match what onnxruntime says about the same two models.
    agree = tl.top1_agreement(ref, q)
    assert abs(r["fidelity"]["outputs"][0]["top1_agreement"] - agree) <= 2.0 / len(labels)
    sq = [l["sqnr_db"] for l in r["layers"] if l["quantized"] and "sqnr_db" in l]
    assert sq and all(s > 10 for s in sq), sq


def test_weight_dequantize_matches_float_weights(frugal_bin, tmp_path):
    """Per-channel int8 weights dequantize to within half a step of the float weights (axis 0 for Conv)."""
    model = tl.MODELS_DIR / "digits_cnn.onnx"
    out = tmp_path / "q.onnx"
    tl.frugal_quantize(model, out, "--data", tl.MODELS_DATA / "digits_cnn_calib.npz")
    fm = onnx.load(str(model))
    fw = tl.initializer_arrays(fm)
    qm = onnx.load(str(out))
    qi = tl.initializer_arrays(qm)
    conv_w = [n.input[1] for n in fm.graph.node if n.op_type == "Conv"]
    for n in qm.graph.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in qi or qi[n.input[0]].dtype != np.int8:
            continue
        src = n.output[0].replace("_dequantized", "")
        if src not in conv_w:
            continue
        axis = [a.i for a in n.attribute if a.name == "axis"][0]
        assert axis == 0
        w = fw[src]
        s = qi[n.input[1]]
        expect_s = np.abs(w).reshape(w.shape[0], -1).max(1) / 127.0
        np.testing.assert_allclose(s, expect_s, rtol=1e-6)
        deq = qi[n.input[0]].astype(np.float32) * s.reshape(-1, *([1] * (w.ndim - 1)))
        assert np.all(np.abs(deq - w) <= s.reshape(-1, *([1] * (w.ndim - 1))) / 2 + 1e-7)


def test_calibrate_table_and_hash_check(frugal_bin, tmp_path):
    table = tmp_path / "t.json"
    tl.run_frugal(["calibrate", tl.MODELS_DIR / "digits_mlp.onnx", "--data", tl.MODELS_DATA / "digits_mlp_calib.npz",
                   "--method", "entropy", "-o", table], expect_rc=0, bin_path=frugal_bin)
    t = json.loads(table.read_text())
    assert t["format"] == "frugal-calibration" and t["method"] == "entropy" and t["samples"] == 256 and t["bins"] == 2048
    assert t["model"]["sha256"] == hashlib.sha256((tl.MODELS_DIR / "digits_mlp.onnx").read_bytes()).hexdigest()
    # The graph input's observed range is the data's own min/max.
    x = np.load(tl.MODELS_DATA / "digits_mlp_calib.npz")["input"]
    assert t["tensors"]["input"]["min"] == pytest.approx(float(x.min()))
    assert t["tensors"]["input"]["max"] == pytest.approx(float(x.max()))
    for v in t["tensors"].values():
        assert v["min"] <= v["range_min"] <= v["range_max"] <= v["max"]
    out = tmp_path / "q.onnx"
    tl.frugal_quantize(tl.MODELS_DIR / "digits_mlp.onnx", out, "--table", table,
                       "--holdout", tl.MODELS_DATA / "digits_mlp_heldout.npz")
    _check_qdq_model(out)
    # A table made for another model is refused, clearly.
    p = tl.frugal_quantize(tl.MODELS_DIR / "digits_cnn.onnx", tmp_path / "bad.onnx", "--table", table, rc=1)
    assert "different model" in p.stderr
    assert not (tmp_path / "bad.onnx").exists()


def test_calibration_independent_of_batch_and_order(frugal_bin, tmp_path):
    """Shuffled samples give the identical table; regrouped into batches of 4 the table matches up to
    the kernels' own last-bit differences between batch sizes (GEMM blocking), which the observers
    cannot remove. Exact batch-split invariance of the observers is tested in C++ on fixed tensors."""
    x = np.load(tl.MODELS_DATA / "digits_cnn_calib.npz")["input"]  # [S, 1, 1, 8, 8]
    s = x.shape[0]
    perm = np.random.default_rng(0).permutation(s)
    np.savez(tmp_path / "shuffled.npz", input=x[perm])
    np.savez(tmp_path / "batched.npz", input=x[perm].reshape(s // 4, 4, 1, 8, 8))
    for method in ["entropy", "percentile", "mse", "minmax"]:
        tabs = []
        for i, data in enumerate([tl.MODELS_DATA / "digits_cnn_calib.npz", tmp_path / "shuffled.npz",
                                  tmp_path / "batched.npz"]):
            t = tmp_path / f"{method}_{i}.json"
            tl.run_frugal(["calibrate", tl.MODELS_DIR / "digits_cnn.onnx", "--data", data, "--method", method, "-o", t],
                          expect_rc=0, bin_path=frugal_bin)
            tabs.append(json.loads(t.read_text())["tensors"])
        assert tabs[0].keys() == tabs[1].keys() == tabs[2].keys()
        for k in tabs[0]:
            for f in ["min", "max", "range_min", "range_max", "count"]:
                assert tabs[0][k][f] == tabs[1][k][f], (method, k, f)
                absmax = max(abs(tabs[0][k]["max"]), abs(tabs[0][k]["min"]))
                # within one histogram bin of the batch-1 table (bins of R / 2048, R < 2 max|x|)
                assert abs(tabs[0][k][f] - tabs[2][k][f]) <= max(1e-5 * abs(tabs[0][k][f]), 2 * absmax / 2048 + 1e-6), \
                    (method, k, f)


def test_calibration_same_table_on_any_thread_count(frugal_bin, tmp_path):
    """With two or more threads, samples after the first run side by side on their own executors and
    observers, merged at the end: the table must be the one a single thread makes, field for field."""
    for method in ["entropy", "percentile", "minmax"]:
        tabs = {}
        for threads in [1, 2, 3]:
            t = tmp_path / f"{method}_{threads}.json"
            tl.run_frugal(["--threads", str(threads), "calibrate", tl.MODELS_DIR / "digits_cnn.onnx", "--data",
                           tl.MODELS_DATA / "digits_cnn_calib.npz", "--method", method, "-o", t],
                          expect_rc=0, bin_path=frugal_bin)
            tabs[threads] = json.loads(t.read_text())
        assert tabs[1]["samples"] == 256
        assert tabs[1] == tabs[2] == tabs[3], method
    # An encoder whose projections (64 tokens, hidden 256, K >= 256) take a different GEMM blocking
    # when split across two threads than on one: every sample must still run its products on one
    # thread, the first included, or the exact min/max of tensors whose extreme lies in that sample
    # differ in the last bits (3 samples: about a third of the tensors).
    model = tl.run_make_encoder(tmp_path / "enc.onnx", "--layers", "1", "--hidden", "256", "--heads", "4", "--ffn",
                                "1024", "--seq", "64", "--vocab", "500", "--samples", "3", "--emit-data", tmp_path)
    for method in ["minmax", "entropy"]:
        tabs = []
        for threads in [1, 2]:
            t = tmp_path / f"enc_{method}_{threads}.json"
            tl.run_frugal(["--threads", str(threads), "calibrate", model, "--data", tmp_path / "encoder_inputs.npz",
                           "--method", method, "-o", t], expect_rc=0, bin_path=frugal_bin)
            tabs.append(json.loads(t.read_text()))
        assert tabs[0]["samples"] == 3
        assert tabs[0] == tabs[1], method


def test_calibration_reports_the_first_bad_sample_on_any_thread_count(frugal_bin, tmp_path):
    """Samples 5 and 6 of 12 have the wrong shape: every thread count names sample 5, exits 2 and
    writes no table."""
    x = np.load(tl.MODELS_DATA / "digits_cnn_calib.npz")["input"]
    data = tmp_path / "data"
    for i in range(12):
        a = x[i] if i not in (5, 6) else np.zeros((1, 1, 8, 9), np.float32)
        tl.write_test_data_set(data / f"test_data_set_{i:02d}", [("input", a)])
    for threads in [1, 2, 3]:
        out = tmp_path / f"t{threads}.json"
        p = tl.run_frugal(["-q", "--threads", str(threads), "calibrate", tl.MODELS_DIR / "digits_cnn.onnx", "--data", data,
                           "--method", "entropy", "-o", out], bin_path=frugal_bin)
        assert p.returncode == 2, p.stderr
        assert "sample 5" in p.stderr and "sample 6" not in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert not out.exists()


def _conv_bn_model(path):
    """Two Conv -> BatchNormalization -> Relu blocks, then GlobalAveragePool -> Flatten -> Gemm (random
    weights, opset 13): quantization folds each BatchNormalization into its Conv at run time."""
    from onnx import TensorProto, helper
    rng = np.random.default_rng(3)
    inits, nodes = [], []

    def init(name, a):
        inits.append(numpy_helper.from_array(a.astype(np.float32), name))

    c_in = 3
    for k, c_out in enumerate([8, 12], start=1):
        init(f"w{k}", rng.standard_normal((c_out, c_in, 3, 3)) * 0.3)
        init(f"b{k}", rng.standard_normal(c_out) * 0.1)
        init(f"g{k}", rng.uniform(0.5, 1.5, c_out))
        init(f"be{k}", rng.standard_normal(c_out) * 0.2)
        init(f"m{k}", rng.standard_normal(c_out) * 0.1)
        init(f"v{k}", rng.uniform(0.5, 2.0, c_out))
        src = "x" if k == 1 else f"r{k - 1}"
        nodes += [helper.make_node("Conv", [src, f"w{k}", f"b{k}"], [f"c{k}"], name=f"conv{k}", pads=[1, 1, 1, 1]),
                  helper.make_node("BatchNormalization", [f"c{k}", f"g{k}", f"be{k}", f"m{k}", f"v{k}"], [f"n{k}"],
                                   name=f"bn{k}"),
                  helper.make_node("Relu", [f"n{k}"], [f"r{k}"], name=f"relu{k}")]
        c_in = c_out
    init("fw", rng.standard_normal((4, c_in)) * 0.3)
    init("fb", rng.standard_normal(4) * 0.1)
    nodes += [helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
              helper.make_node("Flatten", ["p"], ["f"], name="flat"),
              helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "conv_bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))


def test_quantize_folded_batchnorm_same_model_on_any_thread_count(frugal_bin, tmp_path):
    """Calibration lanes share the folded Conv+BatchNormalization weights: the quantized model is byte
    for byte the same on 1, 2 and 3 threads, its activation scales are the min/max onnxruntime sees
    on the same data, and it runs in onnxruntime close to the float model."""
    model = tmp_path / "conv_bn.onnx"
    _conv_bn_model(model)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((24, 1, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    outs = {}
    for threads in [1, 2, 3]:
        outs[threads] = tmp_path / f"q{threads}.onnx"
        tl.run_frugal(["-q", "--threads", str(threads), "quantize", model, "-o", outs[threads], "--data",
                       tmp_path / "calib.npz", "--method", "minmax", "--sqnr-samples", "0", "--no-fidelity"],
                      expect_rc=0, bin_path=frugal_bin)
    assert outs[1].read_bytes() == outs[2].read_bytes() == outs[3].read_bytes()
    # The same model with the energy estimate made (its cost recorder sees calibration's first run;
    # without a report nothing is estimated): the first sample runs unfused either way, so the folded
    # BatchNormalization's rounding cannot make the two tables differ.
    with_report = tmp_path / "qr.onnx"
    tl.frugal_quantize(model, with_report, "--data", tmp_path / "calib.npz", "--method", "minmax", "--sqnr-samples",
                       "0", "--no-fidelity", report=tmp_path / "r.json", bin_path=frugal_bin)
    assert json.loads((tmp_path / "r.json").read_text())["energy"]["models"][0]["totals"]["macs"] > 0
    assert with_report.read_bytes() == outs[2].read_bytes()
    m = _check_qdq_model(outs[2])
    # Every quantized activation's scale and zero point against its min/max as onnxruntime computes
    # them on the float model (uint8 asymmetric over [min(lo, 0), max(hi, 0)]).
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    acts = [n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    names = sorted({n.input[0] for n in acts})
    assert {"x", "r1"} <= set(names), names  # the graph input and the second Conv's input
    probe = onnx.load(str(model))
    for name in names:
        if name != "x":
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    probe_path = tmp_path / "probe.onnx"
    onnx.save(probe, str(probe_path))
    inter = [dict(tl.ort_run(probe_path, {"x": s}, [n for n in names if n != "x"]), x=s) for s in x]
    for n in acts:
        lo = min(0.0, min(float(o[n.input[0]].min()) for o in inter))
        hi = max(0.0, max(float(o[n.input[0]].max()) for o in inter))
        scale, zp = float(inits[n.input[1]]), int(inits[n.input[2]])
        assert scale == pytest.approx((hi - lo) / 255, rel=1e-5), n.input[0]
        assert zp == round(-lo / ((hi - lo) / 255)), n.input[0]
    seen = tl.ort_run_many(model, [{"x": s} for s in x])
    qy = tl.concat_output(tl.ort_run_many(outs[2], [{"x": s} for s in x]))
    fy = tl.concat_output(seen)
    cos = float(np.sum(qy * fy) / (np.linalg.norm(qy) * np.linalg.norm(fy)))
    assert cos > 0.999, cos


def test_int8_activations_per_tensor_reduce_range(frugal_bin, tmp_path):
    model = tl.MODELS_DIR / "digits_cnn.onnx"
    out = tmp_path / "q.onnx"
    tl.frugal_quantize(model, out, "--data", tl.MODELS_DATA / "digits_cnn_calib.npz", "--activation-type", "int8",
                       "--per-tensor", "--reduce-range")
    m = _check_qdq_model(out, per_channel=False)
    inits = tl.initializer_arrays(m)
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear":
            zp = inits[n.input[2]]
            assert zp.dtype == np.int8 and zp == 0  # symmetric int8 activations
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None and inits[n.input[0]].dtype == np.int8 \
                and inits[n.input[0]].ndim >= 2:
            assert np.abs(inits[n.input[0]]).max() <= 63  # 7-bit weights
            assert inits[n.input[1]].ndim == 0
    samples = tl.heldout_samples("digits_cnn")
    ref, q = tl.ort_run_concat(model, samples), tl.ort_run_concat(out, samples)
    assert tl.top1_agreement(ref, q) >= 0.97


def test_include_exclude(frugal_bin, tmp_path):
    model = tl.MODELS_DIR / "digits_cnn.onnx"
    out = tmp_path / "q.onnx"
    rep = tmp_path / "r.json"
    tl.frugal_quantize(model, out, "--data", tl.MODELS_DATA / "digits_cnn_calib.npz", "--exclude", "Gemm",
                       "--exclude", "conv[13]", report=rep)
    r = json.loads(rep.read_text())
    by = {l["name"]: l for l in r["layers"]}
    assert not by["fc"]["quantized"] and "exclude" in by["fc"]["reason"]
    assert not by["conv1"]["quantized"] and not by["conv3"]["quantized"] and by["conv2"]["quantized"]
    m = onnx.load(str(out))
    fc = [n for n in m.graph.node if n.op_type == "Gemm"][0]
    assert fc.input[1] in {t.name for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    samples = tl.heldout_samples("digits_cnn")
    assert tl.top1_agreement(tl.ort_run_concat(model, samples), tl.ort_run_concat(out, samples)) >= 0.99


def test_dynamic_weight_only(frugal_bin, tmp_path):
    model = tl.MODELS_DIR / "digits_mlp.onnx"
    out = tmp_path / "q.onnx"
    tl.frugal_quantize(model, out, "--dynamic", "--holdout", tl.MODELS_DATA / "digits_mlp_heldout.npz")
    m = _check_qdq_model(out)
    assert "QuantizeLinear" not in [n.op_type for n in m.graph.node]
    samples = tl.heldout_samples("digits_mlp")
    ref, q = tl.ort_run_concat(model, samples), tl.ort_run_concat(out, samples)
    assert tl.top1_agreement(ref, q) >= 0.99
    assert out.stat().st_size < model.stat().st_size / 2


def test_max_drop(frugal_bin, tmp_path):
    model = tl.MODELS_DIR / "digits_cnn.onnx"
    data = tl.MODELS_DATA / "digits_cnn_calib.npz"
    hold = tl.MODELS_DATA / "digits_cnn_heldout.npz"
    # Impossible bound: exit 3, no model written.
    p = tl.frugal_quantize(model, tmp_path / "no.onnx", "--data", data, "--holdout", hold, "--max-drop",
                           "cosine=1.5", rc=3)
    assert "max-drop" in p.stderr
    assert not (tmp_path / "no.onnx").exists()
    # A bound the full quantization may miss: layers are kept float until it holds.
    rep = tmp_path / "r.json"
    out = tmp_path / "q.onnx"
    tl.frugal_quantize(model, out, "--data", data, "--holdout", hold, "--max-drop", "cosine=0.99999", report=rep)
    r = json.loads(rep.read_text())
    assert r["max_drop"]["met"]
    samples = tl.heldout_samples("digits_cnn")
    ref, q = tl.ort_run_concat(model, samples), tl.ort_run_concat(out, samples)
    cos = [tl.compare(b, a)[1] for a, b in zip(ref, q)]  # per sample
    assert np.mean(cos) >= 0.99999 - 1e-6
    # Usage error for a malformed bound.
    tl.frugal_quantize(model, tmp_path / "x.onnx", "--data", data, "--max-drop", "top5=1", rc=1)


def _mnist_like_samples(n=200):
    """The committed 8x8 digits (held-out set, pixels in [0, 1]) scaled up to mnist's 28x28 layout
    (0..255 floats); n <= 500."""
    held = np.load(tl.MODELS_DATA / "digits_cnn_heldout.npz")["input"]  # [500, 1, 1, 8, 8]
    imgs = held[:n].reshape(n, 8, 8) * 255.0
    big = np.kron(imgs, np.ones((3, 3)))  # 24x24
    big = np.pad(big, ((0, 0), (2, 2), (2, 2)))
    return big.reshape(n, 1, 1, 28, 28).astype(np.float32)


def test_mnist8_top1_agreement(frugal_bin, tmp_path, testdata):
    model = testdata / "alrevuelta-cONNXr" / "test" / "mnist" / "model.onnx"
    x = _mnist_like_samples(300)
    np.savez(tmp_path / "calib.npz", Input3=x[:100])
    np.savez(tmp_path / "hold.npz", Input3=x[100:])
    out = tmp_path / "q.onnx"
    rep = tmp_path / "r.json"
    tl.frugal_quantize(model, out, "--data", tmp_path / "calib.npz", "--method", "percentile",
                       "--holdout", tmp_path / "hold.npz", report=rep)
    _check_qdq_model(out)  # opset 8 raised to 13 for per-channel
    hold = [{"Input3": s} for s in x[100:]]
    ref, q = tl.ort_run_concat(model, hold), tl.ort_run_concat(out, hold)
    assert tl.top1_agreement(ref, q) >= 0.99
    # The three real mnist test images keep their predicted class.
    for i in range(3):
        name, inp = tl.read_tensor_pb(model.parent / f"test_data_set_{i}" / "input_0.pb")
        a = list(tl.ort_run(model, {"Input3": inp}).values())[0]
        b = list(tl.ort_run(out, {"Input3": inp}).values())[0]
        assert a.argmax() == b.argmax()


# ---- dynamic quantization, integer form (onnxruntime's quantize_dynamic layout) ----------------------

def _assert_frugal_run_matches_ort(frugal_bin, model, data_npz, work_dir):
    """`frugal run` of a dynamic-integer model against onnxruntime running the same model.

    Both sides compute the products in integers (MatMulInteger: exact int32 sums) and DynamicQuantizeLinear
    by its definition (scale (max - min) / 255, q = round_half_even(x / scale) + zp, a division, as
    onnxruntime's MLAS kernel does), so with equal DynamicQuantizeLinear inputs the only differences are
    float32 rounding in the Cast/Mul/Add epilogue and the float ops around them: the oracle bound
    1e-4 * max(1, |ref|) applies. But a float op before a DynamicQuantizeLinear (a weight-only Conv, a
    LayerNorm) sums in another order in each runtime, and an input that lands within that noise of a
    half step rounds to neighbouring levels: one term of the next product moves by x_scale * |w| (~1e-2
    on digits_cnn's logits, sample 113 of the held-out set: x / scale = 0.49997 in onnxruntime, 0.50001
    in frugal). So the DynamicQuantizeLinear inputs and outputs are exposed as graph outputs (same
    model copy in both runtimes) and checked: scales agree to float noise, zero points are equal, and
    every quantized value that differs differs by one level at an input within 1e-3 of a half step (a
    tie decided by upstream float noise, not a rounding rule difference). Samples with no such tie
    must meet the tight bound; the few with one (at most 2% of samples) must keep their top-1 and a
    cosine >= 0.999.
    """
    m = onnx.load(str(model))
    names = [o.name for o in m.graph.output]
    dqls = [(n.input[0], *n.output) for n in m.graph.node if n.op_type == "DynamicQuantizeLinear"]
    assert dqls
    for t in dict.fromkeys(x for d in dqls for x in d):
        if t not in names:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    exposed = work_dir / "exposed.onnx"
    onnx.save(m, str(exposed))
    all_names = [o.name for o in m.graph.output]
    got = [dict(zip(all_names, g)) for g in tl.frugal_run_outputs(exposed, data_npz, work_dir / "out")]
    ref = tl.ort_run_many(exposed, tl.load_npz_samples(data_npz))
    assert len(got) == len(ref)
    tied = 0
    for i, (g, r) in enumerate(zip(got, ref)):
        ties = 0
        for x, q, scale, zp in dqls:
            np.testing.assert_allclose(g[scale], r[scale], rtol=1e-5, err_msg=f"sample {i} {scale}")
            assert g[zp] == r[zp], f"sample {i} {zp}: {g[zp]} vs {r[zp]}"
            diff = g[q].astype(np.int32) - r[q].astype(np.int32)
            if not diff.any():
                continue
            assert np.abs(diff).max() == 1, f"sample {i} {q}: differs by {np.abs(diff).max()} levels"
            levels = r[x][diff != 0].astype(np.float64) / float(r[scale])
            assert np.all(np.abs(np.abs(levels - np.floor(levels)) - 0.5) < 1e-3), \
                f"sample {i} {q}: differing levels not at a half step: {levels}"
            ties += int(np.count_nonzero(diff))
        tied += ties > 0
        for name in names:
            if ties == 0:
                err = np.abs(g[name].astype(np.float64) - r[name])
                bound = 1e-4 * np.maximum(1.0, np.abs(r[name]))
                assert np.all(err <= bound), f"sample {i} output {name}: max err {err.max():g}"
            else:
                _, cos, top1 = tl.compare(g[name], r[name])
                assert cos >= 0.999 and top1 == 1.0, f"sample {i} output {name} ({ties} tie(s)): cosine {cos}"
    assert tied <= max(1, 0.02 * len(ref)), f"{tied} of {len(ref)} samples with half-step ties"


def _check_integer_form(path, replaced_outputs):
    """The onnx checker passes; the replaced nodes' outputs come from the integer chain
    (MatMulInteger -> Cast -> Mul [-> Add]) and no float MatMul/Gemm produces them."""
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    ops = [n.op_type for n in m.graph.node]
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops
    prod = {o: n for n in m.graph.node for o in n.output}
    inits = tl.initializer_arrays(m)
    for out in replaced_outputs:
        n = prod[out]
        if n.op_type == "Add":  # Gemm bias
            n = prod[n.input[0]]
        assert n.op_type == "Mul", (out, n.op_type)
        cast = prod[n.input[0]]
        assert cast.op_type == "Cast"
        mmi = prod[cast.input[0]]
        assert mmi.op_type == "MatMulInteger"
        dql = prod[mmi.input[0]]
        assert dql.op_type == "DynamicQuantizeLinear" and mmi.input[2] == dql.output[2]
        w = inits[mmi.input[1]]
        zp = inits[mmi.input[3]]
        assert w.dtype == np.int8 and w.ndim == 2 and np.abs(w).max() <= 127
        assert zp.dtype == np.int8 and np.all(zp == 0) and zp.shape in [(), (w.shape[1],)]
        scale = prod[n.input[1]]  # x_scale * w_scale
        assert scale.op_type == "Mul" and scale.input[0] == dql.output[1]
        assert inits[scale.input[1]].shape in [(), (w.shape[1],)]
    return m


@pytest.mark.parametrize("name", DIGITS)
def test_dynamic_integer_digits(frugal_bin, tmp_path, name):
    model = tl.MODELS_DIR / f"{name}.onnx"
    hold = tl.MODELS_DATA / f"{name}_heldout.npz"
    out = tmp_path / "q.onnx"
    rep = tmp_path / "r.json"
    tl.frugal_quantize(model, out, "--dynamic", "--dynamic-form", "integer", "--holdout", hold, report=rep)
    fm = onnx.load(str(model))
    gemms = [n.output[0] for n in fm.graph.node if n.op_type == "Gemm"]
    m = _check_integer_form(out, gemms)
    ops = [n.op_type for n in m.graph.node]
    assert "Gemm" not in ops and "MatMul" not in ops and "QuantizeLinear" not in ops
    r = json.loads(rep.read_text())
    assert r["mode"] == "dynamic-integer" and r["options"]["dynamic_form"] == "integer"
    for layer in r["layers"]:
        assert layer["quantized"]
        if layer["op_type"] == "Gemm":
            assert layer["form"] == "integer" and "reason" not in layer
        else:  # digits_cnn's Conv layers keep their int8 weights behind DequantizeLinear
            assert layer["op_type"] == "Conv" and layer["form"] == "weight-only"
            assert "weight-only" in layer["reason"]
    if name == "digits_cnn":
        assert sum(1 for n in m.graph.node if n.op_type == "Conv") == 3
        assert sum(1 for n in m.graph.node if n.op_type == "DequantizeLinear") == 3
    samples = tl.heldout_samples(name)
    labels = tl.digits_labels()
    ref, q = tl.ort_run_concat(model, samples), tl.ort_run_concat(out, samples)
    acc_f = tl.label_accuracy(ref, labels) * 100
    acc_q = tl.label_accuracy(q, labels) * 100
    assert acc_f - acc_q <= 1.0, f"{name}: float {acc_f:.2f}% vs dynamic integer {acc_q:.2f}%"
    assert out.stat().st_size < model.stat().st_size / 2
    _assert_frugal_run_matches_ort(frugal_bin, out, hold, tmp_path)


def test_dynamic_integer_per_tensor_reduce_range(frugal_bin, tmp_path):
    model = tl.MODELS_DIR / "digits_mlp.onnx"
    hold = tl.MODELS_DATA / "digits_mlp_heldout.npz"
    out = tmp_path / "q.onnx"
    tl.frugal_quantize(model, out, "--dynamic", "--dynamic-form", "integer", "--per-tensor", "--reduce-range")
    fm = onnx.load(str(model))
    m = _check_integer_form(out, [n.output[0] for n in fm.graph.node if n.op_type == "Gemm"])
    inits = tl.initializer_arrays(m)
    fw = tl.initializer_arrays(fm)
    for n in m.graph.node:
        if n.op_type == "MatMulInteger":
            w = inits[n.input[1]]
            assert np.abs(w).max() <= 63 and inits[n.input[3]].ndim == 0
            # transB=1 weight stored as [K, N]: one scale absmax / 63 for the whole weight.
            src = fw[n.input[1].replace("_transposed_quantized", "")]
            assert w.shape == src.T.shape
            s = [inits[x.input[1]] for x in m.graph.node if x.op_type == "Mul" and x.input[1].startswith(
                n.input[1].replace("_quantized", "_scale"))][0]
            np.testing.assert_allclose(s, np.abs(src).max() / 63, rtol=1e-6)
            assert np.all(np.abs(w * s - src.T) <= s / 2 + 1e-7)
    samples = tl.heldout_samples("digits_mlp")
    assert tl.top1_agreement(tl.ort_run_concat(model, samples), tl.ort_run_concat(out, samples)) >= 0.98
    _assert_frugal_run_matches_ort(frugal_bin, out, hold, tmp_path)


def test_dynamic_form_cli_errors(frugal_bin, tmp_path):
    model = tl.MODELS_DIR / "digits_mlp.onnx"
    p = tl.frugal_quantize(model, tmp_path / "a.onnx", "--dynamic-form", "integer", "--data",
                           tl.MODELS_DATA / "digits_mlp_calib.npz", rc=1)
    assert "--dynamic-form" in p.stderr
    tl.frugal_quantize(model, tmp_path / "b.onnx", "--dynamic", "--dynamic-form", "int4", rc=1)
    # The default stays weight-only and the report says so.
    rep = tmp_path / "r.json"
    tl.frugal_quantize(model, tmp_path / "c.onnx", "--dynamic", report=rep)
    r = json.loads(rep.read_text())
    assert r["mode"] == "dynamic-weight-only" and r["options"]["dynamic_form"] == "weight-only"
    assert all(layer["form"] == "weight-only" for layer in r["layers"])


def _embedding_model(path, rng):
    """ids [2, 5] -> Gather(E [300, 16], axis 0) -> emb (a graph output) -> MatMul(W [16, 8]) -> y, plus two
    Gathers frugal leaves float: one along axis 1 of T [16, 300] and one from a 12-value table S."""
    from onnx import TensorProto, helper
    e = (rng.standard_normal((300, 16)) * rng.uniform(0.01, 3.0, size=(300, 1))).astype(np.float32)
    inits = [numpy_helper.from_array(e, "E"),
             numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((16, 300)).astype(np.float32), "T"),
             numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "S")]
    nodes = [helper.make_node("Gather", ["E", "ids"], ["emb"], name="word_emb", axis=0),
             helper.make_node("MatMul", ["emb", "W"], ["y"], name="proj"),
             helper.make_node("Gather", ["T", "cols"], ["t_cols"], name="by_column", axis=1),
             helper.make_node("Gather", ["S", "small_ids"], ["s_rows"], name="small_table", axis=0)]
    g = helper.make_graph(nodes, "emb", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5]),
                                         helper.make_tensor_value_info("cols", TensorProto.INT64, [3]),
                                         helper.make_tensor_value_info("small_ids", TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in
                           (("emb", [2, 5, 16]), ("y", [2, 5, 8]), ("t_cols", [16, 3]), ("s_rows", [2, 4]))],
                          inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return e


@pytest.mark.parametrize("mode", ["static", "static_per_tensor", "dynamic", "dynamic_integer", "excluded"])
def test_embedding_table_stored_int8(frugal_bin, tmp_path, mode):
    """A Gather from a float table (an embedding) stores the table int8 with one symmetric scale per row
    (one for the table with --per-tensor), in every mode; onnxruntime's rows equal numpy's own
    quantize-dequantize of the table, negative indices included. Gathers along another axis or from a
    tiny table stay float, with the reason in the report."""
    rng = np.random.default_rng(7)
    model = tmp_path / "emb.onnx"
    e = _embedding_model(model, rng)
    # Every row read twice over the samples: once by its index, once by its negative alias (i - 300).
    ids = (rng.permutation(600) - 300).reshape(60, 2, 5).astype(np.int64)
    samples = [{"ids": ids[k], "cols": rng.integers(0, 300, size=(3,)).astype(np.int64),
                "small_ids": rng.integers(0, 3, size=(2,)).astype(np.int64)} for k in range(len(ids))]
    data = tmp_path / "d.npz"
    tl.write_npz_samples(data, samples)
    out, rep = tmp_path / "q.onnx", tmp_path / "r.json"
    extra = {"static": ["--data", data], "static_per_tensor": ["--data", data, "--per-tensor"],
             "dynamic": ["--dynamic"], "dynamic_integer": ["--dynamic", "--dynamic-form", "integer"],
             "excluded": ["--dynamic", "--exclude", "word_emb"]}[mode]
    proc = tl.frugal_quantize(model, out, *extra, report=rep)
    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    inits = tl.initializer_arrays(m)
    layers = {layer["name"]: layer for layer in json.loads(rep.read_text())["layers"]}
    for name, why in (("by_column", "axis"), ("small_table", "too small")):
        assert not layers[name]["quantized"] and why in layers[name]["reason"], layers[name]
    assert inits["T"].dtype == np.float32 and inits["S"].dtype == np.float32
    ref = tl.ort_run_many(model, samples)
    got = tl.ort_run_many(out, samples)
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a["t_cols"], b["t_cols"])
        np.testing.assert_array_equal(a["s_rows"], b["s_rows"])
    if mode == "excluded":
        assert "E" in inits and inits["E"].dtype == np.float32
        assert not layers["word_emb"]["quantized"] and "exclude" in layers["word_emb"]["reason"]
        for a, b in zip(ref, got):
            np.testing.assert_array_equal(a["emb"], b["emb"])
        return
    assert "E" not in inits, "the float table should be gone"
    assert [k for k, v in inits.items() if v.dtype == np.int8 and v.shape == (300, 16)]
    assert model.stat().st_size - out.stat().st_size >= 0.6 * e.nbytes  # int8 plus 300 scales: ~0.69 saved
    per_row = mode != "static_per_tensor"
    assert layers["word_emb"]["quantized"] and layers["word_emb"]["form"] == "weight-only"
    assert layers["word_emb"]["weight"]["axis"] == (0 if per_row else -1)
    assert re.search(r"word_emb\s+Gather\s+yes\s+" + ("per-row" if per_row else "per-tensor"), proc.stdout), proc.stdout
    # numpy's own int8 symmetric quantize-dequantize (round half to even, as QuantizeLinear).
    s = (np.abs(e).max(axis=1, keepdims=True) if per_row else np.abs(e).max()) / 127.0
    deq = np.clip(np.round(e / s), -127, 127) * s
    for smp, a, b in zip(samples, ref, got):
        rows = smp["ids"] % 300
        np.testing.assert_allclose(b["emb"], deq[rows], rtol=1e-6, atol=0)
        step = np.broadcast_to(s, e.shape)[rows]
        assert np.all(np.abs(b["emb"] - a["emb"]) <= step / 2 * (1 + 1e-5))
    tl.assert_cosine_per_output([{"y": r["y"]} for r in ref], [{"y": g["y"]} for g in got], 0.999)


def _small_encoder(tmp_path):
    """A one-layer BERT-style encoder (hidden 64, seq 16) and 16 samples of its inputs, in tmp_path:
    returns (model path, .npz path)."""
    model = tl.run_make_encoder(tmp_path / "enc.onnx", "--layers", "1", "--hidden", "64", "--heads", "4", "--ffn",
                                "128", "--seq", "16", "--vocab", "500", "--samples", "16", "--emit-data", tmp_path)
    return model, tmp_path / "encoder_inputs.npz"


def test_dynamic_integer_encoder(frugal_bin, tmp_path):
    """A one-layer BERT-style encoder: the six projections with constant weights become integer; the two
    attention MatMuls (both sides activations) stay float; one DynamicQuantizeLinear feeds Q, K and V."""
    model, data = _small_encoder(tmp_path)
    out = tmp_path / "q.onnx"
    rep = tmp_path / "r.json"
    tl.frugal_quantize(model, out, "--dynamic", "--dynamic-form", "integer", "--holdout", data, report=rep)
    fm = onnx.load(str(model))
    finits = {t.name for t in fm.graph.initializer}
    const_mm = [n.output[0] for n in fm.graph.node if n.op_type == "MatMul" and n.input[1] in finits]
    act_mm = [n.output[0] for n in fm.graph.node if n.op_type == "MatMul" and n.input[1] not in finits]
    assert len(const_mm) == 6 and len(act_mm) == 2
    m = _check_integer_form(out, const_mm)
    assert sorted(o for n in m.graph.node if n.op_type == "MatMul" for o in n.output) == sorted(act_mm)
    assert sum(1 for n in m.graph.node if n.op_type == "MatMulInteger") == 6
    assert sum(1 for n in m.graph.node if n.op_type == "DynamicQuantizeLinear") == 4  # QKV share one
    r = json.loads(rep.read_text())
    assert sum(1 for layer in r["layers"] if layer.get("form") == "integer") == 6
    # The word-embedding Gather keeps its rows int8 (weight-only form, one scale per row).
    emb = [layer for layer in r["layers"] if layer["op_type"] == "Gather"]
    assert len(emb) == 1 and emb[0]["form"] == "weight-only" and emb[0]["weight"]["axis"] == 0
    assert all(not layer["quantized"] and "not a float initializer" in layer["reason"]
               for layer in r["layers"] if layer.get("form") not in ("integer", "weight-only"))
    samples = tl.load_npz_samples(data)
    tl.assert_cosine_per_output(tl.ort_run_many(model, samples), tl.ort_run_many(out, samples), 0.99)
    _assert_frugal_run_matches_ort(frugal_bin, out, data, tmp_path)


# ---- top-1 agreement on the tiny BERT-SQuAD models (issue 4: >= 99% where meaningful) ------------------

BERT_TF = tl.BERT_SQUAD_KERAS
BERT_PT = tl.BERT_SQUAD_PT_DIR


def _qa_head(model_path, tmp_path):
    """The QA head: the MatMul with a constant [hidden, 2] weight (start and end logits). Returns
    (model, head node name). --exclude selects nodes by name or op type, and BertForQuestionAnswering_1
    names no node at all: then the model returned is a copy in tmp_path in which only the head is named
    (a name changes nothing computed)."""
    m = onnx.load(str(model_path))
    inits = {t.name: list(t.dims) for t in m.graph.initializer}
    heads = [n for n in m.graph.node if n.op_type == "MatMul" and inits.get(n.input[1], [0])[-1:] == [2]]
    assert len(heads) == 1
    if heads[0].name:
        return model_path, heads[0].name
    heads[0].name = "qa_head"
    assert all(n.name != "qa_head" for n in m.graph.node if n is not heads[0])
    copy = tmp_path / "named_head.onnx"
    onnx.save(m, str(copy))
    return copy, "qa_head"


# Why the QA head stays float: these test models are tiny (hidden 8) and untrained, so their logits are
# nearly flat along the sequence (spread ~0.05, median top-1/top-2 margin ~0.004 on such data). The
# head reads the last LayerNorm output ([-1.7, 1.9]: int8 step ~0.014) with weights of |w| <= 0.056 and
# sends that rounding straight into the logits with no normalisation after it: up to ~1.5e-3 of error,
# enough to swap near-tied positions. With every MatMul quantized (minmax), the measured top-1
# agreement on the data below is 96.7% (start) / 95.9% (end) for the Keras model in onnxruntime and
# 96.5% / 99.6% for PyTorch _1 in frugal: below the 99%. Keeping only the head float (1 of 193
# MatMuls in the Keras model, of 97 in the PyTorch ones) brings the logit error under ~2e-4 and the
# agreement to 99.8% / 99.6% (Keras, minmax and percentile) and 100% (PyTorch). --max-drop top1=1% also
# meets the bound, but it keeps layers float in order of increasing SQNR and the head's 39.9 dB puts it
# 56th: 56 MatMuls float and ~20 minutes. The all-layers figure is asserted at its measured level
# (>= 95%) so that a regression shows; it is not the target, which the head-float runs assert.
def test_tiny_bert_keras_top1_agreement(frugal_bin, tmp_path, testdata):
    calib = tl.write_bert_squad_inputs(BERT_TF, tmp_path / "calib.npz", 32, 32, seed=0)
    hold = tl.write_bert_squad_inputs(BERT_TF, tmp_path / "hold.npz", 512, 32, seed=1)
    samples = tl.load_npz_samples(hold)
    ref = tl.ort_run_many(BERT_TF, samples)
    named, head = _qa_head(BERT_TF, tmp_path)
    assert named == BERT_TF
    for method, label, extra in [("minmax", "head_float", ["--exclude", head]), ("minmax", "all", []),
                                 ("percentile", "head_float", ["--exclude", head])]:
        out = tmp_path / f"{method}_{label}.onnx"
        tl.frugal_quantize(BERT_TF, out, "--data", calib, "--method", method, "--no-fidelity", "--sqnr-samples", "0",
                           *extra)
        _check_qdq_model(out)
        agree = tl.top1_per_output(ref, tl.ort_run_many(out, samples))
        print(method, label, agree)
        floor = 0.99 if label == "head_float" else 0.95
        assert min(agree.values()) >= floor, (method, label, agree)


# onnxruntime no longer loads the PyTorch 1.4 exports (Concat of int64 scalars, see test_real_models.py),
# so here both the float and the quantized model run in frugal only: this checks the quantization
# quality, not the runtime against an oracle (test_real_models.py checks frugal's float run of these
# models against their stored onnxruntime outputs). _0 has a fixed batch of 1, _1 a symbolic one.
@pytest.mark.parametrize("variant,batch,rows", [("0", 1, 128), ("1", 32, 512)])
def test_tiny_bert_pytorch_top1_agreement_frugal_only(frugal_bin, tmp_path, testdata, variant, batch, rows):
    model = BERT_PT / f"BertForQuestionAnswering_{variant}.onnx"
    calib = tl.write_bert_squad_inputs(model, tmp_path / "calib.npz", 32, batch, seed=2)
    hold = tl.write_bert_squad_inputs(model, tmp_path / "hold.npz", rows, batch, seed=3)

    def frugal_outputs(path, name):
        return [{"start": o[0], "end": o[1]} for o in tl.frugal_run_outputs(path, hold, tmp_path / name)]

    ref = frugal_outputs(model, "float")
    named, head = _qa_head(model, tmp_path)
    configs = [("head_float", ["--exclude", head])] + ([("all", [])] if variant == "1" else [])
    for label, extra in configs:
        out = tmp_path / f"{label}.onnx"
        tl.frugal_quantize(named, out, "--data", calib, "--method", "minmax", "--no-fidelity", "--sqnr-samples", "0",
                           *extra)
        _check_qdq_model(out)
        agree = tl.top1_per_output(ref, frugal_outputs(out, label))
        print(variant, label, agree)
        floor = 0.99 if label == "head_float" else 0.95
        assert min(agree.values()) >= floor, (variant, label, agree)


def test_quantize_calibrates_only_the_tensors_it_reads(frugal_bin, tmp_path):
    """`quantize --data` observes only the activations the pass reads ranges for; the model it writes is
    byte-identical to the one made from a full `frugal calibrate` table, and runs in onnxruntime close
    to the float model."""
    model, data = _small_encoder(tmp_path)
    for method in ["entropy", "percentile"]:
        table = tmp_path / f"{method}.json"
        tl.run_frugal(["calibrate", model, "--data", data, "--method", method, "-o", table], expect_rc=0, bin_path=frugal_bin)
        full = json.loads(table.read_text())["tensors"]
        a, b, rep = tmp_path / f"{method}_table.onnx", tmp_path / f"{method}_data.onnx", tmp_path / f"{method}.json.r"
        tl.frugal_quantize(model, a, "--table", table, "--sqnr-samples", "0", "--no-fidelity")
        tl.frugal_quantize(model, b, "--data", data, "--method", method, "--sqnr-samples", "0", "--no-fidelity",
                           report=rep)
        assert a.read_bytes() == b.read_bytes(), method
        observed = json.loads(rep.read_text())["calibration"]["tensors"]
        # the GELU, LayerNorm and softmax internals are not needed
        assert 0 < observed < len(full) / 2, (observed, len(full))
    samples = tl.load_npz_samples(data)
    tl.assert_cosine_per_output(tl.ort_run_many(model, samples), tl.ort_run_many(b, samples), 0.99)


def test_energy_lines_in_the_table_are_the_reports(frugal_bin, tmp_path):
    # The people's table shows the report's energy estimate (per inference, original -> quantized);
    # -q without --report shows neither, and the model written is the same.
    model, calib = tl.MODELS_DIR / "digits_cnn.onnx", tl.MODELS_DATA / "digits_cnn_calib.npz"
    out, quiet, rep = tmp_path / "q.onnx", tmp_path / "quiet.onnx", tmp_path / "r.json"
    proc = tl.frugal_quantize(model, out, "--data", calib, "--method", "minmax", "--sqnr-samples", "0",
                              "--no-fidelity", report=rep, bin_path=frugal_bin)
    e = json.loads(rep.read_text())["energy"]
    a, b = e["models"][0]["estimate"], e["models"][1]["estimate"]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("energy per inference"))
    uj = [float(v) for v in re.findall(r"([0-9.]+) uJ", line)]
    assert uj == [round(a["roofline"]["energy_j"] * 1e6, 3), round(b["roofline"]["energy_j"] * 1e6, 3),
                  round(a["per_op"]["energy_j"] * 1e6, 3), round(b["per_op"]["energy_j"] * 1e6, 3)], line
    assert f"(x{e['comparison']['energy_per_op']:.3f})" in line
    assert b["per_op"]["energy_j"] < a["per_op"]["energy_j"]  # int8 MACs and weights cost less
    q = tl.run_frugal(["-q", "quantize", model, "-o", quiet, "--data", calib, "--method", "minmax",
                       "--sqnr-samples", "0", "--no-fidelity"], expect_rc=0, bin_path=frugal_bin)
    assert q.stdout == ""
    assert quiet.read_bytes() == out.read_bytes()


@pytest.mark.parametrize("which", ["digits_cnn", "mnist8"])
def test_report_energy_equals_frugal_energy_of_each_file(frugal_bin, tmp_path, testdata, which):
    # quantize sizes the float model from calibration's first run and the QDQ copy without running it
    # (or runs only the copy when an opset upgrade added nodes): the totals must be those of
    # `frugal energy` run on each file by itself.
    if which == "digits_cnn":
        model, calib = tl.MODELS_DIR / "digits_cnn.onnx", tl.MODELS_DATA / "digits_cnn_calib.npz"
    else:
        model = testdata / "alrevuelta-cONNXr" / "test" / "mnist" / "model.onnx"
        calib = tmp_path / "calib.npz"
        np.savez(calib, Input3=_mnist_like_samples(8))
    out, rep = tmp_path / "q.onnx", tmp_path / "r.json"
    tl.frugal_quantize(model, out, "--data", calib, "--method", "minmax", "--sqnr-samples", "0",
                       "--no-fidelity", report=rep)
    models = json.loads(rep.read_text())["energy"]["models"]
    for path, got in ((model, models[0]), (out, models[1])):
        alone = json.loads(tl.run_frugal(["energy", path, "--json"], expect_rc=0).stdout)["models"][0]
        assert got["totals"] == alone["totals"], path
        assert got["input_shapes"] == alone["input_shapes"]
