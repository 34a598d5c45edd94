"""Load then save through frugal (`frugal convert`) leaves every model equal to the original as the
current onnx package sees it: nothing unknown dropped (domains, metadata, doc strings, value_info,
functions, fields newer than frugal's ONNX 1.12 schema). The C++ unit test covers every model in
shared testdata; this checks a spread of them with an independent reader."""
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, TensorProto

import frugal_testlib as tl

SPREAD = [
    "alrevuelta-cONNXr/test/mnist/model.onnx",
    "alrevuelta-cONNXr/test/mnist_quantized/model_quantized.onnx",
    "microsoft-onnxruntime/onnxruntime/python/tools/transformers/test_data/bert_squad_pytorch1.4_opset11/BertForQuestionAnswering_0.onnx",
    "microsoft-onnxruntime/onnxruntime/python/tools/transformers/test_data/bert_squad_tensorflow2.1_keras2onnx_opset11/TFBertForQuestionAnswering.onnx",
    "robertknight-rten/rten-onnx/test-data/mnist.onnx",
    "sonos-tract/onnx/test_cases/qlstm_3-2-3_T3_S1/model.onnx",
    "onnx-onnx/onnx/backend/test/data/light/light_resnet50.onnx",
    "onnx-onnx/onnx/backend/test/data/pytorch-converted/test_Conv2d_groups/model.onnx",
    "onnx-onnx/onnx/backend/test/data/node/test_attention_4d_with_qk_matmul_softcap_expanded/model.onnx",
    "onnx-onnx/onnx/backend/test/data/node/test_cast_FLOAT_to_FLOAT8E4M3FN/model.onnx",
    "onnx-onnx/onnx/backend/test/data/node/test_if_seq/model.onnx",
    "onnx-onnx/onnx/backend/test/data/node/test_quantizelinear_int4/model.onnx",
]


def loaded(path):
    """onnx.load with external data pulled in. onnx's loader then marks those tensors with an explicit
    data_location=DEFAULT, which an inline tensor leaves unset: clear it so only content is compared."""
    m = onnx.load(str(path))
    for t in m.graph.initializer:
        if t.HasField("data_location") and t.data_location == TensorProto.DEFAULT:
            t.ClearField("data_location")
    return m


@pytest.mark.parametrize("rel", SPREAD)
def test_roundtrip_equal_in_onnx(rel, frugal_bin, testdata, tmp_path):
    src = testdata / rel
    if not src.exists():
        pytest.fail(f"test model missing: {src}")
    out = tmp_path / "out.onnx"
    tl.run_frugal(["convert", src, "-o", out], expect_rc=0)
    assert onnx.load(str(src)) == onnx.load(str(out))


def test_unknown_content_survives(frugal_bin, tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    mid = helper.make_tensor_value_info("mid", TensorProto.FLOAT, ["N", 3])
    n1 = helper.make_node("MyOp", ["x"], ["mid"], domain="com.example", doc_string="custom op", some_attr=3)
    n2 = helper.make_node("Relu", ["mid"], ["y"], name="relu")
    fn = helper.make_function("com.example", "MyOp", ["a"], ["b"], [helper.make_node("Neg", ["a"], ["b"])],
                              [helper.make_opsetid("", 17)])
    g = helper.make_graph([n1, n2], "g", [x], [y], value_info=[mid], doc_string="graph doc")
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
                          functions=[fn], doc_string="model doc", producer_name="unit")
    helper.set_model_props(m, {"author": "frugal tests", "license": "MIT"})
    m.graph.node[1].metadata_props.add(key="k", value="v")  # IR 10 field, unknown to ONNX 1.12
    src = tmp_path / "custom.onnx"
    onnx.save(m, src)
    out = tmp_path / "out.onnx"
    tl.run_frugal(["convert", src, "-o", out], expect_rc=0)
    back = onnx.load(str(out))
    assert back == m
    assert back.graph.node[1].metadata_props[0].value == "v"


def test_external_data_reinlined_and_reexternalised(frugal_bin, testdata, tmp_path):
    src = testdata / "robertknight-rten/rten-onnx/test-data/mnist-external/mnist.onnx"
    tl.run_frugal(["convert", src, "-o", tmp_path / "inline.onnx", "--inline-data"], expect_rc=0)
    assert not (tmp_path / "inline.onnx.data").exists()
    inlined = onnx.load(str(tmp_path / "inline.onnx"), load_external_data=False)
    assert all(t.data_location != TensorProto.EXTERNAL for t in inlined.graph.initializer)
    assert loaded(src) == loaded(tmp_path / "inline.onnx")
    tl.run_frugal(["convert", tmp_path / "inline.onnx", "-o", tmp_path / "ext.onnx", "--external-data",
                   "--external-threshold", "4096"], expect_rc=0)
    ext = onnx.load(str(tmp_path / "ext.onnx"), load_external_data=False)
    sizes = {t.name: t.data_location == TensorProto.EXTERNAL for t in ext.graph.initializer}
    full = loaded(tmp_path / "ext.onnx")
    for t in full.graph.initializer:
        assert sizes[t.name] == (len(onnx.numpy_helper.to_array(t).tobytes()) >= 4096), t.name
    assert loaded(src) == full
    onnx.checker.check_model(str(tmp_path / "ext.onnx"))
    # Both written models run in onnxruntime and give the original's outputs exactly.
    import onnxruntime as ort
    inp = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    rng = np.random.default_rng(3)
    samples = [{inp.name: rng.standard_normal(shape).astype(np.float32)} for _ in range(3)]
    ref = tl.ort_run_many(src, samples)
    tl.assert_outputs_equal(ref, tl.ort_run_many(tmp_path / "inline.onnx", samples))
    tl.assert_outputs_equal(ref, tl.ort_run_many(tmp_path / "ext.onnx", samples))


def test_in_place_needs_the_flag(frugal_bin, testdata, tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes((testdata / "alrevuelta-cONNXr/test/mnist/model.onnx").read_bytes())
    before = src.read_bytes()
    proc = tl.run_frugal(["convert", src, "-o", src])
    assert proc.returncode == 1 and "--in-place" in proc.stderr
    assert src.read_bytes() == before
    tl.run_frugal(["convert", src, "--in-place"], expect_rc=0)
    assert onnx.load(str(src)) == onnx.load_from_string(before)
