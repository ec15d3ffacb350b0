"""`embed-corpus --reuse OLD` (bulk.py's `reuse` section): what a re-run costs once 1% of the
texts changed.

A corpus is embedded once, then a few texts are edited and the whole corpus is run again with
`--reuse` the first output: rows whose exact text OLD holds get OLD's vector, so only the edited
rows reach the model. That is worth having only if the re-run is cheap and the bookkeeping that
decides it (a sha256 per text, a lookup in OLD's index, a copy of OLD's vector) costs next to
nothing in time and memory, so four figures, each against the issue's target:

1. `--target local`: the re-run's wall time against the full run's (at most 5%);
2. a 2-RIE Lambda fleet: the re-run's billed milliseconds against the full run's (at most 2%);
3. the bookkeeping alone, in this process with no model: hashing, lookup and vector copy per
   10,000-text shard (at least 500,000 rows/s), and building OLD's index;
4. the index's memory: a fresh process's peak RSS over 10^6 OLD rows, above a plain run's
   bookkeeping (under 40 bytes a row).
"""

from __future__ import annotations

import functools
import json
import random
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow.parquet as pq

from embedding_client.corpus.run_fingerprint import digest
from embedding_client.corpus.hashing import text_hashes
from embedding_client.corpus.locations import Location, Storage
from embedding_client.corpus.readers import Row
from embedding_client.corpus.reuse import OldOutput
from embedding_client.corpus.shards import OutputSchema

from corpus import sentences
from corpus_runs import Fleet, embed_corpus, say, write_formats
from pages import met, num, table
from processes import call_fresh

SHARD = 10_000  # embed-corpus's shard (and OLD's row group) size
EDITED = 0.01  # the share of texts a re-run finds changed
DIMENSION = 384
SEED = 17
TARGETS = {"wall": 0.05, "billed": 0.02, "rows_per_s": 500_000, "bytes_per_row": 40}


@functools.cache
def _pool() -> list[str]:
    return sentences(10**6, seed=SEED)  # every short sentence the corpus has, shuffled


def unique_texts(count: int) -> list[str]:
    """`count` distinct texts, each two distinct short sentences joined (no newlines)."""
    pool = _pool()
    pairs = random.Random(SEED).sample(range(len(pool) * (len(pool) - 1)), count)
    texts = []
    for pair in pairs:
        first, second = divmod(pair, len(pool) - 1)
        texts.append(f"{pool[first]} {pool[second + (second >= first)]}")
    assert len(set(texts)) == count
    return texts


def numbered_texts(start: int, stop: int) -> Iterator[str]:
    """Rows start..stop-1 of a synthetic corpus of any size, made lazily (short texts, all distinct)."""
    pool = _pool()
    return (f"{pool[i % len(pool)]} (row {i})" for i in range(start, stop))


def edited_rows(count: int) -> set[int]:
    return set(random.Random(SEED).sample(range(count), round(count * EDITED)))


def revise(texts: Iterable[str], edited: set[int], start: int = 0) -> Iterator[str]:
    """The texts with the edited rows changed (start: the first text's row)."""
    return (text + " (revised)" if row in edited else text for row, text in enumerate(texts, start))


def full_and_rerun(texts: list[str], folder: Path, run) -> tuple[dict, dict]:
    """`run` over the texts, then over them with 1% edited, `--reuse` the first output."""
    first, second = folder / "full", folder / "rerun"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    full = run(write_formats(first, texts)["jsonl"], first)
    new = write_formats(second, list(revise(texts, edited_rows(len(texts)))))["jsonl"]
    flags = ("--reuse", str(first / "out.parquet"), "--changes", str(second / "changes.parquet"))
    again = run(new, second, *flags)
    return full, again


def local_reuse(texts: list[str], folder: Path) -> dict:
    full, again = full_and_rerun(texts, folder, lambda *a: embed_corpus(*a, "--target", "local"))
    ratio = again["process_wall_s"] / full["process_wall_s"]
    say(
        f"--reuse, local: {again['process_wall_s']:.1f} s after {full['process_wall_s']:.1f} s "
        f"({100 * ratio:.1f}%), {again['rows_reused']:,} reused, {again['rows_embedded']:,} embedded"
    )
    return {
        "texts": len(texts),
        "full": full,
        "rerun": again,
        "wall_ratio": ratio,
        "command_wall_ratio": again["wall_s"] / full["wall_s"],
        "met": ratio <= TARGETS["wall"],
    }


