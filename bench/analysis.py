"""What bench/bench.py's measurements mean: useful GFLOP/s per run, padding waste, the targets
and the Lambda memory recommendation. Pure functions of the results dict (no I/O)."""

from __future__ import annotations

import math

import bench_env
import lambda_cost as cost
import peak
from bench_worker import PRECISION

MEMORY_SIZES = (512, 768, 1024, 1536, 1769, 2048, 3008, 3538, 4096, 10240)
# What "acceptable" means for the memory recommendation (the seed's use: one text per call).
ACCEPTABLE = {
    "seed_warm_ms": 50.0,
    "cold_ms": 2000.0,
    "long_x32_ms": 25_000.0,
    "rss_headroom": 1.15,
    "same_price_within": 0.10,
}
PEERS = ("st", "torch", "fastembed")
INT8_TARGET = 1.6  # int8 passages/s over fp32's, on 1 thread and on 2 (issue 9)
FP32_MIN_COSINE = 0.9999  # fp32 stays unchanged: vs sentence-transformers on every text


def padding(tokens: list[int], batches: list[int], sub_batch: int = 32) -> dict:
    """Tokens computed per real token when the first b texts are length-sorted and cut into
    `sub_batch`-sized chunks, each padded to its longest (ours and sentence-transformers)."""
    out = {}
    for b in batches:
        if b > len(tokens):
            continue
        ordered = sorted(tokens[:b], reverse=True)
        padded = sum(len(ordered[i : i + sub_batch]) * ordered[i] for i in range(0, b, sub_batch))
        out[str(b)] = round(padded / sum(ordered), 3)
    return out


def set_peak_fractions(results: dict) -> None:
    """Each fp32 run's share of the machine's fp32 peak (never above 1: see peak.fraction).
    int8 runs integer kernels, which the fp32 peak does not bound: no fraction."""
    for stack, entry in results["stacks"].items():
        for t, per_thread in entry["threads"].items():
            reference = results["fp32_peak"]["gflops"].get(t) if stack not in PRECISION else None
            for runs in per_thread["runs"].values():
                for rec in runs.values():
                    share = peak.fraction(rec["gflops"], reference)
                    rec["peak_fraction"] = share["fraction_of_peak"]
                    if "reference_wrong" in share:
                        rec["reference_wrong"] = share["reference_wrong"]


def index_runs(records: list[dict], tokens: dict, flops: dict) -> dict:
    """Worker records -> {length: {batch: record}}, with the useful GFLOP/s each achieved."""
    runs: dict = {"short": {}, "long": {}}
    for r in records:
        length, batch = r["length"], r["batch"]
        ids = [i % len(tokens[length]) for i in range(r["reps"])] if batch == 1 else range(batch)
        lengths = [tokens[length][i] for i in ids]
        per_text = bench_env.flops_for_lengths(flops, lengths) / len(lengths)
        rec = {k: v for k, v in r.items() if k not in ("type", "stack", "threads", "device", "length")}
        rec["gflops"] = r["texts_per_s"] * per_text / 1e9
        runs[length][str(batch)] = rec
    return runs


def runs_of(results: dict, stack: str, threads: str, length: str) -> dict:
    """{batch: measurement} of one stack, thread count and length ({} where it did not run)."""
    per_thread = results["stacks"].get(stack, {}).get("threads", {}).get(threads, {})
    return per_thread.get("runs", {}).get(length, {})


def run_of(results: dict, stack: str, threads: str, length: str, batch: str) -> dict | None:
    """One measurement, or None where the run did not make it."""
    return runs_of(results, stack, threads, length).get(batch)


def compare_batch(results: dict) -> str | None:
    """The batch size the targets compare at: 32, or the largest measured below it."""
    batches = {
        int(b) for s in results["stacks"].values() for t in s["threads"].values() for b in t["runs"]["short"]
    }
    return "32" if 32 in batches else (str(max(b for b in batches if b <= 32)) if batches else None)


