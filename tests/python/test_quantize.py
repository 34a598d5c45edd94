"""frugal calibrate / frugal quantize against onnxruntime.

Every quantized model written here is checked by the onnx package, loaded in onnxruntime and compared
with the float model (also run in onnxruntime) on held-out data. Accuracy uses the digits labels.
"""
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import frugal_testlib as tl

DIGITS = ["digits_mlp", "digits_cnn"]


def _heldout(name):
    return tl.load_npz_samples(tl.MODELS_DATA / f"{name}_heldout.npz")


def _labels():
    return np.load(tl.MODELS_DATA / "digits_heldout_labels.npy")


def _logits(model_path, samples):
    outs = tl.ort_run_many(model_path, samples)
    return np.concatenate([list(o.values())[0] for o in outs], axis=0)


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


def _quantize(frugal_bin, model, out, *extra, rc=0, report=None):
    args = ["quantize", model, "-o", out, *extra]
    if report:
        args = ["--report", report] + args
    return tl.run_frugal(args, expect_rc=rc, bin_path=frugal_bin)


@pytest.mark.parametrize("name", DIGITS)
@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile", "mse"])
def test_digits_static_per_channel_accuracy(frugal_bin, tmp_path, name, method):
    model = tl.MODELS_DIR / f"{name}.onnx"
    out = tmp_path / "q.onnx"
    rep = tmp_path / "r.json"
    _quantize(frugal_bin, model, out, "--data", tl.MODELS_DATA / f"{name}_calib.npz", "--method", method,
              "--holdout", tl.MODELS_DATA / f"{name}_heldout.npz", report=rep)
    _check_qdq_model(out)
    samples = _heldout(name)
    labels = _labels()
    ref = _logits(model, samples)
    q = _logits(out, samples)
    acc_f = float(np.mean(ref.argmax(1) == labels)) * 100
    acc_q = float(np.mean(q.argmax(1) == labels)) * 100
    assert acc_f - acc_q <= 0.5, f"{name}/{method}: float {acc_f:.2f}% vs int8 {acc_q:.2f}%"
    r = json.loads(rep.read_text())
    assert r["summary"]["nodes_quantized"] >= 3
    assert r["summary"]["size_after_bytes"] < r["summary"]["size_before_bytes"]
    # frugal's own top-1 agreement figure must match what onnxruntime says about the same two models.
    agree = float(np.mean(ref.argmax(1) == q.argmax(1)))
    assert abs(r["fidelity"]["outputs"][0]["top1_agreement"] - agree) <= 2.0 / len(labels)
    sq = [l["sqnr_db"] for l in r["layers"] if l["quantized"] and "sqnr_db" in l]
    assert sq and all(s > 10 for s in sq), sq


def test_weight_dequantize_matches_float_weights(frugal_bin, tmp_path):
    """Per-channel int8 weights dequantize to within half a step of the float weights (axis 0 for Conv)."""
    model = tl.MODELS_DIR / "digits_cnn.onnx"
    out = tmp_path / "q.onnx"
    _quantize(frugal_bin, model, out, "--data", tl.MODELS_DATA / "digits_cnn_calib.npz")
    fm = onnx.load(str(model))
    fw = {t.name: numpy_helper.to_array(t) for t in fm.graph.initializer}
    qm = onnx.load(str(out))
    qi = {t.name: numpy_helper.to_array(t) for t in qm.graph.initializer}
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
    import hashlib
    assert t["model"]["sha256"] == hashlib.sha256((tl.MODELS_DIR / "digits_mlp.onnx").read_bytes()).hexdigest()
    # The graph input's observed range is the data's own min/max.
    x = np.load(tl.MODELS_DATA / "digits_mlp_calib.npz")["input"]
    assert t["tensors"]["input"]["min"] == pytest.approx(float(x.min()))
    assert t["tensors"]["input"]["max"] == pytest.approx(float(x.max()))
    for v in t["tensors"].values():
        assert v["min"] <= v["range_min"] <= v["range_max"] <= v["max"]
    out = tmp_path / "q.onnx"
    _quantize(frugal_bin, tl.MODELS_DIR / "digits_mlp.onnx", out, "--table", table,
              "--holdout", tl.MODELS_DATA / "digits_mlp_heldout.npz")
    _check_qdq_model(out)
    # A table made for another model is refused, clearly.
    p = _quantize(frugal_bin, tl.MODELS_DIR / "digits_cnn.onnx", tmp_path / "bad.onnx", "--table", table, rc=1)
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
                span = tabs[0][k]["max"] - tabs[0][k]["min"]
                # within one histogram bin of the batch-1 table
                assert abs(tabs[0][k][f] - tabs[2][k][f]) <= max(1e-5 * abs(tabs[0][k][f]), span / 2048 + 1e-6), \
                    (method, k, f)


