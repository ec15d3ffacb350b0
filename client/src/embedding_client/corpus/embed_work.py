"""The client path's shard work: shards of rows embedded through a target, request by request.

Each shard of `--shard-size` checked rows is one task: its texts (with --chunk-tokens, their
chunks, cut by the target's chunker first), less the rows whose vectors OLD holds (--reuse),
packed into requests that fit the target's limits. Answers come back in any order into the
shard's buffer; once all are back the shard is committed whole. The scheduler (scheduler.py)
sends, retries and collects; this module only says what to send and what an answer means.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, ClassVar, Iterator

import numpy as np

from embedding_client.contract import LAMBDA_PAYLOAD_BYTES, PAYLOAD_MARGIN_BYTES
from embedding_client.corpus.hashing import text_hashes
from embedding_client.corpus.pieces import PieceRequests
from embedding_client.corpus.plan import RequestBudget, Shard, pack_requests
from embedding_client.corpus.readers import ChunkRow, row_label
from embedding_client.corpus.report import RunStats
from embedding_client.corpus.reuse import OldOutput
from embedding_client.corpus.scheduler import Call, Scheduler, Units
from embedding_client.corpus.shard_job import ShardBuffer, chunk_rows, chunk_text_bytes
from embedding_client.corpus.shards import OutputSchema, ShardStore
from embedding_client.corpus.targets import Chunked, Embedded, Target, merge_chunked

CHUNK_REQUEST_BYTES = LAMBDA_PAYLOAD_BYTES - PAYLOAD_MARGIN_BYTES  # within Lambda's limit, as embedding requests


def rows_named(fmt: str, rows: list) -> str:
    """`line 7 (id 'a')`, or `10 rows, lines 1-10 (ids 'doc-0' to 'doc-9')`."""
    label = row_label(fmt)
    first, last = rows[0], rows[-1]
    if first is last:
        return f"{label} {first.number} (id {first.id!r})"
    count = len(dict.fromkeys(map(id, rows)))  # a long document's pieces are one row
    return f"{count:,} rows, {label}s {first.number}-{last.number} (ids {first.id!r} to {last.id!r})"


def _positions_named(fmt: str, rows: list, positions: np.ndarray) -> str:
    return rows_named(fmt, [rows[i] for i in positions])


@dataclass
class EmbedShards:
    """The plan: the input's shards, each embedded through `target` and committed to `store`."""

    units: ClassVar[Units] = Units(progress="texts", calls="requests", parts="shards", done="committed")
    per_thread: ClassVar[int] = 2

    target: Target
    budget: RequestBudget
    shards: Iterator[Shard]
    committed: set[int]  # shards an earlier run committed: skipped
    schema: OutputSchema
    store: ShardStore
    stats: RunStats
    fmt: str
    total: int  # shards in the whole input
    work: int  # texts left to this run
    chunk: Callable[[list[str]], list[Chunked]] | None = None  # --chunk-tokens: texts -> their chunks
    reuse: OldOutput | None = None  # OLD, when its vectors may stand in

    def tasks(self, scheduler: Scheduler) -> Iterator[EmbedShard]:
        for shard in self.shards:
            if shard.index in self.committed:
                continue
            rows, documents = shard.rows, None
            if self.chunk is not None:
                chunked = self._chunked(shard, scheduler)
                if chunked is None:
                    return
                rows, documents = chunked
            buffer = ShardBuffer(shard.index, rows, self.schema, text_hashes(row.text for row in rows), documents)
            yield EmbedShard(self, buffer, self._reuse_into(buffer, scheduler))

    def _chunked(self, shard: Shard, scheduler: Scheduler) -> tuple[list[ChunkRow], np.ndarray] | None:
        """The shard's texts as chunk rows (input order, then chunk order) and each chunk's
        document (its index in the shard); None when a chunking request failed for good."""
        limits = self.target.info.limits
        pieces = PieceRequests.of(shard.texts, chunk_text_bytes(limits))  # a long document: runs of pieces
        texts, rows = pieces.texts, [shard.rows[owner] for owner in pieces.owners]
        budget = RequestBudget(max_items=limits.max_items, max_request_bytes=CHUNK_REQUEST_BYTES)
        calls = [
            Call(self.chunk, texts[start:end], partial(rows_named, self.fmt, rows[start:end]), merge=merge_chunked)
            for start, end in pack_requests(texts, budget)
        ]
        answers = scheduler.gather(calls, "chunking")
        if answers is None:
            return None
        results: list[Chunked] = pieces.stitched([chunked for answer in answers for chunked in answer])
        stats = self.stats
        for chunked in results:
            stats.documents += 1
            stats.chunks += len(chunked.spans)
            stats.documents_split += len(chunked.spans) > 1
            stats.input_tokens += chunked.tokens
            stats.chunk_tokens_total += sum(tokens for _, _, tokens in chunked.spans)
        return chunk_rows(shard.rows, results)

    def _reuse_into(self, buffer: ShardBuffer, scheduler: Scheduler) -> np.ndarray:
        """OLD's vectors for the shard's rows whose text OLD holds; the rows left to embed."""
        if self.reuse is None:
            return np.arange(len(buffer.rows))
        found = self.reuse.texts.lookup(buffer.hashes)
        hit = np.flatnonzero(found >= 0)
        if len(hit):
            vectors, tokens, same = self.reuse.vectors(
                found[hit], buffer.hashes[hit], buffer.schema.width, buffer.vectors.dtype
            )
            found[hit[~same]] = -1  # 8 bytes alike, another text: embed it
            hit, vectors, tokens = hit[same], vectors[same], tokens[same]
            scheduler.advance(buffer.fill(hit, vectors, tokens))
            self.stats.rows_reused += len(hit)
            self.stats.tokens_reused += int(tokens[tokens >= 0].sum())
        return np.flatnonzero(found < 0)


class EmbedShard:
    """One shard: its rows left to embed, sent as requests; committed once every one is back."""

    def __init__(self, plan: EmbedShards, buffer: ShardBuffer, todo: np.ndarray):
        self.plan, self.buffer, self.todo = plan, buffer, todo

    def calls(self) -> list[Call]:
        rows, todo, plan = self.buffer.rows, self.todo, self.plan
        texts = [rows[i].text for i in todo]
        calls = []
        for start, end in pack_requests(texts, plan.budget):
            positions = todo[start:end]  # the call's tag: where its vectors go in the shard
            calls.append(Call(plan.target.embed, texts[start:end], partial(_positions_named, plan.fmt, rows, positions), positions))
        return calls

    def take(self, call: Call, embedded: Embedded) -> int:
        positions, stats = call.tag, self.plan.stats
        documents_done = self.buffer.fill(positions, embedded.vectors, embedded.tokens)
        stats.texts += len(positions)
        stats.requests += len(embedded.invocations)
        stats.invocations.extend(embedded.invocations)
        stats.tokens = None if stats.tokens is None or embedded.tokens is None else stats.tokens + sum(embedded.tokens)
        stats.truncated = (
            None if stats.truncated is None or embedded.truncated is None else stats.truncated + embedded.truncated
        )
        return documents_done

    def commit(self) -> None:
        self.plan.store.commit(self.buffer.index, self.buffer.table())