def _cold_start_targets(results: dict) -> dict:
    stacks, out = results["stacks"], {}
    if "onnx" not in stacks or "st" not in stacks:
        return out
    ours, seed = stacks["onnx"]["cold_start"]["total_s"], stacks["st"]["cold_start"]["total_s"]
    out["cold_start_vs_seed"] = {
        "ours_s": ours,
        "seed_s": seed,
        "ratio": ours / seed,
        "target": "<= 0.10",
        "met": ours / seed <= 0.10,
    }
    rie = results.get("lambda_rie", {}).get("onnx")
    if rie:
        out["lambda_init_vs_seed_cold_start"] = {
            "ours_init_s": rie["init_ms"] / 1000,
            "seed_s": seed,
            "ratio": rie["init_ms"] / 1000 / seed,
        }
    return out


def _throughput_row(results: dict, t: str, length: str, batch: str) -> dict | None:
    ours = run_of(results, "onnx", t, length, batch)
    if not ours:
        return None
    row = {"onnx_texts_per_s": ours["texts_per_s"]}
    for peer in PEERS:
        theirs = run_of(results, peer, t, length, batch)
        if theirs:
            row[f"{peer}_texts_per_s"] = theirs["texts_per_s"]
            row[f"ratio_vs_{peer}"] = ours["texts_per_s"] / theirs["texts_per_s"]
    if length == "short" and "ratio_vs_st" in row:
        row["target_vs_st"], row["met"] = ">= 1.5", row["ratio_vs_st"] >= 1.5
    return row


def _flop_utilisation(results: dict) -> dict:
    util = {}
    for t in map(str, results["threads"]):
        runs = runs_of(results, "onnx", t, "long")
        if runs:
            b, best = max(runs.items(), key=lambda kv: kv[1]["gflops"])
            fp32_peak = results["fp32_peak"]
            util[t] = {
                "batch": int(b),
                "gflops": best["gflops"],
                "tokens_per_s": best["tokens_per_s"],
                "peak_gflops": fp32_peak["gflops"].get(t),
                "peak_reference": fp32_peak["chosen"].get(t),
                **peak.fraction(best["gflops"], fp32_peak["gflops"].get(t)),
            }
    return util


def _int8_vs_fp32(results: dict, batch: str) -> dict:
    """int8 / fp32 texts/s per length and thread count, at the compare batch or the largest both
    measured below it (quick runs have few passages); the issue's target: passages >= 1.6x."""
    out = {}
    for length in ("short", "long"):
        for t in map(str, results["threads"]):
            runs = [runs_of(results, s, t, length) for s in ("onnx", "int8")]
            common = [int(b) for b in set(runs[0]) & set(runs[1]) if int(b) <= int(batch)]
            if not common:
                continue
            b = str(max(common))
            fp32, int8 = runs[0][b]["texts_per_s"], runs[1][b]["texts_per_s"]
            row = {"batch": int(b), "fp32_texts_per_s": fp32, "int8_texts_per_s": int8, "ratio": int8 / fp32}
            if length == "long":
                row["target"], row["met"] = ">= 1.6", row["ratio"] >= INT8_TARGET
            out.setdefault(length, {})[t] = row
    return out


def targets(results: dict) -> dict:
    out = {"compare_batch": compare_batch(results), **_cold_start_targets(results)}
    out["int8_vs_fp32"] = _int8_vs_fp32(results, out["compare_batch"])
    if "fidelity_min_cosine" in results["stacks"].get("onnx", {}):
        cosine = results["stacks"]["onnx"]["fidelity_min_cosine"]
        out["fp32_fidelity"] = {"min_cosine": cosine, "target": "> 0.9999", "met": cosine > FP32_MIN_COSINE}
    for length in ("short", "long"):
        rows = {
            t: _throughput_row(results, t, length, out["compare_batch"]) for t in map(str, results["threads"])
        }
        out[f"{length}_throughput_b{out['compare_batch']}"] = {t: r for t, r in rows.items() if r}
    out["flop_utilisation_long"] = _flop_utilisation(results)
    return out


def _workload_ms(per_thread: dict) -> dict:
    """The memory table's workloads (ms) from one thread count's runs of our ONNX path."""
    r = per_thread["runs"]
    out = {"seed": r["short"]["1"]["mean_ms"], "long_x1": r["long"]["1"]["mean_ms"]}
    for length in ("short", "long"):
        big = str(max(int(b) for b in r[length] if int(b) <= 32))
        out[f"{length}_x{big}"] = r[length][big]["median_s"] * 1000
    return out