def test_int8_activations_per_tensor_reduce_range(frugal_bin, tmp_path):
    model = tl.MODELS_DIR / "digits_cnn.onnx"
    out = tmp_path / "q.onnx"
    _quantize(frugal_bin, model, out, "--data", tl.MODELS_DATA / "digits_cnn_calib.npz", "--activation-type", "int8",
              "--per-tensor", "--reduce-range")
    m = _check_qdq_model(out, per_channel=False)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear":
            zp = inits[n.input[2]]
            assert zp.dtype == np.int8 and zp == 0  # symmetric int8 activations
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None and inits[n.input[0]].dtype == np.int8 \
                and inits[n.input[0]].ndim >= 2:
            assert np.abs(inits[n.input[0]]).max() <= 63  # 7-bit weights
            assert inits[n.input[1]].ndim == 0
    samples = _heldout("digits_cnn")
    ref, q = _logits(model, samples), _logits(out, samples)
    assert np.mean(ref.argmax(1) == q.argmax(1)) >= 0.97


def test_include_exclude(frugal_bin, tmp_path):
    model = tl.MODELS_DIR / "digits_cnn.onnx"
    out = tmp_path / "q.onnx"
    rep = tmp_path / "r.json"
    _quantize(frugal_bin, model, out, "--data", tl.MODELS_DATA / "digits_cnn_calib.npz", "--exclude", "Gemm",
              "--exclude", "conv[13]", report=rep)
    r = json.loads(rep.read_text())
    by = {l["name"]: l for l in r["layers"]}
    assert not by["fc"]["quantized"] and "exclude" in by["fc"]["reason"]
    assert not by["conv1"]["quantized"] and not by["conv3"]["quantized"] and by["conv2"]["quantized"]
    m = onnx.load(str(out))
    fc = [n for n in m.graph.node if n.op_type == "Gemm"][0]
    assert fc.input[1] in {t.name for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    samples = _heldout("digits_cnn")
    assert np.mean(_logits(model, samples).argmax(1) == _logits(out, samples).argmax(1)) >= 0.99


def test_dynamic_weight_only(frugal_bin, tmp_path):
    model = tl.MODELS_DIR / "digits_mlp.onnx"
    out = tmp_path / "q.onnx"
    _quantize(frugal_bin, model, out, "--dynamic", "--holdout", tl.MODELS_DATA / "digits_mlp_heldout.npz")
    m = _check_qdq_model(out)
    assert "QuantizeLinear" not in [n.op_type for n in m.graph.node]
    samples = _heldout("digits_mlp")
    ref, q = _logits(model, samples), _logits(out, samples)
    assert np.mean(ref.argmax(1) == q.argmax(1)) >= 0.99
    assert out.stat().st_size < model.stat().st_size / 2


def test_max_drop(frugal_bin, tmp_path):
    model = tl.MODELS_DIR / "digits_cnn.onnx"
    data = tl.MODELS_DATA / "digits_cnn_calib.npz"
    hold = tl.MODELS_DATA / "digits_cnn_heldout.npz"
    # Impossible bound: exit 3, no model written.
    p = _quantize(frugal_bin, model, tmp_path / "no.onnx", "--data", data, "--holdout", hold, "--max-drop",
                  "cosine=1.5", rc=3)
    assert "max-drop" in p.stderr
    assert not (tmp_path / "no.onnx").exists()
    # A bound the full quantization may miss: layers are kept float until it holds.
    rep = tmp_path / "r.json"
    out = tmp_path / "q.onnx"
    _quantize(frugal_bin, model, out, "--data", data, "--holdout", hold, "--max-drop", "cosine=0.99999", report=rep)
    r = json.loads(rep.read_text())
    assert r["max_drop"]["met"]
    samples = _heldout("digits_cnn")
    ref, q = _logits(model, samples), _logits(out, samples)
    cos = [float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in zip(ref, q)]
    assert np.mean(cos) >= 0.99999 - 1e-6
    # Usage error for a malformed bound.
    _quantize(frugal_bin, model, tmp_path / "x.onnx", "--data", data, "--max-drop", "top5=1", rc=1)


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
    _quantize(frugal_bin, model, out, "--data", tmp_path / "calib.npz", "--method", "percentile",
              "--holdout", tmp_path / "hold.npz", report=rep)
    _check_qdq_model(out)  # opset 8 raised to 13 for per-channel
    hold = [{"Input3": s} for s in x[100:]]
    ref, q = _logits(model, hold), _logits(out, hold)
    assert np.mean(ref.argmax(1) == q.argmax(1)) >= 0.99
    # The three real mnist test images keep their predicted class.
    for i in range(3):
        name, inp = tl.read_tensor_pb(model.parent / f"test_data_set_{i}" / "input_0.pb")
        a = list(tl.ort_run(model, {"Input3": inp}).values())[0]
        b = list(tl.ort_run(out, {"Input3": inp}).values())[0]
        assert a.argmax() == b.argmax()
