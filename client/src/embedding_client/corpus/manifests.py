"""What a resumed run must agree on, for each path, in one place.

A run writes its manifest before any part (shards.ShardStore.start); `--resume` refuses to go on
when any of these values changed, naming the first that did (so the keys keep their order). The
target may change between runs; what makes a vector, and which rows land in which part, may not.
"""

from __future__ import annotations

from embedding_client.corpus.run_fingerprint import digest
from embedding_client.corpus.locations import Location
from embedding_client.corpus.run_context import RunContext
from embedding_client.corpus.shards import MANIFEST_VERSION


def client_manifest(context: RunContext, rows: int, old: Location | None, changes: Location | None) -> dict:
    """The client path: shards of `--shard-size` checked rows, in input order."""
    options, info = context.options, context.target.info
    return {
        "version": MANIFEST_VERSION,
        "input": options.input,
        "input_version": context.input_version,
        "format": context.inputs.fmt,
        "text_field": options.text_field,
        "id_field": options.id_field,
        "on_error": options.on_error,
        "rows": rows,
        "shard_size": options.shard_size,
        "model": info.model_id,
        "dimension": info.dimension,
        "embedding_type": options.embedding_type,
        "input_type": options.input_type,
        "fingerprint": digest(context.parts),
        "reuse": old.uri if old else None,
        "reuse_version": context.old_version,
        "changes": changes.uri if changes else None,
        "chunk_tokens": options.chunk_tokens,
        "chunk_overlap": options.chunk_overlap,
        "with_text": options.with_text,
    }


def worker_manifest(context: RunContext, split_bytes: int | None, splits: int, job: dict) -> dict:
    """Worker mode: one part per planned split; `job` is what every shard job is told."""
    options, info = context.options, context.target.info
    return {
        "version": MANIFEST_VERSION,
        "io": "worker",
        "input": options.input,
        "input_version": context.input_version,
        "split_bytes": split_bytes,
        "shard_size": options.shard_size,
        "splits": splits,
        "job": job,
        "model": info.model_id,
        "dimension": info.dimension,
        "fingerprint": context.metadata["fingerprint"],
        "reuse": options.reuse,
        "reuse_version": context.old_version,
    }
