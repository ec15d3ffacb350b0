"""Tokenisation and length-bucketed batching, shared by every backend.

The shipped `tokenizer.json` truncates and pads to 128 tokens. Left alone, long texts
silently diverge from sentence-transformers (which reads up to `max_seq_length`) and short
texts pay for 128 positions. We truncate to the model's maximum and pad each sub-batch
only to its own longest member, after sorting by length as sentence-transformers'
`encode` does, so short texts never pay for long ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tokenizers import Tokenizer


@dataclass(frozen=True)
class Batch:
    """One padded sub-batch and where its rows go in the caller's order."""

    positions: np.ndarray  # indices into the original list of texts
    input_ids: np.ndarray  # (n, seq) int64
    attention_mask: np.ndarray  # (n, seq) int64
    token_type_ids: np.ndarray  # (n, seq) int64, all zeros (single-segment input)


def load_tokenizer(model_dir: Path, max_seq_length: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_seq_length)
    tokenizer.no_padding()  # we pad per sub-batch ourselves
    return tokenizer


def lowercase_inputs(tokenizer: Tokenizer) -> None:
    """sentence_bert_config's do_lower_case: lowercase before the tokenizer's own normaliser,
    as sentence-transformers does."""
    from tokenizers.normalizers import Lowercase, Sequence

    tokenizer.normalizer = Sequence([Lowercase(), tokenizer.normalizer] if tokenizer.normalizer else [Lowercase()])


def pad_id_of(tokenizer: Tokenizer, pad_token: str | None) -> int:
    """The id sentence-transformers pads with (the tokenizer's pad token), else 0."""
    pad_id = tokenizer.token_to_id(pad_token) if pad_token else None
    return 0 if pad_id is None else pad_id


def prompt_token_count(tokenizer: Tokenizer, prompt: str) -> int:
    """Tokens a prompt occupies at the start of an input, leading special token included,
    trailing one excluded: sentence-transformers' prompt_length."""
    encoding = tokenizer.encode(prompt, add_special_tokens=True)
    return len(encoding.ids) - (1 if encoding.special_tokens_mask and encoding.special_tokens_mask[-1] else 0)


class BatchTokenizer:
    """Tokenises a request once and yields length-sorted, minimally padded sub-batches."""

    def __init__(self, tokenizer: Tokenizer, pad_id: int = 0):
        self._tokenizer = tokenizer
        self._pad_id = pad_id

    def encode(self, texts: list[str]) -> list[list[int]]:
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        return [e.ids for e in encodings]

    def batches(self, ids: list[list[int]], batch_size: int, max_tokens: int) -> Iterator[Batch]:
        """Length-sorted sub-batches, cut where padding would cost more than another call.

        Each model call costs its padded tokens plus a fixed overhead (reading ~40 MB of
        weights that do not fit in cache, worth ~CALL_OVERHEAD_TOKENS tokens of work); a
        small dynamic programme over the sorted lengths picks the cuts that minimise the
        total, within `batch_size` texts and `max_tokens` padded tokens per call.
        """
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")  # longest first: memory peaks early
        for start, end in plan_sub_batches(lengths[order].tolist(), batch_size, max_tokens):
            positions = order[start:end]
            width = int(lengths[positions[0]])
            input_ids = np.full((len(positions), width), self._pad_id, dtype=np.int64)
            attention_mask = np.zeros((len(positions), width), dtype=np.int64)
            for row, pos in enumerate(positions):
                n = lengths[pos]
                input_ids[row, :n] = ids[pos]
                attention_mask[row, :n] = 1
            yield Batch(positions, input_ids, attention_mask, np.zeros_like(input_ids))


CALL_OVERHEAD_TOKENS = 16


def plan_sub_batches(sorted_lengths: list[int], batch_size: int, max_tokens: int) -> list[tuple[int, int]]:
    """[start, end) cuts of lengths sorted longest first, minimising padded work + overhead."""
    n = len(sorted_lengths)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(end - 1, max(0, end - batch_size) - 1, -1):
            width = sorted_lengths[start]  # the group's longest, since sorted descending
            if (end - start) * width > max_tokens and end - start > 1:
                break  # starting earlier only widens the group further
            cost = best[start] + CALL_OVERHEAD_TOKENS + (end - start) * width
            if cost < best[end]:
                best[end], cut[end] = cost, start
    bounds = []
    end = n
    while end > 0:
        bounds.append((cut[end], end))
        end = cut[end]
    return bounds[::-1]
