"""A dataset's files -> splits: the pieces one worker reads, without reading the rest.

Line formats (JSONL, text) split into byte ranges the Hadoop way: a range that starts mid-line
skips to the next line, and a range finishes its last line past its end, so every line belongs
to exactly one range: the one its first byte falls in. A gzip object can't be entered in the
middle and a CSV record may hold newlines inside quotes, so each of those is one split; a
Parquet file splits between row groups. Splits are a pure function of the listing and the
split size, so a resumed run plans exactly the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Iterator

LINE_FORMATS = ("jsonl", "text")


@dataclass(frozen=True)
class Split:
    """Lines starting in [start, end) of file `file` (byte offsets), or row groups [start, end)
    of a Parquet file; `whole` for a gzip or CSV object, read from its first byte to its last."""

    file: int
    start: int
    end: int
    whole: bool = False

    def describe(self) -> dict:
        return {"file": self.file, "start": self.start, "end": self.end, "whole": self.whole}


def splittable(name: str, fmt: str) -> bool:
    return fmt in LINE_FORMATS and not name.lower().endswith(".gz")


def byte_splits(file: int, size: int, split_bytes: int) -> list[Split]:
    """Ranges of at most `split_bytes` covering [0, size); none for an empty file."""
    return [Split(file, start, min(start + split_bytes, size)) for start in range(0, size, split_bytes)]


def row_group_splits(file: int, group_rows: list[int], rows_per_split: int) -> list[Split]:
    """Consecutive row groups, cut once they hold `rows_per_split` rows (a big group stays whole)."""
    splits: list[Split] = []
    first, rows = 0, 0
    for group, count in enumerate(group_rows):
        rows += count
        if rows >= rows_per_split:
            splits.append(Split(file, first, group + 1))
            first, rows = group + 1, 0
    if first < len(group_rows) and rows:
        splits.append(Split(file, first, len(group_rows)))
    return splits


def lines_in_range(stream: IO[bytes], start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for each line whose first byte is in [start, end). `stream` is positioned at
    `max(start - 1, 0)`: reading from the byte before `start` tells whether a line begins at
    `start` (that byte is a newline) or the range begins mid-line (skip to the next one)."""
    at = 0
    if start > 0:
        at = start - 1 + len(stream.readline())
    while at < end:
        line = stream.readline()
        if not line:
            return
        yield at, line
        at += len(line)


def seek_offset(start: int) -> int:
    """Where a reader of the range starting at `start` must be positioned."""
    return max(start - 1, 0)
