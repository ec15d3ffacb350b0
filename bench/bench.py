"""Side-by-side benchmarks: one run, same machine, same texts (`make bench`).

Our ONNX backend (fp32, and int8 where `make setup` wrote onnx/model_int8.onnx), our torch
backend, fastembed on the same ONNX file and plain sentence-transformers (the seed's stack),
each in its own fresh process per thread count: single-text latency, throughput at batch
1/8/32/128 for short (~15 tokens) and long (256 tokens) texts with 1 and 2 threads, peak RSS,
fidelity against sentence-transformers, cold start (fresh process to first embedding, on one
CPU), the Lambda handler's init under the real RIE, dynamic batching in the FastAPI app, the
machine's fp32 peak (bench/peak.py) and the installed size of each target's dependencies.
Writes docs/benchmarks/{results.json,README.md,*.png}.

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
from embedding_service.settings import default_model_dir

import analysis
import bench_env
import bench_services
import charts
import peak
import processes
import report
from bench_worker import ONNX_FILES, PRECISION, STACKS, cold_start_code
from corpus import passages, sentences

REPO = processes.REPO
WORKER = processes.BENCH / "bench_worker.py"
THREADS = (1, 2)
SEED = 0
CORPUS_FUNCTION = {"short": "sentences", "long": "passages"}
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
    parser.add_argument("--stacks", default=",".join(STACKS),
                        help=f"comma-separated subset of {','.join(STACKS)} (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks", help="output folder")
    model_dir = Path(os.environ.get("MODEL_DIR") or default_model_dir())
    parser.add_argument("--model-dir", type=Path, default=model_dir)
    args = parser.parse_args(argv)
    args.stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    unknown = [s for s in args.stacks if s not in STACKS]
    if unknown or not args.stacks:
        parser.error(f"--stacks: unknown {unknown or 'empty list'}; choose from {', '.join(STACKS)}")
    if not (args.model_dir / "onnx" / "model.onnx").is_file():
        parser.error(f"{args.model_dir}/onnx/model.onnx is missing: run `make setup` first")
    return args


def missing_files(stacks: list[str], model_dir: Path) -> dict[str, str]:
    """Stacks whose precision's ONNX file the model folder lacks -> why they are skipped."""
    return {
        s: f"{PRECISION[s]} file missing: run make setup ({ONNX_FILES[PRECISION[s]]} not in {model_dir})"
        for s in stacks
        if PRECISION.get(s, "fp32") != "fp32" and not (model_dir / ONNX_FILES[PRECISION[s]]).is_file()
    }


