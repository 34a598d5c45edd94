"""`frugal prune` against independent oracles: sparsity counted with onnx.numpy_helper, N:M checked group
by group, channel-pruned models compared with the original in onnxruntime, accuracy on held-out labels.
Every written model passes onnx.checker (full_check) and runs in onnxruntime beside the original."""
import hashlib
import json
import time

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper, TensorProto

import frugal_testlib as tl

MODELS = tl.MODELS_DIR
DATA = tl.MODELS_DATA


def weights(path):
    m = onnx.load(str(path))
    return tl.initializer_arrays(m), m


def check_and_compare(orig, pruned, samples, max_cos_loss=None):
    """checker + onnxruntime on both models; returns (orig outputs, pruned outputs) stacked."""
    onnx.checker.check_model(onnx.load(str(pruned)), full_check=True)
    ya = tl.ort_run_concat(orig, samples)
    yb = tl.ort_run_concat(pruned, samples)
    assert ya.shape == yb.shape and np.all(np.isfinite(yb))
    return ya, yb


def heldout(kind):
    return tl.heldout_samples(f"digits_{kind}")


def accuracy(model, kind):
    """Held-out accuracy of a digits model (one image per sample, so one logits row each)."""
    return tl.label_accuracy(tl.ort_run_concat(model, heldout(kind), "logits"), tl.digits_labels())


