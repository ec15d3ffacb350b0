"""`embed-corpus --chunk-tokens N` (bulk.py's `chunks` section): what chunking long documents
costs, and what truncating them instead would lose.

Chunking is worth having only if cutting a document into window-sized spans costs next to
nothing beside embedding them, and if truncation really throws text away on a realistic corpus,
so three measurements, each against the issue's target:

1. the service's chunker alone, on one core (a fresh process, one tokenizer thread, pinned
   where `taskset` exists), over long documents: MB/s at the model's window and at 128 tokens
   (at least 5 MB/s), next to the tokenizer's own `encode` of the same text (the chunker
   finds every token's start once, from a cache of words already tokenised); and its time for
   (2)'s documents as a share of embedding them (under 5%);
2. `--target local`: tokens/s embedded with `--chunk-tokens <window>` against the same chunks'
   texts embedded as pre-cut passages (at least 90%);
3. plain truncation at the window on the standard library's docstrings: the share of tokens it
   loses, which chunking keeps;
4. ours beside semchunk, LangChain, LlamaIndex and chonkie on real documents none of us wrote
   (chunk_peers.py): MB/s on one core at 128 tokens (at least 2 MB/s, `--chunk-overlap 16`
   costing at most 20% of it, the tokenizer's `encode` beside them as the floor the issue
   names, and ours with its word cache emptied before every document), fit, tokens
   per chunk, coverage and the chunks an edit changes.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Callable, Iterator

import pyarrow.parquet as pq

import chunk_peers
from corpus import _docstrings
from corpus_runs import DROP, embed_corpus, say, service_settings, write_jsonl
from pages import met, num, table
from processes import call_fresh, child_env, pin_one_cpu

MIN_DOCUMENT_TOKENS = 2000
SEED = 7
SMALL_CHUNKS = 128  # a second, smaller chunk size for the chunker's speed
ONE_CORE_ENV = {"TOKENIZERS_PARALLELISM": "false", "RAYON_NUM_THREADS": "1"}
TARGETS = {"mb_per_s": 2.0, "overlap_cost": 0.20, "chunk_share": 0.05, "throughput": 0.90}


def service_chunker():
    """The prepared model's spec and chunker, built as the service builds them: its tokenizer
    (truncating at max_seq_length, lowercased where the model says so), then `Chunker.of`."""
    model_dir = service_settings().model_dir
    from embedding_service.chunking import Chunker
    from embedding_service.model_config import read_model_spec
    from embedding_service.tokenization import load_tokenizer, lowercase_inputs

    spec = read_model_spec(model_dir)
    tokenizer = load_tokenizer(model_dir, spec.max_seq_length)
    if spec.do_lower_case:
        lowercase_inputs(tokenizer)
    return spec, tokenizer, Chunker.of(tokenizer, spec.max_seq_length)


def long_documents(chunker) -> Iterator[str]:
    """Documents of MIN_DOCUMENT_TOKENS+ tokens, endlessly: consecutive docstrings joined with
    blank lines (paragraphs kept), each document from a seeded random start."""
    docs, rng = _docstrings(), random.Random(SEED)
    while True:
        at = rng.randrange(len(docs))
        document = docs[at]
        while len(document) < 4 * MIN_DOCUMENT_TOKENS or chunker.count([document])[0] < MIN_DOCUMENT_TOKENS:
            at += 1
            document += "\n\n" + docs[at % len(docs)]
        yield document


def corpus_of(chunker, total_bytes: int, at_least: int) -> list[str]:
    """The first documents, until they hold `total_bytes` of UTF-8 and number `at_least`."""
    out, size = [], 0
    for document in long_documents(chunker):
        if size >= total_bytes and len(out) >= at_least:
            return out
        out.append(document)
        size += len(document.encode())
    raise AssertionError("unreachable")


def _timed(step: Callable[[str], object], documents: list[str]) -> list[float]:
    """Seconds `step` takes on each document."""
    times = []
    for document in documents:
        started = time.perf_counter()
        step(document)
        times.append(time.perf_counter() - started)
    return times


def speed_child(path: str, same: int) -> dict:
    """In a fresh one-core process: seconds per document of the tokenizer's untruncated `encode`
    and of the chunker at the window and at SMALL_CHUNKS; `same`: how many of the documents are
    (2)'s, whose chunking time at the window is summed apart."""
    from tokenizers import Tokenizer

    documents = json.loads(Path(path).read_text())
    spec, tokenizer, chunker = service_chunker()
    window = chunker.window(spec.default_prompt)
    untruncated = Tokenizer.from_str(tokenizer.to_str())
    untruncated.no_truncation()
    chunker.chunk(documents[0], window)  # first use (allocations, regex compile) not timed
    encode = _timed(lambda d: untruncated.encode(d, add_special_tokens=False), documents)
    result = {"window": window, "encode_s": sum(encode), "chunk": {}}
    for size in (window, SMALL_CHUNKS):
        chunks = []
        times = _timed(lambda d, size=size: chunks.append(len(chunker.chunk(d, size)[0])), documents)
        result["chunk"][size] = {"s": sum(times), "same_s": sum(times[:same]), "chunks": sum(chunks)}
    return result


