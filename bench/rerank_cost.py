"""What do reranking and sparse encoding cost on Lambda? Billed ms under the real RIE, priced (`make bench-rerank`).

No reranker or SPLADE weights are reachable offline, and a tiny random model times nothing real, so
this builds the two models a small deployment would serve from all-MiniLM-L6-v2's own weights
(models/all-MiniLM-L6-v2): a cross-encoder (BertForSequenceClassification, num_labels=1, a random
classification head: the compute of cross-encoder/ms-marco-MiniLM-L6-v2) and a SPLADE encoder
(BertForMaskedLM, its MLM transform the identity and the decoder tied to the word embeddings, max pooling,
`max_active_dims` 256 so answers are as large as a trained model's: the shape of MiniLM-sized sparse
encoders). Their scores mean nothing; their time is a real model's of that shape. BERT-base rerankers
and SPLADE models (bge-reranker-base, naver/splade-*) do several times the work and are not measured.

Each is prepared by scripts/prepare_model.py (fp32 and int8), served by the handler under the real
RIE pinned to one CPU (Lambda at 1,769 MB), and sent direct events: a rerank of one query and 50
passages, or /v1/embeddings of 32 passages; the median billed ms of the warm invocations (REPORT
lines, bench/lambda_log.py) is priced with the dated table in embedding_client/prices.py. Writes
docs/benchmarks/rerank-cost.json and .md; `make cost` prints them beside the embedding figures.
The RIE runs hold /tmp/timing.lock (the machine's timing lock) so no other measurement shares the
CPUs; building and preparing the models do not need it.

    .venv/bin/python bench/rerank_cost.py   # make bench-rerank
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import lambda_log
from bench_services import INVOKE_PATH, start_rie
from corpus import passages, sentences
from lambda_cost import ONE_VCPU_MB, PRICES
from pages import table
from processes import REPO, free_port, stop, wait_for_port

from embedding_client import prices

MINILM = REPO / "models" / "all-MiniLM-L6-v2"
OUT = REPO / "docs" / "benchmarks"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
DOCUMENTS = 50  # passages per rerank call: a first stage's top 50
SPARSE_BATCH = 32  # passages per sparse call, as `make cost` prices dense embeddings
MAX_ACTIVE_DIMS = 256
WARM_CALLS = 12
SEED = 26
# The random-head SPLADE's int8 file misses prepare_model's gate (min cosine vs fp32 0.89 < 0.96,
# measured by this script's first runs), so only its fp32 is priced; the reranker's passes.
INT8_KINDS = ("reranker",)
PRECISIONS = {"reranker": ("fp32", "int8"), "sparse": ("fp32",)}
TIMING_LOCK = Path("/tmp/timing.lock")


def build(kind: str, root: Path) -> Path:
    """A MiniLM-L6 cross-encoder or SPLADE encoder from all-MiniLM-L6-v2's encoder weights."""
    import torch
    from transformers import BertForMaskedLM, BertForSequenceClassification

    torch.manual_seed(SEED)
    bare = root / f"minilm-{kind}-hf"
    if kind == "reranker":
        model = BertForSequenceClassification.from_pretrained(str(MINILM), num_labels=1)
    else:
        model = BertForMaskedLM.from_pretrained(str(MINILM))
        with torch.no_grad():  # the MLM transform as the identity: logits are the tied embeddings' dot products
            model.cls.predictions.transform.dense.weight.copy_(torch.eye(model.config.hidden_size))
            model.cls.predictions.transform.dense.bias.zero_()
    model.save_pretrained(bare)
    for name in TOKENIZER_FILES:
        shutil.copy(MINILM / name, bare / name)
    if kind == "reranker":
        return bare
    from sentence_transformers import SparseEncoder

    folder = root / f"minilm-{kind}"
    SparseEncoder(str(bare), max_active_dims=MAX_ACTIVE_DIMS, device="cpu").save(str(folder))
    return folder


