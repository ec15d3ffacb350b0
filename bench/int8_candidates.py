#!/usr/bin/env python3
"""The lab behind the int8 scheme: every quantisation candidate, built and measured side by side.

Each candidate is built from the prepared fp32 `onnx/model.onnx` into a scratch folder and
measured through the service's own model layer against fp32 in the same process:

  .venv/bin/python bench/int8_candidates.py build [NAME...]      # ~2 s each (static: ~10 s)
  .venv/bin/python bench/int8_candidates.py quality [NAME...]    # bench/quality.py's metrics
      [--sts ../shared/data/stsbenchmark/sts-dev.csv]           #  + STS Spearman
  flock /tmp/timing.lock .venv/bin/python bench/int8_candidates.py speed NAME... # passages/s, texts/s

`speed` alternates fp32 and the candidate (64 passages of ~256 tokens from bench/corpus.py's
passages(), then 512 short sentences()), three rounds each at 1 and at 2 threads, and keeps each
one's best rate: ratios from one run on one machine, not published figures (`make bench` makes
those). Results are appended to <scratch>/results.jsonl. The chosen scheme is `per_token_105_77`
(scripts/quantize_int8.py, what `make setup` writes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

import corpus
import quality

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    """A module of scripts/ (set-up tools, not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


quantize_int8 = _script("quantize_int8")

MODEL_DIR = REPO / "models" / "all-MiniLM-L6-v2"
FP32 = MODEL_DIR / "onnx" / "model.onnx"
SCRATCH = Path("/tmp/int8-candidates")
CALIBRATION = REPO / "scripts" / "calibration_corpus.txt"


# --- candidates ---------------------------------------------------------------------------------
def nodes(model, predicate) -> list[str]:
    return [n.name for n in model.graph.node if predicate(n)]


def dynamic(target: Path, weight_type="QInt8", exclude=None, ops=None, **options) -> None:
    """onnxruntime's quantize_dynamic on the fused graph, per-tensor uint8 activations."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded = exclude(onnx.load(str(FP32))) if exclude else None
    quantize_dynamic(FP32, target, weight_type=getattr(QuantType, weight_type), nodes_to_exclude=excluded,
                     op_types_to_quantize=ops, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                     **{"per_channel": True, **options})


def static(target: Path, ops: tuple[str, ...]) -> None:
    """quantize_static (QDQ, int8 activations and weights, per channel), MinMax-calibrated on
    scripts/calibration_corpus.txt; symbolic shape inference first so the contrib ops get types."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inferred = SCRATCH / "fp32_shapes.onnx"
    quant_pre_process(str(FP32), str(inferred), skip_optimization=True, auto_merge=True)
    model = quality.embedder(MODEL_DIR, "fp32")
    ids, _ = model._tokens.encode_flagged([t for t in CALIBRATION.read_text().splitlines() if t.strip()])
    batches = iter(model._tokens.batches(ids, 32, 2048, 16))

    class Reader(CalibrationDataReader):
        def get_next(self):
            batch = next(batches, None)
            return batch and {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                              "token_type_ids": batch.token_type_ids}

    quantize_static(inferred, target, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=list(ops),
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "ActivationSymmetric": True})


