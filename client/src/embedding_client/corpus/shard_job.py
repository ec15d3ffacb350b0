"""One shard's work, from its rows to its Parquet part: shared by the client's own path and by a
Lambda worker running a shard job, so both write exactly the same rows, ids, vectors and schema.

A shard job is a JSON document (`job_event`): which split of which object to read, the part to
write, and the run's options. The worker (`run_job`) reads the split from S3, checks every row as
the client would, chunks and embeds through the same target interface (the model in its own
process), writes its part whole (a retried job rewrites the same name: no duplicates), and
returns what it did. The client never sees the corpus text or the vectors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import orjson

from embedding_client.contract import LAMBDA_PAYLOAD_BYTES, PAYLOAD_MARGIN_BYTES, EventKey
from embedding_client.corpus.errors import InputError
from embedding_client.corpus.hashing import text_hashes
from embedding_client.corpus.inputs import InputFile, Inputs, split_rows
from embedding_client.corpus.locations import Location, Storage
from embedding_client.corpus.pieces import PieceRequests, longest_run_bytes
from embedding_client.corpus.plan import pack_requests
from embedding_client.corpus.readers import ChunkRow, Rejected, Row, row_label
from embedding_client.corpus.shards import OutputSchema, parquet_bytes
from embedding_client.corpus.splits import Split
from embedding_client.corpus.targets import Chunked, Limits, empty_vectors, output_width

JOB_VERSION = 1
SHOWN_PROBLEMS = 5


def checked_rows(items: Iterator[Row | Rejected], limits: Limits, chunking: bool = False) -> Iterator[Row | Rejected]:
    """The reader's rows, with the target's per-text limit applied (every pass uses this). With
    `chunking` a text of any length is read whole: one too long for a chunk request is sent as
    runs of the chunker's pieces (pieces.py), so only a piece too long for a request is refused."""
    for item in items:
        if not isinstance(item, Row) or len(item.text) <= limits.max_item_chars:
            yield item
        elif not chunking:
            yield Rejected(
                item.number,
                item.id,
                f"the text has {len(item.text):,} characters; the target accepts at most "
                f"{limits.max_item_chars:,} (MAX_INPUT_CHARS) for embedding: pass --chunk-tokens N to chunk "
                "long documents and embed every chunk",
                getattr(item, "source", ""),
            )
        elif (size := longest_run_bytes(item.text, most := chunk_text_bytes(limits))) > most:
            yield Rejected(
                item.number,
                item.id,
                f"the text runs {size:,} bytes as JSON without a line break the chunker may cut at; one chunk "
                f"request carries at most {most:,}: add line breaks or split the document into several rows",
                getattr(item, "source", ""),
            )
        else:
            yield item


def chunk_text_bytes(limits: Limits) -> int:
    """The longest text (as JSON) one chunk request may carry to this target."""
    return min(limits.max_body_bytes, LAMBDA_PAYLOAD_BYTES) - PAYLOAD_MARGIN_BYTES


def chunk_rows(rows: list[Row], results: list[Chunked]) -> tuple[list[ChunkRow], np.ndarray]:
    """Each row's chunks as rows (input order, then chunk order), and each chunk's row index."""
    chunks: list[ChunkRow] = []
    documents: list[int] = []
    for index, (row, chunked) in enumerate(zip(rows, results)):
        for number, (start, end, _) in enumerate(chunked.spans):
            chunks.append(ChunkRow(row.number, row.id, number, start, end, row.text[start:end]))
            documents.append(index)
    return chunks, np.asarray(documents, dtype=np.int64)


class ShardBuffer:
    """One shard's rows (its texts, or their chunks) and their vectors as they arrive: reused from
    OLD, or back from requests in any order. `documents` maps each row to its text in the shard
    (chunks), so progress counts texts whose every chunk is done."""

    def __init__(self, index: int, rows: list, schema: OutputSchema, hashes: np.ndarray, documents=None):
        self.index = index
        self.rows = rows
        self.schema = schema
        self.hashes = hashes
        self.vectors = empty_vectors(len(rows), schema.embedding_type, schema.width)
        self.tokens = np.full(len(rows), -1, dtype=np.int64)  # -1: the target did not say
        self.documents = documents  # None: a row per text, each done when its vector is
        self.left = None if documents is None else np.bincount(documents, minlength=int(documents.max(initial=-1)) + 1)

    def fill(self, positions, vectors: np.ndarray, tokens) -> int:
        """Rows at `positions` (increasing) get these vectors and token counts; returns the texts
        now complete."""
        count_done = len(positions)
        if count_done and positions[-1] - positions[0] == count_done - 1:
            positions = slice(int(positions[0]), int(positions[-1]) + 1)  # a run: a plain copy
        self.vectors[positions] = vectors
        if tokens is not None:
            self.tokens[positions] = tokens
        if self.documents is None:  # no chunks: a row is a text (the common case, kept cheap)
            return count_done
        touched = np.atleast_1d(self.documents[positions])
        np.subtract.at(self.left, touched, 1)
        return int(np.count_nonzero(self.left[np.unique(touched)] == 0))

    def table(self):
        return self.schema.table(self.rows, self.vectors, self.tokens, self.hashes)


