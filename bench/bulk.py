"""embed-corpus at volume (`make bench-bulk`), ratios from one run on one machine.

1. `--target local` against the model layer's own throughput on the same texts, for every input
   format (JSONL, CSV, Parquet, text): what reading, shards and Parquet cost on top of the model.
2. A local Lambda fleet: `--target lambda://function` over 1 and 2 real Runtime Interface
   Emulators (each pinned to its own CPU, one thread: Lambda at 1,769 MB is one vCPU), and the
   client's own CPU time.
3. $ per 1M passages on Lambda, x86_64 and arm64, from the emulator's billed durations (REPORT
   lines), next to the hosted API's standard and batch prices, for each precision the model
   folder has.

Writes docs/benchmarks/bulk.md (from templates/bulk.md) and bulk.json.

    .venv/bin/python bench/bulk.py            # ~6 min on 2 cores
    .venv/bin/python bench/bulk.py --quick --out /tmp/bulk
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_env  # noqa: E402
from bench_services import SRC, free_port, parse_rie_log, start_rie, wait_for_port  # noqa: E402
from corpus import mixed, passages  # noqa: E402
from report import Sections, num, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks"
TEMPLATE = Path(__file__).resolve().parent / "templates" / "bulk.md"
EMBED_CORPUS = Path(sys.executable).parent / "embed-corpus"
FORMATS = ("jsonl", "csv", "parquet", "text")
FULL = {"local_texts": 1500, "fleet_texts": 600, "price_passages": 256}
QUICK = {"local_texts": 150, "fleet_texts": 60, "price_passages": 24}
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def say(message: str) -> None:
    print(f"[bench-bulk] {message}", flush=True)


def write_formats(folder: Path, texts: list[str]) -> dict[str, Path]:
    """The same texts (ids doc-0...) in each input format."""
    ids = [f"doc-{i}" for i in range(len(texts))]
    files = {fmt: folder / f"corpus.{'txt' if fmt == 'text' else fmt}" for fmt in FORMATS}
    files["jsonl"].write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts)))
    pacsv.write_csv(pa.table({"id": ids, "text": texts}), files["csv"])
    pq.write_table(pa.table({"id": ids, "text": texts}), files["parquet"])
    files["text"].write_text("".join(t + "\n" for t in texts))
    return files


def model_layer_rate(texts: list[str], batch: int) -> float:
    """Texts/s of `Embedder.embed` itself, in requests of `batch` texts, in a fresh process."""
    code = (
        "import sys, time, json; sys.path.insert(0, sys.argv[1]);"
        "from model import model_load; from settings import load_settings;"
        "texts = json.load(open(sys.argv[2])); batch = int(sys.argv[3]);"
        "e = model_load(load_settings()); started = time.perf_counter();"
        "[e.embed(texts[i:i + batch]) for i in range(0, len(texts), batch)];"
        "print(len(texts) / (time.perf_counter() - started))"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        json.dump(texts, handle)
        handle.flush()
        out = subprocess.run(
            [sys.executable, "-c", code, str(SRC), handle.name, str(batch)],
            env=_env(),
            capture_output=True,
            text=True,
            check=True,
        )
    return float(out.stdout.strip().splitlines()[-1])


def embed_corpus(source: Path, folder: Path, *args: str, env: dict | None = None) -> dict:
    """One run of the installed command: its report, plus the client process's CPU seconds."""
    output, report = folder / "out.parquet", folder / "report.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [
            str(EMBED_CORPUS),
            str(source),
            "--output",
            str(output),
            "--overwrite",
            "-q",
            "--report-json",
            str(report),
            *args,
        ],
        env=_env(env),
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(report.read_text())
    result["client_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["process_wall_s"] = wall
    result["sustained_texts_per_s"] = result["texts"] / result["embed_s"]
    return result


def _env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBED", "API_KEY", "AWS_"))}
    return {**env, "PYTHONUNBUFFERED": "1", **(extra or {})}


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


class Fleet:
    """N real RIEs, each with its own runtime API address and pinned to its own CPU."""

    def __init__(self, count: int, folder: Path, precision: str = "fp32"):
        self.logs = [folder / f"rie-{precision}-{i}.log" for i in range(count)]
        self.ports = [free_port() for _ in range(count)]
        model_dir, env = str(_settings().model_dir), {"EMBEDDING_PRECISION": precision}
        self.processes = []
        for index, (port, log) in enumerate(zip(self.ports, self.logs)):
            with open(log, "wb") as handle:
                self.processes.append(start_rie("onnx", model_dir, port, handle, cpu=index, extra_env=env))
        for port in self.ports:
            wait_for_port(port)

    @property
    def urls(self) -> str:
        return ",".join(f"http://127.0.0.1:{port}" for port in self.ports)

    def embed(self, source: Path, folder: Path, *args: str) -> dict:
        """`embed-corpus --target lambda://function` over this fleet."""
        return embed_corpus(
            source, folder, "--target", "lambda://function", "--endpoint-url", self.urls, *args, env=AWS_ENV
        )

    def warm(self, source: Path, folder: Path) -> None:
        """Every sandbox past its init, so the figures are a warm fleet's (small requests reach each)."""
        self.embed(source, folder, "--batch-size", "8")

    def billed_ms(self) -> list[float]:
        """The emulators' own REPORT lines for the embedding invocations (the probe's first excluded)."""
        reports = [r for log in self.logs for r in parse_rie_log(log.read_text(errors="replace"))["reports"]]
        return [r["billed_ms"] for r in reports if r["init_duration_ms"] is None]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(timeout=10)


def fleet_scaling(texts: list[str], folder: Path) -> dict:
    source = write_formats(folder, texts)["jsonl"]
    runs = {}
    for workers in (1, 2):
        fleet = Fleet(workers, folder)
        try:
            fleet.warm(source, folder)
            runs[workers] = fleet.embed(source, folder, "--batch-size", "32")
        finally:
            fleet.stop()
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
    fleet = Fleet(1, folder, precision)
    try:
        fleet.warm(source, folder)
        skip = len(fleet.billed_ms())
        run = fleet.embed(source, folder)
        billed = fleet.billed_ms()[skip:]
    finally:
        fleet.stop()
    gb_s = sum(prices.gb_seconds(ms, 1769) for ms in billed)
    per_million = {
        arch: prices.lambda_usd(gb_s, len(billed), arch) / len(texts) * 1e6
        for arch in prices.LAMBDA_GB_SECOND
    }
    tokens = run["tokens"] / run["texts"]
    say(
        f"{precision}: {sum(billed) / len(texts):.1f} billed ms per passage, "
        f"${per_million['x86_64']:.2f} per 1M "
        "on x86_64"
    )
    return {
        "precision": precision,
        "passages": len(texts),
        "invocations": len(billed),
        "billed_ms_per_passage": sum(billed) / len(texts),
        "tokens_per_passage": tokens,
        "usd_per_million": per_million,
        "hosted": prices.hosted_usd_per_million_texts(tokens),
    }


def _settings():
    """The service's settings as the fleet and the local target will read them (MODEL_DIR...)."""
    sys.path.insert(0, str(SRC))
    from settings import load_settings

    return load_settings()


def precisions() -> list[str]:
    model_dir = _settings().model_dir
    return ["fp32"] + (["int8"] if (model_dir / "onnx" / "model_int8.onnx").is_file() else [])


def render(results: dict) -> str:
    s = Sections(TEMPLATE)
    local, fleet = results["local"], results["fleet"]
    local_rows = [
        [
            fmt,
            num(run["sustained_texts_per_s"]),
            num(run["texts_per_s"]),
            f"{100 * local['ratios'][fmt]:.0f}%",
        ]
        for fmt, run in local["runs"].items()
    ]
    fleet_rows = [
        [
            str(w),
            num(run["sustained_texts_per_s"]),
            f"{100 * fleet['client_cpu_share'][w]:.1f}%",
            f"{100 * fleet['process_cpu_share'][w]:.1f}%",
        ]
        for w, run in fleet["runs"].items()
    ]
    price_rows = [
        [
            p["precision"],
            num(p["billed_ms_per_passage"]),
            f"${p['usd_per_million']['x86_64']:.2f}",
            f"${p['usd_per_million']['arm64']:.2f} (assumed)",
            f"${p['hosted']['standard']:.2f}",
            f"${p['hosted']['batch']:.2f}",
        ]
        for p in results["prices"]
    ]
    from embedding_client import prices

    return s(
        "document",
        command=results["command"],
        date=results["date"],
        duration=f"{results['duration_s']:.0f}",
        cpu=_cpu(results["machine"]),
        local_texts=local["texts"],
        reference=num(local["reference"]),
        model_layer=" and ".join(num(x) for x in local["model_layer"]),
        local_table=table(
            ["input format", "sustained texts/s", "end to end texts/s", "of the model layer"],
            "lrrr",
            local_rows,
        ),
        worst=f"{100 * min(local['ratios'].values()):.0f}%",
        fleet_texts=fleet["texts"],
        fleet_table=table(
            ["RIE workers", "texts/s", "client CPU while embedding", "client CPU, whole process"],
            "lrrr",
            fleet_rows,
        ),
        speedup=f"{fleet['speedup']:.2f}",
        price_table=table(
            [
                "precision",
                "billed ms / passage",
                "x86_64 $/1M",
                "arm64 $/1M",
                "hosted standard",
                "hosted batch",
            ],
            "lrrrrr",
            price_rows,
        ),
        price_passages=results["prices"][0]["passages"],
        tokens=num(results["prices"][0]["tokens_per_passage"], 0),
        as_of=prices.AS_OF,
        hosted=prices.HOSTED_API["name"],
        hosted_as_of=prices.HOSTED_API["as_of"],
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
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    results = {
        "command": "make bench-bulk" + (" (--quick)" if args.quick else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": bench_env.machine(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        folder = Path(tmp)
        flat = [text.replace("\n", " ") for text in mixed(sizes["local_texts"], seed=11)]
        results["local"] = local_vs_model_layer(flat, folder)
        results["fleet"] = fleet_scaling(flat[: sizes["fleet_texts"]], folder)
        long = passages(sizes["price_passages"], seed=5)
        results["prices"] = [lambda_price(long, folder, precision) for precision in precisions()]
    results["duration_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bulk.json").write_text(json.dumps(results, indent=1, default=str))
    (args.out / "bulk.md").write_text(render(results) + "\n")
    say(f"wrote {args.out / 'bulk.md'} and bulk.json in {results['duration_s']:.0f} s")


if __name__ == "__main__":
    main()