def prepare(source: Path, root: Path, int8: bool = True) -> Path:
    """scripts/prepare_model.py, as `make setup MODEL=<folder>` runs it: ONNX, int8, both checked.
    `int8=False`: its int8 gate is lifted to keep the fp32 export, and the int8 file it made removed
    (the random-head SPLADE misses the gate, so its int8 timing would price a file we refuse to serve)."""
    args = ["--model", str(source), "--output", str(root / "prepared")]
    if int8:
        command = [sys.executable, str(REPO / "scripts" / "prepare_model.py"), *args]
    else:
        command = [sys.executable, "-c", "import sys, prepare_model, quantize_int8; quantize_int8.GATE_MIN_COSINE = -1.0; "
                   f"sys.exit(prepare_model.main({args!r}))"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "scripts"), os.environ.get("PYTHONPATH")]))}
    subprocess.run(command, check=True, stdout=sys.stderr, env=env)
    prepared = root / "prepared" / source.name
    if not int8:
        (prepared / "onnx" / "model_int8.onnx").unlink()
    return prepared


def prepared_model(kind: str, root: Path) -> Path:
    """The kind's prepared folder in `root`: built and prepared unless an earlier run (--workdir) left it."""
    name = "minilm-reranker-hf" if kind == "reranker" else f"minilm-{kind}"
    prepared = root / "prepared" / name
    if (prepared / "onnx" / "model.onnx").is_file():
        return prepared
    return prepare(build(kind, root), root, int8=kind in INT8_KINDS)


def measure(model_dir: Path, precision: str, event: dict, log_dir: Path) -> dict:
    """One cold and WARM_CALLS warm invocations of `event` under the RIE on one CPU."""
    port = free_port()
    log_path = log_dir / f"rie-{model_dir.name}-{precision}.log"
    with open(log_path, "wb") as log:
        process = start_rie("onnx", str(model_dir), port, log, extra_env={"EMBEDDING_PRECISION": precision})
        try:
            wait_for_port(port, timeout=120)
            with httpx.Client(timeout=300) as client:
                for _ in range(1 + WARM_CALLS):
                    response = client.post(f"http://127.0.0.1:{port}{INVOKE_PATH}", json=event)
                    response.raise_for_status()
                    body = response.json()
                    if isinstance(body, dict) and "error" in body:
                        raise RuntimeError(f"the handler refused the event: {body['error']}")
        finally:
            stop(process)
    parsed = lambda_log.parse(log_path.read_text(errors="replace"))
    warm = [report["billed_ms"] for report in parsed["reports"] if not report["cold"]]
    if len(warm) < WARM_CALLS or not parsed["inits"]:
        raise RuntimeError(f"the RIE log lacks the expected REPORT lines: {log_path}")
    return {"init_ms": parsed["inits"][0], "warm_billed_ms": statistics.median(warm),
            "warm_billed_ms_all": warm}


def usd_per_million_calls(billed_ms: float, arch: str, memory_mb: int = ONE_VCPU_MB) -> float:
    """Warm, no free tier: a million invocations of this billed duration, compute plus requests."""
    return prices.lambda_usd(prices.gb_seconds(billed_ms, memory_mb) * 1e6, 1_000_000, arch)


def cohere_usd_per_million_calls() -> float:
    """One (query, 50 passages) call is one search at Cohere."""
    return prices.RERANK_API["usd_per_thousand_searches"] * 1000


def tokens_of(model_dir: Path, items: list) -> float:
    """Mean tokens the model reads per text or (query, passage) pair: cut at its own window, not at
    the tokenizer file's stored truncation (all-MiniLM-L6-v2's says 128)."""
    from tokenizers import Tokenizer

    from embedding_service.model_config import read_model_spec

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=read_model_spec(model_dir).max_seq_length)
    return statistics.mean(len(encoding.ids) for encoding in tokenizer.encode_batch(items))


