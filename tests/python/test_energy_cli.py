"""`frugal energy` and `frugal bench`: MAC totals against onnxruntime-derived shapes, the JSON schema's
stable key order, exit codes and one-line errors, the offline HTML report rendered in headless Chromium.

The MAC oracle here is independent of frugal: onnxruntime runs the model with every intermediate tensor
exposed as an output, and numpy applies the textbook formulas to those shapes.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

import frugal_testlib as tl

LIGHT = Path("onnx-onnx/onnx/backend/test/data/light")


def _light(testdata: Path, name: str) -> Path:
    p = testdata / LIGHT / name
    if not p.is_file():
        pytest.fail(f"test model missing: {p}")
    return p


def ort_macs(model_path: Path) -> float:
    """Conv/ConvTranspose/Gemm/MatMul multiply-accumulates from onnxruntime's actual tensor shapes."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    m = onnx.load(str(model_path))
    existing = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for o in n.output:
            if o and o not in existing:
                m.graph.output.append(helper.ValueInfoProto(name=o))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = np.zeros(shape, dtype=np.float32)
    names = [o.name for o in sess.get_outputs()]
    shapes = {n: np.asarray(v).shape for n, v in zip(names, sess.run(names, feeds))}
    for k, v in feeds.items():
        shapes[k] = v.shape
    for init in m.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    total = 0.0
    for n in m.graph.node:
        if n.op_type == "Conv":
            y, w = shapes[n.output[0]], shapes[n.input[1]]
            total += float(np.prod(y, dtype=np.float64)) * w[1] * float(np.prod(w[2:], dtype=np.float64))
        elif n.op_type == "ConvTranspose":
            x, w = shapes[n.input[0]], shapes[n.input[1]]
            total += float(np.prod(x, dtype=np.float64)) * w[1] * float(np.prod(w[2:], dtype=np.float64))
        elif n.op_type in ("Gemm", "MatMul"):
            a, y = shapes[n.input[0]], shapes[n.output[0]]
            trans_a = any(at.name == "transA" and at.i for at in n.attribute)
            k = a[0] if (n.op_type == "Gemm" and trans_a) else a[-1]
            total += float(np.prod(y, dtype=np.float64)) * k
    return total


def energy_json(frugal_bin, *args) -> dict:
    p = tl.run_frugal(["energy", *args, "--json"], expect_rc=0, bin_path=frugal_bin)
    return json.loads(p.stdout)


@pytest.mark.parametrize("name", ["light_resnet50.onnx", "light_squeezenet.onnx", "light_vgg19.onnx"])
def test_macs_match_onnxruntime_shapes(frugal_bin, testdata, name):
    model = _light(testdata, name)
    j = energy_json(frugal_bin, model)
    ours = j["models"][0]["totals"]["macs"]
    ref = ort_macs(model)
    assert ours == pytest.approx(ref, rel=1e-9), f"{name}: frugal {ours:.6g} MACs, onnxruntime shapes {ref:.6g}"


