"""Shared helpers for frugal's Python (onnxruntime oracle) tests.

Everything here is independent of frugal's own code: onnxruntime and the onnx package are the
oracles, numpy does the arithmetic. Test files import this module directly (conftest.py puts this
directory on sys.path).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[2]
TESTDATA = (REPO / ".." / "shared" / "testdata").resolve()
MODELS_DIR = REPO / "tests" / "models"
MODELS_DATA = MODELS_DIR / "data"

# The tiny BERT-SQuAD exports stored with onnxruntime's transformer tests (hidden size 8, untrained).
BERT_SQUAD_DIR = TESTDATA / "microsoft-onnxruntime/onnxruntime/python/tools/transformers/test_data"
BERT_SQUAD_PT_DIR = BERT_SQUAD_DIR / "bert_squad_pytorch1.4_opset11"
BERT_SQUAD_TF_DIR = BERT_SQUAD_DIR / "bert_squad_tensorflow2.1_keras2onnx_opset11"
BERT_SQUAD_KERAS = BERT_SQUAD_TF_DIR / "TFBertForQuestionAnswering.onnx"

# Default wall-clock limit for one frugal invocation (seconds); big models get more.
DEFAULT_TIMEOUT = float(os.environ.get("FRUGAL_TEST_TIMEOUT", "600"))


def frugal_bin_path() -> Path:
    """The frugal binary under test: $FRUGAL_BIN or <repo>/build/apps/frugal/frugal."""
    env = os.environ.get("FRUGAL_BIN")
    return Path(env) if env else REPO / "build" / "apps" / "frugal" / "frugal"


def run_frugal(args: Sequence, expect_rc: Optional[int] = None, timeout: float = DEFAULT_TIMEOUT,
               bin_path: Optional[Path] = None, check_msg: str = "",
               env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Runs `frugal ARGS...` and returns the CompletedProcess (text stdout/stderr).

    With expect_rc set, asserts the exit code and shows the command, stdout and stderr on failure.
    `env`: variables added to this process's environment for the run.
    """
    exe = Path(bin_path) if bin_path else frugal_bin_path()
    cmd = [str(exe)] + [str(a) for a in args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                          env=dict(os.environ, **env) if env else None)
    if expect_rc is not None and proc.returncode != expect_rc:
        raise AssertionError(
            f"{check_msg}{' ' if check_msg else ''}`{' '.join(cmd)}` exited {proc.returncode}, expected {expect_rc}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


def frugal_quantize(model, out, *extra, rc: int = 0, report=None,
                    bin_path: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Runs `frugal [--report REPORT] quantize MODEL -o OUT EXTRA...` and asserts exit code `rc`."""
    args = ["quantize", model, "-o", out, *extra]
    if report:
        args = ["--report", report] + args
    return run_frugal(args, expect_rc=rc, bin_path=bin_path)


def frugal_run_outputs(model, data, out_dir, *extra, fmt: str = "pb",
                       bin_path: Optional[Path] = None) -> List[List[np.ndarray]]:
    """Runs `frugal run MODEL --data DATA -o OUT_DIR EXTRA...` (exit 0 asserted) and returns what it
    wrote, read by read_frugal_outputs: one list of arrays (graph output order) per sample."""
    run_frugal(["run", model, "--data", data, "-o", out_dir, *extra], expect_rc=0, bin_path=bin_path)
    return read_frugal_outputs(out_dir, fmt)


def run_make_encoder(out, *args, timeout: float = 300) -> Path:
    """Builds a BERT-style encoder with tests/models/make_encoder.py (`ARGS... --out OUT`, run as a
    script in this Python) and asserts that it succeeded. Returns OUT."""
    p = subprocess.run([sys.executable, str(MODELS_DIR / "make_encoder.py"), *[str(a) for a in args],
                        "--out", str(out)], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return Path(out)


def _ort_session(model_path, providers=("CPUExecutionProvider",)):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # Basic optimisations only: fusions change rounding, and we want a plain reference.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(str(model_path), sess_options=so, providers=list(providers))


def ort_run(model_path, feeds: Dict[str, np.ndarray], output_names: Optional[List[str]] = None) -> Dict[str, np.ndarray]:
    """Runs the model in onnxruntime (CPU) and returns {output name: array} in graph output order."""
    sess = _ort_session(model_path)
    names = output_names or [o.name for o in sess.get_outputs()]
    outs = sess.run(names, feeds)
    return dict(zip(names, outs))


def ort_run_many(model_path, samples: Iterable[Dict[str, np.ndarray]]) -> List[Dict[str, np.ndarray]]:
    """ort_run for several feed dicts with one session."""
    sess = _ort_session(model_path)
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(names, s))) for s in samples]


def ort_run_concat(model_path, samples: Iterable[Dict[str, np.ndarray]], name: Optional[str] = None) -> np.ndarray:
    """Runs the model on every sample (one onnxruntime session) and returns one output, by default the
    first graph output, concatenated over the samples along axis 0 (e.g. logits [rows, classes])."""
    return concat_output(ort_run_many(model_path, samples), name)


def concat_output(outs: Sequence[Dict[str, np.ndarray]], name: Optional[str] = None) -> np.ndarray:
    """One output of several runs ({output name: array} per sample, as ort_run_many returns them),
    concatenated along axis 0; `name` None takes the first output."""
    key = name if name is not None else next(iter(outs[0]))
    return np.concatenate([o[key] for o in outs], axis=0)


def heldout_samples(model_name: str) -> List[Dict[str, np.ndarray]]:
    """The committed held-out samples of a test model, tests/models/data/<model_name>_heldout.npz
    (e.g. "digits_cnn"), as feed dicts."""
    return load_npz_samples(MODELS_DATA / f"{model_name}_heldout.npz")


def digits_labels() -> np.ndarray:
    """True classes of the digits held-out samples (same order as digits_*_heldout.npz)."""
    return np.load(MODELS_DATA / "digits_heldout_labels.npy")


def initializer_arrays(model) -> Dict[str, np.ndarray]:
    """{initializer name: numpy array} of a model; `model` is a ModelProto or a path to load."""
    import onnx
    from onnx import numpy_helper
    m = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


def load_npz_samples(path) -> List[Dict[str, np.ndarray]]:
    """Reads an .npz written with the stacking rule and returns one feed dict per sample.

    Rule (the one frugal's dataset reader implements): every array has a leading sample axis; array
    k has shape [S, *sample_shape] where sample_shape has the model input's own rank. So an .npz for
    input [N,1,8,8] holding one image per sample has shape [S, 1, 1, 8, 8].
    """
    with np.load(str(path)) as z:
        arrays = {k: z[k] for k in z.files}
    if not arrays:
        return []
    counts = {k: a.shape[0] for k, a in arrays.items()}
    n = set(counts.values())
    if len(n) != 1:
        raise ValueError(f"{path}: arrays disagree on the sample count: {counts}")
    s = n.pop()
    return [{k: np.ascontiguousarray(a[i]) for k, a in arrays.items()} for i in range(s)]


def write_npz_samples(path, samples: Sequence[Dict[str, np.ndarray]], compressed: bool = True) -> None:
    """Writes feed dicts as one .npz (stacking rule above). All samples must share names and shapes."""
    if not samples:
        raise ValueError("no samples")
    names = list(samples[0].keys())
    stacked = {k: np.stack([np.asarray(s[k]) for s in samples], axis=0) for k in names}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(str(path), **stacked)


def read_tensor_pb(path) -> Tuple[str, np.ndarray]:
    """Reads a serialized onnx.TensorProto; returns (name, array)."""
    import onnx
    from onnx import numpy_helper
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return t.name, numpy_helper.to_array(t)


def write_tensor_pb(path, array: np.ndarray, name: str = "") -> None:
    """Writes `array` as a serialized onnx.TensorProto named `name`."""
    from onnx import numpy_helper
    t = numpy_helper.from_array(np.asarray(array), name=name)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def write_test_data_set(dir_path, inputs: Sequence[Tuple[str, np.ndarray]],
                        outputs: Sequence[Tuple[str, np.ndarray]] = ()) -> Path:
    """Writes an ONNX test_data_set dir: input_K.pb / output_K.pb, K = position."""
    d = Path(dir_path)
    d.mkdir(parents=True, exist_ok=True)
    for k, (n, a) in enumerate(inputs):
        write_tensor_pb(d / f"input_{k}.pb", a, n)
    for k, (n, a) in enumerate(outputs):
        write_tensor_pb(d / f"output_{k}.pb", a, n)
    return d


def read_test_data_set(dir_path, prefix: str) -> List[Tuple[str, np.ndarray]]:
    """Reads PREFIX_0.pb, PREFIX_1.pb, ... of a test_data_set dir in position order."""
    d = Path(dir_path)
    out = []
    k = 0
    while (d / f"{prefix}_{k}.pb").exists():
        out.append(read_tensor_pb(d / f"{prefix}_{k}.pb"))
        k += 1
    return out


def read_frugal_outputs(out_dir, fmt: str = "pb") -> List[List[np.ndarray]]:
    """Reads what `frugal run -o OUT_DIR` wrote: per sample i, OUT_DIR/test_data_set_<i>/output_<k>.{pb,npy}.

    Returns one list of arrays (graph output order) per sample, samples in index order.
    """
    d = Path(out_dir)
    sets = sorted((p for p in d.iterdir() if p.is_dir() and p.name.startswith("test_data_set_")),
                  key=lambda p: int(p.name.rsplit("_", 1)[1]))
    result = []
    for s in sets:
        arrays = []
        k = 0
        while True:
            p = s / f"output_{k}.{fmt}"
            if not p.exists():
                break
            arrays.append(read_tensor_pb(p)[1] if fmt == "pb" else np.load(str(p)))
            k += 1
        result.append(arrays)
    return result


def compare(a, b) -> Tuple[float, float, float]:
    """Compares a result `a` with a reference `b`: (max abs error, cosine similarity, top-1 agreement).

    Top-1 agreement is the fraction of rows (last axis = classes) whose argmax matches; for
    rank-0/1 tensors it is 1.0 or 0.0 for the single argmax. Cosine of two zero vectors is 1.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise AssertionError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0, 1.0, 1.0
    if a.dtype == np.bool_ or b.dtype == np.bool_:
        a = a.astype(np.float64)
        b = b.astype(np.float64)
    af = a.astype(np.float64).ravel()
    bf = b.astype(np.float64).ravel()
    max_abs = float(np.max(np.abs(af - bf)))
    na, nb = np.linalg.norm(af), np.linalg.norm(bf)
    if na == 0 and nb == 0:
        cos = 1.0
    elif na == 0 or nb == 0:
        cos = 0.0
    else:
        cos = float(np.dot(af, bf) / (na * nb))
    return max_abs, cos, top1_agreement(a, b)


def top1_agreement(a, b) -> float:
    """Fraction of rows (last axis = classes; all leading axes are rows) whose argmax is the same in
    `a` and `b`. A rank-1 tensor is one row; rank 0 gives 1.0."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim == 0:
        return 1.0
    a2 = a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(1, -1)
    b2 = b.reshape(-1, b.shape[-1]) if b.ndim > 1 else b.reshape(1, -1)
    return float(np.mean(np.argmax(a2, axis=-1) == np.argmax(b2, axis=-1)))


def label_accuracy(logits, labels) -> float:
    """Fraction of rows of `logits` [rows, classes] whose argmax is that row's entry of `labels`."""
    return float(np.mean(np.asarray(logits).argmax(-1) == np.asarray(labels)))


def top1_per_output(ref_outs: Sequence[Dict[str, np.ndarray]],
                    got_outs: Sequence[Dict[str, np.ndarray]]) -> Dict[str, float]:
    """Per output of `ref_outs` (one {name: array} per sample): top1_agreement of the output
    concatenated over all samples, i.e. the fraction of all rows whose argmax agrees."""
    return {name: top1_agreement(concat_output(ref_outs, name), concat_output(got_outs, name))
            for name in ref_outs[0]}


def assert_cosine_per_output(ref_outs: Sequence[Dict[str, np.ndarray]], got_outs: Sequence[Dict[str, np.ndarray]],
                             min_cosine: float) -> None:
    """For every sample i and every output of ref_outs[i]: cosine similarity (as compare() computes
    it) of got_outs[i] against ref_outs[i] >= min_cosine."""
    assert len(ref_outs) == len(got_outs), (len(ref_outs), len(got_outs))
    for i, (r, g) in enumerate(zip(ref_outs, got_outs)):
        for name in r:
            cos = compare(g[name], r[name])[1]
            assert cos >= min_cosine, f"sample {i} output {name}: cosine {cos} < {min_cosine}"


def assert_outputs_equal(ref_outs: Sequence[Dict[str, np.ndarray]], got_outs: Sequence[Dict[str, np.ndarray]]) -> None:
    """For every sample and every output of ref_outs: the two arrays are exactly equal (np.array_equal)."""
    assert len(ref_outs) == len(got_outs), (len(ref_outs), len(got_outs))
    for i, (r, g) in enumerate(zip(ref_outs, got_outs)):
        for name in r:
            assert np.array_equal(r[name], g[name]), f"sample {i} output {name} differs"


def write_bert_squad_inputs(model_path, path, rows: int, batch: int, seed: int) -> Path:
    """Random SQuAD-like inputs for a tiny BERT-SQuAD model, written as .npz of `rows` sequences in
    samples of `batch` rows.

    Names, dtypes and the sequence length come from the graph inputs (the stored test_data_set_0 has
    int32 [1, 7] for the Keras export, int64 [1, 10] for the PyTorch ones): token ids in [1, vocab)
    with vocab the rows of the embedding initializer that the ids Gather reads (20 and 100), an
    attention mask of ones with a padded tail on most rows (length seq/2+1 .. seq), token types 0 then
    1 from a random split point up to the length.
    """
    import onnx
    m = onnx.load(str(model_path))
    inits = {t.name: list(t.dims) for t in m.graph.initializer}
    inputs = {i.name: i for i in m.graph.input if i.name not in inits}
    ids = next(n for n in inputs if "input_ids" in n)
    mask = next(n for n in inputs if "mask" in n)
    types = next(n for n in inputs if n not in (ids, mask))
    vocab = next(inits[n.input[0]][0] for n in m.graph.node if n.op_type == "Gather" and n.input[1] == ids)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(inputs[ids].type.tensor_type.elem_type)
    seq = inputs[ids].type.tensor_type.shape.dim[1].dim_value
    rng = np.random.default_rng(seed)
    x = {ids: rng.integers(1, vocab, size=(rows, seq)), mask: np.ones((rows, seq)), types: np.zeros((rows, seq))}
    for r in range(rows):
        length = int(rng.integers(seq // 2 + 1, seq + 1))
        x[mask][r, length:] = 0
        x[types][r, int(rng.integers(1, length)):length] = 1
    np.savez(path, **{k: v.astype(dtype).reshape(rows // batch, batch, seq) for k, v in x.items()})
    return Path(path)


def oracle_tolerance(ref) -> float:
    """The run-vs-onnxruntime bound used across the oracle tests: 1e-4 * max(1, max|ref|).

    Why: both sides compute in float32 (eps ~1.2e-7). Different but valid summation orders (blocked
    GEMM vs ORT's MLAS, Winograd-free direct conv vs im2col) give errors that grow roughly with
    sqrt(K) * eps * |partial sums| along a reduction of length K, compounded over depth. For K up to
    ~25k (VGG's 7*7*512 FC) and ~50 layers this stays well below 1e-4 relative to the output scale,
    while a real bug (wrong pad, wrong axis, off-by-one) gives errors of order the output itself.
    The max(1, .) floor keeps tiny outputs (softmax probabilities) from demanding sub-ulp agreement.
    """
    r = np.asarray(ref)
    m = float(np.max(np.abs(r.astype(np.float64)))) if r.size else 0.0
    return 1e-4 * max(1.0, m)


def graph_input_names(model) -> List[str]:
    """Names of the real inputs of a model (graph inputs that are not initializers; IR < 4 lists both)."""
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]