def unfused_attention(source: Path, target: Path) -> None:
    """Attention(x, W, b) -> MatMul(x, W) -> Split -> MultiHeadAttention(q, k, v, b, mask), so the
    Q/K/V projection becomes a MatMul that per-token quantisation reaches too."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph, out = model.graph, []
    weights = {i.name: i for i in graph.initializer}
    mask = next(n.output[0] for n in graph.node if n.op_type == "Cast" and n.input[0] == "attention_mask")
    for node in graph.node:
        if node.op_type != "Attention":
            out.append(node)
            continue
        heads = next(a.i for a in node.attribute if a.name == "num_heads")
        hidden, p = numpy_helper.to_array(weights[node.input[1]]).shape[0], node.name
        graph.initializer.append(numpy_helper.from_array(np.array([hidden] * 3, np.int64), f"{p}_split"))
        out += [helper.make_node("MatMul", node.input[:2], [f"{p}_qkv"], name=f"{p}_qkv"),
                helper.make_node("Split", [f"{p}_qkv", f"{p}_split"], [f"{p}_{x}" for x in "qkv"], axis=-1),
                helper.make_node("MultiHeadAttention", [f"{p}_q", f"{p}_k", f"{p}_v", node.input[2], mask],
                                 list(node.output), num_heads=heads, domain="com.microsoft")]
    del graph.node[:]
    graph.node.extend(out)
    onnx.save(model, str(target))


def per_token(target: Path, activation_max=105, weight_max=77, ops=quantize_int8.DYNAMIC_OPS, mha=False):
    source = FP32
    if mha:
        source = SCRATCH / "fp32_unfused_attention.onnx"
        unfused_attention(FP32, source)
    quantize_int8.quantize(source, target, activation_max, weight_max, ops)


def ffn_out(n):
    return "/output/dense/" in n.name and "attention" not in n.name


def first_or_last_layer(n):
    return any(f"layer.{i}/" in n.name or n.name == f"Attention_{i}" for i in (0, 5))


CANDIDATES = {  # name -> builder(target)
    "s8_pc": lambda t: dynamic(t),
    "s8_pc_rr": lambda t: dynamic(t, reduce_range=True),
    "u8_pc": lambda t: dynamic(t, "QUInt8"),
    "u8_pt": lambda t: dynamic(t, "QUInt8", per_channel=False),
    "s8_pt_rr": lambda t: dynamic(t, per_channel=False, reduce_range=True),
    "s8_pc_rr_fp32_ffn_out": lambda t: dynamic(t, exclude=lambda m: nodes(m, ffn_out), reduce_range=True),
    "s8_pc_rr_fp32_attn_out": lambda t: dynamic(
        t, exclude=lambda m: nodes(m, lambda n: "/attention/output/dense/" in n.name), reduce_range=True),
    "s8_pc_rr_fp32_first_last": lambda t: dynamic(
        t, exclude=lambda m: nodes(m, first_or_last_layer), reduce_range=True),
    "s8_pc_rr_fp32_embed": lambda t: dynamic(
        t, exclude=lambda m: nodes(m, lambda n: n.op_type == "EmbedLayerNormalization"), reduce_range=True),
    "s8_pc_rr_matmul_only": lambda t: dynamic(t, ops=["MatMul"], reduce_range=True),
    "static_s8s8_pc_matmul": lambda t: static(t, ("MatMul",)),
    "static_s8s8_pc_matmul_attention": lambda t: static(t, ("MatMul", "Attention")),
    "per_token_127_127": lambda t: per_token(t, 127, 127),  # 8-bit both: can saturate without VNNI
    "per_token_127_63": lambda t: per_token(t, 127, 63),
    "per_token_63_127": lambda t: per_token(t, 63, 127),
    "per_token_127_64": lambda t: per_token(t, 127, 64),
    "per_token_105_77": lambda t: per_token(t),  # the chosen scheme (scripts/quantize_int8.py)
    "per_token_105_77_fp32_embed": lambda t: per_token(t, ops=("Attention",)),
    "per_token_127_63_fp32_attention_embed": lambda t: per_token(t, 127, 63, ops=()),
    "per_token_105_77_unfused_attention": lambda t: per_token(t, ops=("EmbedLayerNormalization",), mha=True),
}


def path_of(name: str) -> Path:
    return SCRATCH / f"{name}.onnx"


# --- commands -----------------------------------------------------------------------------------
def record(row: dict) -> None:
    print(json.dumps(row), flush=True)
    with (SCRATCH / "results.jsonl").open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def cmd_build(names: list[str]) -> None:
    for name in names:
        started = time.perf_counter()
        CANDIDATES[name](path_of(name))
        print(f"{name}: {path_of(name).stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.1f}s")


def cmd_quality(names: list[str], sts_path: Path | None) -> None:
    sts = quality.read_sts(sts_path) if sts_path else None
    def models():  # one at a time, as the rows are measured
        yield "fp32", quality.embedder(MODEL_DIR, "fp32")
        for name in names:
            yield name, quality.embedder(MODEL_DIR, "int8", onnx_file=str(path_of(name)))

    for name, row, texts, _ in quality.against_first(models(), quality.corpus_texts(), sts):
        size = {} if name == "fp32" else {"size_mb": path_of(name).stat().st_size / 1e6}
        record({"candidate": name, "texts": texts, **row, **size})


def best_rate(model, texts: list[str]) -> float:
    started = time.perf_counter()
    model.embed(texts)
    return len(texts) / (time.perf_counter() - started)


def cmd_speed(names: list[str], rounds: int = 3) -> None:
    workloads = {"passages": corpus.passages(64, seed=1), "short": corpus.sentences(512, seed=1)}
    for threads in (1, 2):
        fp32 = quality.embedder(MODEL_DIR, "fp32", threads)
        for name in names:
            candidate = quality.embedder(MODEL_DIR, "int8", threads, onnx_file=str(path_of(name)))
            row = {"candidate": name, "threads": threads}
            for kind, texts in workloads.items():
                rates = np.zeros((2, rounds))
                for i in range(rounds):  # alternate, so a change in machine load hits both alike
                    rates[:, i] = best_rate(fp32, texts), best_rate(candidate, texts)
                fp32_rate, int8_rate = rates.max(axis=1)
                row[kind] = {"fp32": fp32_rate, "int8": int8_rate, "ratio": int8_rate / fp32_rate}
            record(row)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("build", "quality", "speed"))
    parser.add_argument("names", nargs="*", help=f"candidates (default: all): {', '.join(CANDIDATES)}")
    parser.add_argument("--sts", type=Path, help="STS benchmark CSV for `quality`")
    args = parser.parse_args(argv)
    names = args.names or list(CANDIDATES)
    if unknown := set(names) - set(CANDIDATES):
        raise SystemExit(f"unknown candidates: {', '.join(sorted(unknown))}")
    SCRATCH.mkdir(parents=True, exist_ok=True)
    {"build": cmd_build, "speed": cmd_speed}.get(args.command, lambda n: cmd_quality(n, args.sts))(names)


if __name__ == "__main__":
    main()
