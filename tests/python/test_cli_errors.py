"""Bad input through the CLI: one clear line on stderr, the documented exit code, no crash, the input
untouched and no output (or temp file) left behind."""
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper, TensorProto

import frugal_testlib as tl

MNIST = "alrevuelta-cONNXr/test/mnist/model.onnx"
EXTERNAL = "robertknight-rten/rten-onnx/test-data/mnist-external"


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def assert_clean_failure(proc, code, must_name, out_dir: Path, before: set):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [l for l in proc.stderr.strip().splitlines() if l]
    assert len(lines) == 1, proc.stderr
    assert must_name in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and "terminate" not in proc.stderr
    after = set(os.listdir(out_dir))
    assert after == before, f"files left behind: {after - before}"


def bad_models(tmp: Path, testdata: Path):
    good = (testdata / MNIST).read_bytes()
    cases = {}
    (tmp / "truncated.onnx").write_bytes(good[: len(good) // 2])
    cases["truncated"] = tmp / "truncated.onnx"
    rng = np.random.default_rng(3)
    (tmp / "random.onnx").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    cases["random bytes"] = tmp / "random.onnx"
    (tmp / "empty.onnx").write_bytes(b"")
    cases["empty"] = tmp / "empty.onnx"
    (tmp / "adir.onnx").mkdir()
    cases["directory"] = tmp / "adir.onnx"
    m = onnx.load_from_string(good)
    m.graph.initializer[0].dims[0] *= 2
    (tmp / "short_init.onnx").write_bytes(m.SerializeToString())
    cases["initializer larger than its bytes"] = tmp / "short_init.onnx"
    # external data pointing outside the model dir, and past the end of its file
    ext_dir = tmp / "ext"
    ext_dir.mkdir()
    shutil.copy(testdata / EXTERNAL / "mnist.onnx.data", ext_dir / "mnist.onnx.data")
    shutil.copy(testdata / EXTERNAL / "mnist.onnx.data", tmp / "outside.data")
    base = onnx.load(str(testdata / EXTERNAL / "mnist.onnx"), load_external_data=False)
    for name, loc, off in [("escape", "../outside.data", None), ("absolute", str(tmp / "outside.data"), None),
                           ("past end", "mnist.onnx.data", "105300")]:
        mm = onnx.ModelProto()
        mm.CopyFrom(base)
        t = next(t for t in mm.graph.initializer if t.data_location == TensorProto.EXTERNAL)
        for kv in t.external_data:
            if kv.key == "location":
                kv.value = loc
            if kv.key == "offset" and off is not None:
                kv.value = off
        p = ext_dir / f"{name.replace(' ', '_')}.onnx"
        p.write_bytes(mm.SerializeToString())
        cases[f"external {name}"] = p
    return cases


@pytest.mark.parametrize("command", ["inspect", "run", "convert"])
def test_bad_model_files_exit_2_cleanly(command, frugal_bin, testdata, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (tmp_path / "in").mkdir()
    for label, path in bad_models(tmp_path / "in", testdata).items():
        digest = sha(path) if path.is_file() else None
        before = set(os.listdir(out_dir))
        args = {"inspect": ["inspect", path],
                "run": ["run", path, "--synthetic", "1", "-o", out_dir / "outs"],
                "convert": ["convert", path, "-o", out_dir / "converted.onnx"]}[command]
        proc = tl.run_frugal(args)
        assert_clean_failure(proc, 2, path.name, out_dir, before)
        if digest:
            assert sha(path) == digest, f"{label}: input modified"


def test_wrong_input_shape_and_missing_data(frugal_bin, testdata, tmp_path):
    model = testdata / MNIST
    name = onnx.load(str(model)).graph.input[0].name
    np.savez(tmp_path / "wrong.npz", **{name: np.zeros((1, 1, 27, 28), np.float32)})
    proc = tl.run_frugal(["run", model, "--data", tmp_path / "wrong.npz"])
    assert proc.returncode == 2 and f"'{name}'" in proc.stderr and "dim 2 must be 28" in proc.stderr, proc.stderr
    np.savez(tmp_path / "dtype.npz", **{name: np.zeros((1, 1, 28, 28), np.float64)})
    proc = tl.run_frugal(["run", model, "--data", tmp_path / "dtype.npz"])
    assert proc.returncode == 2 and "float64" in proc.stderr, proc.stderr
    proc = tl.run_frugal(["run", model, "--data", tmp_path / "missing_dir"])
    assert proc.returncode == 2 and "missing_dir" in proc.stderr, proc.stderr


def test_unsupported_op_exits_4_naming_op_and_node(frugal_bin, tmp_path):
    node = helper.make_node("Det", ["x"], ["y"], name="the_det")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(m, tmp_path / "det.onnx")
    proc = tl.run_frugal(["run", tmp_path / "det.onnx", "--synthetic", "1"])
    assert proc.returncode == 4, proc.stderr
    assert "Det" in proc.stderr and "the_det" in proc.stderr and "opset 13" in proc.stderr
    info = tl.run_frugal(["inspect", tmp_path / "det.onnx", "--json"], expect_rc=0)
    import json
    un = json.loads(info.stdout)["unsupported"]
    assert [u["node"] for u in un] == ["the_det"]


def test_usage_errors_exit_1(frugal_bin, testdata, tmp_path):
    assert tl.run_frugal(["run", testdata / MNIST]).returncode == 1  # neither --data nor --synthetic
    assert tl.run_frugal(["--no-such-flag"]).returncode == 1
    proc = tl.run_frugal(["run", testdata / MNIST, "--synthetic", "1", "--dims", "batch"])
    assert proc.returncode == 1 and "NAME=VALUE" in proc.stderr


def test_not_yet_implemented_commands_exit_4(frugal_bin, testdata):
    for cmd in ["distill", "compress"]:
        proc = tl.run_frugal([cmd, testdata / MNIST])
        assert proc.returncode == 4 and "not implemented" in proc.stderr


def test_version_reports_cuda_and_gpus(frugal_bin):
    proc = tl.run_frugal(["--version"], expect_rc=0)
    assert proc.stdout.startswith("frugal ")
    assert "CUDA backend:" in proc.stdout
    assert "GPU" in proc.stdout  # either the visible GPUs or "GPUs visible: none (...)"
