#!/usr/bin/env python3
"""Writes a BERT-style encoder stack with random weights (fixed seed, N(0, 0.02)) as ONNX (opset 17).

  input_ids int64 [batch, seq], attention_mask float [batch, seq] (1 = token, 0 = padding)
    -> Gather(word_embeddings) + Slice(position_embeddings, 0:seq) -> LayerNormalization
    -> L x [ Q/K/V MatMul+Add -> Reshape [0,0,heads,d] / Transpose to heads -> MatMul Q K^T
             -> Mul 1/sqrt(d) -> Add (1 - mask) * -1e4 (Unsqueeze'd to [batch,1,1,seq]) -> Softmax
             -> MatMul V -> Transpose/Reshape back -> MatMul+Add out proj -> Add residual -> LayerNorm
             -> MatMul+Add -> GELU as x*0.5*(1+Erf(x/sqrt2)) -> MatMul+Add -> Add residual -> LayerNorm ]
    -> last_hidden_state float [batch, seq, hidden]

The graph only uses shape-agnostic Reshape (0 = copy dim) and Shape->Gather->Slice for the position
table, so with --dynamic the batch and seq dims are symbolic ("batch", "seq"); by default they are the
fixed values of --batch and --seq. Models above ~1.5 GB are written with external data
(<out>.data beside the model). The default 12-layer model (~440 MB) belongs in the build dir, not git.

  python make_encoder.py --out build/models/bert_base_like.onnx
  python make_encoder.py --layers 2 --hidden 128 --heads 4 --ffn 256 --seq 32 --out /tmp/enc.onnx \
      --emit-data /tmp/enc_data --samples 4 --check
"""
import argparse
import math
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EXTERNAL_THRESHOLD = int(1.5 * (1 << 30))


class Builder:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.n = 0

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def randn(self, name, shape):
        a = (self.rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02))
        return self.init(name, a)

    def node(self, op, inputs, name, out=None, **attrs):
        out = out or f"{name}_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out


