"""Export and check the two kinds with a head on the encoder (run by prepare_model.py).

- a reranker (sentence-transformers' CrossEncoder): the `*ForSequenceClassification` graph, whose
  output is the logit of each (query, document) pair; the activation CrossEncoder.predict applies
  (sigmoid for one label, or what the folder stores) stays outside the graph, so `raw_scores`
  can skip it;
- a sparse encoder (SparseEncoder): the `*ForMaskedLM` graph with SpladePooling inside it,
  log1p(relu(logits)) (twice log1p for log1p_relu), masked, max or sum over the tokens: the
  graph answers (batch, vocabulary) instead of (batch, tokens, vocabulary) logits, which at
  30,522 entries per token would be most of the work and memory.

Both are checked against sentence-transformers on the same folder, short and over-long inputs,
with every prompt the model defines, and their int8 file is measured against the fp32 one.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from embedding_service.contract import RERANKER
from embedding_service.model_config import ModelSpec

# fp32 ONNX vs sentence-transformers: the largest difference, relative to the largest value.
FIDELITY_MAX_RELATIVE_ERROR = 1e-4
# A sparse weight this small relative to its vector's largest is float32 rounding at relu's edge
# (a logit of 7e-8 from terms of ~0.1): its index may be active on one side only.
NOISE_FLOOR = 1e-6
# int8 vs fp32 on the calibration corpus: a reranker's scores must keep their order (Spearman's
# rho over every pair), a sparse encoder's vectors their direction (the embedders' cosine gate).
GATE_MIN_SPEARMAN = 0.95
FIDELITY_PAIRS = (
    ("what is the capital of France?", "Paris is the capital and largest city of France."),
    ("hello, world!", "A man is eating food."),
    ("a long query " * 40, "The quick brown fox jumps over the lazy dog. " * 80),  # both past the window
    ("Ünïcödé, emoji 🚀", "and 中文 text"),
    ("short", "A long passage about nothing in particular. " * 60),
)


def export_head(model_dir: Path, target: Path, spec: ModelSpec, opset: int) -> list[str]:
    """torch -> ONNX (legacy exporter, eager attention); returns the graph's input names."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if spec.kind == RERANKER else AutoModelForMaskedLM
    model = auto.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    token_types = "token_type_ids" in inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])

    class Head(torch.nn.Module):
        """Keyword forward (transformers 5.x), and SpladePooling on a sparse encoder's logits."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            feeds = dict(zip(names, inputs))
            logits = self.inner(**feeds).logits
            if spec.kind == RERANKER:
                return logits
            weights = torch.log1p(torch.relu(logits * feeds["attention_mask"].unsqueeze(-1).to(logits.dtype)))
            if spec.splade_activation == "log1p_relu":
                weights = torch.log1p(weights)
            return weights.amax(dim=1) if spec.splade_strategy == "max" else weights.sum(dim=1)

    output = "logits" if spec.kind == RERANKER else "sparse_embedding"
    ids = torch.ones((2, 16), dtype=torch.int64)
    examples = (ids, torch.ones_like(ids), torch.zeros_like(ids))[: len(names)]
    axes = {0: "batch", 1: "sequence"}
    with torch.inference_mode():
        torch.onnx.export(
            Head(model), examples, str(target), input_names=names, output_names=[output],
            dynamic_axes={**{name: axes for name in names}, output: {0: "batch"}},
            opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    return names


def _relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / max(float(np.abs(reference).max()), 1e-12))


def load_ours(model_dir: Path, onnx_file: str):
    from embedding_service.model import model_load
    from embedding_service.settings import load_settings

    return model_load(load_settings({"MODEL_DIR": str(model_dir), "ONNX_FILE": onnx_file}))


def check_head_fidelity(model_dir: Path, onnx_path: Path) -> dict:
    """Max relative error of the ONNX graph vs sentence-transformers (and, sparse, whether the
    non-zero indices are the same); the window must be the one sentence-transformers reads."""
    ours = load_ours(model_dir, str(onnx_path.relative_to(model_dir)))
    if ours.kind == RERANKER:
        import torch
        from sentence_transformers import CrossEncoder

        reference = CrossEncoder(str(model_dir), device="cpu", local_files_only=True)
        window = reference.max_length
        pairs = list(FIDELITY_PAIRS)
        expected = reference.predict(pairs, activation_fn=torch.nn.Identity(), convert_to_numpy=True)
        error = _relative_error(ours.embed(pairs).vectors[:, 0], expected)
        indices_equal = True
    else:
        from sentence_transformers import SparseEncoder

        reference = SparseEncoder(str(model_dir), device="cpu", local_files_only=True)
        window = reference.max_seq_length
        texts = [text for pair in FIDELITY_PAIRS for text in pair]
        error, indices_equal = 0.0, True
        for name, prompt in [(None, None), *((n, p) for n, p in ours.spec.prompts.items() if p)]:
            expected = reference.encode(texts, prompt_name=name, convert_to_tensor=True).to_dense().numpy()
            vectors = ours.embed(texts, prompt=prompt).vectors
            error = max(error, _relative_error(vectors, expected))
            differ = (vectors > 0) != (expected > 0)
            floor = NOISE_FLOOR * expected.max(axis=1, keepdims=True)
            indices_equal = indices_equal and not (differ & ((vectors > floor) | (expected > floor))).any()
    if window != ours.spec.max_seq_length:
        raise SystemExit(
            f"error: max_seq_length read as {ours.spec.max_seq_length}, sentence-transformers says {window}"
        )
    return {"max_relative_error_vs_sentence_transformers": error, "indices_equal": indices_equal}


def head_fidelity_passes(found: dict) -> bool:
    error = found["max_relative_error_vs_sentence_transformers"]
    return found["indices_equal"] and error <= FIDELITY_MAX_RELATIVE_ERROR


def calibration_pairs(texts: list[str]) -> list[tuple[str, str]]:
    """Each text against itself and against its neighbour: related and unrelated pairs."""
    return [(t, t) for t in texts] + [(t, texts[(i + 1) % len(texts)]) for i, t in enumerate(texts)]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks_a, ranks_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def check_head_int8(model_dir: Path, fp32_file: str, int8_file: str, texts: list[str]) -> dict:
    """int8 vs fp32 on the calibration corpus: what the int8 file costs in quality."""
    fp32, int8 = load_ours(model_dir, fp32_file), load_ours(model_dir, int8_file)
    if fp32.kind == RERANKER:
        from embedding_service.scores import activate

        pairs = calibration_pairs(texts)
        a = activate(fp32.embed(pairs).vectors[:, 0], fp32.spec.activation)
        b = activate(int8.embed(pairs).vectors[:, 0], fp32.spec.activation)
        return {"pairs": len(pairs), "spearman_vs_fp32": _spearman(a, b),
                "max_score_difference_vs_fp32": float(np.abs(a - b).max())}
    a, b = fp32.embed(texts).vectors, int8.embed(texts).vectors
    cosines = np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    top = 32
    overlap = [len(set(np.argsort(-x)[:top]) & set(np.argsort(-y)[:top])) / top for x, y in zip(a, b)]
    return {"texts": len(texts), "min_cosine_vs_fp32": float(cosines.min()),
            "mean_cosine_vs_fp32": float(cosines.mean()), "top32_overlap_vs_fp32": float(np.mean(overlap))}


def head_int8_passes(found: dict, gate_min_cosine: float) -> bool:
    if "spearman_vs_fp32" in found:
        return found["spearman_vs_fp32"] >= GATE_MIN_SPEARMAN
    return found["min_cosine_vs_fp32"] >= gate_min_cosine

