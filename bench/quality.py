#!/usr/bin/env python3
"""How faithful is each precision to fp32? Retrieval agreement and an STS benchmark, offline.

For every precision whose ONNX file the model folder has (fp32 is the reference, then int8),
through the service's own model layer (embedding_service.model):

- recall@10: of fp32's 10 nearest neighbours (cosine) of each query in a corpus of ~2,700 real
  texts (stdlib docstrings from bench/corpus.py: sentences, paragraphs, 256-token passages;
  passages that share their first 256 tokens, and so their vector, counted once; every 10th
  text is a query, itself excluded), the share this precision also ranks in its top 10;
- similarity Spearman: rank correlation of all query-document cosine similarities with fp32's;
- min / mean cosine of each text's vector with its fp32 twin;
- STS Spearman (x100, the usual "points"): cosine of each sentence pair against the human
  score, when given the STS benchmark's CSV (`--sts PATH` or STS_CSV; tab-separated: genre,
  file, year, id, score, sentence 1, sentence 2). The data is not shipped with the repository.

Writes docs/benchmarks/quality.md and quality.json. `make bench-quality [STS=path]`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import numpy as np

import corpus
from pages import TEMPLATES, Sections, table

OUT_DIR = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
PRECISIONS = ("fp32", "int8")  # fp32 first: the reference
CORPUS_DRAW = 3500  # corpus.mixed(3500): 2,952 distinct texts, 2,662 distinct fp32 vectors
SAME_VECTOR = 0.9999  # fp32 cosine above which two texts are one (same first 256 tokens)
QUERY_EVERY = 10
K = 10


# --- metrics (pure functions of vectors) ------------------------------------------------------
def ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), as Spearman's rho wants."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends - 1) / 2.0)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's r of the average ranks."""
    ra, rb = ranks(np.ravel(a)), ranks(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float(ra @ rb / np.sqrt((ra @ ra) * (rb @ rb)))


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def similarities(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Cosine of each query (row indices) with every text; a query's own column is -inf."""
    v = unit(vectors)
    scores = v[queries] @ v.T
    scores[np.arange(len(queries)), queries] = -np.inf
    return scores


def top_k(scores: np.ndarray, k: int = K) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def recall_at_k(reference: np.ndarray, candidate: np.ndarray, queries: np.ndarray, k: int = K) -> float:
    """Mean share of the reference's top k that the candidate also puts in its top k."""
    ours, theirs = top_k(similarities(candidate, queries), k), top_k(similarities(reference, queries), k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ours, theirs)]))


def similarity_spearman(reference: np.ndarray, candidate: np.ndarray, queries: np.ndarray) -> float:
    """Spearman of every query-text similarity (the query's own pair left out) with fp32's."""
    a, b = similarities(reference, queries), similarities(candidate, queries)
    keep = np.isfinite(a)
    return spearman(a[keep], b[keep])


def cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    return np.sum(unit(reference) * unit(candidate), axis=1)


def query_rows(count: int, every: int = QUERY_EVERY) -> np.ndarray:
    return np.arange(0, count, every)


def distinct_rows(vectors: np.ndarray, threshold: float = SAME_VECTOR) -> np.ndarray:
    """Indices of the first of each group of (near-)identical vectors. Passages cut at the model's
    maximum length can be the same text to the model: as duplicates they would tie exactly, and
    which of the two a search returns first says nothing about the model's precision."""
    u = unit(vectors)
    similar = (u @ u.T) >= threshold
    keep: list[int] = []
    for row in range(len(u)):
        if not keep or not similar[row, keep].any():
            keep.append(row)
    return np.asarray(keep)


# --- data ---------------------------------------------------------------------------------------
def corpus_texts(draw: int = CORPUS_DRAW) -> list[str]:
    """Short sentences, paragraphs and passages of stdlib docstrings, shuffled, duplicates dropped."""
    return list(dict.fromkeys(corpus.mixed(draw)))


def read_sts(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """STS benchmark CSV -> (sentences 1, sentences 2, gold scores). Fields past the 7th
    (a stray tab inside a sentence) are ignored, as the benchmark's own readers do."""
    first, second, gold = [], [], []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) >= 7:
                first.append(row[5])
                second.append(row[6])
                gold.append(float(row[4]))
    return first, second, np.asarray(gold)


def sts_spearman(first: np.ndarray, second: np.ndarray, gold: np.ndarray) -> float:
    """Spearman x 100 of each pair's cosine against the human score."""
    return 100.0 * spearman(np.sum(unit(first) * unit(second), axis=1), gold)


# --- the model layer ----------------------------------------------------------------------------
def available_precisions(model_dir: Path) -> list[str]:
    from embedding_service.settings import ONNX_FILES

    return [p for p in PRECISIONS if (model_dir / ONNX_FILES[p]).is_file()]


def embedder(model_dir: Path, precision: str, threads: int = 0, onnx_file: str = ""):
    from embedding_service.model import model_load
    from embedding_service.settings import load_settings

    env = {"MODEL_DIR": str(model_dir), "EMBEDDING_PRECISION": precision, "ONNX_FILE": onnx_file}
    if threads:
        env["EMBEDDING_THREADS"] = str(threads)
    return model_load(load_settings(env))


