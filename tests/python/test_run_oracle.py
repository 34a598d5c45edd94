"""`frugal run` against onnxruntime on the same inputs.

Every case writes inputs in one of the formats `frugal run --data` accepts, runs
`frugal run MODEL --data PATH -o OUT`, reads OUT/test_data_set_<i>/output_<k>.{pb,npy} and compares
each output with onnxruntime's on the same inputs. The bound is tl.oracle_tolerance(ref) =
1e-4 * max(1, max|ref|): both sides compute in float32, and legitimately different summation orders
(blocked GEMM, im2col vs direct conv, fused vs unfused softmax) give relative errors of order
sqrt(K) * 1.2e-7 per reduction of length K; for the largest reductions here (VGG's 25088-wide FC,
~50-layer nets) that stays below 1e-5 relative to the output scale, while real bugs (a wrong pad,
axis or broadcast) give errors of the order of the outputs themselves. The floor of 1 keeps
probabilities from softmax outputs from demanding sub-ulp agreement.
"""
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

import frugal_testlib as tl
import make_encoder
import randomize_light

LIGHT_DIR = tl.TESTDATA / "onnx-onnx" / "onnx" / "backend" / "test" / "data" / "light"
LIGHT_MODELS = sorted(p.stem[len("light_"):] for p in LIGHT_DIR.glob("light_*.onnx"))
MNIST = tl.TESTDATA / "alrevuelta-cONNXr" / "test" / "mnist"
DIGITS_SAMPLES = 64  # of the 500 held-out ones: enough to cover all classes, quick to run


def _check_against_ort(model_path, samples, out_dir, fmt="pb"):
    """Compares frugal's written outputs (one set per sample) with onnxruntime on `samples`."""
    model = onnx.load(str(model_path), load_external_data=False)
    out_names = [o.name for o in model.graph.output]
    got = tl.read_frugal_outputs(out_dir, fmt)
    assert len(got) == len(samples), f"frugal wrote {len(got)} output sets for {len(samples)} samples"
    refs = tl.ort_run_many(model_path, samples)
    worst = 0.0
    for i, (g, ref) in enumerate(zip(got, refs)):
        assert len(g) == len(out_names), f"sample {i}: {len(g)} outputs written, model has {len(out_names)}"
        for k, name in enumerate(out_names):
            r = ref[name]
            a = g[k]
            assert a.dtype == r.dtype, f"sample {i} output {name}: dtype {a.dtype}, onnxruntime {r.dtype}"
            assert a.shape == r.shape, f"sample {i} output {name}: shape {a.shape}, onnxruntime {r.shape}"
            max_abs, cos, top1 = tl.compare(a, r)
            tol = tl.oracle_tolerance(r)
            worst = max(worst, max_abs / tol if tol else 0.0)
            assert max_abs <= tol, (f"{Path(model_path).name} sample {i} output {name}: max abs error {max_abs:.3e} > "
                                    f"{tol:.3e} (cosine {cos:.6f}, top-1 agreement {top1:.3f})")
    print(f"{Path(model_path).name}: {len(samples)} samples, worst max-abs-error / tolerance = {worst:.4f}")
    if fmt == "pb":
        # Output TensorProtos carry the graph output names.
        first = Path(out_dir) / "test_data_set_0"
        for k, name in enumerate(out_names):
            assert tl.read_tensor_pb(first / f"output_{k}.pb")[0] == name
    return worst


def _run_and_check(tmp_path, model_path, data, samples, fmt="pb"):
    """`frugal run MODEL --data DATA -o TMP_PATH/out [--format FMT]`, then _check_against_ort on
    `samples` (the same inputs as feed dicts)."""
    out = tmp_path / "out"
    tl.run_frugal(["run", model_path, "--data", data, "-o", out] + (["--format", fmt] if fmt != "pb" else []),
                  expect_rc=0)
    return _check_against_ort(model_path, samples, out, fmt)


# ----------------------------------------------------------------------------- light model zoo