def run(root: Path) -> dict:
    query = sentences(1, seed=SEED)[0]
    documents = passages(DOCUMENTS, seed=SEED, min_words=120)
    batch = passages(SPARSE_BATCH, seed=SEED + 1, min_words=120)
    result = {"model_note": __doc__.split("\n\n")[1].replace("\n", " "), "query": query,
              "documents_per_call": DOCUMENTS, "sparse_passages_per_call": SPARSE_BATCH,
              "memory_mb": ONE_VCPU_MB, "warm_calls": WARM_CALLS, "prices": PRICES["as_of"],
              "rerank_api": prices.RERANK_API, "kinds": {}}
    # A direct event with encoding_format is a /v1/embeddings body (docs/lambda.md), which a sparse model answers.
    events = {"reranker": {"query": query, "documents": documents},
              "sparse": {"input": batch, "input_type": "document", "encoding_format": "float"}}
    folders = {kind: prepared_model(kind, root) for kind in ("reranker", "sparse")}  # before any timing
    for kind, prepared in folders.items():
        texts = [(query, d) for d in documents] if kind == "reranker" else batch
        figures = {"tokens_per_item": tokens_of(prepared, texts)}
        for precision in PRECISIONS[kind]:
            with open(TIMING_LOCK, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
                started = time.perf_counter()
                measured = measure(prepared, precision, events[kind], root)
            per_call = {arch: usd_per_million_calls(measured["warm_billed_ms"], arch)
                        for arch in prices.LAMBDA_GB_SECOND}
            figures[precision] = {**measured, "usd_per_million_calls": per_call,
                                  "seconds": round(time.perf_counter() - started, 1)}
            if kind == "sparse":
                figures[precision]["usd_per_million_passages"] = {
                    arch: usd / SPARSE_BATCH for arch, usd in per_call.items()}
            print(f"{kind} {precision}: warm billed {measured['warm_billed_ms']:.0f} ms, "
                  f"init {measured['init_ms']:.0f} ms", file=sys.stderr)
        result["kinds"][kind] = figures
    result["cohere_usd_per_million_calls"] = cohere_usd_per_million_calls()
    return result


def _money(x: float) -> str:
    return f"${x:,.2f}" if x >= 1 else f"${x:.4f}"


def section(result: dict) -> list[str]:
    """The rerank and sparse lines `make cost` prints and the page shows."""
    rerank, sparse, api = result["kinds"]["reranker"], result["kinds"]["sparse"], result["rerank_api"]
    rows = [[precision, f"{rerank[precision]['warm_billed_ms']:.0f}",
             _money(rerank[precision]["usd_per_million_calls"]["x86_64"]),
             _money(rerank[precision]["usd_per_million_calls"]["arm64"]),
             _money(result["cohere_usd_per_million_calls"])] for precision in ("fp32", "int8")]
    sparse_rows = [[precision, f"{sparse[precision]['warm_billed_ms']:.0f}",
                    _money(sparse[precision]["usd_per_million_passages"]["x86_64"]),
                    _money(sparse[precision]["usd_per_million_passages"]["arm64"])]
                   for precision in ("fp32", "int8") if precision in sparse]
    return [
        f"Reranking: $ per 1M calls of (one query, {result['documents_per_call']} passages of "
        f"~{rerank['tokens_per_item']:.0f} tokens a pair, query included), warm, no free tier, {result['memory_mb']:,} MB "
        f"(one vCPU), billed ms measured under the real RIE (median of {result['warm_calls']} warm calls), "
        f"vs {api['name']} at ${api['usd_per_thousand_searches']:.2f} per 1,000 searches ({api['as_of']}):",
        "",
        table(["precision", "billed ms/call", "Lambda x86_64 $/1M calls", "Lambda arm64 $/1M (assumed)",
               f"{api['name']} $/1M"], "lrrrr", rows),
        "",
        f"Sparse encoding: $ per 1M passages of ~{sparse['tokens_per_item']:.0f} tokens, "
        f"{result['sparse_passages_per_call']} per call, same conditions (fp32 only: this random-head SPLADE's int8 "
        "file misses prepare_model's gate, so it is not priced):",
        "",
        table(["precision", "billed ms/call", "Lambda x86_64 $/1M passages", "Lambda arm64 $/1M (assumed)"],
              "lrrr", sparse_rows),
        "",
        "Models: " + result["model_note"],
    ]


def page(result: dict) -> str:
    return "\n".join([
        "# Reranking and sparse encoding on Lambda: measured cost",
        "",
        "Generated by `.venv/bin/python bench/rerank_cost.py` (`make bench-rerank`; its RIE runs hold "
        "/tmp/timing.lock); "
        "`make cost` prints the same tables. Prices: " + result["prices"] + ".",
        "",
        *section(result),
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where rerank-cost.json and .md go")
    parser.add_argument("--workdir", type=Path, help="keep the built and prepared models here (default: a temporary "
                        "folder, removed)")
    args = parser.parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = run(args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-rerank-") as tmp:
            result = run(Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rerank-cost.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "rerank-cost.md").write_text(page(result))
    print(page(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