def measure(model, texts: list[str], sts: tuple | None) -> dict:
    """This precision's vectors of the corpus, and its STS Spearman when there is STS data."""
    result = {"vectors": model.embed(texts).vectors}
    if sts:
        first, second, gold = sts
        result["sts_spearman"] = sts_spearman(model.embed(first).vectors, model.embed(second).vectors, gold)
    return result


def compare(reference: np.ndarray, candidate: np.ndarray, queries: np.ndarray) -> dict:
    """A precision's corpus vectors against fp32's, row for row."""
    cos = cosines(reference, candidate)
    return {
        "recall_at_10": recall_at_k(reference, candidate, queries),
        "similarity_spearman": similarity_spearman(reference, candidate, queries),
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
    }


# --- report -------------------------------------------------------------------------------------
def _cell(row: dict, key: str, fmt: str) -> str:
    return format(row[key], fmt) if key in row else "n/a"


def markdown(report: dict) -> str:
    rows = [
        [r["precision"], f"`{r['onnx_file']}`", _cell(r, "recall_at_10", ".4f"),
         _cell(r, "similarity_spearman", ".5f"),
         f"{_cell(r, 'min_cosine', '.4f')} / {_cell(r, 'mean_cosine', '.4f')}",
         _cell(r, "sts_spearman", ".2f")]
        for r in report["precisions"]
    ]
    header = ["precision", "ONNX file", "recall@10 vs fp32", "similarity Spearman vs fp32",
              "min / mean cosine vs fp32", "STS Spearman (x100)"]
    sts = report.get("sts")
    sts_note = (f"cosine of each of the {sts['pairs']:,} pairs of `{sts['file']}` against its gold score."
                if sts else "not measured (run `make bench-quality STS=path/to/sts-dev.csv`).")
    return Sections(TEMPLATES / "quality.md")(
        "document", model=report["model"], texts=f"{report['texts']:,}", queries=report["queries"],
        every=QUERY_EVERY, pairs=f"{report['queries'] * (report['texts'] - 1):,}",
        table=table(header, "llrrrr", rows), sts_note=sts_note,
    ) + "\n"


def against_first(models, texts: list[str], sts: tuple | None):
    """For each (name, model) in turn, the first being the reference (fp32): name, its row (`compare`
    with the reference's vectors, its STS Spearman) and how many texts and queries the rows use."""
    first = None
    for name, model in models:
        result = measure(model, texts, sts)
        if first is None:  # the reference's distinct vectors: the texts every row is measured on
            keep = distinct_rows(result["vectors"])
            first = keep, query_rows(len(keep)), result["vectors"][keep]
        keep, queries, reference = first
        row = compare(reference, result["vectors"][keep], queries)
        yield name, row | {k: v for k, v in result.items() if k != "vectors"}, len(keep), len(queries)


def run(model_dir: Path, sts_path: Path | None, draw: int = CORPUS_DRAW) -> dict:
    from embedding_service.settings import ONNX_FILES

    texts = corpus_texts(draw)
    sts = read_sts(sts_path) if sts_path else None

    def models():
        for precision in available_precisions(model_dir):
            pairs = " and the STS pairs" if sts else ""
            print(f"==> {precision}: embedding {len(texts)} texts{pairs}", flush=True)
            yield precision, embedder(model_dir, precision)

    measured = list(against_first(models(), texts, sts))
    rows = [{"precision": p, "onnx_file": ONNX_FILES[p], **row} for p, row, _, _ in measured]
    report = {"model": model_dir.name, "texts": measured[0][2], "queries": measured[0][3], "precisions": rows}
    if sts:
        report["sts"] = {"file": sts_path.name, "pairs": len(sts[2])}
    return report


def main(argv: list[str] | None = None) -> None:
    from embedding_service.settings import default_model_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sts_env = os.environ.get("STS_CSV")
    model_dir = Path(os.environ.get("MODEL_DIR") or default_model_dir())
    parser.add_argument("--model-dir", type=Path, default=model_dir, help="prepared model folder")
    parser.add_argument("--sts", type=Path, default=Path(sts_env) if sts_env else None,
                        help="STS benchmark CSV (default: $STS_CSV; skipped when neither is given)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where quality.md and quality.json go")
    parser.add_argument("--draw", type=int, default=CORPUS_DRAW, help="texts drawn from bench/corpus.py")
    args = parser.parse_args(argv)
    if not (args.model_dir / "onnx" / "model.onnx").is_file():
        raise SystemExit(f"error: {args.model_dir}/onnx/model.onnx is missing: run make setup first")
    report = run(args.model_dir, args.sts, args.draw)
    text = markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.md").write_text(text)
    (args.out / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    print(text)
    print(f"wrote {args.out / 'quality.md'} and {args.out / 'quality.json'}")


if __name__ == "__main__":
    main()
