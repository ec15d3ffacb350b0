"""Our GPU path against the card's own ceiling, in one run (`make bench-gpu`).

For each precision it times, on the same card and the same texts:
- our path: `model.py` as the services load it (torch backend, the device's default budgets,
  tokenise-ahead, pooling on the device), texts in, unit vectors out;
- the ceiling: the bare transformer forward on pre-tokenised, pre-padded batches already on
  the card, at the same precision (no tokenising, no pooling, nothing copied back);
and prints passages/s and short texts/s side by side, the host's tokenising rate with 1 and
N threads (so a host bottleneck is visible), the min cosine against CPU fp32, and $ per 1M
passages at a dated hourly price for the card.

    .venv/bin/python bench/gpu.py                          # on a CUDA host: fp16 and bf16
    .venv/bin/python bench/gpu.py --precisions fp16 --json gpu.json
    .venv/bin/python bench/gpu.py --device cpu --quick     # CPU smoke test: proves the script runs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from embedding_service.settings import SettingsError, default_model_dir, load_settings

from bench_env import best_seconds
from corpus import passages, sentences
from pages import table
from processes import call_fresh

# One dated price table: on-demand Linux prices in us-east-1 from AWS's public EC2 pricing pages
# as known to the author (to mid-2025; p5 after AWS's June 2025 cut), per GPU (instance price /
# GPUs). Not fetched live: check the page before quoting a figure, or pass --price-per-hour.
GPU_PRICES = {
    "as_of": "2025-08, AWS EC2 on-demand, us-east-1, Linux (as known to the author; not fetched live)",
    "cards": {  # substring of torch.cuda.get_device_name() -> (USD per GPU-hour, instance)
        "H100": (55.04 / 8, "p5.48xlarge, 8 x H100 80GB"),
        "A10G": (1.006, "g5.xlarge, 1 x A10G"),
        "L4": (0.8048, "g6.xlarge, 1 x L4"),
        "T4": (0.526, "g4dn.xlarge, 1 x T4"),
    },
}


MIN_COSINE = 0.9999  # every vector must stay this close to CPU fp32, whatever the precision


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a smoke test only)")
    parser.add_argument("--precisions", help="comma-separated: fp16,bf16,fp32 (default fp16,bf16 on a GPU, "
                        "fp32 on CPU)")
    parser.add_argument("--passages", type=int, default=4096, help="passages (truncated at 256 tokens)")
    parser.add_argument("--short", type=int, default=4096, help="short texts (~10-20 tokens)")
    parser.add_argument("--check", type=int, default=256, help="texts of each kind compared with CPU fp32")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (the best counts)")
    parser.add_argument("--quick", action="store_true", help="a few dozen texts, one run each: seconds")
    parser.add_argument("--price-per-hour", type=float, help="USD per GPU-hour (else the dated table)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    model_dir = Path(os.environ.get("MODEL_DIR") or default_model_dir())
    parser.add_argument("--model-dir", type=Path, default=model_dir)
    args = parser.parse_args(argv)
    if args.quick:
        args.passages, args.short, args.check, args.repeats = 16, 32, 8, 1
    on_gpu = args.device.startswith("cuda")
    args.precisions = (args.precisions or ("fp16,bf16" if on_gpu else "fp32")).split(",")
    return args


def corpus(args: argparse.Namespace) -> dict[str, list[str]]:
    short_pool = sentences(100_000, seed=3)
    return {
        "passages": passages(args.passages, seed=3),
        "short": [short_pool[i % len(short_pool)] for i in range(args.short)],
    }


def tokenize_child(path: str) -> dict[str, float]:
    """In a fresh process: tokens/s of our host path (encode + plan + pad), RAYON_NUM_THREADS set by
    the parent."""
    from embedding_service.model_config import read_model_spec
    from embedding_service.tokenization import BatchTokenizer, load_tokenizer

    spec = json.loads(Path(path).read_text())
    model_dir = Path(spec["model_dir"])
    tokens = BatchTokenizer(load_tokenizer(model_dir, read_model_spec(model_dir).max_seq_length))
    rates = {}
    for kind, texts in spec["texts"].items():
        tokens.encode(texts[:64])  # warm-up
        started = time.perf_counter()
        ids = tokens.encode(texts)
        for _ in tokens.batches(ids, spec["batch_size"], spec["batch_tokens"], spec["overhead"]):
            pass
        rates[kind] = sum(len(x) for x in ids) / (time.perf_counter() - started)
    return rates


def tokenize_rates(args: argparse.Namespace, texts: dict, settings) -> dict[str, dict[str, float]]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"model_dir": str(args.model_dir), "texts": texts,
                                    "batch_size": settings.batch_size, "batch_tokens": settings.batch_tokens,
                                    "overhead": settings.call_overhead_tokens}))
        for threads in sorted({1, cpus}):
            env = {**os.environ, "RAYON_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "true"}
            rates[str(threads)] = call_fresh(tokenize_child, str(spec), env=env)
    return rates


class BareForward:
    """The ceiling: the transformer alone, at the same precision, on pre-tokenised batches
    already on the device (the same length-sorted batches our planner cuts)."""

    def __init__(self, args: argparse.Namespace, settings, torch):
        from sentence_transformers import SentenceTransformer
        from embedding_service.tokenization import BatchTokenizer, load_tokenizer

        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[settings.precision]
        model = SentenceTransformer(str(args.model_dir), device=settings.device, local_files_only=True)
        self.transformer = model[0].auto_model.eval().to(dtype)
        self.tokens = BatchTokenizer(load_tokenizer(args.model_dir, model.max_seq_length))
        self.settings, self.torch, self.repeats = settings, torch, args.repeats

    def seconds(self, texts: list[str]) -> float:
        torch, s = self.torch, self.settings
        batches = [
            {name: torch.from_numpy(getattr(b, name)).to(s.device)
             for name in ("input_ids", "attention_mask", "token_type_ids")}
            for b in self.tokens.batches(self.tokens.encode(texts), s.batch_size, s.batch_tokens,
                                         s.call_overhead_tokens)
        ]

        def run():
            with torch.inference_mode():
                for batch in batches:
                    self.transformer(**batch)

        return best_seconds(run, self.repeats, lambda: _sync(torch, s.device))


def _sync(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def price(args: argparse.Namespace, card: str) -> tuple[float, str] | None:
    if args.price_per_hour:
        return args.price_per_hour, "--price-per-hour"
    for key, (usd, instance) in GPU_PRICES["cards"].items():
        if key in card:
            return usd, f"{instance}; {GPU_PRICES['as_of']}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from embedding_service.model import model_load, model_unload
    from embedding_service.model_config import ModelFilesError, read_model_spec

    try:
        read_model_spec(args.model_dir)
    except ModelFilesError as error:
        print(f"bench-gpu: {error}", file=sys.stderr)
        return 2

    on_gpu = args.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        print(f"bench-gpu needs a CUDA GPU, and torch {torch.__version__} sees none on this machine (run it "
              "on a GPU host with the CUDA build of torch, or `--device cpu --quick` for a smoke test).",
              file=sys.stderr)
        return 2
    base = {"MODEL_DIR": str(args.model_dir), "EMBEDDING_BACKEND": "torch", "EMBEDDING_DEVICE": args.device}
    try:
        runs = [load_settings({**base, "EMBEDDING_PRECISION": p}) for p in args.precisions]
    except SettingsError as error:
        print(f"bench-gpu: {error}", file=sys.stderr)
        return 2
    if not on_gpu:  # smoke mode: windows of 8 texts, so the GPU path's tokenise-ahead runs too
        runs = [dataclasses.replace(s, batch_size=2, tokenize_ahead=True) for s in runs]
    card = (torch.cuda.get_device_name(torch.device(args.device)) if on_gpu
            else "CPU (smoke mode, not a GPU figure)")
    texts = corpus(args)
    results = {"card": card, "device": args.device, "torch": torch.__version__, "cuda": torch.version.cuda,
               "quick": args.quick, "counts": {k: len(v) for k, v in texts.items()}, "rows": []}
    print(f"card: {card} (torch {torch.__version__}, CUDA {torch.version.cuda or 'none'})")
    print(f"corpus: {len(texts['passages']):,} passages (truncated at 256 tokens), "
          f"{len(texts['short']):,} short texts")

    results["tokenize_tokens_per_s"] = tokenize_rates(args, texts, runs[0])
    for threads, rate in results["tokenize_tokens_per_s"].items():
        print(f"host tokenising (encode + plan + pad), {threads} thread(s): "
              f"{rate['passages']:,.0f} tokens/s on passages, {rate['short']:,.0f} on short texts")

    reference = model_load(load_settings({**base, "EMBEDDING_DEVICE": "cpu", "EMBEDDING_PRECISION": "fp32"}))
    expected = {k: reference.embed(v[: args.check]).vectors for k, v in texts.items()}
    model_unload(reference)

    for settings in runs:
        results["rows"].append(measure_precision(args, settings, texts, expected, card))
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    worst = min(row[kind]["min_cosine"] for row in results["rows"] for kind in texts)
    if worst <= MIN_COSINE:
        print(f"fidelity failed: min cosine {worst:.7f} against CPU fp32 is not above {MIN_COSINE}",
              file=sys.stderr)
        return 1
    return 0


def measure_kind(args, embedder, bare, items: list[str], expected, ahead: bool) -> dict:
    """Our path and the bare-forward ceiling on one kind of text, with fidelity against CPU fp32."""
    import numpy as np

    got = {}
    seconds = best_seconds(lambda: got.update(v=embedder.embed(items).vectors), args.repeats, lambda: None)
    ceiling = bare.seconds(items)
    cosines = np.sum(got["v"][: args.check] * expected, axis=1)
    out = {"ours_per_s": len(items) / seconds, "ceiling_per_s": len(items) / ceiling,
           "share_of_ceiling": ceiling / seconds, "min_cosine": float(cosines.min()),
           "ceiling_tokens_per_s": sum(embedder.count_tokens(items)) / ceiling,
           "ours_not_overlapped_per_s": None}
    if ahead:  # the same path with tokenising in line, for comparison
        embedder.tokenize_ahead = False
        in_line = best_seconds(lambda: embedder.embed(items), args.repeats, lambda: None)
        embedder.tokenize_ahead = True
        out["ours_not_overlapped_per_s"] = len(items) / in_line
    return out


def measure_precision(args, settings, texts: dict, expected: dict, card: str) -> dict:
    """One precision's row: every kind of text, then $ per 1M passages at the card's dated price."""
    import torch

    from embedding_service.model import model_load, model_unload

    embedder = model_load(settings)
    bare = BareForward(args, settings, torch)
    row = {"precision": settings.precision, "batch_size": settings.batch_size,
           "batch_tokens": settings.batch_tokens, "tokenize_ahead": settings.tokenize_ahead}
    for kind, items in texts.items():
        row[kind] = measure_kind(args, embedder, bare, items, expected[kind], settings.tokenize_ahead)
    model_unload(embedder)
    del bare
    rate = price(args, card)
    if rate:
        row["usd_per_million_passages"] = rate[0] / (row["passages"]["ours_per_s"] * 3600) * 1e6
        row["price"] = {"usd_per_hour": rate[0], "source": rate[1]}
    return row


def report(results: dict) -> None:
    rows = []
    for row in results["rows"]:
        p, s, name = row["passages"], row["short"], row["precision"]
        budget = f"{row['batch_size']} texts / {row['batch_tokens']:,} tokens per call"
        rows.append([name, f"ours ({budget})", f"{p['ours_per_s']:,.0f}", f"{s['ours_per_s']:,.0f}",
                     f"{p['min_cosine']:.7f} / {s['min_cosine']:.7f}"])
        if p["ours_not_overlapped_per_s"]:
            rows.append([name, "ours, tokenising not overlapped", f"{p['ours_not_overlapped_per_s']:,.0f}",
                         f"{s['ours_not_overlapped_per_s']:,.0f}", ""])
        rows.append([name, "bare forward, pre-tokenised (ceiling)", f"{p['ceiling_per_s']:,.0f}",
                     f"{s['ceiling_per_s']:,.0f}", ""])
        rows.append([name, "ours / ceiling", f"{100 * p['share_of_ceiling']:.0f}%",
                     f"{100 * s['share_of_ceiling']:.0f}%", ""])
    header = ["precision", "path", "passages/s", "short texts/s", "min cosine vs CPU fp32 (passages / short)"]
    print("\n" + table(header, "llrrl", rows))
    print()
    host = results["tokenize_tokens_per_s"]
    threads = max(host, key=int)
    for row in results["rows"]:
        ceiling = row["passages"]["ceiling_tokens_per_s"], row["short"]["ceiling_tokens_per_s"]
        print(f"{row['precision']}: the ceiling reads {ceiling[0]:,.0f} tokens/s on passages and "
              f"{ceiling[1]:,.0f} on short texts; the host tokenises {host[threads]['passages']:,.0f} / "
              f"{host[threads]['short']:,.0f} tokens/s with {threads} thread(s)")
    for row in results["rows"]:
        if "usd_per_million_passages" in row:
            print(f"{row['precision']}: ${row['usd_per_million_passages']:.4f} per 1M passages at "
                  f"${row['price']['usd_per_hour']:.4f}/GPU-hour ({row['price']['source']})")
        else:
            print(f"{row['precision']}: no dated price for '{results['card']}'; "
                  "pass --price-per-hour for $ per 1M")
    if results["quick"] or not results["device"].startswith("cuda"):
        print("smoke mode: these figures only prove the script runs; they are not GPU measurements")


if __name__ == "__main__":
    sys.exit(main())
