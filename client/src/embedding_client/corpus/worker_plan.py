"""Worker mode's plan: the input's splits, sized from a sample, and what every job is told.

The plan is a pure function of the listing and the split size (splits.py), so a resumed run
plans exactly the same parts. It reads only the first 16 KiB of the first object: enough to size
the byte ranges and to type the id column every part must agree on. Lambda workers run it today;
an AWS Batch array job would run the same plan.
"""

from __future__ import annotations

import functools
import zlib

import orjson

from embedding_client.corpus.inputs import InputFile, Inputs, parquet_groups, split_rows
from embedding_client.corpus.locations import Storage
from embedding_client.corpus.readers import DELIMITERS, Row
from embedding_client.corpus.splits import Split, byte_splits, row_group_splits, splittable

SAMPLE_BYTES = 16 * 1024  # read from the first object to size the byte ranges and type the ids
MIN_SPLIT_BYTES = 1024  # a range never smaller than this, however short the lines
# Lines (rows) per split at most, whatever --shard-size says: one job must end inside Lambda's 900 s
# limit with room for a cold start, and 5,000 passages of 256 tokens take ~400 s at fp32 on one vCPU
# (79.5 ms each, docs/benchmarks/bulk.md).
WORKER_MAX_ROWS = 5_000


def plan_splits(storage: Storage, inputs: Inputs, shard_size: int, split_bytes: int | None) -> list[Split]:
    """Every split of every file, in input order."""
    planned: list[Split] = []
    for number, file in enumerate(inputs.files):
        if inputs.fmt == "parquet":
            planned += row_group_splits(number, parquet_groups(storage, file), shard_size)
        elif splittable(file.name, inputs.fmt):
            planned += byte_splits(number, file.size, split_bytes or file.size or 1)
        elif file.size:
            planned.append(Split(number, 0, file.size, whole=True))
    return planned


@functools.lru_cache(maxsize=4)
def head_sample(storage: Storage, file: InputFile, size: int = SAMPLE_BYTES) -> bytes:
    """The first bytes of a file (gunzipped for `.gz`) with one ranged read (once per run)."""
    data = storage.read_range(file.location, 0, size)
    if file.name.lower().endswith(".gz"):
        data = zlib.decompressobj(wbits=31).decompress(data, size)
    return data


def split_bytes_for(storage: Storage, inputs: Inputs, shard_size: int) -> int | None:
    """Bytes per range so that a range holds about `shard_size` lines, from the first lines' sizes."""
    if inputs.fmt not in ("jsonl", "text"):
        return None
    sample = head_sample(storage, inputs.files[0])
    lines = sample.count(b"\n")
    per_line = len(sample) / lines if lines else len(sample) or 1
    return max(MIN_SPLIT_BYTES, int(per_line * shard_size))


def first_id_is_int(storage: Storage, inputs: Inputs, text_field: str, id_field: str) -> bool:
    """The id column's type, from the first row: every part must agree on it."""
    if inputs.fmt == "text":
        return False
    file = inputs.files[0]
    if inputs.fmt == "jsonl":
        first = head_sample(storage, file).split(b"\n", 1)[0]
        try:
            record = orjson.loads(first)
        except orjson.JSONDecodeError:
            return False
        return isinstance(record, dict) and isinstance(record.get(id_field), int) and not isinstance(record.get(id_field), bool)
    for item in split_rows(storage, inputs, Split(0, 0, 1, whole=inputs.fmt in DELIMITERS), text_field, id_field):
        return isinstance(item, Row) and isinstance(item.id, int)
    return False