@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_randomized(name, frugal_bin, tmp_path):
    model, _ = randomize_light.randomize(onnx.load(str(LIGHT_DIR / f"light_{name}.onnx")), seed=0)
    path = tmp_path / f"light_{name}.onnx"
    onnx.save(model, str(path))
    feed = randomize_light.make_feed(model, seed=7)
    tl.write_test_data_set(tmp_path / "data" / "test_data_set_0", list(feed.items()))
    _run_and_check(tmp_path, path, tmp_path / "data", [feed])


# ----------------------------------------------------------------------------- digits (trained)

def _digits_subset(tmp_path, which, n=DIGITS_SAMPLES):
    samples = tl.heldout_samples(f"digits_{which}")[:n]
    path = tmp_path / f"digits_{which}_{n}.npz"
    tl.write_npz_samples(path, samples)
    return path, samples


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_digits_npz(which, frugal_bin, tmp_path):
    data, samples = _digits_subset(tmp_path, which)
    model = tl.MODELS_DIR / f"digits_{which}.onnx"
    _run_and_check(tmp_path, model, data, samples)
    # The trained model keeps its accuracy through frugal (on these samples, as onnxruntime).
    labels = tl.digits_labels()[:len(samples)]
    pred = np.array([o[0].reshape(-1).argmax() for o in tl.read_frugal_outputs(tmp_path / "out")])
    assert np.mean(pred == labels) >= 0.95


def test_digits_npy_format(frugal_bin, tmp_path):
    data, samples = _digits_subset(tmp_path, "cnn", 8)
    model = tl.MODELS_DIR / "digits_cnn.onnx"
    _run_and_check(tmp_path, model, data, samples, fmt="npy")


def test_digits_dir_of_npz_one_sample_each(frugal_bin, tmp_path):
    """--data DIR of .npz files, one sample per file (arrays of the model input's own rank), name order."""
    samples = tl.heldout_samples("digits_mlp")[:4]
    d = tmp_path / "npz_dir"
    d.mkdir()
    for f, smp in enumerate(samples):
        np.savez(d / f"sample_{f:03d}.npz", **smp)
    model = tl.MODELS_DIR / "digits_mlp.onnx"
    _run_and_check(tmp_path, model, d, samples)


def test_digits_dir_of_stacked_npz(frugal_bin, tmp_path):
    """--data DIR of .npz files that are stacks (rank = model rank + 1, the stacking rule applies to
    every .npz): samples are taken file by file in name order, then along axis 0."""
    samples = tl.heldout_samples("digits_mlp")[:6]
    d = tmp_path / "npz_dir"
    for f in range(3):
        tl.write_npz_samples(d / f"part_{f:03d}.npz", samples[2 * f:2 * f + 2])
    model = tl.MODELS_DIR / "digits_mlp.onnx"
    _run_and_check(tmp_path, model, d, samples)


def test_digits_batched_dims(frugal_bin, tmp_path):
    """A sample holding a batch of 5 images for the symbolic N."""
    samples = tl.heldout_samples("digits_cnn")[:10]
    batched = [{"input": np.concatenate([s["input"] for s in samples[j:j + 5]], axis=0)} for j in (0, 5)]
    data = tmp_path / "batched.npz"
    tl.write_npz_samples(data, batched)
    model = tl.MODELS_DIR / "digits_cnn.onnx"
    _run_and_check(tmp_path, model, data, batched)


def test_synthetic_shapes(frugal_bin, tmp_path):
    out = tmp_path / "out"
    tl.run_frugal(["run", tl.MODELS_DIR / "digits_cnn.onnx", "--synthetic", 3, "--dims", "N=2", "-o", out],
                  expect_rc=0)
    got = tl.read_frugal_outputs(out)
    assert len(got) == 3
    for g in got:
        assert len(g) == 1 and g[0].shape == (2, 10) and g[0].dtype == np.float32
        assert np.all(np.isfinite(g[0]))


# ----------------------------------------------------------------------------- encoder

