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


def _npy(a):
    import io
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a)
    return buf.getvalue()


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
    short = _npy(x)[:-12]
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


def _zip_by_hand(path, entries, zip64=False, descriptor=False, comment=b"", record=None):
    """Writes a zip archive field by field (PKWARE APPNOTE 4.3-4.5), independently of frugal and of
    Python's zipfile: entries are (name, bytes, method 0 stored | 8 deflated). zip64: every size and
    offset in the central directory is the 0xFFFFFFFF marker with the value in a zip64 extra field,
    and the end record points through a zip64 locator and end record. descriptor: the local headers
    carry zero sizes and a data descriptor follows each entry's data (general-purpose bit 3).
    record(name, size, crc) -> (size, crc) overrides what the headers state."""
    import struct
    import zlib
    out, central = bytearray(), bytearray()
    for name, data, method in entries:
        if method == 8:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            comp = c.compress(data) + c.flush()
        else:
            comp = data
        size, crc = len(data), zlib.crc32(data)
        if record:
            size, crc = record(name, size, crc)
        flags = 0x08 if descriptor else 0
        offset = len(out)
        n = name.encode()
        local = (0, 0, 0) if descriptor else (crc, len(comp), size)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0x21, *local, len(n), 0) + n + comp
        if descriptor:
            out += struct.pack("<IIII", 0x08074B50, crc, len(comp), size)
        if zip64:
            extra = struct.pack("<HHQQQ", 1, 24, size, len(comp), offset)
            cs, us, off = 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF
        else:
            extra, cs, us, off = b"", len(comp), size, offset
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, flags, method, 0, 0x21, crc, cs, us,
                               len(n), len(extra), 0, 0, 0, 0, off) + n + extra
    cd_offset, count = len(out), len(entries)
    out += central
    if zip64:
        end64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, len(central), cd_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, end64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, len(comment))
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), cd_offset, len(comment))
    path.write_bytes(bytes(out + comment))
    return path


@pytest.mark.parametrize("zip64,descriptor", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["plain", "zip64", "descriptor", "zip64+descriptor"])
def test_hand_made_archives_read_as_zipfile_reads_them(frugal_bin, tmp_path, zip64, descriptor):
    """Archive layouts numpy does not write by default but other zip writers do (zip64 end records
    and central-directory extras, data descriptors, a trailing comment, a non-array entry), checked
    valid with Python's zipfile first; frugal's samples must equal numpy's arrays exactly."""
    model = _model(tmp_path / "m.onnx")
    x, y = _arrays(7, 8)
    data = _zip_by_hand(tmp_path / "h.npz", [("README.txt", b"calibration set, 7 samples\n", 0),
                                             ("x.npy", _npy(x), 8), ("y.npy", _npy(y), 0)],
                        zip64=zip64, descriptor=descriptor, comment=b"made by hand \x00 with a NUL")
    with zipfile.ZipFile(data) as z:
        assert z.testzip() is None
        np.testing.assert_array_equal(np.load(data)["x"], x)
    _run_and_check(model, data, x, y, tmp_path)


def test_deflate_stream_and_recorded_size_must_agree(frugal_bin, tmp_path):
    """A deflated entry whose stream holds 64 bytes more than its recorded size, or 64 fewer: the
    array header is satisfied either way (the extra bytes trail the array; the shortfall is in a
    padding the header does not need), so only the stream-end check can tell."""
    import zlib
    model = _model(tmp_path / "m.onnx", two_inputs=False)
    x = np.random.default_rng(9).standard_normal((50, 2, 3)).astype(np.float32)
    body = _npy(x)
    longer = _zip_by_hand(tmp_path / "long.npz", [("x.npy", body + bytes(64), 8)],
                          record=lambda n, size, crc: (size - 64, zlib.crc32(body)))
    proc = tl.run_frugal(["run", model, "--data", longer])
    _one_error_line(proc, "long.npz", "x.npy", "more data than its recorded size")
    shorter = _zip_by_hand(tmp_path / "short.npz", [("x.npy", body, 8)],
                           record=lambda n, size, crc: (size + 64, zlib.crc32(body + bytes(64))))
    proc = tl.run_frugal(["run", model, "--data", shorter])
    _one_error_line(proc, "short.npz", "x.npy", "truncated or corrupt")
    # Python's zipfile refuses the short stream too; it stops reading the long one at the recorded
    # size (whose CRC holds), so there frugal is the stricter reader.
    with zipfile.ZipFile(shorter) as z, pytest.raises((zipfile.BadZipFile, EOFError)):
        z.read("x.npy")
    with zipfile.ZipFile(longer) as z:
        assert z.read("x.npy") == body


def test_other_compression_methods_and_encryption_are_named(frugal_bin, tmp_path):
    model = _model(tmp_path / "m.onnx", two_inputs=False)
    x = np.random.default_rng(10).standard_normal((3, 2, 3)).astype(np.float32)
    data = tmp_path / "bz.npz"
    with zipfile.ZipFile(data, "w", zipfile.ZIP_BZIP2) as z:
        z.writestr("x.npy", _npy(x))
    proc = tl.run_frugal(["run", model, "--data", data])
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "compression method 12" in proc.stderr, proc.stderr
    # The encryption bit set on an otherwise plain entry.
    enc = _zip_by_hand(tmp_path / "enc.npz", [("x.npy", _npy(x), 0)])
    raw = bytearray(enc.read_bytes())
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 8] |= 1
    enc.write_bytes(bytes(raw))
    proc = tl.run_frugal(["run", model, "--data", enc])
    assert proc.returncode == 4 and "is encrypted" in proc.stderr, proc.stderr


def test_highly_compressible_deflated_arrays_read_to_the_end(frugal_bin, tmp_path):
    """Arrays that deflate to a few hundred bytes: zlib may take in the last compressed byte before it
    has produced the last output (a long match copy still pending), and samples are read 24 bytes at a
    time, so the reader must go on inflating with no input left. The first two arrays failed with a
    reader that stopped when the input ran out ("the compressed data ends early"; 28 of 300 random
    such arrays did), with Debian 12's zlib 1.2.13."""
    model = _model(tmp_path / "m.onnx", two_inputs=False)
    for n, v, k in ((1500, 5.0, 750), (3000, 2.0, 1500), (1500, 0.0, 500)):
        x = np.full((n, 2, 3), v, np.float32)
        x[k] = 1.5
        data = tmp_path / "z.npz"
        np.savez_compressed(data, x=x)
        with zipfile.ZipFile(data) as z:
            assert z.getinfo("x.npy").compress_size < 1000
        got = tl.frugal_run_outputs(model, data, tmp_path / f"out_{n}_{v}_{k}", "--threads", "1")
        assert len(got) == n
        np.testing.assert_array_equal(np.stack([g[0] for g in got]), x)
