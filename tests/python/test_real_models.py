"""Real models with stored reference outputs: the two tiny BERT-SQuAD exports (inputs bound by
name: the Keras one stores them in another order than its graph declares) and the early-ORT quantized
mnist (integer ConvInteger/MatMulInteger path), each also checked against onnxruntime."""
from pathlib import Path

import numpy as np
import onnx
import pytest

import frugal_testlib as tl

PT = tl.BERT_SQUAD_PT_DIR
TF = tl.BERT_SQUAD_TF_DIR
MNIST_Q = tl.TESTDATA / "alrevuelta-cONNXr/test/mnist_quantized"


def feeds_by_name(set_dir: Path):
    return {name: arr for name, arr in tl.read_test_data_set(set_dir, "input")}


# The PyTorch 1.4 exports concatenate int64 scalars with 1-D shape pieces. onnxruntime of 2020 ran them
# (it wrote the stored outputs); current onnxruntime rejects them at load (Concat rank check), so for
# those the stored outputs are the only reference.
@pytest.mark.parametrize("model,data,ort_loads", [(PT / "BertForQuestionAnswering_0.onnx", PT, False),
                                                  (PT / "BertForQuestionAnswering_1.onnx", PT, False),
                                                  (TF / "TFBertForQuestionAnswering.onnx", TF, True)])
def test_tiny_bert_matches_stored_outputs_and_onnxruntime(model, data, ort_loads, frugal_bin, tmp_path):
    # The stored outputs came from onnxruntime in 2020; 1e-4 absolute covers float32 reordering on
    # logits of order 1.
    tl.run_frugal(["run", model, "--data", data, "--expect", data, "--rtol", "1e-3", "--atol", "1e-4"], expect_rc=0)
    if not ort_loads:
        import onnxruntime
        with pytest.raises(Exception, match="Concat"):
            onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        return
    got = tl.frugal_run_outputs(model, data, tmp_path)[0]
    ref = tl.ort_run(model, feeds_by_name(data / "test_data_set_0"))
    names = [o.name for o in onnx.load(str(model)).graph.output]
    for k, name in enumerate(names):
        max_abs, _, _ = tl.compare(got[k], ref[name])
        assert max_abs <= 1e-4, f"{model.name} {name}: {max_abs}"


def test_keras_bert_input_order_differs_from_graph():
    stored = [n for n, _ in tl.read_test_data_set(TF / "test_data_set_0", "input")]
    graph = [i.name for i in onnx.load(str(TF / "TFBertForQuestionAnswering.onnx")).graph.input]
    assert stored != graph and sorted(stored) == sorted(graph)  # binding by position would be wrong


def test_mnist_quantized_argmax_and_onnxruntime(frugal_bin, tmp_path):
    model = MNIST_Q / "model_quantized.onnx"
    got = tl.frugal_run_outputs(model, MNIST_Q, tmp_path)[0][0]
    fp32_ref = tl.read_test_data_set(MNIST_Q / "test_data_set_0", "output")[0][1]
    assert int(np.argmax(got)) == int(np.argmax(fp32_ref)) == 2
    name = onnx.load(str(model)).graph.input[0].name
    ort = tl.ort_run(model, {name: tl.read_test_data_set(MNIST_Q / "test_data_set_0", "input")[0][1]})
    ref = next(iter(ort.values()))
    max_abs, _, _ = tl.compare(got, ref)
    assert max_abs <= 1e-4 * max(1.0, float(np.abs(ref).max())), max_abs
