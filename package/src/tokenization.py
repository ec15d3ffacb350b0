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


class BatchTokenizer:
    """Tokenises a request once and yields length-sorted, minimally padded sub-batches."""

    def __init__(self, tokenizer: Tokenizer, pad_id: int = 0):
        self._tokenizer = tokenizer
        self._pad_id = pad_id

    def encode(self, texts: list[str]) -> list[list[int]]:
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        return [e.ids for e in encodings]

    def batches(self, ids: list[list[int]], batch_size: int) -> Iterator[Batch]:
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")  # longest first: memory peaks early
        groups, start = [], 0
        while start < len(order):  # new sub-batch at batch_size, or when padding would double the work
            end, width = start + 1, lengths[order[start]]
            while end < len(order) and end - start < batch_size and 2 * lengths[order[end]] >= width:
                end += 1
            groups.append(order[start:end])
            start = end
        for positions in groups:
            width = int(lengths[positions[0]])
            input_ids = np.full((len(positions), width), self._pad_id, dtype=np.int64)
            attention_mask = np.zeros((len(positions), width), dtype=np.int64)
            for row, pos in enumerate(positions):
                n = lengths[pos]
                input_ids[row, :n] = ids[pos]
                attention_mask[row, :n] = 1
            yield Batch(positions, input_ids, attention_mask, np.zeros_like(input_ids))
