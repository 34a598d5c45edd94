"""Calibration / run data read sample by sample from numpy-written files: np.savez (stored entries),
np.savez_compressed (deflated), stacked .npy, and folders of them. `frugal run -o` writes each sample's
outputs of an identity model, which must equal numpy's slices exactly; the same model run in
onnxruntime on the numpy slices is the reference for a computed output. Damaged archives fail with
one clear line."""
import zipfile

import numpy as np
import onnx
import pytest
from onnx import helper, TensorProto

import frugal_testlib as tl


def _model(path, two_inputs=True):
    """x: float[2,3] -> x_out = Identity(x), sq = Mul(x, x); y: int64[4] -> y_out = Identity(y)."""
    nodes = [helper.make_node("Identity", ["x"], ["x_out"]), helper.make_node("Mul", ["x", "x"], ["sq"])]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])]
    outs = [helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("sq", TensorProto.FLOAT, [2, 3])]
    if two_inputs:
        nodes.append(helper.make_node("Identity", ["y"], ["y_out"]))
        ins.append(helper.make_tensor_value_info("y", TensorProto.INT64, [4]))
        outs.append(helper.make_tensor_value_info("y_out", TensorProto.INT64, [4]))
    g = helper.make_graph(nodes, "g", ins, outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def _arrays(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2, 3)).astype(np.float32)
    y = rng.integers(-10**12, 10**12, (n, 4), dtype=np.int64)
    return x, y


def _run_and_check(model, data, x, y, tmp_path):
    got = tl.frugal_run_outputs(model, data, tmp_path / "out")
    assert len(got) == len(x)
    refs = tl.ort_run_many(model, [{"x": x[i], **({"y": y[i]} if y is not None else {})} for i in range(len(x))])
    for i, outs in enumerate(got):
        np.testing.assert_array_equal(outs[0], x[i])
        np.testing.assert_array_equal(outs[1], refs[i]["sq"])
        if y is not None:
            assert outs[2].dtype == np.int64
            np.testing.assert_array_equal(outs[2], y[i])


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_single_npz(frugal_bin, tmp_path, compressed):
    model = _model(tmp_path / "m.onnx")
    x, y = _arrays(9, 1)
    data = tmp_path / "d.npz"
    (np.savez_compressed if compressed else np.savez)(data, x=x, y=y)
    with zipfile.ZipFile(data) as z:
        want = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
        assert all(i.compress_type == want for i in z.infolist())
    _run_and_check(model, data, x, y, tmp_path)


def test_stacked_npy_and_folders(frugal_bin, tmp_path):
    one = _model(tmp_path / "one.onnx", two_inputs=False)
    x, y = _arrays(11, 2)
    np.save(tmp_path / "x.npy", x)
    _run_and_check(one, tmp_path / "x.npy", x, None, tmp_path / "a")

    # A folder of .npy files: stacks of 4, 1 and 6 samples, taken in name order (x_2 before x_10).
    d = tmp_path / "npy_dir"
    d.mkdir()
    np.save(d / "x_2.npy", x[:4])
    np.save(d / "x_3.npy", x[4:5])
    np.save(d / "x_10.npy", x[5:])
    _run_and_check(one, d, x, None, tmp_path / "b")

    # A folder of .npz files, stored and deflated mixed, one of them a single (unstacked) sample.
    two = _model(tmp_path / "two.onnx")
    d = tmp_path / "npz_dir"
    d.mkdir()
    np.savez(d / "s0.npz", x=x[:3], y=y[:3])
    np.savez_compressed(d / "s1.npz", x=x[3:8], y=y[3:8])
    np.savez_compressed(d / "s2.npz", x=x[8], y=y[8])
    np.savez(d / "s3.npz", x=x[9:], y=y[9:])
    _run_and_check(two, d, x, y, tmp_path / "c")


def _one_error_line(proc, *must):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    # A failure after some samples ran follows the "running ... on N sample(s)" progress line.
    lines = [l for l in proc.stderr.strip().splitlines() if l and not l.startswith("running ")]
    assert len(lines) == 1, proc.stderr
    for m in must:
        assert m in lines[0], lines[0]


def _data_start(path, name):
    """Offset of entry `name`'s (compressed) data in the zip file."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    raw = path.read_bytes()
    h = info.header_offset
    assert raw[h:h + 4] == b"PK\x03\x04"
    name_len = int.from_bytes(raw[h + 26:h + 28], "little")
    extra_len = int.from_bytes(raw[h + 28:h + 30], "little")
    return h + 30 + name_len + extra_len, info.compress_size


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_damaged_entry_fails_with_one_line(frugal_bin, tmp_path, compressed):
    model = _model(tmp_path / "m.onnx", two_inputs=False)
    x = np.random.default_rng(4).standard_normal((4000, 2, 3)).astype(np.float32)
    data = tmp_path / "d.npz"
    (np.savez_compressed if compressed else np.savez)(data, x=x)
    start, size = _data_start(data, "x.npy")
    raw = bytearray(data.read_bytes())
    for k in range(16):  # damage a run of bytes in the middle of the entry's data
        raw[start + size // 2 + k] ^= 0x5A
    data.write_bytes(bytes(raw))
    proc = tl.run_frugal(["run", model, "--data", data])
    # Deflated: zlib or the CRC check catches it; stored: the CRC check once the entry is read through.
    _one_error_line(proc, str(data), "x.npy", "truncated or corrupt")


def test_short_entry_and_cut_archive_fail_at_open(frugal_bin, tmp_path):
    model = _model(tmp_path / "m.onnx", two_inputs=False)
    x = np.random.default_rng(5).standard_normal((10, 2, 3)).astype(np.float32)
    # An entry whose header promises 10 samples but holds 9 and a half.
    import io
    buf = io.BytesIO()
    np.lib.format.write_array(buf, x)
    short = buf.getvalue()[:-12]
    data = tmp_path / "short.npz"
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", short)
    proc = tl.run_frugal(["run", model, "--data", data])
    _one_error_line(proc, str(data), "needs 240 bytes but the entry holds 228")
    # The same for a stacked .npy.
    (tmp_path / "short.npy").write_bytes(short)
    proc = tl.run_frugal(["run", model, "--data", tmp_path / "short.npy"])
    _one_error_line(proc, "short.npy", "needs 240 bytes but the file holds 228")
    # An archive cut in half loses its central directory.
    np.savez(tmp_path / "full.npz", x=x)
    full = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(full[: len(full) // 2])
    proc = tl.run_frugal(["run", model, "--data", tmp_path / "cut.npz"])
    _one_error_line(proc, "cut.npz", "not a valid .npz")
    # Fortran order stays refused, with the fix named.
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    proc = tl.run_frugal(["run", model, "--data", tmp_path / "f.npy"])
    assert proc.returncode == 4 and "Fortran-order" in proc.stderr, proc.stderr
