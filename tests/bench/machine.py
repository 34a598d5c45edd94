"""Machine fingerprint printed with every benchmark record.

Ratios against the peer measured in the same run cancel most of a shared machine's drift, but not all
of it: on this project's cloud machine the same binary's single-op times moved by up to 60% between
runs, and one day the two vCPUs' FMA throughput doubled while both tools got slower. So the bench
scripts print this line at their start and end: the CPU, a float32 product's speed in onnxruntime on
one thread and on all, and the speed of a large memory copy, each the best of a few short rounds.
"""
import os
import time

import numpy as np


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _best(fn, rounds, min_s=0.05):
    """Seconds per call of fn: the best over `rounds` rounds of at least min_s each."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_s:
                break
        best = min(best, dt / n)
    return best


def _matmul_gflops(threads, n=512, rounds=5):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "fp",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, [n, n])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [n, n])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = {"X": rng.standard_normal((n, n)).astype(np.float32)}
    return 2.0 * n ** 3 / _best(lambda: s.run(None, x), rounds) * 1e-9


def _copy_gbs(mib=256, rounds=3):
    a = np.ones(mib << 18, dtype=np.float32)
    b = np.empty_like(a)
    return 2.0 * a.nbytes / _best(lambda: np.copyto(b, a), rounds, min_s=0.0) * 1e-9


def fingerprint():
    cores = os.cpu_count() or 1
    return {
        "cpu": _cpu_model(),
        "cores": cores,
        "matmul_gflops_1t": _matmul_gflops(1),
        "matmul_gflops_all": _matmul_gflops(cores),
        "copy_gbs": _copy_gbs(),
    }


def describe(label=""):
    """One line: the fingerprint taken now."""
    fp = fingerprint()
    return (f"machine{(' ' + label) if label else ''}: {fp['cpu']}, {fp['cores']} cores; onnxruntime MatMul 512^3 "
            f"{fp['matmul_gflops_1t']:.0f} GFLOP/s on 1 thread, {fp['matmul_gflops_all']:.0f} on {fp['cores']}; "
            f"memory copy {fp['copy_gbs']:.1f} GB/s (read + write)")


if __name__ == "__main__":
    print(describe(), flush=True)