# --- the job document --------------------------------------------------------------------------


@dataclass(frozen=True)
class JobOptions:
    """What every job of a run shares."""

    fmt: str
    dataset: bool
    text_field: str
    id_field: str
    on_error: str
    ids_are_ints: bool
    embedding_type: str
    input_type: str | None
    chunk_tokens: int | None
    chunk_overlap: int
    with_text: bool
    batch_size: int
    metadata: dict


def job_event(options: JobOptions, file: InputFile, split: Split, part: Location, rejects: Location | None) -> dict:
    return {
        EventKey.SHARD_JOB: {
            "version": JOB_VERSION,
            "input": {"uri": file.location.uri, "name": file.name, **split.describe()},
            "part": part.uri,
            "rejects": rejects.uri if rejects else None,
            "options": options.__dict__,
        }
    }


def probe_event(first_input: Location, output: Location) -> dict:
    return {EventKey.SHARD_PROBE: {"version": JOB_VERSION, "input": first_input.uri, "output": output.uri}}


class JobRefused(InputError):
    """The shard's rows can't be embedded as asked (bad rows under --on-error stop)."""


def run_job(job: dict, target, storage: Storage) -> dict:
    """Read, check, (chunk), embed and write one shard; what it did, for the client's report."""
    started = time.perf_counter()
    if job.get("version") != JOB_VERSION:
        raise InputError(f"shard job version {job.get('version')!r}: this worker runs version {JOB_VERSION}")
    options = JobOptions(**job["options"])
    source = job["input"]
    file = InputFile(Location(source["uri"]), source["name"], 0, "")
    inputs = Inputs(source["uri"], [file], options.fmt, options.dataset)
    split = Split(0, int(source["start"]), int(source["end"]), bool(source["whole"]))
    rows: list[Row] = []
    rejected: list[Rejected] = []
    rows_read = split_rows(storage, inputs, split, options.text_field, options.id_field)
    items = checked_rows(rows_read, target.info.limits, chunking=options.chunk_tokens is not None)
    for item in items:
        if isinstance(item, Row) and isinstance(item.id, int) != options.ids_are_ints:
            kind = "an integer" if options.ids_are_ints else "a string"
            item = Rejected(item.number, item.id, f"the id must be {kind}, like the first row's", item_source(inputs, file))
        (rows if isinstance(item, Row) else rejected).append(item)
    if rejected and options.on_error != "skip":
        label = row_label(options.fmt)
        shown = "; ".join(f"{file.name} {label} {item.number}: {item.reason}" for item in rejected[:SHOWN_PROBLEMS])
        more = len(rejected) - SHOWN_PROBLEMS
        raise JobRefused(shown + (f" (and {more:,} more)" if more > 0 else ""))
    schema = OutputSchema(
        options.ids_are_ints,
        options.embedding_type,
        output_width(options.embedding_type, target.info.dimension),
        options.metadata,
        chunked=options.chunk_tokens is not None,
        with_text=options.with_text,
    )
    documents, tokens_in = None, 0
    texts_count = len(rows)
    if options.chunk_tokens is not None and rows:
        pieces = PieceRequests.of([row.text for row in rows], chunk_text_bytes(target.info.limits))
        results = pieces.stitched(target.chunk(pieces.texts, options.chunk_tokens, options.chunk_overlap))
        tokens_in = sum(result.tokens for result in results)
        rows, documents = chunk_rows(rows, results)
    buffer = ShardBuffer(0, rows, schema, text_hashes(row.text for row in rows), documents)
    texts = [row.text for row in rows]
    for start, end in pack_requests(texts, target.budget(options.batch_size)):
        embedded = target.embed(texts[start:end])
        buffer.fill(np.arange(start, end), embedded.vectors, embedded.tokens)
    table = buffer.table().replace_schema_metadata(options.metadata)
    data = parquet_bytes(table)
    storage.write_bytes(Location(job["part"]), data)
    if rejected and job.get("rejects"):
        lines = b"".join(
            orjson.dumps({"file": file.name, row_label(options.fmt): item.number, "id": item.id, "reason": item.reason})
            + b"\n"
            for item in rejected
        )
        storage.write_bytes(Location(job["rejects"]), lines)
    known = buffer.tokens[buffer.tokens >= 0]
    return {
        "part": job["part"],
        "rows": len(rows),
        "texts": texts_count,
        "rejected": len(rejected),
        "tokens": int(known.sum()),
        "input_tokens": tokens_in,
        "part_bytes": len(data),
        "seconds": round(time.perf_counter() - started, 3),
    }


def item_source(inputs: Inputs, file: InputFile) -> str:
    return file.name if inputs.dataset else ""