@pytest.mark.parametrize("dynamic", [False, True], ids=["fixed", "dynamic"])
def test_small_encoder(dynamic, frugal_bin, tmp_path):
    batch = 2 if dynamic else 1
    model = make_encoder.build(layers=2, hidden=128, heads=4, ffn=256, batch=batch, seq=32, vocab=1000,
                               max_pos=64, seed=0, dynamic=dynamic)
    path = tmp_path / "encoder.onnx"
    make_encoder.save(model, path)
    samples = make_encoder.make_samples(3, batch, 32, 1000, seed=1)
    data = tmp_path / "encoder_inputs.npz"
    tl.write_npz_samples(data, samples)
    _run_and_check(tmp_path, path, data, samples)


def test_small_encoder_external_data(frugal_bin, tmp_path):
    model = make_encoder.build(layers=1, hidden=64, heads=4, ffn=128, batch=1, seq=16, vocab=500,
                               max_pos=32, seed=3, dynamic=False)
    path = tmp_path / "enc_ext.onnx"
    make_encoder.save(model, path, external=True)
    assert (tmp_path / "enc_ext.onnx.data").exists()
    samples = make_encoder.make_samples(2, 1, 16, 500, seed=4)
    data = tmp_path / "enc.npz"
    tl.write_npz_samples(data, samples)
    _run_and_check(tmp_path, path, data, samples)


# ----------------------------------------------------------------------------- mnist (stored data)

def _mnist_samples():
    model = onnx.load(str(MNIST / "model.onnx"))
    names = tl.graph_input_names(model)
    samples = []
    for i in range(3):
        ins = tl.read_test_data_set(MNIST / f"test_data_set_{i}", "input")
        samples.append({n: a for n, (_, a) in zip(names, ins)})  # stored names are empty: bind by position
    return samples


def test_mnist_vs_ort(frugal_bin, tmp_path):
    _run_and_check(tmp_path, MNIST / "model.onnx", MNIST, _mnist_samples())


def test_mnist_single_set_dir(frugal_bin, tmp_path):
    _run_and_check(tmp_path, MNIST / "model.onnx", MNIST / "test_data_set_1", _mnist_samples()[1:2])


# The stored mnist outputs come from another runtime; they agree with onnxruntime to 7e-4 absolute on
# logits of up to 6.6e3 (1.1e-7 relative), so rtol 1e-4 / atol 1e-3 is generous yet far below the
# +100 corruption used below.
EXPECT_TOL = ["--rtol", "1e-4", "--atol", "1e-3"]


def test_mnist_expect_pass(frugal_bin):
    tl.run_frugal(["run", MNIST / "model.onnx", "--data", MNIST, "--expect", MNIST] + EXPECT_TOL, expect_rc=0)


def test_mnist_expect_wrong_gives_exit_3(frugal_bin, tmp_path):
    bad = tmp_path / "mnist_bad"
    shutil.copytree(MNIST, bad, ignore=shutil.ignore_patterns("model.onnx"))
    name, arr = tl.read_tensor_pb(bad / "test_data_set_1" / "output_0.pb")
    arr = arr.copy()
    arr.flat[3] += 100.0
    tl.write_tensor_pb(bad / "test_data_set_1" / "output_0.pb", arr, name)
    proc = tl.run_frugal(["run", MNIST / "model.onnx", "--data", MNIST, "--expect", bad] + EXPECT_TOL, expect_rc=3)
    assert proc.stderr.strip(), "a failed --expect must say what differed"


# ----------------------------------------------------------------------------- op profile

