"""Pooling and L2 normalisation, shared by every backend.

Backends only turn token ids into hidden states; these plain functions turn hidden states
into sentence vectors exactly as sentence-transformers' Pooling and Normalize modules do,
so both backends provably pool the same way.
"""

from __future__ import annotations

import numpy as np


def pool(hidden: np.ndarray, attention_mask: np.ndarray, mode: str) -> np.ndarray:
    """(batch, seq, dim) hidden states + (batch, seq) mask -> (batch, dim) float32."""
    mask = attention_mask.astype(hidden.dtype)[:, :, None]
    if mode == "cls":  # the first attended token: [CLS], or the first after an excluded prompt
        return hidden[np.arange(len(hidden)), attention_mask.argmax(axis=1), :]
    if mode == "max":
        return np.where(mask > 0, hidden, np.finfo(hidden.dtype).min).max(axis=1)
    summed = np.einsum("bsd,bs->bd", hidden, mask[:, :, 0])
    counts = np.clip(mask.sum(axis=1), 1e-9, None)
    if mode == "mean":
        return summed / counts
    if mode == "mean_sqrt_len":
        return summed / np.sqrt(counts)
    raise ValueError(f"unknown pooling mode {mode!r}")


def exclude_prompt(attention_mask: np.ndarray, prompt_length: int) -> np.ndarray:
    """The pooling mask without the first `prompt_length` tokens (Pooling include_prompt=False)."""
    mask = attention_mask.copy()
    mask[:, :prompt_length] = 0
    return mask


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Same epsilon as torch.nn.functional.normalize (used by sentence-transformers)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def keep_largest(vectors: np.ndarray, k: int) -> np.ndarray:
    """Each row's `k` largest values by magnitude, the rest zeroed: SparseEncoder's max_active_dims
    (sentence_transformers.util.select_max_active_dims, a top-k of |x| per row)."""
    if k >= vectors.shape[1]:
        return vectors
    kept = np.argpartition(-np.abs(vectors), k - 1, axis=1)[:, :k]
    out = np.zeros_like(vectors)
    np.put_along_axis(out, kept, np.take_along_axis(vectors, kept, axis=1), axis=1)
    return out
