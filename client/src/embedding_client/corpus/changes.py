"""`--changes CHANGES`: what a vector store must do to go from OLD to NEW, as a Parquet file.

Columns `id`, `op` (`upsert` for an id new in NEW or whose text changed; `delete` for an id of
OLD that NEW lacks), `embedding` (a sparse run's `indices` and `values`; null for deletes) and
`tokens`. Upserts come in NEW's order,
deletes after them in OLD's. When OLD's fingerprint differs from this run's, every vector
changed, so every NEW row is an upsert. Built while NEW is assembled from its shards, so no
extra pass over the corpus; ids are matched by their text form (`7` and `"7"` are one id).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedding_client.corpus.hashing import hash_column, split_key
from embedding_client.corpus.locations import Location, Storage
from embedding_client.corpus.reuse import OldOutput, row_keys
from embedding_client.corpus.shards import HASH_COLUMN, WRITE_OPTIONS, OutputSchema

UPSERT, DELETE = "upsert", "delete"


class ChangeSet:
    def __init__(self, old: OldOutput, schema: OutputSchema, location: Location, storage: Storage):
        self.old, self.location, self.storage = old, location, storage
        self.index, self.old_text_high = old.id_index()
        self.seen = np.zeros(old.rows, dtype=bool)
        self.upserts = self.deletes = 0
        self.ints = schema.ids_are_ints and old.id_is_int
        self.chunked, self.with_text = schema.chunked, schema.with_text
        fields = [pa.field("id", pa.int64() if self.ints else pa.string(), nullable=False)]
        if self.chunked:
            fields.append(pa.field("chunk", pa.int32(), nullable=False))
        fields += [
            pa.field("op", pa.string(), nullable=False),
            *(pa.field(field.name, field.type) for field in schema.vector_fields()),
            pa.field("tokens", pa.int32()),
        ]
        if self.with_text:
            fields.append(pa.field("text", pa.string()))
        self.schema = pa.schema(fields).with_metadata(
            {"old": old.location.uri, "model": schema.metadata.get("model", "")}
        )
        directory = None if location.is_s3 else os.path.dirname(os.path.abspath(location.uri))
        handle, self.path = tempfile.mkstemp(prefix=".embed-corpus-changes-", suffix=".parquet", dir=directory)
        os.close(handle)
        self.writer = pq.ParquetWriter(self.path, self.schema, **WRITE_OPTIONS)

    def add(self, table: pa.Table) -> None:
        """One NEW shard: its new or changed rows (chunks) become upserts."""
        rows = self.index.lookup(row_keys(table))
        known = rows >= 0
        self.seen[rows[known]] = True
        unchanged = known.copy()
        if self.old.same:
            new_high = split_key(hash_column(table.column(HASH_COLUMN)))[0]
            unchanged &= self.old_text_high[np.where(known, rows, 0)] == new_high
        else:
            unchanged[:] = False
        upserts = table.filter(pa.array(~unchanged))
        if upserts.num_rows:
            self._write(upserts, UPSERT)
            self.upserts += upserts.num_rows

    def publish(self) -> None:
        """Deletes for OLD's ids that NEW lacks, then the file takes its name."""
        for start, keys in self.old.id_batches():
            gone = ~self.seen[start : start + keys.num_rows]
            if gone.any():
                kept = keys.filter(pa.array(gone))
                self._write(kept, DELETE)
                self.deletes += kept.num_rows
        self.writer.close()
        self.storage.put_file(self.path, self.location)

    def discard(self) -> None:
        self.writer.close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _write(self, rows, op: str) -> None:
        """Rows of NEW (upserts) or OLD's keys (deletes: no embedding, tokens or text)."""
        count = rows.num_rows
        columns = []
        for field in self.schema:
            if field.name == "op":
                columns.append(pa.array([op] * count, type=pa.string()))
            elif field.name == "id" and not self.ints:
                columns.append(pa.array([str(value) for value in rows.column("id").to_pylist()], type=pa.string()))
            elif field.name in rows.schema.names:
                columns.append(rows.column(field.name))
            else:
                columns.append(pa.nulls(count, field.type))
        self.writer.write_table(pa.table(columns, schema=self.schema))
