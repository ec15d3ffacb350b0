"""Our chunker beside the ones people use (bulk_chunks.py's comparison): semchunk, LangChain's
RecursiveCharacterTextSplitter, LlamaIndex's SentenceSplitter and chonkie's RecursiveChunker,
all counting tokens on the model's own tokenizer, on real documents none of us wrote.

Documents: the package documentation, READMEs (METADATA), changelogs and licences this machine
holds under the standard library's and the venv's site-packages, 2,000-60,000 characters each,
each text once. Each chunker runs in a fresh process on one core (TIMED_RUNS of them, in turn
with the others, the fastest kept) and reports:
- MB/s: the documents' UTF-8 bytes over the seconds it takes to chunk them all (beside the
  tokenizer's own `encode` with offsets, ours with `--chunk-overlap 16`, and ours forgetting
  the words its token cache learnt before each document);
- fit: the share of chunks whose text, tokenised alone, holds at most the size asked;
- tokens per chunk, on average (how full the chunks are: fewer vectors for the same text);
- coverage: the share of the documents' non-whitespace characters inside a chunk found verbatim
  in the document (a chunker that rewrites text loses coverage where it does);
- stability: on every EDIT_EVERY-th document, a word replaced, a sentence inserted and a sentence
  deleted; the chunks of the edited document not among the original's (median, p90, max).

The peers' packages are pinned in requirements-bench-chunks.txt, which `make bench-bulk` installs.
"""

from __future__ import annotations

import json
import random
import re
import sysconfig
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

SIZE = 128
OVERLAP = 16
EDIT_EVERY = 3  # every third document is edited three ways
TIMED_RUNS = 5  # each chunker timed in this many fresh processes, the fastest kept (the CPU is shared)
NAMES = re.compile(r"^(METADATA|README|CHANGES|CHANGELOG|HISTORY|NEWS|LICEN[CS]E|COPYING|NOTICE)", re.I)
PEERS = {  # name -> (what the table calls it, its package for the version)
    "ours": ("ours (`/v1/chunks`, `--chunk-tokens`)", None),
    "semchunk": ("semchunk", "semchunk"),
    "langchain": ("LangChain RecursiveCharacterTextSplitter", "langchain-text-splitters"),
    "llamaindex": ("LlamaIndex SentenceSplitter", "llama-index-core"),
    "chonkie": ("chonkie RecursiveChunker", "chonkie"),
}
INSERTED = "An editor added this sentence to the documentation today. "


def documents() -> list[str]:
    """Package docs, READMEs, changelogs and licences on this machine, sorted by path, each once."""
    roots = sorted({Path(sysconfig.get_paths()[key]) for key in ("stdlib", "purelib")})
    texts: dict[str, None] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            wanted = NAMES.match(path.name) or path.suffix in (".md", ".rst")
            if not wanted or path.suffix in (".py", ".h", ".c") or not path.is_file():
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if 2000 <= len(text) <= 60000:
                texts.setdefault(text)
    return list(texts)


def _tokenizer():
    from bulk_chunks import service_chunker

    _, tokenizer, chunker = service_chunker()
    from tokenizers import Tokenizer

    counting = Tokenizer.from_str(tokenizer.to_str())
    counting.no_truncation()
    counting.no_padding()
    return counting, chunker


def chunker_of(name: str, counting, ours, size: int):
    """text -> its chunks' texts, for each chunker, all on the model's tokenizer."""

    def count(text: str) -> int:
        return len(counting.encode(text, add_special_tokens=False).ids)

    if name == "ours":
        return lambda text: [text[c.start : c.end] for c in ours.chunk(text, size)[0]]
    if name == "ours_cold":  # no word learnt from the documents before: each starts from an empty cache
        def cold(text: str) -> list[str]:
            ours.token_starts.clear()
            return [text[c.start : c.end] for c in ours.chunk(text, size)[0]]

        return cold
    if name == "ours_overlap":
        return lambda text: [text[c.start : c.end] for c in ours.chunk(text, size, OVERLAP)[0]]
    if name == "semchunk":
        import semchunk

        return semchunk.chunkerify(count, size)
    if name == "langchain":
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        return RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=0, length_function=count).split_text
    if name == "llamaindex":
        from llama_index.core.node_parser import SentenceSplitter

        splitter = SentenceSplitter(chunk_size=size, chunk_overlap=0,
                                    tokenizer=lambda text: counting.encode(text, add_special_tokens=False).ids)
        return splitter.split_text
    if name == "chonkie":
        from chonkie import RecursiveChunker

        chunker = RecursiveChunker(tokenizer=counting, chunk_size=size)  # no special tokens, as ours
        return lambda text: [chunk.text for chunk in chunker.chunk(text)]
    if name == "encode":
        return lambda text: counting.encode(text, add_special_tokens=False).offsets
    raise ValueError(name)


