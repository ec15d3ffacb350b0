"""embed-corpus at volume (`make bench-bulk`), ratios from one run on one machine.

1. `--target local` against the model layer's own throughput on the same texts, for every input
   format (JSONL, CSV, Parquet, text): what reading, shards and Parquet cost on top of the model.
2. A local Lambda fleet: `--target lambda://function` over 1 and 2 real Runtime Interface
   Emulators (each pinned to its own CPU, one thread: Lambda at 1,769 MB is one vCPU), and the
   client's own CPU time.
3. $ per 1M passages on Lambda, x86_64 and arm64, from the emulator's billed durations (REPORT
   lines), next to the hosted API's standard and batch prices, for each precision the model
   folder has.
4. `--reuse OLD` (bench/bulk_reuse.py): a re-run after 1% of the texts changed, locally (wall
   time) and on a 2-RIE fleet (billed ms), against the full run; the bookkeeping's rate with no
   model, and its memory per OLD row.
5. `--chunk-tokens N` (bench/bulk_chunks.py): the service's chunker alone on one core (MB/s, and
   its time as a share of embedding the same documents), chunked documents against the same
   chunks embedded as pre-cut passages (`--target local`, tokens/s), and the share of the
   standard library docstrings' tokens plain truncation at the model's window would lose.

bulk.py runs sections 1-3 itself; each later section is a module with `measure(sizes, folder)`
and `render(results, sections)`, and shares the command-running helpers in corpus_runs.py.

Writes docs/benchmarks/bulk.md (from templates/bulk.md) and bulk.json.

    .venv/bin/python bench/bulk.py            # ~25 min on 2 cores (--reuse ~13 of them, --chunk-tokens ~5)
    .venv/bin/python bench/bulk.py --quick --out /tmp/bulk
    .venv/bin/python bench/bulk.py --quick --only reuse --out /tmp/bulk   # section 4 alone
    .venv/bin/python bench/bulk.py --quick --only chunks --out /tmp/bulk  # section 5 alone
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import bench_env
import bulk_chunks
import bulk_reuse
from corpus import mixed, passages
from corpus_runs import DROP, Fleet, embed_corpus, say, service_settings, write_formats
from pages import TEMPLATES, Sections, num, table
from processes import child_env, run_json
from quality import available_precisions

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks"
TEMPLATE = TEMPLATES / "bulk.md"
MODULES = {"reuse": bulk_reuse, "chunks": bulk_chunks}  # section modules: measure(sizes, folder), render
TITLES = {"reuse": "re-running with --reuse", "chunks": "chunking long documents"}
SECTIONS = tuple(MODULES)  # their results, each under its own key, after the first three sections
FULL = {
    "local_texts": 1500,
    "fleet_texts": 600,
    "price_passages": 256,
    "reuse_texts": 100_000,
    "reuse_fleet_texts": 10_000,
    "reuse_rate_rows": 200_000,
    "reuse_memory_rows": 1_000_000,
    "chunk_speed_bytes": 5_000_000,
    "peer_documents": None,  # chunk_peers.py: every document it finds
    "chunk_documents": 60,
}
QUICK = {
    "local_texts": 150,
    "fleet_texts": 60,
    "price_passages": 24,
    "reuse_texts": 2_000,
    "reuse_fleet_texts": 400,
    "reuse_rate_rows": 20_000,
    "reuse_memory_rows": 100_000,
    "chunk_speed_bytes": 500_000,
    "peer_documents": 60,
    "chunk_documents": 6,
}


def model_layer_rate(texts: list[str], batch: int) -> float:
    """Texts/s of `Embedder.embed` itself, in requests of `batch` texts, in a fresh process."""
    code = (
        "import sys, time, json;"
        "from embedding_service.model import model_load; from embedding_service.settings import load_settings;"
        "texts = json.load(open(sys.argv[1])); batch = int(sys.argv[2]);"
        "e = model_load(load_settings()); started = time.perf_counter();"
        "[e.embed(texts[i:i + batch]) for i in range(0, len(texts), batch)];"
        "print(len(texts) / (time.perf_counter() - started))"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        json.dump(texts, handle)
        handle.flush()
        return run_json([sys.executable, "-c", code, handle.name, batch], env=child_env(DROP))


def local_vs_model_layer(texts: list[str], folder: Path) -> dict:
    """Model layer before and after the four formats (the higher kept: the stricter reference)."""
    files = write_formats(folder, texts)
    batch = 1024  # LocalTarget.default_batch_size on CPU: the same requests the command sends
    first = model_layer_rate(texts, batch)
    say(f"model layer: {first:.1f} texts/s")
    runs = {}
    for fmt, path in files.items():
        runs[fmt] = embed_corpus(path, folder)
        say(
            f"local {fmt}: {runs[fmt]['sustained_texts_per_s']:.1f} texts/s sustained, "
            f"{runs[fmt]['texts_per_s']:.1f} end to end"
        )
    second = model_layer_rate(texts, batch)
    say(f"model layer again: {second:.1f} texts/s")
    reference = max(first, second)
    return {
        "texts": len(texts),
        "model_layer": [first, second],
        "reference": reference,
        "runs": runs,
        "ratios": {fmt: run["sustained_texts_per_s"] / reference for fmt, run in runs.items()},
    }


def fleet_scaling(texts: list[str], folder: Path) -> dict:
    source = write_formats(folder, texts)["jsonl"]
    runs = {}
    for workers in (1, 2):
        with Fleet(workers, folder) as fleet:
            fleet.warm(source, folder)
            runs[workers] = fleet.embed(source, folder, "--batch-size", "32")
        run = runs[workers]
        say(
            f"{workers} RIE worker(s): {run['sustained_texts_per_s']:.1f} texts/s, client CPU "
            f"{100 * run['embed_cpu_s'] / run['embed_s']:.1f}% of one core while embedding, "
            f"{100 * run['client_cpu_s'] / run['process_wall_s']:.1f}% over the whole process"
        )
    return {
        "texts": len(texts),
        "runs": runs,
        "speedup": runs[2]["sustained_texts_per_s"] / runs[1]["sustained_texts_per_s"],
        "client_cpu_share": {w: r["embed_cpu_s"] / r["embed_s"] for w, r in runs.items()},
        "process_cpu_share": {w: r["client_cpu_s"] / r["process_wall_s"] for w, r in runs.items()},
    }


def lambda_price(texts: list[str], folder: Path, precision: str) -> dict:
    """One warm emulator: billed ms per passage from its REPORT lines, priced as Lambda at 1,769 MB."""
    from embedding_client import prices

    source = write_formats(folder, texts)["jsonl"]
    with Fleet(1, folder, precision) as fleet:
        fleet.warm(source, folder)
        skip = len(fleet.billed_ms())
        run = fleet.embed(source, folder)
        billed = fleet.billed_ms()[skip:]
    gb_s = sum(prices.gb_seconds(ms, 1769) for ms in billed)
    per_million = {
        arch: prices.lambda_usd(gb_s, len(billed), arch) / len(texts) * 1e6
        for arch in prices.LAMBDA_GB_SECOND
    }
    tokens = run["tokens"] / run["texts"]
    ms = sum(billed) / len(texts)
    say(f"{precision}: {ms:.1f} billed ms per passage, ${per_million['x86_64']:.2f} per 1M on x86_64")
    return {
        "precision": precision,
        "passages": len(texts),
        "invocations": len(billed),
        "billed_ms_per_passage": sum(billed) / len(texts),
        "tokens_per_passage": tokens,
        "usd_per_million": per_million,
        "hosted": prices.hosted_usd_per_million_texts(tokens),
    }


def render(results: dict, only: str | None = None) -> str:
    """bulk.md, or with `--only` that section's own page (bulk-<section>.md) under a header."""
    s = Sections(TEMPLATE)
    if only is None:
        parts = [_document(results, s)]
    else:
        parts = [s("section_header", title=TITLES[only], command=results["command"], date=results["date"],
                   duration=f"{results['duration_s']:.0f}", cpu=_cpu(results["machine"]),
                   json=f"bulk-{only}.json")]
    parts += [MODULES[name].render(results[name], s) for name in SECTIONS if name in results]
    return "\n\n".join(parts + [s("reproduce")])