def chunker_speed(documents: list[str], same: int, folder: Path) -> dict:
    """`speed_child` over the documents, in a fresh process on one core (pinned where it can be)."""
    path = folder / "speed-documents.json"
    path.write_text(json.dumps(documents))
    child = call_fresh(speed_child, str(path), same, env=child_env(DROP, **ONE_CORE_ENV), pin=True)
    child["chunk"] = {int(size): run for size, run in child["chunk"].items()}  # JSON keys are strings
    megabytes = sum(len(d.encode()) for d in documents) / 1e6
    rates = {size: megabytes / run["s"] for size, run in child["chunk"].items()}
    say(
        f"chunker, one core: {', '.join(f'{rate:.1f} MB/s at {size}' for size, rate in rates.items())}; "
        f"encode alone {megabytes / child['encode_s']:.1f} MB/s"
    )
    return {
        **child,
        "documents": len(documents),
        "megabytes": megabytes,
        "pinned": bool(pin_one_cpu()),
        "encode_mb_per_s": megabytes / child["encode_s"],
        "mb_per_s": rates,
    }


def _local(source: Path, folder: Path, *args: str) -> dict:
    run = embed_corpus(source, folder, "--target", "local", *args)
    return {**run, "tokens_per_s": run["tokens"] / run["embed_s"]}


def chunked_vs_precut(documents: list[str], window: int, folder: Path) -> dict:
    """Tokens/s over embed_s: pre-cut, chunked, pre-cut, chunked, in turn (a slow spell of the
    shared CPU then hits both alike), the faster of each kept. The pre-cut passages are the
    chunked run's own chunks (`--with-text`)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = write_jsonl(folder / "documents.jsonl", documents)
    chunking = ("--chunk-tokens", str(window))
    extract = _local(source, folder, *chunking, "--with-text")  # also warms the page cache and imports
    chunk_texts = pq.read_table(folder / "out.parquet", columns=["text"]).column("text").to_pylist()
    precut = write_jsonl(folder / "precut.jsonl", chunk_texts)
    runs = {"precut": _local(precut, folder)}
    runs["chunked"] = _local(source, folder, *chunking)
    runs["precut_again"] = _local(precut, folder)
    runs["chunked_again"] = _local(source, folder, *chunking)
    reference = max(runs["precut"], runs["precut_again"], key=lambda run: run["tokens_per_s"])
    chunked = max(runs["chunked"], runs["chunked_again"], key=lambda run: run["tokens_per_s"])
    ratio = chunked["tokens_per_s"] / reference["tokens_per_s"]
    say(
        f"--chunk-tokens {window}, local: {runs['chunked']['tokens_per_s']:,.0f} and "
        f"{runs['chunked_again']['tokens_per_s']:,.0f} tokens/s, pre-cut {runs['precut']['tokens_per_s']:,.0f} "
        f"and {runs['precut_again']['tokens_per_s']:,.0f} ({ratio:.1%})"
    )
    return {
        "documents": len(documents),
        "chunk_tokens": window,
        "runs": runs,
        "extract_run": extract,
        "reference": reference,
        "ratio": ratio,
        "met": ratio >= TARGETS["throughput"],
    }


def truncation_loss(chunker, window: int) -> dict:
    """Every docstring one text: the tokens truncation at the window drops, and the tokens the
    overlong texts' chunks hold."""
    texts = _docstrings()
    counts = chunker.count(texts)
    overlong = [(text, count) for text, count in zip(texts, counts) if count > window]
    lost = sum(count - window for _, count in overlong)
    in_chunks = sum(c.tokens for text, _ in overlong for c in chunker.chunk(text, window)[0])
    overlong_tokens = sum(count for _, count in overlong)
    say(f"truncation at {window}: {lost / sum(counts):.1%} of the docstrings' tokens lost")
    return {
        "texts": len(texts),
        "bytes": sum(len(t.encode()) for t in texts),
        "tokens": sum(counts),
        "overlong": len(overlong),
        "overlong_tokens": overlong_tokens,
        "longest": max(counts),
        "lost_tokens": lost,
        "lost_share": lost / sum(counts),
        "chunk_tokens_kept": in_chunks,
        "kept_share": in_chunks / overlong_tokens,
    }