def test_json_schema_key_order_and_figures(frugal_bin, testdata, tmp_path):
    model = _light(testdata, "light_resnet50.onnx")
    report = tmp_path / "r.json"
    p = tl.run_frugal(["--report", report, "energy", model, "--profile", "a100", "--region", "fr", "--json"],
                      expect_rc=0, bin_path=frugal_bin)
    j = json.loads(p.stdout)
    assert json.loads(report.read_text()) == j
    assert list(j) == ["schema", "label", "device", "assumptions", "models"]
    assert j["schema"] == "frugal.energy/1" and j["label"] == "estimate"
    m = j["models"][0]
    assert list(m) == ["path", "file_bytes", "input_shapes", "totals", "estimate", "families", "nodes"]
    assert list(m["estimate"]) == ["label", "roofline", "per_op", "carbon"]
    assert m["input_shapes"] == {"gpu_0/data_0": [1, 3, 224, 224]}
    a = j["assumptions"]
    assert a["region"] == "fr" and a["grid_year"] == 2023 and a["grid_g_per_kwh"] == 56
    assert a["pue"] == pytest.approx(1.58)
    dev = j["device"]
    assert dev["name"] == "a100" and dev["tdp_w"]["value"] == 400 and dev["tdp_w"]["source"]
    # Energy arithmetic, recomputed here from the report's own counts and the profile's numbers.
    t = m["totals"]
    pj_mac, pj_flop, pj_byte = dev["pj_per_mac"]["fp32"]["value"], dev["pj_per_flop"]["value"], dev["pj_per_dram_byte"]["value"]
    per_op = (t["macs"] * pj_mac + t["flops_other"] * pj_flop + t["total_bytes"] * pj_byte) * 1e-12
    assert m["estimate"]["per_op"]["energy_j"] == pytest.approx(per_op, rel=1e-9)
    r = m["estimate"]["roofline"]
    assert r["energy_j"] == pytest.approx(r["time_s"] * 400, rel=1e-9)
    assert max(r["compute_time_s"], r["memory_time_s"]) <= r["time_s"] * (1 + 1e-12)
    assert r["time_s"] <= (r["compute_time_s"] + r["memory_time_s"]) * (1 + 1e-12)
    c = m["estimate"]["carbon"]
    assert c["g_per_inference_per_op"] == pytest.approx(per_op / 3.6e6 * 1.58 * 56, rel=1e-9)
    assert sum(f["macs"] for f in m["families"]) == pytest.approx(t["macs"], rel=1e-12)
    assert sum(n["macs"] for n in m["nodes"]) == pytest.approx(t["macs"], rel=1e-12)


def test_compare_and_overrides(frugal_bin, testdata):
    a, b = _light(testdata, "light_resnet50.onnx"), _light(testdata, "light_squeezenet.onnx")
    j = energy_json(frugal_bin, a, "--compare", b, "--profile", "t4", "--grid-intensity", "100", "--pue", "1.2")
    assert len(j["models"]) == 2
    ma, mb = j["models"][0]["totals"], j["models"][1]["totals"]
    assert j["comparison"]["macs"] == pytest.approx(mb["macs"] / ma["macs"])
    assert j["assumptions"]["grid_g_per_kwh"] == 100 and j["assumptions"]["pue"] == pytest.approx(1.2)
    assert j["assumptions"]["pue_source"] == "--pue (user value)"
    text = tl.run_frugal(["energy", a, "--compare", b], expect_rc=0, bin_path=frugal_bin).stdout
    assert "ratio" in text and "estimate" in text


def test_errors_and_exit_codes(frugal_bin, testdata, tmp_path):
    model = _light(testdata, "light_squeezenet.onnx")
    h100 = json.loads(subprocess.run([str(frugal_bin), "energy", model, "--json"], capture_output=True,
                                     text=True).stdout)["device"]
    # A user profile with a bad field: exit 2 naming the file and the field.
    prof = {"name": "mine", "kind": "gpu", "peak_tops": {k: v for k, v in h100["peak_tops"].items()},
            "vector_tflops": h100["vector_tflops"], "memory_bandwidth_gbs": {"value": "fast", "source": "me"},
            "tdp_w": h100["tdp_w"], "idle_w": h100["idle_w"], "pj_per_mac": h100["pj_per_mac"],
            "pj_per_flop": h100["pj_per_flop"], "pj_per_dram_byte": h100["pj_per_dram_byte"],
            "sparse_tensor_cores": True}
    f = tmp_path / "mine.json"
    f.write_text(json.dumps(prof))
    p = tl.run_frugal(["energy", model, "--device-profile", f], expect_rc=2, bin_path=frugal_bin)
    assert "mine.json" in p.stderr and "memory_bandwidth_gbs.value" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    prof["memory_bandwidth_gbs"]["value"] = 1000
    f.write_text(json.dumps(prof))
    ok = energy_json(frugal_bin, model, "--device-profile", f)
    assert ok["device"]["name"] == "mine" and ok["device"]["profile"].endswith("mine.json")
    del prof["tdp_w"]
    f.write_text(json.dumps(prof))
    p = tl.run_frugal(["energy", model, "--device-profile", f], expect_rc=2, bin_path=frugal_bin)
    assert "'tdp_w' is missing" in p.stderr
    # Unreadable model -> 2; unknown profile / region / bad PUE -> usage (1).
    p = tl.run_frugal(["energy", tmp_path / "nope.onnx"], expect_rc=2, bin_path=frugal_bin)
    assert "nope.onnx" in p.stderr
    assert "h100" in tl.run_frugal(["energy", model, "--profile", "z80"], expect_rc=1, bin_path=frugal_bin).stderr
    assert "--region" in tl.run_frugal(["energy", model, "--region", "mars"], expect_rc=1, bin_path=frugal_bin).stderr
    assert "--pue" in tl.run_frugal(["energy", model, "--pue", "0.5"], expect_rc=1, bin_path=frugal_bin).stderr


