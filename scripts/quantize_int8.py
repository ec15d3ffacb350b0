"""The int8 economy file, `onnx/model_int8.onnx`, from the checked fp32 `onnx/model.onnx`.

The scheme was picked by measurement (docs/performance.md, "Economy precision: int8"; docs/benchmarks/quality.md):

- every MatMul with a weight matrix (the attention output and both feed-forward projections; in
  graphs without a fused Attention, the Q/K/V projections too) gets **per-token** activation
  quantisation: each token's row is scaled by its own max |x| to [-105, 105] and stored as uint8
  around a zero point of 106, so one outlier token (BERT's [CLS]/[SEP] reach 20-30 where other
  tokens stay under ~4) no longer coarsens every other token's grid, which is what limits
  onnxruntime's per-tensor dynamic quantisation (recall@10 0.92 there, 0.955 here);
- weights are int8, symmetric, per output column, within [-77, 77];
- the fused Attention (Q/K/V) and the fused embedding layer use onnxruntime's `quantize_dynamic`
  (per channel, reduce_range: 7-bit weights). An unfused graph's embedding tables (Gather: MPNet)
  stay fp32: quantize_dynamic gives a whole 30,000-row table one uint8 grid, which took
  all-mpnet-base-v2's min cosine with fp32 from 0.974 to 0.967 (its file is 181 MB instead of 110;
  fp32: 436 MB).

Why the odd ranges: on x86 CPUs without VNNI (AVX2 only, or AVX-512 without VNNI: many Lambda
hosts) onnxruntime's u8 x s8 kernels add pairs of products in int16 (vpmaddubsw), which saturates
above 32,767. Activations within [1, 211] and weights within [-77, 77] give at most
2 x 211 x 77 = 32,494, so no sum can saturate on any CPU; reduce_range gives QAttention the same
guarantee (2 x 255 x 63 = 32,130). U8U8 avoids it too but measured 1.26x instead of 1.9x.

`check()` is the gate `prepare_model.py` applies before the file is served.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ACTIVATION_MAX = 105  # per-token activations: round(x / (max|x| / 105)) in [-105, 105], + 106
WEIGHT_MAX = 77  # weights: round(w / (max|w| / 77)) in [-77, 77], per output column
assert 2 * (2 * ACTIVATION_MAX + 1) * WEIGHT_MAX <= 32767, "int16 pair sums (vpmaddubsw) must not saturate"
SCHEME = (f"per-token u8 activations (+-{ACTIVATION_MAX}) x per-column s8 weights (+-{WEIGHT_MAX}) for "
          "MatMuls; onnxruntime quantize_dynamic (per channel, reduce_range) for Attention and embeddings")
# The gate: the lowest cosine of a calibration text's int8 vector with its fp32 twin
# (scripts/calibration_corpus.txt, 500 texts). Measured: all-MiniLM-L6-v2 0.991,
# all-mpnet-base-v2 0.974, the tiny random-weight test models 0.9999; broken schemes fall below
# it (onnxruntime's per-tensor weights with reduce_range: 0.56; per-tensor uint8 weights: 0.94,
# on MiniLM and the 2,662-text corpus).
# recall@10 is printed and stamped but not gated: on a random-weight model whose vectors all
# crowd together it swings from 0.87 to 0.99 with cosines of 0.9999 (bench/quality.py measures
# the ranking on real texts).
GATE_MIN_COSINE = 0.96


def _weight(initializers: dict, node) -> np.ndarray | None:
    from onnx import numpy_helper

    if node.op_type != "MatMul" or node.input[1] not in initializers:
        return None
    weight = numpy_helper.to_array(initializers[node.input[1]])
    return weight if weight.ndim == 2 and weight.dtype == np.float32 else None


def _reduce(op: str, source: str, target: str, name: str, opset: int, helper):
    """ReduceMax/ReduceMin over the last axis: `axes` is an attribute before opset 18, an input from it."""
    if opset >= 18:
        return helper.make_node(op, [source, "pt_last_axis"], [target], keepdims=1, name=name)
    return helper.make_node(op, [source], [target], axes=[-1], keepdims=1, name=name)


def _per_token_matmul(node, weight: np.ndarray, opset: int, weight_max: int) -> tuple[list, list]:
    """The nodes and initializers that replace MatMul(x, weight) by its per-token int8 form."""
    from onnx import helper, numpy_helper

    x, (y,), p = node.input[0], node.output, node.name or node.output[0]
    w_scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / weight_max
    w_int8 = np.clip(np.round(weight / w_scale), -weight_max, weight_max).astype(np.int8)
    initializers = [numpy_helper.from_array(w_int8, f"{p}_w_int8"),
                    numpy_helper.from_array(w_scale.astype(np.float32), f"{p}_w_scale")]
    nodes = [
        _reduce("ReduceMax", x, f"{p}_max", f"{p}_max", opset, helper),
        _reduce("ReduceMin", x, f"{p}_min", f"{p}_min", opset, helper),
        helper.make_node("Neg", [f"{p}_min"], [f"{p}_neg_min"], name=f"{p}_neg_min"),
        helper.make_node("Max", [f"{p}_max", f"{p}_neg_min", "pt_eps"], [f"{p}_abs_max"],
                         name=f"{p}_abs_max"),
        helper.make_node("Div", [f"{p}_abs_max", "pt_levels"], [f"{p}_scale"], name=f"{p}_scale"),
        helper.make_node("Div", [x, f"{p}_scale"], [f"{p}_scaled"], name=f"{p}_scaled"),
        helper.make_node("QuantizeLinear", [f"{p}_scaled", "pt_one", "pt_zero_point"], [f"{p}_u8"],
                         name=f"{p}_u8"),
        helper.make_node("MatMulIntegerToFloat",
                         [f"{p}_u8", f"{p}_w_int8", "pt_one", f"{p}_w_scale", "pt_zero_point"],
                         [f"{p}_int8_out"], name=f"{p}_int8", domain="com.microsoft"),
        helper.make_node("Mul", [f"{p}_int8_out", f"{p}_scale"], [y], name=f"{p}_rescale"),
    ]
    return nodes, initializers


def per_token_matmuls(model, activation_max: int = ACTIVATION_MAX, weight_max: int = WEIGHT_MAX) -> int:
    """Rewrite every MatMul with a 2-D float weight in place; returns how many. Activations
    round to [-activation_max, activation_max] around a zero point of activation_max + 1."""
    from onnx import helper, numpy_helper

    graph = model.graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    initializers = {i.name: i for i in graph.initializer}
    nodes, added, count = [], [], 0
    for node in graph.node:
        weight = _weight(initializers, node)
        if weight is None:
            nodes.append(node)
            continue
        new_nodes, new_initializers = _per_token_matmul(node, weight, opset, weight_max)
        nodes += new_nodes
        added += new_initializers
        count += 1
    shared = {"pt_one": np.float32(1.0), "pt_zero_point": np.uint8(activation_max + 1),
              "pt_levels": np.float32(activation_max), "pt_eps": np.float32(1e-12),
              "pt_last_axis": np.int64([-1])}
    added += [numpy_helper.from_array(np.asarray(value), name) for name, value in shared.items()]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in [*graph.initializer, *added] if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return count


DYNAMIC_OPS = ("Attention", "EmbedLayerNormalization")  # not Gather: see the module docstring


def quantize(source: Path, target: Path, activation_max: int = ACTIVATION_MAX,
             weight_max: int = WEIGHT_MAX, dynamic_ops: tuple[str, ...] = DYNAMIC_OPS) -> dict:
    """fp32 ONNX file -> the int8 file; returns what was quantised (for the stamp). The ranges
    and ops are parameters only for bench/int8_candidates.py; the service's file uses the defaults."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    matmuls = per_token_matmuls(model, activation_max, weight_max)
    others = [n.op_type for n in model.graph.node if n.op_type in dynamic_ops]
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        staged = Path(tmp) / "per_token.onnx"
        onnx.save(model, str(staged))
        if not dynamic_ops:  # quantize_dynamic would read an empty list as "every op type"
            onnx.save(model, str(target))
        else:  # Attention -> QAttention, EmbedLayerNormalization -> QEmbedLayerNormalization
            quantize_dynamic(
                staged, target, per_channel=True, reduce_range=True, weight_type=QuantType.QInt8,
                op_types_to_quantize=list(dynamic_ops),
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # the fused graph's contrib ops
            )
    return {"scheme": SCHEME, "per_token_matmuls": matmuls, "dynamic_ops": sorted(set(others))}


def recall_at_10(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Each text a query against all the others: the share of fp32's top 10 the candidate keeps."""
    def top(vectors):
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        scores = unit @ unit.T
        np.fill_diagonal(scores, -np.inf)
        return np.argsort(-scores, axis=1, kind="stable")[:, :10]

    ours, theirs = top(candidate), top(reference)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ours, theirs)]))


def check(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """The gate: the int8 vectors of the calibration corpus against fp32's. Raises SystemExit."""
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    cosines = np.sum(unit(reference.astype(np.float64)) * unit(candidate.astype(np.float64)), axis=1)
    found = {"min_cosine_vs_fp32": float(cosines.min()), "mean_cosine_vs_fp32": float(cosines.mean()),
             "recall_at_10_vs_fp32": recall_at_10(reference, candidate)}
    if not found["min_cosine_vs_fp32"] >= GATE_MIN_COSINE:  # NaN fails too
        raise SystemExit(
            f"error: the int8 file misses its gate on the calibration corpus: min cosine vs fp32 "
            f"{found['min_cosine_vs_fp32']:.4f} (needs >= {GATE_MIN_COSINE}; recall@10 vs fp32 "
            f"{found['recall_at_10_vs_fp32']:.3f})"
        )
    return found