def measure(sizes: dict, folder: Path) -> dict:
    """Every figure of the section, at the run's sizes."""
    spec, _, chunker = service_chunker()
    window = chunker.window(spec.default_prompt)
    documents = corpus_of(chunker, sizes["chunk_speed_bytes"], sizes["chunk_documents"])
    same = documents[: sizes["chunk_documents"]]
    speed = chunker_speed(documents, len(same), folder)
    throughput = chunked_vs_precut(same, window, folder / "chunks")
    share = speed["chunk"][window]["same_s"] / throughput["reference"]["embed_s"]
    say(f"chunking (2)'s documents on one core: {share:.1%} of embedding them")
    return {
        "max_seq_length": spec.max_seq_length,
        "window": window,
        "document_tokens": sum(chunker.count(documents)) / len(documents),
        "targets": TARGETS,
        "speed": speed,
        "throughput": throughput,
        "chunk_share": {"share": share, "met": share < TARGETS["chunk_share"]},
        "truncation": truncation_loss(chunker, window),
        "peers": peers(sizes, folder),
    }


def peers(sizes: dict, folder: Path) -> dict:
    """chunk_peers.py's comparison, each chunker in a fresh one-core process; ours against the
    issue's speed targets."""
    one_core = child_env(DROP, **ONE_CORE_ENV)
    result = chunk_peers.measure(folder, lambda f, *args: call_fresh(f, *args, env=one_core, pin=True),
                                 sizes.get("peer_documents"))
    runs = result["runs"]
    cost = 1 - runs["ours_overlap"]["mb_per_s"] / runs["ours"]["mb_per_s"]
    say(f"ours at {result['size']}: {runs['ours']['mb_per_s']:.2f} MB/s, overlap {result['overlap']} costs "
        f"{cost:.0%}; encode {runs['encode']['mb_per_s']:.2f} MB/s")
    return {**result, "overlap_cost": cost, "met": runs["ours"]["mb_per_s"] >= TARGETS["mb_per_s"],
            "overlap_met": cost <= TARGETS["overlap_cost"]}


def _peer_rows(result: dict) -> list[list]:
    def spread(changed: dict) -> str:
        return f"{changed['median']} / {changed['p90']} / {changed['max']}"

    runs = result["runs"]
    rows = [["tokenizer `encode` with offsets (the floor)", "–", f"{runs['encode']['mb_per_s']:.2f}",
             "–", "–", "–", "–", "–", "–"]]
    names = {name: label for name, (label, _) in chunk_peers.PEERS.items()}
    names["ours_overlap"] = f"ours, `--chunk-overlap {result['overlap']}`"
    for name in ["ours", "ours_cold", "ours_overlap", *list(chunk_peers.PEERS)[1:]]:
        run = runs[name]
        if name == "ours_cold":
            rows.append(["ours, word cache emptied before each document", "this commit", f"{run['mb_per_s']:.2f}",
                         *["as ours"] * 6])
            continue
        rows.append([names[name], run["version"] or "this commit", f"{run['mb_per_s']:.2f}",
                     f"{100 * run['fit']:.1f}%", f"{run['tokens_per_chunk']:.1f}", f"{100 * run['coverage']:.1f}%",
                     *(spread(run["changed"][kind]) for kind in ("word", "insert", "delete"))])
    return rows


def _speed_rows(speed: dict) -> list[list]:
    rows = [["tokenizer `encode`, untruncated (reference)", "–", "–", f"{speed['encode_mb_per_s']:.1f}"]]
    for size, run in speed["chunk"].items():
        per_document, rate = run["chunks"] / speed["documents"], speed["mb_per_s"][size]
        name = f"chunker, `--chunk-tokens {size}`"
        rows.append([name, f"{run['chunks']:,}", f"{per_document:.1f}", f"{rate:.1f}"])
    return rows


