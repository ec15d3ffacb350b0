"""Fixed-width keys for texts and ids, and a sorted index over them that costs 12-20 bytes a row.

A text's key is the sha256 of its UTF-8 bytes (the `text_sha256` column, 32 bytes). An id's key
is the sha256 of its text form (`7` and `"7"` are one id), cut to 16 bytes. `SortedKeys` holds
the first 8 bytes of each key (or 16, as two uint64 arrays), big-endian, sorted, plus each key's
row as 4 bytes, and answers a whole shard's lookups at once with `searchsorted`: no dict of
Python strings, so an index over 10^8 rows fits in memory and builds in seconds. The reuse index
keeps 8 bytes (12 a row): a match is confirmed against OLD's full 32-byte hash when its vector is
read, so a 64-bit collision costs a re-embedding, never a wrong vector. The id index of
`--changes` has nothing to confirm against and keeps 16.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np

TEXT_HASH = "sha256"
TEXT_HASH_BYTES = 32
KEY_BYTES = 16  # what an index keeps of a key: collisions need ~2^64 rows


def text_hashes(texts: Iterable[str]) -> np.ndarray:
    """(n, 32) uint8: sha256 of each text's UTF-8 bytes."""
    sha256 = hashlib.sha256
    joined = b"".join(sha256(text.encode("utf-8")).digest() for text in texts)
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, TEXT_HASH_BYTES)


def id_keys(ids: Iterable) -> np.ndarray:
    """(n, 16) uint8 keys of ids by their text form."""
    sha256 = hashlib.sha256
    joined = b"".join(sha256(str(value).encode("utf-8")).digest()[:KEY_BYTES] for value in ids)
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, KEY_BYTES)


def split_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, >=16) uint8 -> the first 16 bytes as (high, low) uint64, ordered as the bytes are."""
    prefix = np.ascontiguousarray(keys[:, :KEY_BYTES]).view(">u8")
    return prefix[:, 0].astype(np.uint64), prefix[:, 1].astype(np.uint64)


class SortedKeys:
    """Keys in sorted order with the row each came from; -1 where a key is absent."""

    def __init__(self, high: np.ndarray, low: np.ndarray | None = None):
        """Takes `high` and `low` over and sorts them in place, by `high` (keys whose high halves
        tie, a duplicate text or one 64-bit collision in 2^64, are then put in `low` order). The
        permutation is kept as 4-byte rows and applied one array at a time, so building peaks at
        ~28 bytes a row (the arrays, the rows and one 8-byte temporary) and settles at 20."""
        order = np.argsort(high)
        rows = order.astype(np.uint32 if len(order) < 2**32 else np.int64)
        del order
        high[:] = high[rows]
        if low is not None:
            low[:] = low[rows]
            ties = np.flatnonzero(high[1:] == high[:-1])
            if len(ties) and np.any(low[ties + 1] < low[ties]):  # a collision: the slow, exact order
                fix = np.lexsort((low, high))
                high[:], low[:], rows = high[fix], low[fix], rows[fix]
        self.high, self.low, self.rows = high, low, rows

    @classmethod
    def of(cls, keys: np.ndarray) -> "SortedKeys":
        return cls(*split_key(keys))  # split_key's arrays are fresh copies: safe to sort in place

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return self.high.nbytes + (self.low.nbytes if self.low is not None else 0) + self.rows.nbytes

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The row of each key (int64), or -1; without `low`, the row of a key with the same first
        8 bytes (the caller confirms it)."""
        found = np.full(len(keys), -1, dtype=np.int64)
        if not len(self.rows) or not len(keys):
            return found
        high, low = split_key(keys)
        if self.low is None:
            at = np.minimum(np.searchsorted(self.high, high, side="left"), len(self.rows) - 1)
            hit = self.high[at] == high
            found[hit] = self.rows[at[hit]]
            return found
        # Sorted by (high, low): the first entry not below (high, low) is the match, if any.
        at = np.searchsorted(self.high, high, side="left")
        last = len(self.rows) - 1
        for _ in range(64):  # walk past equal highs with smaller lows (one step in 2^64)
            clipped = np.minimum(at, last)
            behind = (at <= last) & (self.high[clipped] == high) & (self.low[clipped] < low)
            if not behind.any():
                break
            at = at + behind
        clipped = np.minimum(at, last)
        hit = (at <= last) & (self.high[clipped] == high) & (self.low[clipped] == low)
        found[hit] = self.rows[clipped[hit]]
        return found

    def first_duplicate(self) -> tuple[int, int] | None:
        """Two rows (in row order) that hold the same key, or None."""
        same = self.high[1:] == self.high[:-1]
        if self.low is not None:
            same &= self.low[1:] == self.low[:-1]
        where = np.flatnonzero(same)
        if not len(where):
            return None
        pairs = sorted(tuple(sorted((int(self.rows[i]), int(self.rows[i + 1])))) for i in where)
        return pairs[0]


def hash_column(column) -> np.ndarray:
    """A fixed_size_binary Arrow column (or chunked column) as (n, width) uint8, without a copy
    per row."""
    if hasattr(column, "combine_chunks"):
        column = column.combine_chunks()
    width = column.type.byte_width
    data = np.frombuffer(column.buffers()[1], dtype=np.uint8)
    return data[column.offset * width : (column.offset + len(column)) * width].reshape(-1, width)