def _document(results: dict, s: Sections) -> str:
    from embedding_client import prices

    local, fleet = results["local"], results["fleet"]
    local_rows = [
        [fmt, num(run["sustained_texts_per_s"]), num(run["texts_per_s"]),
         f"{100 * local['ratios'][fmt]:.0f}%"]
        for fmt, run in local["runs"].items()
    ]
    fleet_rows = [[str(w), num(run["sustained_texts_per_s"]), f"{100 * fleet['client_cpu_share'][w]:.1f}%",
                   f"{100 * fleet['process_cpu_share'][w]:.1f}%"] for w, run in fleet["runs"].items()]
    price_rows = [
        [p["precision"], num(p["billed_ms_per_passage"]), f"${p['usd_per_million']['x86_64']:.2f}",
         f"${p['usd_per_million']['arm64']:.2f} (assumed)", f"${p['hosted']['standard']:.2f}",
         f"${p['hosted']['batch']:.2f}"]
        for p in results["prices"]
    ]
    local_header = ["input format", "sustained texts/s", "end to end texts/s", "of the model layer"]
    fleet_header = ["RIE workers", "texts/s", "client CPU while embedding", "client CPU, whole process"]
    price_header = ["precision", "billed ms / passage", "x86_64 $/1M", "arm64 $/1M", "hosted standard",
                    "hosted batch"]
    return s(
        "document", command=results["command"], date=results["date"], duration=f"{results['duration_s']:.0f}",
        cpu=_cpu(results["machine"]), local_texts=local["texts"], reference=num(local["reference"]),
        model_layer=" and ".join(num(x) for x in local["model_layer"]),
        local_table=table(local_header, "lrrr", local_rows),
        worst=f"{100 * min(local['ratios'].values()):.0f}%",
        fleet_texts=fleet["texts"], fleet_table=table(fleet_header, "lrrr", fleet_rows),
        speedup=f"{fleet['speedup']:.2f}", price_table=table(price_header, "lrrrrr", price_rows),
        price_passages=results["prices"][0]["passages"],
        tokens=num(results["prices"][0]["tokens_per_passage"], 0),
        as_of=prices.AS_OF, hosted=prices.HOSTED_API["name"], hosted_as_of=prices.HOSTED_API["as_of"],
        caveat=prices.ARM64_CAVEAT,
    )


