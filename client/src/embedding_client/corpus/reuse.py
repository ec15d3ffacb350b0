"""`--reuse OLD`: an earlier output whose vectors stand in for texts it already embedded.

OLD is opened once, checked (Parquet, written with text hashes, the same dimension), and its
fingerprint compared with this run's. Under an equal fingerprint its `text_sha256` column becomes
a `SortedKeys` index (~20 bytes a row, built one row group at a time), and a shard's lookups
return OLD's rows; their vectors and token counts are then read from OLD's row groups (a few
kept in memory, since a re-run reads them in order), bytes unchanged. With `--changes`, OLD's
ids get an index too (`id_index`), with the first 8 bytes of each row's text hash.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from embedding_client.corpus.errors import InputError
from embedding_client.corpus.run_fingerprint import differences
from embedding_client.corpus.hashing import KEY_BYTES, SortedKeys, hash_column, id_keys, split_key
from embedding_client.corpus.locations import Location, Storage
from embedding_client.corpus.shards import HASH_COLUMN, SUCCESS

log = logging.getLogger("embed_corpus")
CACHED_ROW_GROUPS = 4
UPGRADE_HINT = "run once without --reuse to write an output that can be reused"


class OldOutput:
    def __init__(self, location: Location, storage: Storage, fingerprint: str, parts: dict, dimension: int):
        self.location = location
        # A local OLD is read with the OS's reads (not memory-mapped: mapped pages would count as
        # this process's memory, 32 bytes a row for the hash column alone); an S3 one in ranged GETs.
        self._handle: IO[bytes] | None = (
            storage.open_read(location) if location.is_s3 and not location.uri.endswith("/") else None
        )
        try:
            self._file = (
                DatasetParts(location, storage) if location.uri.endswith("/") else pq.ParquetFile(self._handle or location.uri)
            )
        except (pa.ArrowInvalid, OSError) as error:
            self.close()
            raise InputError(f"--reuse {location.uri} is not a readable Parquet file ({error})") from None
        schema = self._file.schema_arrow
        metadata = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
        self.rows = self._file.metadata.num_rows
        self.sparse = {"indices", "values"} <= set(schema.names)  # a --sparse output
        if "id" not in schema.names or not (self.sparse or "embedding" in schema.names):
            self.close()
            raise InputError(
                f"--reuse {location.uri} is not an embed-corpus output (it has no id and embedding, or indices "
                "and values, columns)"
            )
        if HASH_COLUMN not in schema.names or "fingerprint" not in metadata:
            self.close()
            raise InputError(
                f"--reuse {location.uri} was written before outputs carried text hashes, so its vectors "
                f"cannot be matched to texts: {UPGRADE_HINT}"
            )
        old_dimension = int(metadata.get("dimension") or 0)
        if old_dimension != dimension:
            self.close()
            raise InputError(
                f"--reuse {location.uri} holds {old_dimension}-dimensional vectors of "
                f"{metadata.get('model', 'another model')}; this run makes {dimension}-dimensional ones: "
                "point --reuse at an output of this model"
            )
        self.id_is_int = pa.types.is_integer(schema.field("id").type)
        self.chunked = "chunk" in schema.names  # rows are chunks, keyed (id, chunk)
        self.embedding_type = None if self.sparse else schema.field("embedding").type
        self.same = metadata["fingerprint"] == fingerprint
        self.differences = [] if self.same else differences(json.loads(metadata.get("fingerprint_parts") or "{}"), parts)
        starts = np.cumsum([0] + [self._file.metadata.row_group(i).num_rows for i in range(self._file.num_row_groups)])
        self._group_starts = starts
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._has_tokens = "tokens" in schema.names
        self.texts: SortedKeys | None = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()

    def index_texts(self) -> SortedKeys:
        """OLD's text hashes' first 8 bytes, sorted: the reuse index (`vectors` confirms a match
        against the full hash)."""
        high = np.empty(self.rows, dtype=np.uint64)
        for start, hashes in self._hash_batches():
            high[start : start + len(hashes)] = split_key(hashes)[0]
        self.texts = SortedKeys(high)
        return self.texts

    def id_index(self) -> tuple[SortedKeys, np.ndarray]:
        """OLD's ids, sorted, and the first 8 bytes of each OLD row's text hash (row order).
        Duplicate ids are refused: a change set needs one row per id."""
        keys = np.empty((self.rows, KEY_BYTES), dtype=np.uint8)
        text_high = np.empty(self.rows, dtype=np.uint64)
        at = 0
        columns = ["id", "chunk", HASH_COLUMN] if self.chunked else ["id", HASH_COLUMN]
        for _, batch in self._row_groups(columns):
            count = batch.num_rows
            keys[at : at + count] = row_keys(batch)
            text_high[at : at + count] = split_key(hash_column(batch.column(HASH_COLUMN)))[0]
            at += count
        index = SortedKeys.of(keys)
        del keys
        duplicate = index.first_duplicate()
        if duplicate is not None:
            first, second = duplicate
            what = "id and chunk" if self.chunked else "id"
            raise InputError(
                f"--changes needs unique ids, and --reuse {self.location.uri} has {what} "
                f"{self.ids([first])[0]!r} on rows {first + 1} and {second + 1}"
            )
        return index, text_high

    def ids(self, rows: list[int] | np.ndarray) -> list:
        """The ids of OLD's rows (0-based, any order)."""
        return self._take(np.asarray(rows, dtype=np.int64), "id").to_pylist()


    def id_batches(self):
        """(first row, table of id [and chunk]) per row group: OLD's keys in order."""
        return self._row_groups(["id", "chunk"] if self.chunked else ["id"])

    def vectors(
        self, rows: np.ndarray, hashes: np.ndarray, width: int, dtype: np.dtype
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """OLD's vectors (its bytes, unchanged; a sparse OLD's (indices, values) pairs) and token
        counts (-1: unknown) for these rows, and whether each row's full text hash is the one
        expected (`hashes`): the index matched 8 bytes."""
        vectors = np.empty(len(rows), dtype=object) if dtype == object else np.empty((len(rows), width), dtype=dtype)
        tokens = np.empty(len(rows), dtype=np.int64)
        same = np.empty(len(rows), dtype=bool)
        groups = np.searchsorted(self._group_starts, rows, side="right") - 1
        for group in np.unique(groups):
            which = np.flatnonzero(groups == group)
            local = rows[which] - self._group_starts[group]
            embeddings, counts, stored = self._row_group(int(group))
            vectors[which] = embeddings[local] if dtype == object else embeddings.reshape(-1, width)[local]
            tokens[which] = counts[local]
            same[which] = (stored[local] == hashes[which]).all(axis=1)
        return vectors, tokens, same

    def _row_group(self, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A row group's vectors (flat, as stored), token counts and text hashes, decoded once and
        kept a while (a re-run reads OLD in order)."""
        if group in self._cache:
            self._cache.move_to_end(group)
            return self._cache[group]
        vector_columns = ["indices", "values"] if self.sparse else ["embedding"]
        columns = vector_columns + [HASH_COLUMN] + (["tokens"] if self._has_tokens else [])
        table = self._file.read_row_group(group, columns=columns)
        values = (
            sparse_column(table)
            if self.sparse
            else table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        )
        counts = (
            pc.fill_null(table.column("tokens"), -1).to_numpy().astype(np.int64)
            if self._has_tokens
            else np.full(table.num_rows, -1, dtype=np.int64)
        )
        entry = (values, counts, hash_column(table.column(HASH_COLUMN)).copy())
        self._cache[group] = entry
        if len(self._cache) > CACHED_ROW_GROUPS:
            self._cache.popitem(last=False)
        return entry

    def _take(self, rows: np.ndarray, column: str) -> pa.Array:
        groups = np.searchsorted(self._group_starts, rows, side="right") - 1
        out: list = [None] * len(rows)
        for group in np.unique(groups):
            which = np.flatnonzero(groups == group)
            values = self._file.read_row_group(int(group), columns=[column]).column(column)
            for slot, value in zip(which, values.take(pa.array(rows[which] - self._group_starts[group])).to_pylist()):
                out[slot] = value
        return pa.array(out)

    def _hash_batches(self):
        for start, table in self._row_groups([HASH_COLUMN]):
            yield start, hash_column(table.column(HASH_COLUMN))

    def _row_groups(self, columns: list[str]):
        """(first row, table) for each row group, read one at a time (memory stays flat)."""
        for group in range(self._file.num_row_groups):
            yield int(self._group_starts[group]), self._file.read_row_group(group, columns=columns)


def sparse_column(table: pa.Table) -> np.ndarray:
    """A sparse output's `indices` and `values` lists -> one (indices, values) object per row."""
    indices = table.column("indices").combine_chunks()
    values = table.column("values").combine_chunks()
    offsets = indices.offsets.to_numpy()
    offsets = offsets - offsets[0]  # flatten() starts at the first row, whatever the array's offset
    flat_indices = indices.flatten().to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    flat_values = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    rows = np.empty(len(indices), dtype=object)
    for row in range(len(indices)):
        start, end = offsets[row], offsets[row + 1]
        rows[row] = (flat_indices[start:end], flat_values[start:end])
    return rows


def row_keys(batch) -> np.ndarray:
    """Each row's key: its id, or (id, chunk) for chunk rows; ids by their text form."""
    ids = batch.column("id").to_pylist()
    if "chunk" not in batch.schema.names:
        return id_keys(ids)
    return id_keys(f"{value}\x1f{chunk}" for value, chunk in zip(ids, batch.column("chunk").to_pylist()))


class DatasetParts:
    """A finished dataset OUTPUT/ read as one Parquet file: its parts (from `_SUCCESS`, in order)
    one after another, row groups numbered across them. A few parts stay open at a time, so an OLD
    of 10,000 parts costs a footer read each, not 10,000 open files."""

    def __init__(self, location: Location, storage: Storage):
        self._storage = storage
        try:
            success = json.loads(storage.read_bytes(location.child(SUCCESS)))
            self._parts = [location.child(part["name"]) for part in success["parts"]]
        except (ValueError, KeyError, TypeError):
            raise InputError(f"--reuse {location.uri}: its _SUCCESS is not an embed-corpus dataset's") from None
        if not self._parts:
            raise InputError(f"--reuse {location.uri} lists no parts")
        self._open: OrderedDict[int, pq.ParquetFile] = OrderedDict()
        self._groups: list[tuple[int, int]] = []  # (part, its row group)
        rows: list[int] = []
        for part in range(len(self._parts)):
            metadata = self._file(part).metadata
            for group in range(metadata.num_row_groups):
                self._groups.append((part, group))
                rows.append(metadata.row_group(group).num_rows)
        self.schema_arrow = self._file(0).schema_arrow
        self.metadata = _Metadata(rows)
        self.num_row_groups = len(self._groups)

    def read_row_group(self, group: int, columns: list[str]) -> pa.Table:
        part, inner = self._groups[group]
        return self._file(part).read_row_group(inner, columns=columns)

    def _file(self, part: int) -> pq.ParquetFile:
        if part in self._open:
            self._open.move_to_end(part)
            return self._open[part]
        where = self._parts[part]
        self._open[part] = pq.ParquetFile(self._storage.open_read(where) if where.is_s3 else where.uri)
        if len(self._open) > CACHED_ROW_GROUPS:
            self._open.popitem(last=False)
        return self._open[part]


class _Metadata:
    def __init__(self, rows: list[int]):
        self._rows = rows
        self.num_rows = sum(rows)

    def row_group(self, group: int):
        return _Group(self._rows[group])


class _Group:
    def __init__(self, rows: int):
        self.num_rows = rows