def test_profile_ops_by_shape(frugal_bin, tmp_path):
    """FRUGAL_PROFILE_OPS=shapes splits the per-op kernel times by input shapes (two convolutions of
    different shapes in one model give two rows, each called once per sample), =1 keeps one row per
    op; neither changes the outputs, checked against onnxruntime."""
    from onnx import TensorProto, helper
    rng = np.random.default_rng(7)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((6, 4, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1]),
         helper.make_node("Conv", ["h", "w2"], ["y"])],
        "two_convs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 8, 8])],
        [onnx.numpy_helper.from_array(w1, "w1"), onnx.numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "two_convs.onnx"
    onnx.save(model, str(path))
    samples = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(3)]
    data = tmp_path / "data.npz"
    tl.write_npz_samples(data, samples)
    rows = {}
    for mode in ("shapes", "1"):
        out = tmp_path / f"out_{mode}"
        proc = tl.run_frugal(["run", path, "--data", data, "-o", out], expect_rc=0,
                             env={"FRUGAL_PROFILE_OPS": mode})
        _check_against_ort(path, samples, out)
        table = proc.stderr.split("op profile", 1)[1].splitlines()[2:]
        # "  LABEL   total ms   share%   calls": the label is everything before the last three fields.
        rows[mode] = {" ".join(r.split()[:-3]): int(r.split()[-1]) for r in table if r.strip()}
    assert rows["shapes"] == {"Conv 1x3x8x8 4x3x3x3": 3, "Conv 1x4x8x8 6x4x1x1": 3}, rows["shapes"]
    assert rows["1"] == {"Conv": 6}, rows["1"]


def test_repeated_inference_does_not_fault_activations_back_in(frugal_bin, tmp_path):
    """Freed activations under 1 MiB stay in the process between inferences: 200 more inferences of a
    residual Add + Relu on 1x512x14x14 (392 KiB per tensor) add far fewer minor page faults than the
    98 pages per inference its output would cost if each free gave the pages back to the system.
    Outputs checked against onnxruntime."""
    import resource
    from onnx import TensorProto, helper
    shape = [1, 512, 14, 14]
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])],
        "add_relu",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, shape),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "add_relu.onnx"
    onnx.save(model, str(path))
    rng = np.random.default_rng(3)
    samples = [{"a": rng.standard_normal(shape).astype(np.float32),
                "b": rng.standard_normal(shape).astype(np.float32)} for _ in range(2)]
    data = tmp_path / "data.npz"
    tl.write_npz_samples(data, samples)
    out = tmp_path / "out"
    tl.run_frugal(["run", path, "--data", data, "-o", out], expect_rc=0)
    _check_against_ort(path, samples, out)

    def faults(iterations):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
        tl.run_frugal(["--threads", "1", "bench", path, "--iterations", iterations, "--warmup", 1,
                       "--min-seconds", 0], expect_rc=0)
        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before

    few, many = faults(20), faults(220)
    pages_per_output = 512 * 14 * 14 * 4 // 4096
    assert many - few < 200 * pages_per_output // 4, (few, many)


def test_relu_keeps_nan_fused_or_not_as_onnxruntime(frugal_bin, tmp_path):
    """A Relu that runs alone, one fused into a residual Add and one fused into a Conv's epilogue all
    give onnxruntime's values on inputs holding NaN and infinities (NaN stays NaN), NaN positions
    compared exactly."""
    from onnx import TensorProto, helper
    rng = np.random.default_rng(11)
    w = rng.standard_normal((2, 2, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["alone"]),
         helper.make_node("Add", ["x", "y"], ["s"]), helper.make_node("Relu", ["s"], ["after_add"]),
         helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["after_conv"])],
        "relus",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 3]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 2, 3]) for n in ("alone", "after_add", "after_conv")],
        [onnx.numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "relus.onnx"
    onnx.save(model, str(path))
    x = np.array([np.nan, -1, 2, np.inf, -np.inf, 0.5, -3, np.nan, 4, -0.25, 1, -2], np.float32).reshape(1, 2, 2, 3)
    y = rng.standard_normal((1, 2, 2, 3)).astype(np.float32)
    samples = [{"x": x, "y": y}]
    data = tmp_path / "data.npz"
    tl.write_npz_samples(data, samples)
    got = tl.frugal_run_outputs(path, data, tmp_path / "out")[0]
    ref = tl.ort_run(path, samples[0])
    for k, name in enumerate(("alone", "after_add", "after_conv")):
        assert np.isnan(ref[name]).any(), name  # the case is about NaN reaching each Relu
        np.testing.assert_array_equal(np.isnan(got[k]), np.isnan(ref[name]), err_msg=name)
        np.testing.assert_allclose(np.nan_to_num(got[k]), np.nan_to_num(ref[name]), rtol=1e-6, atol=1e-6,
                                   err_msg=name)