def _cpu(machine: dict) -> str:
    generation = f", {machine['cpu_generation']}" if machine.get("cpu_generation") else ""
    flags = ", ".join(machine["cpu_flags_of_note"])
    return f"{machine['cpu_model']}{generation}, {machine['usable_cpus']} vCPUs ({flags})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        help="run only this section: its own page, bulk-SECTION.md and .json, beside bulk.md",
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    results = {
        "command": "make bench-bulk"
        + (f" BENCH_BULK_ARGS='--only {args.only}'" if args.only else "")
        + (" (--quick)" if args.quick else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": bench_env.machine(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        folder = Path(tmp)
        if args.only is None:
            flat = [text.replace("\n", " ") for text in mixed(sizes["local_texts"], seed=11)]
            results["local"] = local_vs_model_layer(flat, folder)
            results["fleet"] = fleet_scaling(flat[: sizes["fleet_texts"]], folder)
            long = passages(sizes["price_passages"], seed=5)
            found = available_precisions(service_settings().model_dir)
            results["prices"] = [lambda_price(long, folder, precision) for precision in found]
        for name in SECTIONS:
            if args.only in (None, name):
                results[name] = MODULES[name].measure(sizes, folder)
    results["duration_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"bulk-{args.only}" if args.only else "bulk"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1, default=str))
    (args.out / f"{name}.md").write_text(render(results, args.only) + "\n")
    say(f"wrote {args.out / name}.md and .json in {results['duration_s']:.0f} s")


if __name__ == "__main__":
    main()