def _size_row(m: int, w1: dict, w2: dict, init_ms: float, need_mb: float, cold_fraction: float) -> dict:
    """One Lambda memory size: durations, $ per million calls and the acceptability checks."""
    price = cost.PRICES["lambda_gb_second"]["x86_64"]
    req = cost.PRICES["lambda_requests_per_million"] / 1e6
    # two vCPUs: the better of the two measurements (one would configure the faster)
    two = m >= 2 * cost.ONE_VCPU_MB
    ms = {k: min(w1[k], w2[k]) if two else cost.scaled_ms(v, m) for k, v in w1.items()}
    init = cost.scaled_ms(init_ms, m)
    warm_usd = m / 1024 * math.ceil(ms["seed"]) / 1000 * price + req
    cold_usd = m / 1024 * math.ceil(init + ms["seed"]) / 1000 * price + req
    long_key = next(k for k in ms if k.startswith("long_x") and k != "long_x1")
    ok = {
        "fits": need_mb <= m,
        "seed_warm": ms["seed"] <= ACCEPTABLE["seed_warm_ms"],
        "cold": init + ms["seed"] <= ACCEPTABLE["cold_ms"],
        "long_batch": ms[long_key] <= ACCEPTABLE["long_x32_ms"],
    }
    return {
        "memory_mb": m,
        "vcpu": round(m / cost.ONE_VCPU_MB, 2),
        "threads_model": 1 if m < 3538 else 2,
        "ms": ms,
        "init_ms": init,
        "usd_per_million_warm": warm_usd * 1e6,
        "usd_per_million_cold": cold_usd * 1e6,
        "usd_per_million_mix": ((1 - cold_fraction) * warm_usd + cold_fraction * cold_usd) * 1e6,
        "acceptable": all(ok.values()),
        "checks": ok,
    }


def _recommend(rows: list[dict]) -> dict | None:
    """Within 10% of the cheapest acceptable size counts as the same price (the CPU-share model
    and the 1 ms billing granularity are not more precise than that); among those, the fastest."""
    good = [r for r in rows if r["acceptable"]]
    if not good:
        return None
    cheapest = min(r["usd_per_million_mix"] for r in good)
    ties = [r for r in good if r["usd_per_million_mix"] <= cheapest * (1 + ACCEPTABLE["same_price_within"])]
    return min(ties, key=lambda r: (r["ms"]["seed"], r["memory_mb"]))


def memory_sizing(results: dict) -> dict:
    """Lambda memory that minimises cost at acceptable latency (see ACCEPTABLE), from the
    1-thread (one vCPU) and 2-thread figures of our ONNX path."""
    onnx = results["stacks"].get("onnx", {}).get("threads", {})
    if "1" not in onnx or "2" not in onnx:
        return {"skipped": "needs the onnx stack at 1 and 2 threads"}
    rie = results.get("lambda_rie", {}).get("onnx")
    init_ms = rie["init_ms"] if rie else results["stacks"]["onnx"]["cold_start"]["total_s"] * 1000
    need_mb = max(onnx["1"]["peak_rss_mb"], rie["runtime_rss_mb"] if rie else 0) * ACCEPTABLE["rss_headroom"]
    w1, w2 = _workload_ms(onnx["1"]), _workload_ms(onnx["2"])
    cold_fraction = cost.default_cold_fraction(1000)
    rows = [_size_row(m, w1, w2, init_ms, need_mb, cold_fraction) for m in MEMORY_SIZES]
    best = _recommend(rows)
    if best is None:
        return {"rows": rows, "recommended_mb": None, "note": "no size meets the latency/memory targets"}
    month = cost.monthly("x86_64", best["memory_mb"], 1000, init_ms, w1["seed"], cold_fraction, True, 0.0)
    return {
        "rows": rows,
        "recommended_mb": best["memory_mb"],
        "need_mb": need_mb,
        "init_ms_1vcpu": init_ms,
        "free_tier_covers_1000_per_day": month.compute_usd + month.requests_usd == 0,
        "cold_fraction": cold_fraction,
        "workloads_1_thread_ms": w1,
        "workloads_2_threads_ms": w2,
        "acceptable": ACCEPTABLE,
        "terraform_default_mb": 1769,
        "change_terraform_default": best["memory_mb"] != 1769,
    }
