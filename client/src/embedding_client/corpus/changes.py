"""`--changes CHANGES`: what a vector store must do to go from OLD to NEW, as a Parquet file.

Columns `id`, `op` (`upsert` for an id new in NEW or whose text changed; `delete` for an id of
OLD that NEW lacks), `embedding` (null for deletes) and `tokens`. Upserts come in NEW's order,
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

from embedding_client.corpus.hashing import hash_column, id_keys, split_key
from embedding_client.corpus.locations import Location, Storage
from embedding_client.corpus.reuse import OldOutput
from embedding_client.corpus.shards import HASH_COLUMN, OutputSchema

UPSERT, DELETE = "upsert", "delete"


class ChangeSet:
    def __init__(self, old: OldOutput, schema: OutputSchema, location: Location, storage: Storage):
        self.old, self.location, self.storage = old, location, storage
        self.index, self.old_text_high = old.id_index()
        self.seen = np.zeros(old.rows, dtype=bool)
        self.upserts = self.deletes = 0
        self.ints = schema.ids_are_ints and old.id_is_int
        new_schema = schema.arrow()
        self.schema = pa.schema(
            [
                pa.field("id", pa.int64() if self.ints else pa.string(), nullable=False),
                pa.field("op", pa.string(), nullable=False),
                pa.field("embedding", new_schema.field("embedding").type),
                pa.field("tokens", pa.int32()),
            ]
        ).with_metadata({"old": old.location.uri, "model": schema.metadata.get("model", "")})
        directory = None if location.is_s3 else os.path.dirname(os.path.abspath(location.uri))
        handle, self.path = tempfile.mkstemp(prefix=".embed-corpus-changes-", suffix=".parquet", dir=directory)
        os.close(handle)
        self.writer = pq.ParquetWriter(self.path, self.schema)

    def add(self, table: pa.Table) -> None:
        """One NEW shard: its new or changed rows become upserts."""
        ids = table.column("id").to_pylist()
        rows = self.index.lookup(id_keys(ids))
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
            self._write(upserts.column("id"), UPSERT, upserts.column("embedding"), upserts.column("tokens"))
            self.upserts += upserts.num_rows

    def publish(self) -> None:
        """Deletes for OLD's ids that NEW lacks, then the file takes its name."""
        for start, ids in self.old.id_batches():
            gone = ~self.seen[start : start + len(ids)]
            if gone.any():
                kept = ids.filter(pa.array(gone))
                empty = pa.nulls(len(kept), self.schema.field("embedding").type)
                self._write(kept, DELETE, empty, pa.nulls(len(kept), pa.int32()))
                self.deletes += len(kept)
        self.writer.close()
        self.storage.put_file(self.path, self.location)

    def discard(self) -> None:
        self.writer.close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _write(self, ids, op: str, embeddings, tokens) -> None:
        if not self.ints:
            ids = pa.array([str(value) for value in ids.to_pylist()], type=pa.string())
        self.writer.write_table(
            pa.table([ids, pa.array([op] * len(ids)), embeddings, tokens], schema=self.schema)
        )
