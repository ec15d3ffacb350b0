"""`make bench-scale`: can one `embed-corpus` process drive a 1,000-wide Lambda fleet over 10^8
passages, and what would that job cost?

The fleet is simulated (bench/stub_lambda.py: Lambda's Invoke API on loopback, answering each
shard job after the time its passages take on Lambda, measured by `make bench-bulk`, scaled down
by --time-scale); so is the listing (objects of 10^5 passages each, in memory) and S3 itself (a
dict). Everything else is the real client: the planner (splits.py), the scheduler, the retry layer
(every Nth job is throttled once), the Lambda target with boto3, and the commit of every part and
the final `_SUCCESS`. Each plan size runs in a fresh process, so its peak RSS is its own.

Report: wall time against the ideal (the jobs' total time / concurrency), client CPU per shard,
peak RSS at 10^7 and 10^8 passages (flat), invocations, and the projected hours and $ of the real
job, per precision and architecture.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

import report as report_tools  # noqa: E402

PASSAGES_PER_OBJECT = 100_000
BYTES_PER_PASSAGE = 1_200  # ~200 words of English JSONL
SHARD_SIZE = 10_000
BULK = REPO / "docs" / "benchmarks" / "bulk.json"
TEMPLATE = BENCH / "templates" / "scale.md"
OUT = REPO / "docs" / "benchmarks"


def say(message: str) -> None:
    print(f"[bench-scale] {message}", flush=True)


# --- the client side, in its own process --------------------------------------------------------


def simulated_inputs(passages: int):
    from embedding_client.corpus.inputs import InputFile, Inputs
    from embedding_client.corpus.locations import Location

    objects = math.ceil(passages / PASSAGES_PER_OBJECT)
    files = []
    for number in range(objects):
        rows = min(PASSAGES_PER_OBJECT, passages - number * PASSAGES_PER_OBJECT)
        name = f"part-{number:05d}.jsonl"
        files.append(InputFile(Location(f"s3://sim-corpus/corpus/{name}"), name, rows * BYTES_PER_PASSAGE, f'"{number:032x}"'))
    return Inputs("s3://sim-corpus/corpus/", files, "jsonl", True)


def simulated_storage():
    """S3 as a dict: what the client writes (manifest, _SUCCESS) and reads back."""
    from embedding_client.corpus.errors import InputError
    from embedding_client.corpus.locations import Storage

    line = json.dumps({"text": "x" * (BYTES_PER_PASSAGE - 13)}).encode() + b"\n"

    class SimulatedStorage(Storage):
        def __init__(self):
            super().__init__()
            self.objects: dict[str, bytes] = {}

        def read_range(self, location, start, end):  # the planner's sample of the first object
            return line * 16

        def write_bytes(self, location, data):
            self.objects[location.uri] = bytes(data)

        def read_bytes(self, location):
            if location.uri not in self.objects:
                raise InputError(f"{location.uri} does not exist")
            return self.objects[location.uri]

        def exists(self, location):
            return location.uri in self.objects

        def names(self, directory):
            prefix = directory.uri.rstrip("/") + "/"
            return {uri[len(prefix) :] for uri in self.objects if uri.startswith(prefix) and "/" not in uri[len(prefix) :]}

        def delete(self, location):
            self.objects.pop(location.uri, None)

    return SimulatedStorage()


def client_run(passages: int, endpoint: str, concurrency: int) -> dict:
    """One worker-mode run over a simulated corpus of `passages`; its figures."""
    from embedding_client.corpus.choose_target import open_target
    from embedding_client.corpus.runner import Options, Run
    from embedding_client.corpus.targets import EmbedOptions
    from embedding_client.corpus.worker_run import WorkerRun

    started, cpu = time.perf_counter(), time.process_time()
    options = Options(
        input="s3://sim-corpus/corpus/",
        output="s3://sim-vectors/vectors/",
        target="lambda://bulk",
        endpoint_urls=[endpoint],
        region="us-east-1",
        concurrency=concurrency,
        shard_size=SHARD_SIZE,
        embedding_type="int8",
    )
    run = Run(options, stream=open(os.devnull, "w"), storage=simulated_storage())
    inputs = simulated_inputs(passages)
    target = open_target(options.target, EmbedOptions(None, "int8", None), endpoint_urls=[endpoint], region="us-east-1", api_key=None, concurrency=concurrency)
    stats = WorkerRun(run.context(target, inputs, started, inputs.version(), None)).execute()
    success = json.loads(run.storage.read_bytes(run.output.child("_SUCCESS")))
    return {
        "passages": passages,
        "shards": len(success["parts"]),
        "rows": success["rows"],
        "wall_s": time.perf_counter() - started,
        "schedule_s": stats.embed_s,
        "client_cpu_s": time.process_time() - cpu,
        "schedule_cpu_s": stats.embed_cpu_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "invocations": stats.requests,
        "retries": stats.retries,
        "billed_ms": sum(call.billed_ms or 0 for call in stats.invocations),
    }


# --- the client path: data through this process, against an instant stub -------------------------

CLIENT_PASSAGES = 200_000
CLIENT_REPEATS = 3


def write_passages(path: Path, count: int) -> Path:
    """~200-word passages (~1.1 KB of JSONL each), with ids, seeded."""
    import random

    import orjson

    rng = random.Random(0)
    words = "the of and to in is was for on that with as by at from it an were are which this be or".split()
    words += [f"term{i}" for i in range(3000)]
    with open(path, "wb") as handle:
        for i in range(count):
            handle.write(orjson.dumps({"id": i, "text": " ".join(rng.choice(words) for _ in range(200))}) + b"\n")
    return path


def client_path(port: int, folder: Path) -> list[dict]:
    """Client CPU per passage for `http` and `lambda`, into a dataset and into one file: the best
    of a few runs of the installed command (CPU time of the child, user + system)."""
    source = write_passages(folder / "passages.jsonl", CLIENT_PASSAGES)
    command = str(Path(sys.executable).parent / "embed-corpus")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    stub = f"http://127.0.0.1:{port}"
    targets = {"http": ["--target", stub], "lambda": ["--target", "lambda://bench", "--endpoint-url", stub]}
    rows = []
    for name, flags in targets.items():
        for output in ("dataset", "file"):
            best = None
            for attempt in range(CLIENT_REPEATS):
                where = folder / (f"out-{name}-{attempt}/" if output == "dataset" else f"out-{name}-{attempt}.parquet")
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.perf_counter()
                figures = folder / "report.json"
                subprocess.run([command, str(source), "--output", str(where), *flags, "--concurrency", "8", "-q",
                                "--report-json", str(figures)], check=True, env=env, stdout=subprocess.DEVNULL)
                wall = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                embed_cpu = json.loads(figures.read_text())["embed_cpu_s"]
                if best is None or cpu < best["cpu_s"]:
                    best = {"target": name, "output": output, "cpu_s": cpu, "wall_s": wall, "embed_cpu_s": embed_cpu}
            best["passages_per_cpu_s"] = CLIENT_PASSAGES / best["cpu_s"]
            best["passages_per_embed_cpu_s"] = CLIENT_PASSAGES / best["embed_cpu_s"]
            rows.append(best)
            say(f"client path, {name}, {output}: {best['passages_per_cpu_s']:,.0f} passages per client CPU-second")
    return rows


# --- the benchmark --------------------------------------------------------------------------------


def shard_rows() -> int:
    """Passages per shard job: --shard-size, within the worker's cap."""
    from embedding_client.corpus.worker_plan import WORKER_MAX_ROWS

    return min(SHARD_SIZE, WORKER_MAX_ROWS)


