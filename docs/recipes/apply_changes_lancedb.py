import os

import lancedb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

db = lancedb.connect(os.environ.get("LANCEDB_URI", "./lancedb"))
old_path = os.environ.get("OLD", "vectors.parquet")  # the embed-corpus output the store was built from
changes = pq.read_table(os.environ.get("CHANGES", "changes.parquet"))  # from `--reuse OLD --changes ...`


def rows(parquet: pa.Table) -> pa.Table:  # id, vector, tokens: the store's columns
    return pa.table({"id": parquet["id"], "vector": parquet["embedding"], "tokens": parquet["tokens"]})


try:
    table = db.open_table("passages")
except ValueError:  # first time only: "Table 'passages' was not found", so build it from OLD
    table = db.create_table("passages", rows(pq.read_table(old_path)))

# 1. upserts: ids new in NEW, or whose text changed; keyed by id.
upserts = rows(changes.filter(pc.equal(changes["op"], "upsert"))).cast(table.schema)
if upserts.num_rows:
    table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(upserts)

# 2. deletes: ids of OLD absent from NEW, as a SQL IN-list (strings quoted, ' doubled), 1000 at a time.
deletes = changes.filter(pc.equal(changes["op"], "delete"))["id"].to_pylist()
for start in range(0, len(deletes), 1000):
    chunk = deletes[start:start + 1000]
    literals = [str(i) if isinstance(i, int) else "'" + i.replace("'", "''") + "'" for i in chunk]
    table.delete(f"id IN ({', '.join(literals)})")

applied = {"upserts": upserts.num_rows, "deletes": len(deletes)}
print(f"passages: {applied['upserts']} upserts, {applied['deletes']} deletes -> {table.count_rows()} rows")