def prunable(m):
    """name of the weight initializer of each Conv/Gemm/MatMul, in graph order."""
    inits = {t.name for t in m.graph.initializer}
    return [(n.name, n.op_type, n.input[1]) for n in m.graph.node
            if n.op_type in ("Conv", "Gemm", "MatMul") and n.input[1] in inits]


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_unstructured_exact_per_layer(frugal_bin, tmp_path, kind):
    src = MODELS / f"digits_{kind}.onnx"
    out, rep = tmp_path / "p.onnx", tmp_path / "r.json"
    tl.run_frugal(["--report", rep, "prune", src, "-o", out, "--sparsity", "0.5",
                   "--holdout", DATA / f"digits_{kind}_heldout.npz"], expect_rc=0)
    w0, m0 = weights(src)
    w1, _ = weights(out)
    layers = prunable(m0)
    report = json.loads(rep.read_text())
    assert report["model"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    by_name = {l["name"]: l for l in report["layers"]}
    first_conv = next((l for l in layers if l[1] == "Conv"), None)
    classifier = [l for l in layers if l[1] in ("Gemm", "MatMul")][-1]
    for name, op, wn in layers:
        a, b = w0[wn], w1[wn]
        assert a.shape == b.shape
        assert np.count_nonzero(a == 0) == 0  # precondition: dense original
        if (name, op, wn) in (first_conv, classifier):
            # skipped by default, and the report says so
            assert np.array_equal(a, b), name
            assert not by_name[name]["pruned"] and "default" in by_name[name]["note"]
            continue
        zeros = b == 0
        assert zeros.sum() == round(a.size * 0.5), name
        # kept weights unchanged; every pruned |w| <= every kept |w|
        assert np.array_equal(b[~zeros], a[~zeros])
        assert np.abs(a[zeros]).max() <= np.abs(a[~zeros]).min()
        assert by_name[name]["sparsity"] == pytest.approx(zeros.mean())
    ya, yb = check_and_compare(src, out, heldout(kind))
    assert report["fidelity"]["samples"] == 500 and report["fidelity"]["outputs"][0]["top1_agreement"] > 0.9
    assert report["file_size"]["before_bytes"] == src.stat().st_size
    assert "energy" in report


def test_global_scope_one_threshold(frugal_bin, tmp_path):
    src = MODELS / "digits_mlp.onnx"
    w0, m0 = weights(src)
    names = [wn for _, _, wn in prunable(m0)]
    for extra, normalise in (([], False), (["--normalize-scores"], True)):
        out = tmp_path / f"g{normalise}.onnx"
        tl.run_frugal(["prune", src, "-o", out, "--sparsity", "0.6", "--scope", "global", "--prune-classifier"] + extra,
                      expect_rc=0)
        w1, _ = weights(out)
        total = sum(w0[n].size for n in names)
        zeros = sum(int((w1[n] == 0).sum()) for n in names)
        assert zeros == round(total * 0.6)
        scale = {n: (np.abs(w0[n]).mean() if normalise else 1.0) for n in names}
        pruned = np.concatenate([np.abs(w0[n][w1[n] == 0]) / scale[n] for n in names])
        kept = np.concatenate([np.abs(w0[n][w1[n] != 0]) / scale[n] for n in names])
        assert pruned.max() <= kept.min() * (1 + 1e-6)
        per_layer = [float((w1[n] == 0).mean()) for n in names]
        assert max(per_layer) - min(per_layer) > 0.01  # a global threshold gives uneven layers
        check_and_compare(src, out, heldout("mlp")[:50])


def test_layer_overrides_and_filters(frugal_bin, tmp_path):
    src = MODELS / "digits_mlp.onnx"
    out = tmp_path / "o.onnx"
    tl.run_frugal(["prune", src, "-o", out, "--sparsity", "0.5", "--layer-sparsity", "fc2=0.8", "--exclude", "fc1"],
                  expect_rc=0)
    w0, m0 = weights(src)
    w1, _ = weights(out)
    wn = {n: w for n, _, w in prunable(m0)}
    assert np.array_equal(w0[wn["fc1"]], w1[wn["fc1"]])
    assert (w1[wn["fc2"]] == 0).sum() == round(w0[wn["fc2"]].size * 0.8)
    check_and_compare(src, out, heldout("mlp")[:50])


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_2_4_group_by_group(frugal_bin, tmp_path, kind):
    src = MODELS / f"digits_{kind}.onnx"
    out = tmp_path / "nm.onnx"
    r = tl.run_frugal(["prune", src, "-o", out, "--pattern", "2:4", "--prune-first-conv", "--prune-classifier"],
                      expect_rc=0)
    assert "under 256 channels" in r.stdout  # these layers are too small to gain from sparse kernels
    w0, m0 = weights(src)
    w1, m1 = weights(out)
    nodes1 = {n.name: n for n in m1.graph.node}
    for name, op, wn in prunable(m0):
        a, b = w0[wn], w1[wn]
        if op == "Conv":
            # reduction axis ordered (kernel position, input channel), input channel fastest: groups of 4
            # consecutive input channels at one kernel position (when I is a multiple of 4)
            O, I = a.shape[:2]
            A = a.reshape(O, I, -1).transpose(0, 2, 1).reshape(O, -1)  # [O, K*I]
            B = b.reshape(O, I, -1).transpose(0, 2, 1).reshape(O, -1)
        else:
            n1 = nodes1[name]
            assert n1.op_type == "Gemm"
            tb = {x.name: x.i for x in n1.attribute}.get("transB", 0)
            assert tb == 1  # the layout TensorRT's sparse kernels take
            tb0 = {x.name: x.i for x in next(n for n in m0.graph.node if n.name == name).attribute}.get("transB", 0)
            A = a if tb0 else a.T  # [N, K]
            B = b
        for idx in np.ndindex(*A.shape[:-1]):
            row_a, row_b = A[idx], B[idx]
            for g0 in range(0, row_a.shape[0], 4):
                ga, gb = row_a[g0:g0 + 4], row_b[g0:g0 + 4]
                assert np.count_nonzero(gb) == min(2, len(ga)), (name, idx, g0)
                kept = gb != 0
                assert np.array_equal(gb[kept], ga[kept])
                if len(ga) > 2:
                    assert np.abs(ga[~kept]).max() <= np.abs(ga[kept]).min()
    ya, yb = check_and_compare(src, out, heldout(kind)[:100])


def _resnet_like(path, zero_channels):
    """Conv-BN-Relu stem, then conv2/BN/Relu -> conv3 -> Add(residual) -> Relu -> GAP -> Flatten -> Gemm.
    conv2 and conv3 outputs are tied by the Add; channels in `zero_channels` are made exactly zero in
    both (filters, bias, BN shift), so removing them cannot change the output."""
    rng = np.random.default_rng(0)
    C = 16
    def bn(prefix, c, zero=()):
        s = rng.uniform(0.5, 1.5, c).astype(np.float32)
        b = rng.normal(0, 0.1, c).astype(np.float32)
        mu = rng.normal(0, 0.1, c).astype(np.float32)
        var = rng.uniform(0.5, 1.5, c).astype(np.float32)
        for z in zero:
            b[z] = 0; mu[z] = 0
        return [numpy_helper.from_array(v, f"{prefix}_{k}") for k, v in zip(("s", "b", "m", "v"), (s, b, mu, var))]
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (C, 8, 3, 3)).astype(np.float32)
    b2 = rng.normal(0, 0.1, C).astype(np.float32)
    w3 = rng.normal(0, 0.3, (C, C, 3, 3)).astype(np.float32)
    b3 = rng.normal(0, 0.1, C).astype(np.float32)
    wf = rng.normal(0, 0.3, (10, C)).astype(np.float32)
    for z in zero_channels:
        w2[z] = 0; b2[z] = 0; w3[z] = 0; b3[z] = 0
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2"),
             numpy_helper.from_array(w3, "w3"), numpy_helper.from_array(b3, "b3"), numpy_helper.from_array(wf, "wf"),
             numpy_helper.from_array(np.zeros(10, np.float32), "bf")]
    inits += bn("bn1", 8) + bn("bn2", C, zero_channels) + bn("bn3", C, zero_channels)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn1_s", "bn1_b", "bn1_m", "bn1_v"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c2", "bn2_s", "bn2_b", "bn2_m", "bn2_v"], ["n2"], name="bn2"),
        helper.make_node("Relu", ["n2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c3", "bn3_s", "bn3_b", "bn3_m", "bn3_v"], ["n3"], name="bn3"),
        helper.make_node("Add", ["r2", "n3"], ["s"], name="residual"),
        helper.make_node("Relu", ["s"], ["r3"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r3"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(nodes, "resnetlike", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))


def test_channels_zero_channels_match_original(frugal_bin, tmp_path):
    src, out, rep = tmp_path / "res.onnx", tmp_path / "res_ch.onnx", tmp_path / "r.json"
    zero = [1, 4, 9, 14]
    _resnet_like(src, zero)
    tl.run_frugal(["--report", rep, "prune", src, "-o", out, "--pattern", "channels", "--sparsity", "0.25"], expect_rc=0)
    w1, _ = weights(out)
    assert w1["w2"].shape == (12, 8, 3, 3)
    assert w1["w3"].shape == (12, 12, 3, 3)
    assert w1["wf"].shape == (10, 12)
    assert w1["bn2_s"].shape == (12,) and w1["bn3_v"].shape == (12,)
    assert w1["w1"].shape == (8, 3, 3, 3)  # first conv skipped by default
    rng = np.random.default_rng(1)
    samples = [{"x": rng.normal(0, 1, (2, 3, 16, 16)).astype(np.float32)} for _ in range(4)]
    ya, yb = check_and_compare(src, out, samples)
    np.testing.assert_allclose(yb, ya, rtol=1e-4, atol=1e-5)
    report = json.loads(rep.read_text())
    groups = report["channel_groups"]
    tied = [g for g in groups if g["pruned"]]
    assert len(tied) == 1 and sorted(tied[0]["sources"]) == ["conv2", "conv3"]
    assert tied[0]["channels_before"] == 16 and tied[0]["channels_after"] == 12
    assert any("first conv" in g.get("reason", "") for g in groups)


def _ort_latency(path, x, reps=200):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    for _ in range(10):
        s.run(None, {name: x})
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        s.run(None, {name: x})
        t.append(time.perf_counter() - t0)
    return float(np.median(t))


def test_channels_digits_cnn_latency(frugal_bin, tmp_path):
    src, out, rep = MODELS / "digits_cnn.onnx", tmp_path / "cnn_ch.onnx", tmp_path / "r.json"
    tl.run_frugal(["--report", rep, "prune", src, "-o", out, "--pattern", "channels", "--sparsity", "0.5",
                   "--holdout", DATA / "digits_cnn_heldout.npz"], expect_rc=0)
    report = json.loads(rep.read_text())
    t = report["totals"]
    assert t["params_after"] < t["params_before"]
    assert t["macs_after"] < 0.6 * t["macs_before"]
    check_and_compare(src, out, heldout("cnn")[:50])
    x = np.concatenate([s["input"] for s in heldout("cnn")[:64]])
    before, after = _ort_latency(src, x), _ort_latency(out, x)
    acc0, acc1 = accuracy(src, "cnn"), accuracy(out, "cnn")
    print(f"\ndigits_cnn channels 50%: MACs {t['macs_before']:.0f} -> {t['macs_after']:.0f}; onnxruntime batch-64 "
          f"median latency {before * 1e6:.0f} us -> {after * 1e6:.0f} us; held-out accuracy {acc0:.3f} -> {acc1:.3f}")
    assert after < before * 1.2  # fewer FLOPs must not make it slower (margin for timer noise)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_accuracy_drop_and_reconstruction(frugal_bin, tmp_path, kind):
    src = MODELS / f"digits_{kind}.onnx"
    common = ["--sparsity", "0.5", "--prune-first-conv", "--prune-classifier"]
    calib = DATA / f"digits_{kind}_calib.npz"
    mag, rec, rep = tmp_path / "mag.onnx", tmp_path / "rec.onnx", tmp_path / "rec.json"
    tl.run_frugal(["prune", src, "-o", mag] + common, expect_rc=0)
    tl.run_frugal(["--report", rep, "prune", src, "-o", rec, "--data", calib, "--reconstruct",
                   "--holdout", DATA / f"digits_{kind}_heldout.npz"] + common, expect_rc=0)
    for p in (mag, rec):
        check_and_compare(src, p, heldout(kind)[:50])
    a0, a_mag, a_rec = accuracy(src, kind), accuracy(mag, kind), accuracy(rec, kind)
    print(f"\ndigits_{kind} 50% unstructured (all layers): held-out accuracy {a0:.3f}; L1 magnitude {a_mag:.3f} "
          f"(drop {a0 - a_mag:.3f}); SparseGPT reconstruction {a_rec:.3f} (drop {a0 - a_rec:.3f})")
    assert a_rec >= a_mag
    assert a0 - a_rec <= 0.01
    report = json.loads(rep.read_text())
    for l in report["layers"]:
        assert l["output_error_reconstructed"] is not None and l["output_error"] is not None
        assert l["output_error_reconstructed"] < l["output_error"], l["name"]
    # reconstruction keeps the exact per-layer count too
    w0, m0 = weights(src)
    w1, _ = weights(rec)
    for _, _, wn in prunable(m0):
        assert (w1[wn] == 0).sum() == round(w0[wn].size * 0.5)


def test_sparse_storage_roundtrip(frugal_bin, tmp_path):
    src = MODELS / "digits_mlp.onnx"
    dense, sparse = tmp_path / "d.onnx", tmp_path / "s.onnx"
    args = ["--sparsity", "0.9", "--prune-classifier"]
    tl.run_frugal(["prune", src, "-o", dense] + args, expect_rc=0)
    tl.run_frugal(["prune", src, "-o", sparse, "--sparse-storage"] + args, expect_rc=0)
    md, ms = onnx.load(str(dense)), onnx.load(str(sparse))
    # full_check runs shape inference, which types sparse initializers as sparse_tensor and rejects them
    # as Gemm/MatMul inputs (an onnx limitation; onnxruntime densifies them at load).
    onnx.checker.check_model(ms)
    assert len(ms.graph.sparse_initializer) == 3
    assert sparse.stat().st_size < dense.stat().st_size
    dw = tl.initializer_arrays(md)
    for sp in ms.graph.sparse_initializer:
        vals = numpy_helper.to_array(sp.values)
        idx = numpy_helper.to_array(sp.indices)
        full = np.zeros(int(np.prod(sp.dims)), np.float32)
        full[idx] = vals
        ref = dw[sp.values.name]
        assert np.array_equal(full.reshape(tuple(sp.dims)).view(np.uint32), ref.view(np.uint32))  # bit-exact
        assert np.count_nonzero(vals == 0) == 0 or np.all(np.signbit(vals[vals == 0]))  # only -0.0 may be stored
    a = tl.ort_run_many(dense, heldout("mlp")[:20])
    tl.assert_outputs_equal(a, tl.ort_run_many(sparse, heldout("mlp")[:20]))
    # frugal runs the sparse form too, with the same outputs as onnxruntime on the dense model
    tl.write_npz_samples(tmp_path / "in.npz", heldout("mlp")[:20])
    for x, got in zip(a, tl.frugal_run_outputs(sparse, tmp_path / "in.npz", tmp_path / "out")):
        assert np.abs(got[0] - x["logits"]).max() <= tl.oracle_tolerance(x["logits"])


def test_sparse_storage_keeps_negative_zero(frugal_bin, tmp_path):
    rng = np.random.default_rng(0)
    w = np.zeros((32, 16), np.float32)
    w[rng.random(w.shape) < 0.1] = 1.0
    w[0, 0] = -0.0
    w[5, 3] = -2.5
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
                          [numpy_helper.from_array(w, "w")])
    src, out = tmp_path / "mm.onnx", tmp_path / "mm_s.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=7), str(src))
    tl.run_frugal(["prune", src, "-o", out, "--sparsity", "0", "--prune-classifier", "--sparse-storage"], expect_rc=0)
    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    sp = m.graph.sparse_initializer[0]
    full = np.zeros(w.size, np.float32)
    full[numpy_helper.to_array(sp.indices)] = numpy_helper.to_array(sp.values)
    assert np.array_equal(full.view(np.uint32), w.reshape(-1).view(np.uint32))
    x = {"x": rng.normal(size=(1, 32)).astype(np.float32)}
    np.testing.assert_array_equal(tl.ort_run(src, x)["y"], tl.ort_run(out, x)["y"])


def test_bad_flags_are_usage_errors(frugal_bin, tmp_path):
    src = MODELS / "digits_mlp.onnx"
    out = tmp_path / "x.onnx"
    tl.run_frugal(["prune", src, "-o", out, "--pattern", "4:2"], expect_rc=1)
    tl.run_frugal(["prune", src, "-o", out, "--sparsity", "1.5"], expect_rc=1)
    tl.run_frugal(["prune", src, "-o", out, "--reconstruct"], expect_rc=1)
    tl.run_frugal(["prune", src, "-o", out, "--layer-sparsity", "fc1"], expect_rc=1)
    assert not out.exists()


def test_channels_multiple_keeps_counts_rounded(frugal_bin, tmp_path):
    """--channel-multiple 8: every pruned group keeps a multiple of 8 channels (rounded up from the
    30% target: 16 -> 16, 32 -> 24), counted from the written weights."""
    src, out = MODELS / "digits_cnn.onnx", tmp_path / "m8.onnx"
    tl.run_frugal(["prune", src, "-o", out, "--pattern", "channels", "--sparsity", "0.3", "--channel-multiple", "8"],
                  expect_rc=0)
    before = {k: v.shape for k, v in tl.initializer_arrays(src).items()}
    after = {k: v.shape for k, v in tl.initializer_arrays(out).items()}
    conv_w = [n.input[1] for n in onnx.load(str(out)).graph.node if n.op_type == "Conv"]
    shrunk = [w for w in conv_w if after[w][0] < before[w][0]]
    assert shrunk, "nothing was pruned"
    for w in conv_w:
        assert after[w][0] % 8 == 0, (w, after[w])
        assert after[w][0] >= before[w][0] * 0.7 - 1e-9  # never more removed than asked
    check_and_compare(src, out, heldout("cnn")[:20])


def test_quiet_prints_no_table_and_the_table_shows_the_reports_energy(frugal_bin, tmp_path):
    # Without -q the table ends with the report's energy estimate; -q prints nothing (as every
    # command's table), the report is still written in full, and the model is the same either way.
    src = MODELS / "digits_cnn.onnx"
    loud, quiet, bare = tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "c.onnx"
    r1, r2 = tmp_path / "a.json", tmp_path / "b.json"
    p = tl.run_frugal(["--report", r1, "prune", src, "-o", loud, "--pattern", "2:4"], expect_rc=0)
    e = json.loads(r1.read_text())["energy"]
    line = next(l for l in p.stdout.splitlines() if l.startswith("energy per inference"))
    assert f"(x{e['comparison']['energy_per_op']:.3f})" in line, line
    assert any(l.startswith("carbon per 1M inferences") for l in p.stdout.splitlines())
    q = tl.run_frugal(["-q", "--report", r2, "prune", src, "-o", quiet, "--pattern", "2:4"], expect_rc=0)
    assert q.stdout == ""
    rq = json.loads(r2.read_text())
    assert rq["energy"]["models"][1]["totals"] == e["models"][1]["totals"]
    b = tl.run_frugal(["-q", "prune", src, "-o", bare, "--pattern", "2:4"], expect_rc=0)
    assert b.stdout == ""
    assert loud.read_bytes() == quiet.read_bytes() == bare.read_bytes()
    check_and_compare(src, loud, heldout("cnn")[:20])  # (the three files are the same bytes)