def build(layers, hidden, heads, ffn, batch, seq, vocab, max_pos, seed, dynamic):
    if hidden % heads:
        sys.exit(f"--hidden {hidden} is not divisible by --heads {heads}")
    d = hidden // heads
    b = Builder(seed)
    f32 = lambda v: np.array(v, dtype=np.float32)  # noqa: E731
    i64 = lambda v: np.array(v, dtype=np.int64)  # noqa: E731

    # Shared constants.
    b.init("const_one", f32(1.0))
    b.init("const_mask_neg", f32(-10000.0))
    b.init("const_half", f32(0.5))
    b.init("const_inv_sqrt2", f32(1.0 / math.sqrt(2.0)))
    b.init("const_attn_scale", f32(1.0 / math.sqrt(d)))
    b.init("const_axes_12", i64([1, 2]))
    b.init("const_zero_1d", i64([0]))
    b.init("const_idx_1", i64(1))
    b.init("const_axes_0", i64([0]))
    b.init("shape_to_heads", i64([0, 0, heads, d]))
    b.init("shape_from_heads", i64([0, 0, hidden]))

    # Embeddings.
    b.randn("embeddings.word_embeddings.weight", (vocab, hidden))
    b.randn("embeddings.position_embeddings.weight", (max_pos, hidden))
    b.init("embeddings.LayerNorm.weight", np.ones(hidden, np.float32))
    b.init("embeddings.LayerNorm.bias", np.zeros(hidden, np.float32))
    words = b.node("Gather", ["embeddings.word_embeddings.weight", "input_ids"], "embeddings/word", axis=0)
    shp = b.node("Shape", ["input_ids"], "embeddings/shape")
    seqlen = b.node("Gather", [shp, "const_idx_1"], "embeddings/seq_len", axis=0)
    seqlen1 = b.node("Unsqueeze", [seqlen, "const_axes_0"], "embeddings/seq_len_1d")
    pos = b.node("Slice", ["embeddings.position_embeddings.weight", "const_zero_1d", seqlen1, "const_axes_0"],
                 "embeddings/position")
    emb = b.node("Add", [words, pos], "embeddings/add")
    x = b.node("LayerNormalization", [emb, "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"],
               "embeddings/LayerNorm", axis=-1, epsilon=1e-12)

    # Extended attention mask: (1 - m) * -1e4, [batch, 1, 1, seq].
    inv = b.node("Sub", ["const_one", "attention_mask"], "mask/invert")
    neg = b.node("Mul", [inv, "const_mask_neg"], "mask/scale")
    mask = b.node("Unsqueeze", [neg, "const_axes_12"], "mask/unsqueeze")

    for li in range(layers):
        p = f"encoder.layer.{li}"

        def linear(inp, name, n_in, n_out):
            w = b.randn(f"{p}.{name}.weight", (n_in, n_out))  # [K, N] as torch exports MatMul weights
            bias = b.randn(f"{p}.{name}.bias", (n_out,))
            mm = b.node("MatMul", [inp, w], f"{p}/{name}/MatMul")
            return b.node("Add", [mm, bias], f"{p}/{name}/Add")

        q = linear(x, "attention.self.query", hidden, hidden)
        k = linear(x, "attention.self.key", hidden, hidden)
        v = linear(x, "attention.self.value", hidden, hidden)
        qh = b.node("Transpose", [b.node("Reshape", [q, "shape_to_heads"], f"{p}/attention/q_reshape")],
                    f"{p}/attention/q_transpose", perm=[0, 2, 1, 3])
        kh = b.node("Transpose", [b.node("Reshape", [k, "shape_to_heads"], f"{p}/attention/k_reshape")],
                    f"{p}/attention/k_transpose", perm=[0, 2, 3, 1])
        vh = b.node("Transpose", [b.node("Reshape", [v, "shape_to_heads"], f"{p}/attention/v_reshape")],
                    f"{p}/attention/v_transpose", perm=[0, 2, 1, 3])
        scores = b.node("MatMul", [qh, kh], f"{p}/attention/scores")
        scaled = b.node("Mul", [scores, "const_attn_scale"], f"{p}/attention/scale")
        masked = b.node("Add", [scaled, mask], f"{p}/attention/mask_add")
        probs = b.node("Softmax", [masked], f"{p}/attention/softmax", axis=-1)
        ctx = b.node("MatMul", [probs, vh], f"{p}/attention/context")
        ctx_t = b.node("Transpose", [ctx], f"{p}/attention/context_transpose", perm=[0, 2, 1, 3])
        ctx_r = b.node("Reshape", [ctx_t, "shape_from_heads"], f"{p}/attention/context_reshape")
        attn = linear(ctx_r, "attention.output.dense", hidden, hidden)
        res1 = b.node("Add", [attn, x], f"{p}/attention/residual")
        b.init(f"{p}.attention.output.LayerNorm.weight", np.ones(hidden, np.float32))
        b.init(f"{p}.attention.output.LayerNorm.bias", np.zeros(hidden, np.float32))
        x1 = b.node("LayerNormalization", [res1, f"{p}.attention.output.LayerNorm.weight",
                                           f"{p}.attention.output.LayerNorm.bias"],
                    f"{p}/attention/LayerNorm", axis=-1, epsilon=1e-12)
        h = linear(x1, "intermediate.dense", hidden, ffn)
        # GELU (erf form), written out as BERT exporters did before opset 20's Gelu.
        e = b.node("Erf", [b.node("Mul", [h, "const_inv_sqrt2"], f"{p}/gelu/div_sqrt2")], f"{p}/gelu/erf")
        e1 = b.node("Add", [e, "const_one"], f"{p}/gelu/add_one")
        g = b.node("Mul", [b.node("Mul", [h, "const_half"], f"{p}/gelu/half"), e1], f"{p}/gelu/mul")
        o = linear(g, "output.dense", ffn, hidden)
        res2 = b.node("Add", [o, x1], f"{p}/output/residual")
        b.init(f"{p}.output.LayerNorm.weight", np.ones(hidden, np.float32))
        b.init(f"{p}.output.LayerNorm.bias", np.zeros(hidden, np.float32))
        x = b.node("LayerNormalization", [res2, f"{p}.output.LayerNorm.weight", f"{p}.output.LayerNorm.bias"],
                   f"{p}/output/LayerNorm", axis=-1, epsilon=1e-12,
                   out="last_hidden_state" if li == layers - 1 else None)
    if layers == 0:
        b.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))

    bd, sd = ("batch", "seq") if dynamic else (batch, seq)
    graph = helper.make_graph(
        b.nodes, f"encoder_L{layers}_H{hidden}",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [bd, sd]),
         helper.make_tensor_value_info("attention_mask", TensorProto.FLOAT, [bd, sd])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [bd, sd, hidden])],
        initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="frugal-tests/make_encoder.py",
                              doc_string=f"BERT-style encoder, random N(0,0.02) weights, seed {seed}: layers={layers} "
                                         f"hidden={hidden} heads={heads} ffn={ffn} vocab={vocab}")
    model.ir_version = 8
    return model