def measured_passage_ms() -> dict:
    """Billed ms per 256-token passage on Lambda at 1,769 MB, per precision, from `make bench-bulk`."""
    data = json.loads(BULK.read_text())
    return {row["precision"]: row["billed_ms_per_passage"] for row in data["prices"]} | {
        "_source": f"docs/benchmarks/bulk.json ({data['date']}, {data['machine']['cpu_generation']})"
    }


def start_stub(port: int, ms_per_passage: float, time_scale: float, throttle_every: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, str(BENCH / "stub_lambda.py"), "--port", str(port), "--ms-per-passage", str(ms_per_passage),
         "--bytes-per-passage", str(BYTES_PER_PASSAGE), "--time-scale", str(time_scale),
         "--throttle-every", str(throttle_every)],
    )
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the stub fleet did not start")


def projection(passages: int, ms: dict, efficiency: float, concurrency: int, memory_mb: int = 1769) -> list[dict]:
    """Hours and $ of the real job: the measured per-passage time, the fleet's width, the
    scheduling efficiency measured here."""
    from embedding_client import prices

    rows = []
    for precision in ("int8", "fp32"):
        compute_s = passages * ms[precision] / 1000
        hours = compute_s / concurrency / efficiency / 3600
        invocations = math.ceil(passages / shard_rows())
        for arch in ("x86_64", "arm64"):
            usd = compute_s * memory_mb / 1024 * prices.LAMBDA_GB_SECOND[arch] + invocations * prices.LAMBDA_REQUESTS_PER_MILLION / 1e6
            rows.append({"precision": precision, "architecture": arch, "assumed": arch == "arm64", "hours": hours, "usd": usd,
                         "ms_per_passage": ms[precision], "invocations": invocations})
    return rows


