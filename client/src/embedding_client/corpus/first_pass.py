"""The client path's first pass: every row of INPUT read and checked before any model work.

Bad input must stop the run with its line numbers and no cost, so the whole input is read once
and every row checked against the target's limits (rejected rows streamed to a file, so memory
stays flat however many there are); with --changes each row's id key is kept to find a repeat.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import IO, Iterator

import numpy as np
import orjson

from embedding_client.corpus.hashing import SortedKeys, id_keys
from embedding_client.corpus.inputs import Inputs, split_rows
from embedding_client.corpus.locations import Storage
from embedding_client.corpus.options import Options
from embedding_client.corpus.readers import Rejected, Row, row_label
from embedding_client.corpus.shard_job import checked_rows
from embedding_client.corpus.splits import Split
from embedding_client.corpus.targets import Limits

SHOWN_PROBLEMS = 5


@dataclass
class Scan:
    """What the first pass over the input found."""

    rows: int = 0
    ids_are_ints: bool = True
    numbered: int = 0  # rows without an id, which got their line number (said in the report)
    rejected: int = 0
    sample: list[Rejected] = field(default_factory=list)  # the first few rejected rows, for messages
    id_keys: bytearray | None = None  # with --changes: each row's 16-byte id key, to find duplicates
    numbers: array | None = None  # ... and its line (row) number


def input_rows(storage: Storage, inputs: Inputs, options: Options) -> Iterator[Row | Rejected]:
    """Every file of INPUT, whole and in order, as rows."""
    for number in range(len(inputs.files)):
        yield from split_rows(storage, inputs, Split(number, 0, 0, whole=True), options.text_field, options.id_field)


def scan(
    items: Iterator[Row | Rejected], fmt: str, limits: Limits, sink: IO[bytes] | None = None, keys: bool = False,
    chunking: bool = False,
) -> Scan:
    """Count and check every row; rejected rows go to `sink` as JSON lines (memory stays flat
    even when every row of a huge input is rejected). `keys`: also collect each row's id key."""
    result = Scan(id_keys=bytearray() if keys else None, numbers=array("q") if keys else None)
    for item in checked_rows(items, limits, chunking):
        if isinstance(item, Rejected):
            result.rejected += 1
            if len(result.sample) < SHOWN_PROBLEMS:
                result.sample.append(item)
            if sink is not None:
                record = {row_label(fmt): item.number, "id": item.id, "reason": item.reason}
                if item.source:
                    record = {"file": item.source, **record}
                sink.write(orjson.dumps(record) + b"\n")
        else:
            result.rows += 1
            result.ids_are_ints = result.ids_are_ints and isinstance(item.id, int)
            result.numbered += item.numbered
            if keys:
                result.id_keys += id_keys([item.id]).tobytes()
                result.numbers.append(item.number)
    return result


def first_duplicate_id(found: Scan) -> tuple[int, int] | None:
    """The line numbers of two rows with the same id, or None."""
    if not found.id_keys:
        return None
    keys = np.frombuffer(found.id_keys, dtype=np.uint8).reshape(-1, 16)
    pair = SortedKeys.of(keys).first_duplicate()
    return None if pair is None else (found.numbers[pair[0]], found.numbers[pair[1]])


def problems(found: Scan, fmt: str) -> str:
    label = row_label(fmt)
    shown = "; ".join(
        f"{item.source + ' ' if item.source else ''}{label} {item.number}: {item.reason}" for item in found.sample
    )
    more = found.rejected - len(found.sample)
    hint = (
        " (--text-field and --id-field name the fields)"
        if any(item.reason.startswith("no '") for item in found.sample)
        else ""
    )
    return shown + (f" (and {more:,} more)" if more > 0 else "") + hint
