"""A reranker's scores: the activation CrossEncoder.predict applies to the logits, and the order.

The model layer returns logits (one per pair) so requests with and without `raw_scores` share a
batch; each response applies the model's own activation (model_config.RERANK_ACTIVATIONS) here.
"""

from __future__ import annotations

import numpy as np


def activate(logits: np.ndarray, activation: str | None) -> np.ndarray:
    """sigmoid, tanh or identity, in float32 as torch computes them."""
    logits = np.asarray(logits, dtype=np.float32)
    if activation == "sigmoid":
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    if activation == "tanh":
        return np.tanh(logits).astype(np.float32)
    return logits


def ranked(scores: np.ndarray, top_n: int | None = None) -> list[int]:
    """Indices by score, highest first; equal scores keep their input order (a stable sort)."""
    order = np.argsort(-scores, kind="stable").tolist()
    return order if top_n is None else order[:top_n]