def _billed(fleet: Fleet):
    """`fleet.embed`, with the billed ms of this run's invocations (REPORT lines) added: totals
    after less totals before (`billed_ms()` lists one emulator's lines after the other's, so
    its tail is not this run's)."""

    def run(source: Path, folder: Path, *args: str) -> dict:
        before = fleet.billed_ms()
        result = fleet.embed(source, folder, *args)
        after = fleet.billed_ms()
        billed = {"billed_ms": sum(after) - sum(before), "billed_invocations": len(after) - len(before)}
        return {**result, **billed}

    return run


def fleet_reuse(texts: list[str], folder: Path) -> dict:
    (folder / "warm").mkdir(parents=True)
    with Fleet(2, folder) as fleet:
        fleet.warm(write_formats(folder / "warm", texts[:64])["jsonl"], folder / "warm")
        full, again = full_and_rerun(texts, folder, _billed(fleet))
    ratio = again["billed_ms"] / full["billed_ms"]
    say(f"--reuse, 2 RIEs: {again['billed_ms']:,.0f} billed ms after {full['billed_ms']:,.0f} ({ratio:.2%})")
    return {
        "texts": len(texts),
        "full": full,
        "rerun": again,
        "billed_ratio": ratio,
        "met": ratio <= TARGETS["billed"],
    }


def _parts(embedding_type: str) -> dict:
    return {"model": "bench/random-vectors", "embedding_type": embedding_type, "dimensions": DIMENSION}


def write_old(path: Path, rows: int, embedding_type: str) -> None:
    """An OLD of `rows` synthetic texts with random vectors, as embed-corpus writes it (its
    columns and metadata, row groups of one shard)."""
    parts = _parts(embedding_type)
    width = DIMENSION // 8 if embedding_type == "ubinary" else DIMENSION
    metadata = {
        "fingerprint": digest(parts),
        "fingerprint_parts": json.dumps(parts),
        "dimension": str(DIMENSION),
        "model": parts["model"],
    }
    schema = OutputSchema(False, embedding_type, width, metadata)
    random_vectors = np.random.default_rng(SEED)
    with pq.ParquetWriter(path, schema.arrow(with_metadata=True)) as writer:
        for start in range(0, rows, SHARD):
            texts = list(numbered_texts(start, min(start + SHARD, rows)))
            if embedding_type == "ubinary":
                vectors = random_vectors.integers(0, 256, (len(texts), width), dtype=np.uint8)
            else:
                vectors = random_vectors.standard_normal((len(texts), width), dtype=np.float32)
            shard = [Row(start + i + 1, f"doc-{start + i}", text) for i, text in enumerate(texts)]
            tokens = np.full(len(texts), 16, dtype=np.int32)
            writer.write_table(schema.table(shard, vectors, tokens, text_hashes(texts)))


def open_old(path: Path, embedding_type: str) -> OldOutput:
    """OLD opened as `--reuse` opens it, its text index built."""
    parts = _parts(embedding_type)
    old = OldOutput(Location(str(path)), Storage(), digest(parts), parts, DIMENSION)
    old.index_texts()
    return old


def input_shards(rows: int) -> Iterator[list[str]]:
    """INPUT (OLD's texts with 1% edited), a shard's texts at a time."""
    edited = edited_rows(rows)
    for start in range(0, rows, SHARD):
        yield list(revise(numbered_texts(start, min(start + SHARD, rows)), edited, start))


def bookkeeping_rate(rows: int, folder: Path) -> dict:
    """Per shard: hash the texts, look them up in OLD's index, copy the vectors OLD holds."""
    path = folder / "old-rate.parquet"
    write_old(path, rows, "float")
    started = time.perf_counter()
    old = open_old(path, "float")
    index_s = time.perf_counter() - started
    steps, reused = {"hash": 0.0, "lookup": 0.0, "copy": 0.0}, 0  # copy: decode, confirm, copy
    try:
        for texts in input_shards(rows):
            started = time.perf_counter()
            hashes = text_hashes(texts)
            hashed = time.perf_counter()
            found = old.texts.lookup(hashes)
            hit = found[found >= 0]
            looked_up = time.perf_counter()
            old.vectors(hit, hashes[found >= 0], DIMENSION, np.float32)  # copied, and the match confirmed
            steps["hash"] += hashed - started
            steps["lookup"] += looked_up - hashed
            steps["copy"] += time.perf_counter() - looked_up
            reused += len(hit)
    finally:
        old.close()
    rate = rows / sum(steps.values())
    say(f"--reuse bookkeeping: {rate:,.0f} rows/s; index of {rows:,} rows in {index_s:.2f} s")
    return {
        "rows": rows,
        "reused": reused,
        "steady_s": sum(steps.values()),
        "steps_s": steps,
        "rows_per_s": rate,
        "index_s": index_s,
        "index_rows_per_s": rows / index_s,
        "met": rate >= TARGETS["rows_per_s"],
    }