def save(model, out, external=False):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbytes = sum(len(t.raw_data) for t in model.graph.initializer)
    if external or nbytes > EXTERNAL_THRESHOLD:
        loc = out.name + ".data"
        if (out.parent / loc).exists():
            (out.parent / loc).unlink()
        onnx.save_model(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=loc, size_threshold=1024)
        onnx.checker.check_model(str(out))
    else:
        onnx.checker.check_model(model)
        onnx.save_model(model, str(out))
    return nbytes


def make_samples(n, batch, seq, vocab, seed):
    """Random token ids and masks; each row keeps at least half its tokens, the rest is padding."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        ids = rng.integers(0, vocab, size=(batch, seq), dtype=np.int64)
        mask = np.zeros((batch, seq), np.float32)
        for r in range(batch):
            mask[r, :int(rng.integers(max(1, seq // 2), seq + 1))] = 1.0
        ids[mask == 0] = 0  # [PAD]
        samples.append({"input_ids": ids, "attention_mask": mask})
    return samples


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--ffn", type=int, default=3072)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--max-pos", type=int, default=None, help="position table rows (default max(512, seq))")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dynamic", action="store_true", help="symbolic batch/seq dims instead of fixed ones")
    ap.add_argument("--external", action="store_true", help="write external data (<out>.data) at any size")
    ap.add_argument("--out", help="model path")
    ap.add_argument("--emit-data", metavar="DIR", help="write DIR/encoder_inputs.npz (leading sample axis)")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--check", action="store_true", help="run the model in onnxruntime on the emitted data")
    a = ap.parse_args()
    if not a.out and not a.emit_data:
        ap.error("nothing to do: give --out and/or --emit-data")
    max_pos = a.max_pos or max(512, a.seq)
    samples = None
    if a.emit_data or a.check:
        samples = make_samples(a.samples, a.batch, a.seq, a.vocab, a.seed + 1)
    if a.emit_data:
        d = Path(a.emit_data)
        d.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(d / "encoder_inputs.npz",
                            input_ids=np.stack([s["input_ids"] for s in samples]),
                            attention_mask=np.stack([s["attention_mask"] for s in samples]))
        print(f"wrote {d / 'encoder_inputs.npz'}: {a.samples} samples of [{a.batch}, {a.seq}]")
    if a.out:
        model = build(a.layers, a.hidden, a.heads, a.ffn, a.batch, a.seq, a.vocab, max_pos, a.seed, a.dynamic)
        nbytes = save(model, a.out, a.external)
        del model
        print(f"wrote {a.out}: {nbytes / 1e6:.1f} MB of weights"
              f"{' (external data)' if a.external or nbytes > EXTERNAL_THRESHOLD else ''}")
        if a.check:
            import onnxruntime as ort
            sess = ort.InferenceSession(a.out, providers=["CPUExecutionProvider"])
            for i, s in enumerate(samples[:2]):
                y = sess.run(["last_hidden_state"], s)[0]
                if y.shape != (a.batch, a.seq, a.hidden) or not np.all(np.isfinite(y)):
                    sys.exit(f"onnxruntime check failed: shape {y.shape}, finite {np.all(np.isfinite(y))}")
                print(f"onnxruntime sample {i}: shape {y.shape}, mean {y.mean():+.4f}, std {y.std():.4f}, "
                      f"token-to-token std {y[0].std(axis=0).mean():.4f}")


if __name__ == "__main__":
    main()