def _edited(text: str, kind: str, rng: random.Random) -> str | None:
    """A word replaced, or a sentence inserted or deleted after a random sentence end."""
    if kind == "word":
        words = list(re.finditer(r"[A-Za-z]{3,}", text))
        if not words:
            return None
        word = rng.choice(words)
        return text[: word.start()] + "rewritten" + text[word.end() :]
    ends = [m.end() for m in re.finditer(r"[.!?]\s+", text)]
    if len(ends) < 2:
        return None
    at = rng.randrange(len(ends) - 1)
    if kind == "insert":
        return text[: ends[at]] + INSERTED + text[ends[at] :]
    return text[: ends[at]] + text[ends[at + 1] :]


def _coverage(text: str, chunks: list[str]) -> tuple[int, int]:
    """Non-whitespace characters of the text inside chunks found in it, in order; and in all."""
    covered = np.zeros(len(text), dtype=bool)
    at = 0
    for chunk in chunks:
        found = text.find(chunk, at)
        if found < 0:
            found = text.find(chunk)
        if found >= 0 and chunk:
            covered[found : found + len(chunk)] = True
            at = found + 1
    solid = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    blank = np.isin(solid, [ord(c) for c in " \t\n\r\x0b\x0c\u00a0"])
    return int((covered & ~blank).sum()), int((~blank).sum())


def measure_child(name: str, path: str, size: int, timed_only: bool = False) -> dict:
    """One chunker over the documents, in this (fresh, one-core) process; `timed_only`: the
    seconds alone (a repeat, for the best of TIMED_RUNS)."""
    texts = json.loads(Path(path).read_text())
    counting, ours = _tokenizer()
    chunk = chunker_of(name, counting, ours, size)
    chunk(texts[0])  # first use (imports, caches) not timed
    started = time.perf_counter()
    results = [chunk(text) for text in texts]
    seconds = time.perf_counter() - started
    out = {"seconds": seconds}
    if timed_only or name in ("encode", "ours_cold"):  # ours_cold: ours's chunks, only the speed differs
        return out
    counts = [len(e.ids) for e in counting.encode_batch([c for r in results for c in r], add_special_tokens=False)]
    covered = [_coverage(text, chunks) for text, chunks in zip(texts, results)]
    rng, changed = random.Random(7), {"word": [], "insert": [], "delete": []}
    for text, chunks in list(zip(texts, results))[::EDIT_EVERY]:
        before = set(chunks)
        for kind, found in changed.items():
            new = _edited(text, kind, rng)
            if new is not None:
                found.append(sum(piece not in before for piece in chunk(new)))
    return {
        **out,
        "chunks": len(counts),
        "fit": sum(c <= size for c in counts) / len(counts),
        "tokens_per_chunk": sum(counts) / len(counts),
        "coverage": sum(c for c, _ in covered) / sum(t for _, t in covered),
        "changed": {kind: _spread(found) for kind, found in changed.items()},
    }


def _spread(values: list[int]) -> dict:
    values = sorted(values)
    return {"edits": len(values), "median": values[len(values) // 2], "p90": values[len(values) * 9 // 10],
            "max": values[-1]}


def measure(folder: Path, call, count: int | None = None) -> dict:
    """Every chunker (and the tokenizer's encode) over the documents (the first `count`, None: all);
    `call(function, *args)` runs one in a fresh process on one core."""
    texts = documents()[:count]
    path = folder / "peer-documents.json"
    path.write_text(json.dumps(texts))
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    runs = {}
    names = ["encode", "ours", "ours_cold", "ours_overlap", *list(PEERS)[1:]]
    for name in names:
        runs[name] = call(measure_child, name, str(path), SIZE)
        runs[name]["all_seconds"] = [runs[name]["seconds"]]
    for _ in range(TIMED_RUNS - 1):  # round robin, so a slow spell of a shared CPU hits every chunker alike
        for name in names:
            runs[name]["all_seconds"].append(call(measure_child, name, str(path), SIZE, True)["seconds"])
    for name in names:
        runs[name]["seconds"] = min(runs[name]["all_seconds"])
        runs[name]["mb_per_s"] = megabytes / runs[name]["seconds"]
        runs[name]["version"] = version(PEERS[name][1]) if name in PEERS and PEERS[name][1] else None
    return {"documents": len(texts), "megabytes": megabytes, "size": SIZE, "overlap": OVERLAP, "runs": runs}