def _peak_kib() -> int:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's peak into a
    child's ru_maxrss across exec, so a fresh child would start at bulk.py's own peak."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


def memory_child(path: str, rows: int) -> dict:
    """In a fresh process: peak RSS after a plain run's bookkeeping (hashing INPUT a shard at a
    time), then after building OLD's index and looking INPUT up in it the same way."""
    for texts in input_shards(rows):
        text_hashes(texts)
    before = _peak_kib()
    old = open_old(Path(path), "ubinary")
    for texts in input_shards(rows):
        old.texts.lookup(text_hashes(texts))
    return {"before_kib": before, "after_kib": _peak_kib(), "index_nbytes": old.texts.nbytes}


def memory_per_row(rows: int, folder: Path) -> dict:
    path = folder / "old-memory.parquet"
    write_old(path, rows, "ubinary")  # the index ignores vectors: the smallest ones keep OLD small
    child = call_fresh(memory_child, str(path), rows)
    per_row = (child["after_kib"] - child["before_kib"]) * 1024 / rows
    held = child["index_nbytes"] / rows
    say(f"--reuse index: {per_row:.1f} bytes per OLD row of peak RSS ({held:.1f} held by the index)")
    return {
        "rows": rows,
        **child,
        "bytes_per_row": per_row,
        "index_bytes_per_row": held,
        "met": per_row < TARGETS["bytes_per_row"],
    }


def measure(sizes: dict, folder: Path) -> dict:
    """Every figure of the section, at the run's sizes."""
    texts = unique_texts(sizes["reuse_texts"])
    return {
        "edited_share": EDITED,
        "targets": TARGETS,
        "local": local_reuse(texts, folder / "reuse-local"),
        "fleet": fleet_reuse(texts[: sizes["reuse_fleet_texts"]], folder / "reuse-fleet"),
        "rate": bookkeeping_rate(sizes["reuse_rate_rows"], folder),
        "memory": memory_per_row(sizes["reuse_memory_rows"], folder),
    }


def _run_row(name: str, run: dict) -> list:
    billed = ["–", "–"]
    if "billed_ms" in run:
        billed = [f"{run['billed_ms']:,.0f}", f"{run['billed_invocations']:,}"]
    return [name, num(run["process_wall_s"]), num(run["wall_s"]), f"{run['rows_reused']:,}",
            f"{run['rows_embedded']:,}", num(run["model_seconds_saved"]), *billed]


def render(results: dict, sections) -> str:
    """The `reuse` section of templates/bulk.md."""
    local, fleet, rate, memory = (results[k] for k in ("local", "fleet", "rate", "memory"))
    rows = [
        _run_row(f"{where}, {name}", runs[key])
        for where, runs in (("local", local), ("2 RIEs", fleet))
        for key, name in (("full", "full run"), ("rerun", "re-run, `--reuse`"))
    ]
    header = ["run", "process wall (s)", "wall_s (s)", "rows reused", "rows embedded", "model s saved",
              "billed ms", "invocations"]
    return sections(
        "reuse", edited=f"{100 * results['edited_share']:.0f}%", local_texts=f"{local['texts']:,}",
        fleet_texts=f"{fleet['texts']:,}", runs_table=table(header, "lrrrrrrr", rows),
        wall_ratio=f"{100 * local['wall_ratio']:.1f}%",
        command_wall_ratio=f"{100 * local['command_wall_ratio']:.1f}%", wall_met=met(local["met"]),
        billed_ratio=f"{100 * fleet['billed_ratio']:.2f}%", billed_met=met(fleet["met"]),
        rate_rows=f"{rate['rows']:,}", rate=f"{rate['rows_per_s']:,.0f}", rate_met=met(rate["met"]),
        rate_steps=", ".join(f"{step} {rate['rows'] / s:,.0f}" for step, s in rate["steps_s"].items()),
        index_s=f"{rate['index_s']:.2f}", index_rate=f"{rate['index_rows_per_s']:,.0f}",
        memory_rows=f"{memory['rows']:,}", bytes_per_row=num(memory["bytes_per_row"]),
        index_bytes_per_row=num(memory["index_bytes_per_row"]), memory_met=met(memory["met"]),
    )
