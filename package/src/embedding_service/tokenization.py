"""Tokenisation and length-bucketed batching, shared by every backend.

The shipped `tokenizer.json` truncates and pads to 128 tokens. Left alone, long texts
silently diverge from sentence-transformers (which reads up to `max_seq_length`) and short
texts pay for 128 positions. We truncate to the model's maximum and pad each sub-batch
only to its own longest member, after sorting by length as sentence-transformers'
`encode` does, so short texts never pay for long ones.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from itertools import chain
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
    token_type_ids: np.ndarray  # (n, seq) int64: zeros for single texts, 1 over a pair's second text


def load_tokenizer(model_dir: Path, max_seq_length: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_seq_length)
    tokenizer.no_padding()  # we pad per sub-batch ourselves
    return tokenizer


def lowercase_inputs(tokenizer: Tokenizer) -> None:
    """sentence_bert_config's do_lower_case: lowercase before the tokenizer's own normaliser,
    as sentence-transformers does."""
    from tokenizers.normalizers import Lowercase, Sequence

    own = [tokenizer.normalizer] if tokenizer.normalizer else []
    tokenizer.normalizer = Sequence([Lowercase(), *own])


def pad_id_of(tokenizer: Tokenizer, pad_token: str | None) -> int:
    """The id sentence-transformers pads with (the tokenizer's pad token), else 0."""
    pad_id = tokenizer.token_to_id(pad_token) if pad_token else None
    return 0 if pad_id is None else pad_id


def prompt_token_count(tokenizer: Tokenizer, prompt: str) -> int:
    """Tokens a prompt occupies at the start of an input, leading special token included,
    trailing one excluded: sentence-transformers' prompt_length."""
    encoding = tokenizer.encode(prompt, add_special_tokens=True)
    return len(encoding.ids) - (1 if encoding.special_tokens_mask and encoding.special_tokens_mask[-1] else 0)


# A call's fixed cost on CPU, in tokens of work (see BatchTokenizer.batches); a GPU passes its own.
CALL_OVERHEAD_TOKENS = 16


class BatchTokenizer:
    """Tokenises a request once and yields length-sorted, minimally padded sub-batches."""

    def __init__(self, tokenizer: Tokenizer, pad_id: int = 0):
        self._tokenizer = tokenizer
        self._pad_id = pad_id

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.encode_flagged(texts)[0]

    def encode_flagged(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        """Ids per text, and whether each text was cut at the maximum length (the tokenizer
        keeps what it cut off as `overflowing`), so callers can tell clients."""
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        return [e.ids for e in encodings], [bool(e.overflowing) for e in encodings]

    def encode_pairs(self, pairs: list[tuple[str, str]]) -> tuple[list[list[int]], list[list[int]], list[bool]]:
        """(query, document) pairs as a cross-encoder reads them: [CLS] q [SEP] d [SEP] with token
        types 0 then 1, cut longest-first to the maximum length as sentence-transformers'
        tokenizer call (truncation="longest_first") cuts them."""
        encodings = self._tokenizer.encode_batch(pairs, add_special_tokens=True)
        return [e.ids for e in encodings], [e.type_ids for e in encodings], [bool(e.overflowing) for e in encodings]

    def batches(
        self,
        ids: list[list[int]],
        batch_size: int,
        max_tokens: int,
        call_overhead_tokens: int = CALL_OVERHEAD_TOKENS,
        type_ids: list[list[int]] | None = None,
    ) -> Iterator[Batch]:
        """Length-sorted sub-batches, cut where padding would cost more than another call.

        Each model call costs its padded tokens plus a fixed overhead (on CPU, reading ~40 MB of
        weights that do not fit in cache, worth ~CALL_OVERHEAD_TOKENS tokens of work); a
        small dynamic programme over the sorted lengths picks the cuts that minimise the
        total, within `batch_size` texts and `max_tokens` padded tokens per call. Padding is
        vectorised: the ids are flattened once, and each sub-batch is one gather.
        """
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(ids) else lengths
        flat_types = (
            None if type_ids is None
            else np.fromiter(chain.from_iterable(type_ids), dtype=np.int64, count=int(lengths.sum()))
        )
        order = np.argsort(-lengths, kind="stable")  # longest first: memory peaks early
        plan = plan_sub_batches(lengths[order].tolist(), batch_size, max_tokens, call_overhead_tokens)
        for start, end in plan:
            positions = order[start:end]
            input_ids, attention_mask = self._pad(flat, starts[positions], lengths[positions], self._pad_id)
            token_types = (
                np.zeros_like(input_ids) if flat_types is None
                else self._pad(flat_types, starts[positions], lengths[positions], 0)[0]
            )
            yield Batch(positions, input_ids, attention_mask, token_types)

    @staticmethod
    def _pad(
        flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, pad_id: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of `flat` (each `lengths[i]` ids from `starts[i]`) right-padded to the longest."""
        columns = np.arange(int(lengths.max()), dtype=np.int64)
        real = columns < lengths[:, None]
        gathered = flat[np.minimum(starts[:, None] + columns, max(len(flat) - 1, 0))]
        input_ids = np.where(real, gathered, pad_id)
        return input_ids, real.astype(np.int64)


def plan_sub_batches(
    sorted_lengths: list[int],
    batch_size: int,
    max_tokens: int,
    call_overhead_tokens: int = CALL_OVERHEAD_TOKENS,
) -> list[tuple[int, int]]:
    """[start, end) cuts of lengths sorted longest first, minimising padded work + overhead.

    A dynamic programme over group ends. Only two kinds of start need scoring: the first text
    of a run of equal lengths, and the earliest start that still fits the caps. (A group that
    starts mid-run and is below its caps can take the run's earlier texts from the group
    before it at no extra cost, since that group is at least as wide.) So a GPU's 256-text
    budget costs a few candidates per text, not 256.
    """
    n = len(sorted_lengths)
    run_starts = [i for i in range(n) if i == 0 or sorted_lengths[i] != sorted_lengths[i - 1]]
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    earliest = 0  # the earliest start that fits the caps only moves right as `end` grows
    for end in range(1, n + 1):
        earliest = max(earliest, end - batch_size)
        while earliest < end - 1 and (end - earliest) * sorted_lengths[earliest] > max_tokens:
            earliest += 1
        runs = run_starts[bisect_left(run_starts, earliest + 1) : bisect_left(run_starts, end)]
        for start in (earliest, *runs):
            cost = best[start] + call_overhead_tokens + (end - start) * sorted_lengths[start]
            if cost < best[end]:
                best[end], cut[end] = cost, start
    bounds = []
    end = n
    while end > 0:
        bounds.append((cut[end], end))
        end = cut[end]
    return bounds[::-1]