def _run_rows(throughput: dict) -> list[list]:
    names = {
        "precut": "pre-cut passages",
        "chunked": f"documents, `--chunk-tokens {throughput['chunk_tokens']}`",
        "precut_again": "pre-cut passages, again",
        "chunked_again": f"documents, `--chunk-tokens {throughput['chunk_tokens']}`, again",
    }
    reference = throughput["reference"]["tokens_per_s"]
    return [
        [name, f"{run['texts']:,}", f"{run['tokens']:,}", num(run["embed_s"], 2),
         f"{run['tokens_per_s']:,.0f}", f"{100 * run['tokens_per_s'] / reference:.0f}%"]
        for key, name in names.items() for run in [throughput["runs"][key]]
    ]


def render(results: dict, sections) -> str:
    """The `chunks` section of templates/bulk.md."""
    speed, throughput, truncation = results["speed"], results["throughput"], results["truncation"]
    peers = results["peers"]
    window, lost = results["window"], truncation["lost_tokens"]
    return sections(
        "chunks", window=window, max_seq_length=results["max_seq_length"],
        min_tokens=f"{MIN_DOCUMENT_TOKENS:,}",
        speed_documents=f"{speed['documents']:,}", speed_mb=f"{speed['megabytes']:.1f}",
        document_tokens=f"{results['document_tokens']:,.0f}", stdlib_kb=f"{truncation['bytes'] / 1e3:,.0f}",
        pinned=", pinned to one CPU with `taskset -c 0`" if speed["pinned"] else "; no `taskset`: not pinned",
        speed_table=table(["step", "chunks", "chunks / document", "MB/s"], "lrrr", _speed_rows(speed)),
        speed_rate=f"{speed['mb_per_s'][window]:.1f}",
        encode_rate=f"{speed['encode_mb_per_s']:.1f}", documents=throughput["documents"],
        runs_table=table(["run", "rows", "tokens", "embed_s (s)", "tokens/s", "of pre-cut"], "lrrrrr",
                         _run_rows(throughput)),
        ratio=f"{100 * throughput['ratio']:.0f}%", ratio_met=met(throughput["met"]),
        chunk_s=f"{speed['chunk'][window]['same_s']:.3f}",
        reference_s=f"{throughput['reference']['embed_s']:.2f}",
        share=f"{100 * results['chunk_share']['share']:.1f}%", share_met=met(results["chunk_share"]["met"]),
        docstrings=f"{truncation['texts']:,}", docstring_tokens=f"{truncation['tokens']:,}",
        overlong=f"{truncation['overlong']:,}",
        overlong_share=f"{100 * truncation['overlong'] / truncation['texts']:.1f}%",
        longest=f"{truncation['longest']:,}", lost=f"{100 * truncation['lost_share']:.1f}%",
        lost_tokens=f"{lost:,}", lost_overlong=f"{100 * lost / truncation['overlong_tokens']:.0f}%",
        kept=f"{100 * truncation['kept_share']:.1f}%",
        peer_documents=f"{peers['documents']:,}", peer_mb=f"{peers['megabytes']:.1f}", peer_size=peers["size"],
        edited=f"{sum(peers['runs']['ours']['changed'][k]['edits'] for k in ('word', 'insert', 'delete')):,}",
        peer_table=table(["chunker", "version", "MB/s, one core", "fit", "tokens / chunk", "coverage",
                          "edited word: chunks changed, median / p90 / max", "inserted sentence", "deleted sentence"],
                         "llrrrrrrr", _peer_rows(peers)),
        ours_rate=f"{peers['runs']['ours']['mb_per_s']:.2f}", ours_met=met(peers["met"]),
        overlap=peers["overlap"], overlap_cost=f"{100 * peers['overlap_cost']:.0f}%",
        overlap_met=met(peers["overlap_met"]), floor=f"{peers['runs']['encode']['mb_per_s']:.2f}",
        floor_ratio=f"{peers['runs']['ours']['mb_per_s'] / peers['runs']['encode']['mb_per_s']:.2f}x",
        cold_rate=f"{peers['runs']['ours_cold']['mb_per_s']:.2f}",
        edit_every=chunk_peers.EDIT_EVERY, timed_runs=chunk_peers.TIMED_RUNS,
    )
