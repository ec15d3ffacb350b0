"""Side-by-side benchmarks: one run, same machine, same texts (`make bench`).

Our ONNX backend, our torch backend, fastembed on the same ONNX file and plain
sentence-transformers (the seed's stack), each in its own fresh process per thread count:
single-text latency, throughput at batch 1/8/32/128 for short (~15 tokens) and long
(256 tokens) texts with 1 and 2 threads, peak RSS, fidelity against sentence-transformers,
cold start (fresh process to first embedding, on one CPU), the Lambda handler's init under
the real RIE, dynamic batching in the FastAPI app, the machine's fp32 matmul peak and the
installed size of each target's dependencies. Writes docs/benchmarks/{results.json,
README.md,*.png}.

    .venv/bin/python bench/bench.py                 # full run (~10 min on 2 cores)
    .venv/bin/python bench/bench.py --quick --skip-sizes --stacks onnx --out /tmp/b
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import analysis  # noqa: E402
import bench_env  # noqa: E402
import bench_services  # noqa: E402
import charts  # noqa: E402
import report  # noqa: E402
from bench_worker import STACKS, cold_start_code  # noqa: E402
from corpus import passages, sentences  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "bench_worker.py"
THREADS = (1, 2)
SEED = 0
FULL = {
    "n_texts": {"short": 128, "long": 128},
    "batches": [1, 8, 32, 128],
    "latency_calls": {"short": 100, "long": 20},
    "reps": {"min_reps": 3, "max_reps": 5, "budget_s": 3.0, "cap_s": 12.0, "warm_cap_s": 3.0},
    "cold_runs": 5,
    "rie_runs": 3,
    "rie_warm": 10,
    "batching_s": 10.0,
    "clients": 32,
}
QUICK = {
    "n_texts": {"short": 32, "long": 8},
    "batches": [1, 8, 32],
    "latency_calls": {"short": 20, "long": 3},
    "reps": {"min_reps": 1, "max_reps": 1, "budget_s": 0.0, "cap_s": 0.0, "warm_cap_s": 1.0},
    "cold_runs": 2,
    "rie_runs": 1,
    "rie_warm": 3,
    "batching_s": 2.0,
    "clients": 32,
}
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, small sizes (for development)")
    parser.add_argument("--skip-sizes", action="store_true", help="skip installed-size measurement")
    parser.add_argument(
        "--stacks",
        default=",".join(STACKS),
        help=f"comma-separated subset of {','.join(STACKS)} (default: all)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks", help="output folder")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path(os.environ.get("MODEL_DIR") or REPO / "models" / "all-MiniLM-L6-v2"),
    )
    args = parser.parse_args(argv)
    args.stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    unknown = [s for s in args.stacks if s not in STACKS]
    if unknown or not args.stacks:
        parser.error(f"--stacks: unknown {unknown or 'empty list'}; choose from {', '.join(STACKS)}")
    if not (args.model_dir / "onnx" / "model.onnx").is_file():
        parser.error(f"{args.model_dir}/onnx/model.onnx is missing: run `make setup` first")
    return args


def child_env(threads: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBED", "API_KEY", "BATCH_", "QUEUE_"))}
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "TRANSFORMERS_VERBOSITY": "error"})
    if threads:
        env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    return env


def token_counts(model_dir: Path, texts: list[str]) -> list[int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.no_padding()
    return [len(e.ids) for e in tokenizer.encode_batch(texts)]


def run_worker(
    spec_path: Path, stack: str, threads: int, device: str, vec_dir: Path, step: list[int], total: int
) -> tuple[list[dict], dict]:
    results, summary = [], {}
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(spec_path), stack, str(threads), device, str(vec_dir)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=child_env(threads),
            cwd=REPO,
        )
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if record["type"] == "done":
                summary = record
                continue
            results.append(record)
            step[0] += 1
            lat = (
                f", p50 {record['p50_ms']:.1f} ms p99 {record['p99_ms']:.1f} ms"
                if record["batch"] == 1
                else f" ({record['reps']} reps)"
            )
            say(
                f"[{step[0]}/{total}] {stack}{'' if device == 'cpu' else '/' + device} {record['length']} "
                f"b={record['batch']} t={threads} ... {record['texts_per_s']:.1f} texts/s, "
                f"{record['tokens_per_s']:.0f} tokens/s{lat}"
            )
        if proc.wait() != 0 or not summary:
            err.seek(0)
            raise RuntimeError(f"worker {stack} t={threads} failed:\n{err.read().decode()[-3000:]}")
    return results, summary


def cold_starts(stack: str, model_dir: Path, runs: int) -> dict:
    code = cold_start_code(stack, str(model_dir))
    env = child_env()
    env.update({"MODEL_DIR": str(model_dir), "EMBEDDING_BACKEND": "torch" if stack == "torch" else "onnx"})
    samples = []
    for _ in range(runs):
        started = time.time()
        proc = subprocess.run(
            [*bench_services.pin_one_cpu(), sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"cold start {stack} failed:\n{proc.stderr[-3000:]}")
        t = json.loads(proc.stdout.strip().splitlines()[-1])
        samples.append(
            {
                "total_s": t["first"] - started,
                "interpreter_s": t["t0"] - started,
                "import_s": t["imported"] - t["t0"],
                "load_s": t["loaded"] - t["imported"],
                "first_embed_s": t["first"] - t["loaded"],
            }
        )
    med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    return {
        **med,
        "min_s": min(s["total_s"] for s in samples),
        "max_s": max(s["total_s"] for s in samples),
        "runs": runs,
        "all_s": [round(s["total_s"], 3) for s in samples],
        "pinned_cpus": 1 if bench_services.pin_one_cpu() else None,
    }


def fidelity(vec_dir: Path, stack_key: str) -> dict:
    out = {}
    for length in ("short", "long"):
        ref = (
            np.load(vec_dir / f"st-cpu-t2-{length}.npy")
            if (vec_dir / f"st-cpu-t2-{length}.npy").exists()
            else np.load(vec_dir / f"st-cpu-t1-{length}.npy")
        )
        vec = np.load(vec_dir / f"{stack_key}-{length}.npy")
        cos = np.sum(ref * vec, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(vec, axis=1))
        out[length] = float(cos.min())
    out["min_cosine"] = min(out.values())
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = args.model_dir.resolve()
    command = (
        "make bench"
        if argv is None and not sys.argv[1:]
        else ".venv/bin/python bench/bench.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    )
    say(
        f"benchmark ({'quick' if args.quick else 'full'}): stacks {', '.join(args.stacks)}; output {args.out}"
    )
    texts = {
        "short": sentences(cfg["n_texts"]["short"], SEED),
        "long": passages(cfg["n_texts"]["long"], SEED),
    }
    tokens = {k: token_counts(model_dir, v) for k, v in texts.items()}
    results: dict = {
        "schema": 1,
        "quick": args.quick,
        "command": command,
        "machine": bench_env.machine(),
        "config": {k: v for k, v in cfg.items()},
        "threads": list(THREADS),
        "corpus": {
            k: {
                "source": f"bench/corpus.py {'sentences' if k == 'short' else 'passages'}"
                f"({len(texts[k])}, seed={SEED})",
                "count": len(texts[k]),
                "mean_tokens": statistics.mean(tokens[k]),
                "min_tokens": min(tokens[k]),
                "max_tokens": max(tokens[k]),
                "padded_per_real_token": analysis.padding(tokens[k], cfg["batches"]),
            }
            for k in texts
        },
        "model_flops": bench_env.model_flops(model_dir),
        "stacks": {},
    }
    snapshot = bench_env.cpu_snapshot()
    say("fp32 matmul peak (numpy)")
    results["matmul_peak"] = bench_env.matmul_peak(args.quick, list(THREADS))
    say(f"matmul peak: {results['matmul_peak']['gflops']} GFLOP/s by threads")
    results["gpu"] = (
        bench_env.gpu()
        if "torch" in args.stacks or "st" in args.stacks
        else {"available": False, "note": "not probed (no torch stack selected)"}
    )
    say(f"GPU: {results['gpu'].get('name') or results['gpu'].get('note')}")

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tmp = Path(tmp)
        spec_path = tmp / "spec.json"
        spec_path.write_text(
            json.dumps(
                {
                    "model_dir": str(model_dir),
                    "texts": texts,
                    "tokens": tokens,
                    "batches": cfg["batches"],
                    "latency_calls": cfg["latency_calls"],
                    "reps": cfg["reps"],
                }
            )
        )
        runs = [(s, t, "cpu") for s in args.stacks for t in THREADS]
        if results["gpu"].get("available") and "torch" in args.stacks:
            runs.append(("torch", 1, "cuda"))
        per_run = sum(1 for k in texts for b in cfg["batches"] if b <= len(texts[k]))
        step, total = [0], per_run * len(runs)
        for stack, threads, device in runs:
            say(f"{stack} t={threads} {device}: fresh process")
            before = bench_env.cpu_snapshot()
            records, summary = run_worker(spec_path, stack, threads, device, tmp, step, total)
            noise = bench_env.other_load(before, bench_env.cpu_snapshot())
            entry = results["stacks"].setdefault(stack, {"description": STACKS[stack], "threads": {}})
            key = str(threads) if device == "cpu" else device
            entry["threads"][key] = {
                **summary,
                "interference": noise,
                "runs": analysis.index_runs(records, tokens, results["model_flops"]),
            }
            say(
                f"{stack} t={threads}: load {summary['load_s']:.2f} s, peak RSS "
                f"{summary['peak_rss_mb']:.0f} MB; other processes used "
                f"{100 * (noise['other_share'] or 0):.0f}% of the machine meanwhile"
            )
        if "st" not in args.stacks:
            say("sentence-transformers reference vectors (for fidelity)")
            proc = subprocess.run(
                [sys.executable, str(WORKER), str(spec_path), "reference", "2", "cpu", str(tmp)],
                env=child_env(2),
                cwd=REPO,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"reference worker failed:\n{proc.stderr[-3000:]}")
        for stack, threads, device in runs:
            key = str(threads) if device == "cpu" else device
            results["stacks"][stack]["threads"][key]["fidelity"] = fidelity(
                tmp, f"{stack}-{device}-t{threads}"
            )
        for stack in args.stacks:
            entry = results["stacks"][stack]
            entry["fidelity_min_cosine"] = min(v["fidelity"]["min_cosine"] for v in entry["threads"].values())
            say(f"fidelity {stack}: min cosine vs sentence-transformers {entry['fidelity_min_cosine']:.8f}")

    for stack in args.stacks:
        say(f"cold start {stack}: {cfg['cold_runs']} fresh processes on one CPU")
        cold = results["stacks"][stack]["cold_start"] = cold_starts(stack, model_dir, cfg["cold_runs"])
        say(
            f"cold start {stack}: median {cold['total_s']:.2f} s (import {cold['import_s']:.2f}, "
            f"load {cold['load_s']:.2f}, first embed {cold['first_embed_s'] * 1000:.0f} ms)"
        )
    results["lambda_rie"] = {}
    for backend in [b for b in ("onnx", "torch") if b in args.stacks]:
        runs_ = cfg["rie_runs"] if backend == "onnx" else 1  # torch's init is ~10 s a go: once is plenty
        results["lambda_rie"][backend] = bench_services.rie(
            backend, str(model_dir), runs_, cfg["rie_warm"], texts, say
        )
    if "onnx" in args.stacks:
        results["dynamic_batching"] = bench_services.dynamic_batching(
            str(model_dir), texts["short"], cfg["clients"], cfg["batching_s"], say
        )
    if args.skip_sizes:
        results["installed_sizes"] = {"skipped": True}
    else:
        results["installed_sizes"] = bench_env.installed_sizes(REPO / ".tools" / "bench-sizes", say)
        for stack in args.stacks:
            size = results["installed_sizes"].get(bench_env.STACK_SIZE_TARGET[stack], {})
            results["stacks"][stack]["installed_mb"] = size.get("mb")

    say("fp32 matmul peak again (the higher of the two is kept)")
    results["matmul_peak"] = bench_env.merge_peaks(
        results["matmul_peak"], bench_env.matmul_peak(args.quick, list(THREADS))
    )
    analysis.set_peak_fractions(results)
    results["interference"] = bench_env.other_load(snapshot, bench_env.cpu_snapshot())
    say(
        f"other processes used {100 * (results['interference']['other_share'] or 0):.0f}% of the machine's "
        f"CPU "
        "during the run"
    )
    results["targets"] = analysis.targets(results)
    results["memory_sizing"] = analysis.memory_sizing(results)
    results["duration_s"] = round(time.monotonic() - STARTED, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    drawn = charts.charts(results, args.out)
    (args.out / "README.md").write_text(report.markdown(results, drawn))
    say(f"wrote {args.out}/results.json, README.md and {len(drawn)} charts in {results['duration_s']:.0f} s")
    for line in report.headline(results):
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