def render(result: dict) -> str:
    sections = report_tools.Sections(TEMPLATE)
    runs = result["runs"]
    run_rows = [
        [f"{run['passages']:,}", f"{run['shards']:,}", f"{run['invocations']:,}", f"{run['retries']:,}",
         report_tools.num(run["ideal_s"]), report_tools.num(run["schedule_s"]), f"{100 * run['efficiency']:.1f}%",
         f"{1000 * run['schedule_cpu_s'] / run['shards']:.2f}", report_tools.num(run["peak_rss_mb"], 0)]
        for run in runs
    ]
    projection_rows = [
        [row["precision"], row["architecture"] + (" (assumed)" if row["assumed"] else ""), f"{row['ms_per_passage']:.1f}",
         f"{row['invocations']:,}", f"{row['hours']:.2f}", f"${row['usd']:,.0f}"]
        for row in result["projection"]
    ]
    big = runs[-1]
    return report_tools.document([
        sections(
            "document",
            date=result["date"],
            machine=result["machine"],
            duration=f"{result['duration_s']:.0f}",
            concurrency=f"{result['concurrency']:,}",
            time_scale=f"{result['time_scale']:.4f}",
            shard_seconds=f"{result['shard_seconds']:.0f}",
            shard_rows=f"{result['shard_rows']:,}",
            throttle_every=f"{result['throttle_every']:,}",
            source=result["ms_source"],
            runs_table=report_tools.table(
                ["passages planned", "shards", "invocations", "retries", "ideal (s)", "measured (s)", "of ideal",
                 "client CPU ms / shard", "peak RSS (MB)"], "rrrrrrrrr", run_rows),
            efficiency=f"{100 * big['efficiency']:.1f}%",
            efficiency_met="met" if big["efficiency"] >= 0.95 else "**not met**",
            rss=f"{big['peak_rss_mb']:,.0f}",
            rss_small=f"{runs[0]['peak_rss_mb']:,.0f}",
            rss_met="met" if max(run["peak_rss_mb"] for run in runs) < 500 else "**not met**",
            projection_table=report_tools.table(
                ["precision", "architecture", "billed ms / passage", "invocations", "hours", "$ (Lambda)"], "llrrrr", projection_rows),
            caveat=result["arm64_caveat"],
        ),
        client_section(sections, result["client_path"]),
        batch_section(sections, result.get("batch")),
    ])