def child_env(threads: int | None = None) -> dict[str, str]:
    """A stack's process: none of the service's settings, offline, `threads` OpenMP/MKL threads."""
    counts = {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")} if threads else {}
    drop = ("EMBED", "API_KEY", "BATCH_", "QUEUE_", "ONNX_FILE")
    return processes.child_env(drop, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", **counts)


def token_counts(model_dir: Path, texts: list[str]) -> list[int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.no_padding()
    return [len(e.ids) for e in tokenizer.encode_batch(texts)]


def _progress(record: dict, stack: str, threads: int, device: str, step: list[int], total: int) -> None:
    step[0] += 1
    lat = f" ({record['reps']} reps)"
    if record["batch"] == 1:
        lat = f", p50 {record['p50_ms']:.1f} ms p99 {record['p99_ms']:.1f} ms"
    say(
        f"[{step[0]}/{total}] {stack}{'' if device == 'cpu' else '/' + device} {record['length']} "
        f"b={record['batch']} t={threads} ... {record['texts_per_s']:.1f} texts/s, "
        f"{record['tokens_per_s']:.0f} tokens/s{lat}"
    )


def run_worker(
    spec_path: Path, stack: str, threads: int, device: str, vec_dir: Path, step: list[int], total: int
) -> tuple[list[dict], dict]:
    results, summary = [], {}
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(spec_path), stack, str(threads), device, str(vec_dir)],
            stdout=subprocess.PIPE, stderr=err, text=True, env=child_env(threads), cwd=REPO,
        )
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if record["type"] == "done":
                summary = record
                continue
            results.append(record)
            _progress(record, stack, threads, device, step, total)
        if proc.wait() != 0 or not summary:
            err.seek(0)
            raise RuntimeError(f"worker {stack} t={threads} failed:\n{err.read().decode()[-3000:]}")
    return results, summary


def _cold_sample(t: dict, started: float) -> dict:
    return {
        "total_s": t["first"] - started,
        "interpreter_s": t["t0"] - started,
        "import_s": t["imported"] - t["t0"],
        "load_s": t["loaded"] - t["imported"],
        "first_embed_s": t["first"] - t["loaded"],
    }


def cold_starts(stack: str, model_dir: Path, runs: int) -> dict:
    code = cold_start_code(stack, str(model_dir))
    backend, precision = "torch" if stack == "torch" else "onnx", PRECISION.get(stack, "fp32")
    env = {**child_env(), "MODEL_DIR": str(model_dir), "EMBEDDING_BACKEND": backend,
           "EMBEDDING_PRECISION": precision}
    samples = []
    for _ in range(runs):
        started = time.time()
        times = processes.run_json([*processes.pin_one_cpu(), sys.executable, "-c", code], env=env, cwd=REPO)
        samples.append(_cold_sample(times, started))
    med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    return {
        **med,
        "min_s": min(s["total_s"] for s in samples),
        "max_s": max(s["total_s"] for s in samples),
        "runs": runs,
        "all_s": [round(s["total_s"], 3) for s in samples],
        "pinned_cpus": 1 if processes.pin_one_cpu() else None,
    }


def fidelity(vec_dir: Path, stack_key: str) -> dict:
    out = {}
    for length in ("short", "long"):
        ref_file = vec_dir / f"st-cpu-t2-{length}.npy"
        ref = np.load(ref_file if ref_file.exists() else vec_dir / f"st-cpu-t1-{length}.npy")
        vec = np.load(vec_dir / f"{stack_key}-{length}.npy")
        cos = np.sum(ref * vec, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(vec, axis=1))
        out[length] = float(cos.min())
    out["min_cosine"] = min(out.values())
    return out


def start_results(args: argparse.Namespace, cfg: dict, command: str, texts: dict, tokens: dict) -> dict:
    """Everything known before the first worker starts."""
    corpus = {
        k: {
            "source": f"bench/corpus.py {CORPUS_FUNCTION[k]}({len(texts[k])}, seed={SEED})",
            "count": len(texts[k]),
            "mean_tokens": statistics.mean(tokens[k]),
            "min_tokens": min(tokens[k]),
            "max_tokens": max(tokens[k]),
            "padded_per_real_token": analysis.padding(tokens[k], cfg["batches"]),
        }
        for k in texts
    }
    return {
        "schema": 2,
        "quick": args.quick,
        "command": command,
        "machine": bench_env.machine(),
        "config": dict(cfg),
        "threads": list(THREADS),
        "corpus": corpus,
        "model_flops": bench_env.model_flops(args.model_dir),
        "skipped_stacks": missing_files(args.stacks, args.model_dir),
        "stacks": {},
    }


def write_spec(path: Path, model_dir: Path, cfg: dict, texts: dict, tokens: dict) -> None:
    keys = ("batches", "latency_calls", "reps")
    spec = {"model_dir": str(model_dir), "texts": texts, "tokens": tokens, **{k: cfg[k] for k in keys}}
    path.write_text(json.dumps(spec))


def measure_stacks(results: dict, stacks: list[str], spec_path: Path, tokens: dict) -> list[tuple]:
    """Each stack at each thread count in a fresh worker; returns the (stack, threads, device) runs."""
    runs = [(s, t, "cpu") for s in stacks for t in THREADS]
    if results["gpu"].get("available") and "torch" in stacks:
        runs.append(("torch", 1, "cuda"))
    cfg, n = results["config"], results["corpus"]
    per_run = sum(1 for k in n for b in cfg["batches"] if b <= n[k]["count"])
    step, total = [0], per_run * len(runs)
    for stack, threads, device in runs:
        say(f"{stack} t={threads} {device}: fresh process")
        before = bench_env.cpu_snapshot()
        records, summary = run_worker(spec_path, stack, threads, device, spec_path.parent, step, total)
        noise = bench_env.other_load(before, bench_env.cpu_snapshot())
        entry = results["stacks"].setdefault(stack, {"description": STACKS[stack], "threads": {}})
        entry["threads"][str(threads) if device == "cpu" else device] = {
            **summary,
            "interference": noise,
            "runs": analysis.index_runs(records, tokens, results["model_flops"]),
        }
        say(
            f"{stack} t={threads}: load {summary['load_s']:.2f} s, peak RSS {summary['peak_rss_mb']:.0f} MB; "
            f"other processes used {100 * (noise['other_share'] or 0):.0f}% of the machine meanwhile"
        )
    return runs


def reference_vectors(spec_path: Path, tmp: Path) -> None:
    """sentence-transformers' vectors for the fidelity check, when `st` was not timed."""
    say("sentence-transformers reference vectors (for fidelity)")
    argv = [sys.executable, WORKER, spec_path, "reference", 2, "cpu", tmp]
    processes.run_json(argv, env=child_env(2), cwd=REPO)


def set_fidelity(results: dict, runs: list[tuple], tmp: Path) -> None:
    for stack, threads, device in runs:
        key = str(threads) if device == "cpu" else device
        results["stacks"][stack]["threads"][key]["fidelity"] = fidelity(tmp, f"{stack}-{device}-t{threads}")
    for stack, entry in results["stacks"].items():
        entry["fidelity_min_cosine"] = min(v["fidelity"]["min_cosine"] for v in entry["threads"].values())
        say(f"fidelity {stack}: min cosine vs sentence-transformers {entry['fidelity_min_cosine']:.8f}")


def measure_cold_starts(results: dict, stacks: list[str], model_dir: Path) -> None:
    runs = results["config"]["cold_runs"]
    for stack in stacks:
        say(f"cold start {stack}: {runs} fresh processes on one CPU")
        cold = results["stacks"][stack]["cold_start"] = cold_starts(stack, model_dir, runs)
        say(
            f"cold start {stack}: median {cold['total_s']:.2f} s (import {cold['import_s']:.2f}, "
            f"load {cold['load_s']:.2f}, first embed {cold['first_embed_s'] * 1000:.0f} ms)"
        )


def measure_services(results: dict, stacks: list[str], model_dir: Path, texts: dict) -> None:
    """The two deployment targets as they start: the Lambda handler under the RIE, the
    FastAPI app with and without dynamic batching (fp32 only)."""
    cfg = results["config"]
    results["lambda_rie"] = {}
    for backend in [b for b in ("onnx", "torch") if b in stacks]:
        runs = cfg["rie_runs"] if backend == "onnx" else 1  # torch's init is ~10 s a go: once is plenty
        results["lambda_rie"][backend] = bench_services.rie(
            backend, str(model_dir), runs, cfg["rie_warm"], texts, say
        )
    if "onnx" in stacks:
        results["dynamic_batching"] = bench_services.dynamic_batching(
            str(model_dir), texts["short"], cfg["clients"], cfg["batching_s"], say
        )


def measure_sizes(results: dict, stacks: list[str], skip: bool) -> None:
    if skip:
        results["installed_sizes"] = {"skipped": True}
        return
    results["installed_sizes"] = bench_env.installed_sizes(REPO / ".tools" / "bench-sizes", say)
    for stack in stacks:
        size = results["installed_sizes"].get(bench_env.STACK_SIZE_TARGET[stack], {})
        results["stacks"][stack]["installed_mb"] = size.get("mb")


def finish(results: dict, args: argparse.Namespace, snapshot: dict) -> None:
    """The second peak measurement, the derived figures, and the files."""
    say("fp32 peak again (the higher of the two is kept)")
    nominal = results["machine"]["nominal_fp32_gflops_per_core"]
    results["fp32_peak"] = peak.merge(results["fp32_peak"], peak.measure(args.quick, list(THREADS), nominal))
    analysis.set_peak_fractions(results)
    results["interference"] = bench_env.other_load(snapshot, bench_env.cpu_snapshot())
    other = results["interference"]["other_share"] or 0
    say(f"other processes used {100 * other:.0f}% of the machine's CPU during the run")
    results["targets"] = analysis.targets(results)
    results["memory_sizing"] = analysis.memory_sizing(results)
    results["duration_s"] = round(time.monotonic() - STARTED, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    drawn = charts.charts(results, args.out)
    (args.out / "README.md").write_text(report.markdown(results, drawn))
    say(f"wrote {args.out}/results.json, README.md and {len(drawn)} charts in {results['duration_s']:.0f} s")
    for line in report.headline(results):
        print("  " + line)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    args.model_dir = model_dir = args.model_dir.resolve()
    flags = argv if argv is not None else sys.argv[1:]
    command = "make bench" if not flags else ".venv/bin/python bench/bench.py " + shlex.join(flags)
    say(
        f"benchmark ({'quick' if args.quick else 'full'}): stacks {', '.join(args.stacks)}; output {args.out}"
    )
    texts = {
        "short": sentences(cfg["n_texts"]["short"], SEED),
        "long": passages(cfg["n_texts"]["long"], SEED),
    }
    tokens = {k: token_counts(model_dir, v) for k, v in texts.items()}
    results = start_results(args, cfg, command, texts, tokens)
    for stack, why in results["skipped_stacks"].items():
        say(f"{stack}: skipped, {why}")
    stacks = [s for s in args.stacks if s not in results["skipped_stacks"]]
    snapshot = bench_env.cpu_snapshot()
    say("fp32 peak: OpenBLAS (its own kernel, its AVX2 kernel), onnxruntime's MatMul, FMA width x clock")
    results["fp32_peak"] = peak.measure(
        args.quick, list(THREADS), results["machine"]["nominal_fp32_gflops_per_core"]
    )
    say(f"fp32 peak: {results['fp32_peak']['gflops']} GFLOP/s by threads ({results['fp32_peak']['chosen']})")
    results["gpu"] = (
        bench_env.gpu()
        if "torch" in stacks or "st" in stacks
        else {"available": False, "note": "not probed (no torch stack selected)"}
    )
    say(f"GPU: {results['gpu'].get('name') or results['gpu'].get('note')}")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        write_spec(spec_path, model_dir, cfg, texts, tokens)
        runs = measure_stacks(results, stacks, spec_path, tokens)
        if "st" not in stacks:
            reference_vectors(spec_path, Path(tmp))
        set_fidelity(results, runs, Path(tmp))
    measure_cold_starts(results, stacks, model_dir)
    measure_services(results, stacks, model_dir, texts)
    measure_sizes(results, stacks, args.skip_sizes)
    finish(results, args, snapshot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