def test_bench_latency_and_energy_reasons(frugal_bin, testdata, tmp_path):
    model = _light(testdata, "light_squeezenet.onnx")
    p = tl.run_frugal(["bench", model, "--device", "cuda", "--measure-energy"], expect_rc=4, bin_path=frugal_bin)
    assert "no GPU execution" in p.stderr and "NVML" in p.stderr
    env_root = tmp_path / "powercap"
    env = dict(os.environ, FRUGAL_POWERCAP_ROOT=str(tmp_path / "absent"))
    cmd = [str(frugal_bin), "bench", model, "--synthetic", "2", "--iterations", "3", "--measure-energy",
           "--windows", "1", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    lat = j["latency"]
    assert lat["inferences"] >= 3 and 0 < lat["p50_s"] <= lat["p90_s"]
    assert lat["throughput_per_s"] > 0
    assert j["energy"]["available"] is False and "no powercap directory" in j["energy"]["reason"]
    assert j["estimate"]["label"] == "estimate" and j["estimate"]["per_op_energy_j"] > 0
    # A fake powercap tree: the meter is found, the static counter reads 0 J.
    (env_root / "intel-rapl:0").mkdir(parents=True)
    (env_root / "intel-rapl:0" / "energy_uj").write_text("123\n")
    (env_root / "intel-rapl:0" / "max_energy_range_uj").write_text("1000000\n")
    env["FRUGAL_POWERCAP_ROOT"] = str(env_root)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    e = json.loads(r.stdout)["energy"]
    assert e["available"] is True and e["meter"] == "RAPL (intel-rapl:0)"
    assert e["j_per_inference"] == 0 and e["windows"][0]["seconds"] >= 1.0


# ---- HTML report ---------------------------------------------------------------------------------

def read_png(path: Path) -> np.ndarray:
    """Minimal PNG reader (8-bit RGB/RGBA, non-interlaced) -> HxWxC uint8, so the test needs no PIL."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            ch = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = w * ch
    img = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1).astype(np.int32)
        out = np.zeros(stride, dtype=np.int32)
        if f == 0:
            out = line
        elif f == 2:
            out = (line + prev) & 255
        else:
            for x in range(stride):
                a = out[x - ch] if x >= ch else 0
                c = prev[x - ch] if x >= ch else 0
                b = prev[x]
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) // 2
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                out[x] = (line[x] + pred) & 255
        img[y] = out
        prev = out
    return img.reshape(h, w, ch)


def test_html_report_offline_and_renders(frugal_bin, testdata, tmp_path):
    a, b = _light(testdata, "light_resnet50.onnx"), _light(testdata, "light_squeezenet.onnx")
    html = tmp_path / "report.html"
    tl.run_frugal(["energy", a, "--compare", b, "--html", html], expect_rc=0, bin_path=frugal_bin)
    text = html.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    lower = text.lower()
    # Self-contained: no scripts, no linked or imported resources (the SVG namespace URI is not a fetch).
    for bad in ("<script", "<link", "@import", "url(", " src=", "https://"):
        assert bad not in lower, f"HTML report is not self-contained: found {bad!r}"
    assert lower.replace("http://www.w3.org/2000/svg", "").count("http://") == 0
    assert lower.count("<svg") >= 3 and "estimate" in lower
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is required for this test (Debian package: chromium)"
    shot = tmp_path / "report.png"
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={shot}", "--window-size=1200,900", html.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"chromium wrote no screenshot (rc {r.returncode}): {r.stderr[-2000:]}"
    img = read_png(shot)
    assert img.shape[:2] == (900, 1200), img.shape
    rgb = img[..., :3].astype(np.float64)
    assert rgb.std() > 10, f"screenshot looks blank (pixel std {rgb.std():.2f})"
    # The blue bars of the charts are drawn: some pixels near #2f6fb0.
    blue = np.all(np.abs(rgb - np.array([0x2f, 0x6f, 0xb0])) < 12, axis=-1)
    assert blue.sum() > 500, f"no chart bars visible ({blue.sum()} bar pixels)"
    keep = os.environ.get("FRUGAL_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


# ---- symbolic dims and QDQ int8 (models built here with the onnx helper; quantized by onnxruntime) ----

def _conv_mlp_model(path: Path, batch="N"):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.2
    w2 = rng.standard_normal((16 * 6 * 6, 10)).astype(np.float32) * 0.05
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "w2"], ["y"], name="fc")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
                          [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    # Hand count per sample: conv 16 * 6 * 6 * 3 * 3 * 3 = 15552, fc 576 * 10 = 5760.
    return 15552 + 5760


def test_symbolic_dims(frugal_bin, tmp_path):
    f = tmp_path / "m.onnx"
    per_sample = _conv_mlp_model(f)
    j = energy_json(frugal_bin, f, "--dims", "N=8")
    assert j["models"][0]["input_shapes"] == {"x": [8, 3, 8, 8]}
    assert j["models"][0]["totals"]["macs"] == 8 * per_sample
    assert j["assumptions"]["dims"].startswith("N=8")
    j1 = energy_json(frugal_bin, f)
    assert j1["models"][0]["totals"]["macs"] == per_sample  # unset symbolic dims = 1


def test_qdq_int8_model_counts_int8(frugal_bin, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    f = tmp_path / "m.onnx"
    per_sample = _conv_mlp_model(f, batch=1)

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(1)
            self.data = iter([{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.data, None)

    q = tmp_path / "q.onnx"
    quantize_static(str(f), str(q), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=False)
    j = energy_json(frugal_bin, f, "--compare", q)
    fl, qt = j["models"][0]["totals"], j["models"][1]["totals"]
    assert fl["macs_by_dtype"] == {"fp32": per_sample}
    assert qt["macs_by_dtype"].get("int8") == per_sample, qt["macs_by_dtype"]
    # int8 weights: 1 byte per element (+ int32 biases, none here); float: 4 bytes.
    assert fl["weight_bytes"] == 4 * (16 * 27 + 576 * 10)
    assert qt["weight_bytes"] == 16 * 27 + 576 * 10
    assert j["comparison"]["energy_per_op"] < 0.5
    # The comparison carries the measured fidelity of the quantized model on synthetic inputs.
    fid = j["comparison"]["fidelity"]
    assert fid["label"] == "measured" and fid["samples"] == 4
    assert fid["outputs"][0]["name"] == "y" and fid["outputs"][0]["cosine"] > 0.99


def test_encoder_macs_hand_derived(frugal_bin, tmp_path):
    """A BERT-shaped encoder (tests/models/make_encoder.py), symbolic batch/seq fixed with --dims."""
    f = tl.run_make_encoder(tmp_path / "enc.onnx", "--layers", "2", "--hidden", "128", "--heads", "4", "--ffn", "256",
                            "--seq", "32", "--dynamic")
    L, H, F, S, B = 2, 128, 256, 32, 3
    # Per layer: Q, K, V, output projections 4*S*H*H; FFN 2*S*H*F; scores Q.K^T and P.V 2*S*S*H (all heads).
    per_layer = 4 * S * H * H + 2 * S * H * F + 2 * S * S * H
    j = energy_json(frugal_bin, f, "--dims", "batch=3", "--dims", "seq=32")
    t = j["models"][0]["totals"]
    assert t["macs"] == B * L * per_layer
    assert j["models"][0]["input_shapes"]["input_ids"] == [3, 32]