def client_section(sections, rows: list[dict]) -> str:
    if not rows:
        return ""
    table_rows = [
        [row["target"], "a dataset (OUTPUT/)" if row["output"] == "dataset" else "one file", f"{row['cpu_s']:.2f}",
         f"{row['wall_s']:.2f}", f"{row['passages_per_cpu_s']:,.0f}", f"{row['embed_cpu_s']:.2f}",
         f"{row['passages_per_embed_cpu_s']:,.0f}"]
        for row in rows
    ]
    worst = min(row["passages_per_cpu_s"] for row in rows if row["output"] == "dataset")
    worst_phase = min(row["passages_per_embed_cpu_s"] for row in rows if row["output"] == "dataset")
    return sections(
        "client_path",
        passages=f"{CLIENT_PASSAGES:,}",
        repeats=str(CLIENT_REPEATS),
        table=report_tools.table(
            ["target", "output", "client CPU (s)", "wall (s)", "passages per client CPU-s", "embedding phase CPU (s)",
             "passages per CPU-s, embedding phase"], "llrrrrr", table_rows),
        worst=f"{worst:,.0f}",
        met="met" if worst >= 25_000 else "**not met**",
        worst_phase=f"{worst_phase:,.0f}",
        phase_met="met" if worst_phase >= 25_000 else "**not met**",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--client", nargs=3, metavar=("PASSAGES", "ENDPOINT", "CONCURRENCY"), help=argparse.SUPPRESS)
    parser.add_argument("--passages", default="10000000,100000000", help="plan sizes, comma-separated")
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--shard-seconds", type=float, default=10.0, help="a simulated shard's wall time")
    parser.add_argument("--throttle-every", type=int, default=97, help="throttle every Nth job once (0: never)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--skip-client-path", action="store_true", help="only the simulated fleet")
    parser.add_argument("--batch-only", action="store_true",
                        help="only the AWS Batch part, merged into the existing scale.json (the Lambda parts unchanged)")
    parser.add_argument("--batch-quick", action="store_true", help="the worker at 16 passages per vCPU, once (a smoke run)")
    args = parser.parse_args(argv)
    if args.client:
        print(json.dumps(client_run(int(args.client[0]), args.client[1], int(args.client[2]))))
        return 0
    import bench_env
    from embedding_client import prices

    if args.batch_only:
        result = json.loads((args.out / "scale.json").read_text())
        result["batch"] = batch_part(args.passages, args.batch_quick)
        (args.out / "scale.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "scale.md").write_text(render(result))
        say(f"wrote the AWS Batch part of {args.out / 'scale.md'}")
        return 0
    started = time.perf_counter()
    ms = measured_passage_ms()
    time_scale = args.shard_seconds / (shard_rows() * ms["int8"] / 1000)
    port = report_free_port()
    stub = start_stub(port, ms["int8"], time_scale, args.throttle_every)
    runs = []
    try:
        for passages in (int(value) for value in args.passages.split(",")):
            say(f"{passages:,} passages planned, {args.concurrency:,} concurrent invocations")
            child = subprocess.run(
                [sys.executable, __file__, "--client", str(passages), f"http://127.0.0.1:{port}", str(args.concurrency)],
                capture_output=True, text=True, env={**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                                                     "AWS_EC2_METADATA_DISABLED": "true"},
            )
            if child.returncode != 0:
                raise RuntimeError(child.stderr[-3000:])
            run = json.loads(child.stdout.strip().splitlines()[-1])
            shard_s = shard_rows() * ms["int8"] / 1000 * time_scale
            run["ideal_s"] = math.ceil(run["shards"] / args.concurrency) * shard_s
            run["efficiency"] = run["ideal_s"] / run["schedule_s"]
            runs.append(run)
            say(f"  {run['schedule_s']:.1f} s against an ideal {run['ideal_s']:.1f} s ({100 * run['efficiency']:.1f}%), "
                f"peak RSS {run['peak_rss_mb']:.0f} MB, {run['invocations']:,} invocations, {run['retries']} retries")
        import tempfile

        with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
            client = client_path(port, Path(scratch)) if not args.skip_client_path else []
    finally:
        stub.terminate()
        stub.wait()
    machine = bench_env.machine()
    result = {
        "command": "make bench-scale",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{machine['cpu_model']}, {machine['cpu_generation']}, {machine['logical_cpus']} vCPUs",
        "concurrency": args.concurrency,
        "time_scale": time_scale,
        "shard_seconds": args.shard_seconds,
        "shard_rows": shard_rows(),
        "throttle_every": args.throttle_every,
        "ms_source": ms.pop("_source"),
        "runs": runs,
        "client_path": client,
        "projection": projection(10**8, ms, runs[-1]["efficiency"], args.concurrency),
        "arm64_caveat": prices.ARM64_CAVEAT,
        "batch": batch_part(args.passages, args.batch_quick),
    }
    result["duration_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "scale.md").write_text(render(result))
    say(f"wrote {args.out / 'scale.md'} in {result['duration_s']:.0f} s")
    return 0


def batch_part(passages: str, quick: bool = False) -> dict:
    """Planning and submitting on moto's Batch, the worker's speed-up curve, the 10^8 projection."""
    import batch_scale
    import bench_env

    machine = bench_env.machine()
    say("AWS Batch: planning and submitting")
    runs = batch_scale.submissions([int(value) for value in passages.split(",")])
    say("AWS Batch: the worker at 1 and 2 vCPUs (taskset)")
    load = os.getloadavg()[0]
    rates = batch_scale.worker_rates(16, 1) if quick else batch_scale.worker_rates()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{machine['cpu_model']}, {machine['cpu_generation']}, {machine['logical_cpus']} vCPUs",
        "submissions": runs,
        "worker": rates,
        "projection": batch_scale.projection(10**8, rates),
        "load_average": max(load, os.getloadavg()[0]),
    }


def batch_section(sections, batch: dict | None) -> str:
    if not batch:
        return ""
    runs, rates, projected = batch["submissions"], batch["worker"], batch["projection"]
    big = runs[-1]
    child = next(row for row in rates if row["processes"] == 2)  # splits in parallel: what the child runs
    threaded = next(row for row in rates if row["processes"] == 1 and row["vcpus"] == 2)
    spot = next(q for q in projected["quotes"] if q["engine"].startswith("Fargate Spot"))
    return sections(
        "batch",
        date=batch["date"],
        machine=batch["machine"],
        submit_table=report_tools.table(
            ["passages planned", "splits", "children", "array jobs", "plan (KB)", "client CPU (s)", "of which plan + submit (s)",
             "peak RSS (MB)"], "rrrrrrrr",
            [[f"{r['passages']:,}", f"{r['splits']:,}", f"{r['children']:,}", str(r["array_jobs"]), f"{r['plan_bytes'] / 1024:,.0f}",
              f"{r['client_cpu_s']:.1f}", f"{r['plan_submit_cpu_s']:.1f}", f"{r['peak_rss_mb']:,.0f}"] for r in runs]),
        cpu=f"{big['client_cpu_s']:.1f}",
        cpu_met="met" if big["client_cpu_s"] <= 30 else "**not met**",
        rss=f"{big['peak_rss_mb']:,.0f}",
        rss_met="met" if big["peak_rss_mb"] <= 300 else "**not met**",
        worker_table=report_tools.table(
            ["configuration", "vCPUs", "threads per process", "processes", "passages", "passages/s (wall)", "speed-up (wall)",
             "passages/s on dedicated vCPUs", "speed-up (dedicated)"], "lrrrrrrrr",
            [[r["config"], str(r["vcpus"]), str(r["threads"]), str(r["processes"]), f"{r['passages']:,}",
              f"{r['passages_per_s']:.1f}", f"{r['speedup']:.2f}x", f"{r['dedicated_passages_per_s']:.1f}",
              f"{r['dedicated_speedup']:.2f}x"] for r in rates]),
        speedup=f"{child['dedicated_speedup']:.2f}x",
        speedup_wall=f"{child['speedup']:.2f}x",
        speedup_met="met" if child["dedicated_speedup"] >= 1.8 else "**not met**",
        faster="splits in parallel" if child["dedicated_passages_per_s"] >= threaded["dedicated_passages_per_s"] else "one split on both threads",
        threaded_speedup=f"{threaded['dedicated_speedup']:.2f}x",
        load=f"{batch.get('load_average', 0):.1f}",
        projection_table=report_tools.table(
            ["engine", "hours", "$", "assumptions"], "lrrl",
            [[q["engine"], f"{q['hours']:.2f}", f"${q['usd']:,.2f}", q["note"]] for q in projected["quotes"]]),
        vcpus=f"{projected['vcpus']:,}",
        spot_hours=f"{spot['hours']:.2f}",
        spot_usd=f"${spot['usd']:,.2f}",
        target_met="met" if projected["target_met"] else "**not met**",
        assumptions="\n".join(f"- {line}" for line in projected["assumptions"]),
    )


def report_free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
