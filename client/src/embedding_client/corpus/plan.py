"""Rows -> shards (the unit of commit) -> requests that fit the target's limits.

Both cuts are pure functions of the rows and the options, so a resumed run cuts exactly the
same shards as the run it continues. A request stays within: the target's items per request,
an estimate of the tokens one call may take (so no single call outlives a Lambda timeout), the
request body limit, and the response limit (Lambda's 6 MB holds ~2,700 base64 vectors of 384
floats, ~1,300 of 768).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Iterable, Iterator

import orjson

from embedding_client.corpus.readers import Row

CHARS_PER_TOKEN = 4  # English text: a rough, deliberately generous guess before tokenising
JSON_OVERHEAD_BYTES = 2048  # the request's other fields
ITEM_OVERHEAD_BYTES = 96  # `{"object":"embedding","index":12345,"embedding":"..."}` around each value


@dataclass(frozen=True)
class Shard:
    index: int
    rows: list[Row]

    @property
    def texts(self) -> list[str]:
        return [row.text for row in self.rows]


@dataclass(frozen=True)
class RequestBudget:
    """What one request to the target may hold."""

    max_items: int
    max_tokens: int | None = None  # estimated tokens per request (None: no cap)
    max_request_bytes: int | None = None
    max_response_bytes: int | None = None
    bytes_per_vector: int = 0  # on the wire, base64 included
    max_seq_length: int = 512  # the model reads at most this many tokens of a text


def shards(rows: Iterable[Row], size: int) -> Iterator[Shard]:
    iterator = iter(rows)
    index = 0
    while batch := list(islice(iterator, size)):
        yield Shard(index, batch)
        index += 1


def estimated_tokens(text: str, max_seq_length: int) -> int:
    return min(len(text) // CHARS_PER_TOKEN + 2, max_seq_length)


def pack_requests(texts: list[str], budget: RequestBudget) -> list[tuple[int, int]]:
    """[start, end) slices of `texts`, in order, each within the budget (a text alone always fits)."""
    per_response = _response_cap(budget)
    slices: list[tuple[int, int]] = []
    start, tokens, size = 0, 0, JSON_OVERHEAD_BYTES
    for index, text in enumerate(texts):
        text_tokens = estimated_tokens(text, budget.max_seq_length)
        # JSON never takes more than 6 bytes a character (\u00XX): the exact size is only worth
        # encoding the text for when that bound would not fit.
        text_bytes = 6 * len(text) + 3
        if budget.max_request_bytes is not None and size + text_bytes > budget.max_request_bytes:
            text_bytes = len(orjson.dumps(text)) + 1
        count = index - start
        full = (
            count >= min(budget.max_items, per_response)
            or (budget.max_tokens is not None and tokens + text_tokens > budget.max_tokens)
            or (budget.max_request_bytes is not None and size + text_bytes > budget.max_request_bytes)
        )
        if full and count:
            slices.append((start, index))
            start, tokens, size = index, 0, JSON_OVERHEAD_BYTES
        tokens += text_tokens
        size += text_bytes
    if start < len(texts):
        slices.append((start, len(texts)))
    return slices


def _response_cap(budget: RequestBudget) -> int:
    if budget.max_response_bytes is None or not budget.bytes_per_vector:
        return budget.max_items
    per_item = budget.bytes_per_vector + ITEM_OVERHEAD_BYTES
    return max(1, (budget.max_response_bytes - JSON_OVERHEAD_BYTES) // per_item)
