"""Turns bench/bench.py's measurements into targets, a Lambda memory recommendation,
PNG charts and docs/benchmarks/README.md. Pure functions of the results dict."""

from __future__ import annotations

import math
from pathlib import Path

import bench_env
import cost

LABELS = {
    "onnx": "ours (ONNX)",
    "torch": "ours (torch)",
    "fastembed": "fastembed",
    "st": "sentence-transformers",
}
COLORS = {"onnx": "tab:blue", "torch": "tab:orange", "fastembed": "tab:green", "st": "tab:red"}
MEMORY_SIZES = (512, 768, 1024, 1536, 1769, 2048, 3008, 3538, 4096, 10240)
# What "acceptable" means for the memory recommendation (the seed's use: one text per call).
ACCEPTABLE = {
    "seed_warm_ms": 50.0,
    "cold_ms": 2000.0,
    "long_x32_ms": 25_000.0,
    "rss_headroom": 1.15,
    "same_price_within": 0.10,
}


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
    for entry in results["stacks"].values():
        for t, per_thread in entry["threads"].items():
            peak = results["matmul_peak"]["gflops"].get(t)
            for runs in per_thread["runs"].values():
                for rec in runs.values():
                    rec["peak_fraction"] = rec["gflops"] / peak if peak else None


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


def _run(results: dict, stack: str, threads: str, length: str, batch: str) -> dict | None:
    return (
        results["stacks"]
        .get(stack, {})
        .get("threads", {})
        .get(threads, {})
        .get("runs", {})
        .get(length, {})
        .get(batch)
    )


def _compare_batch(results: dict) -> str | None:
    batches = sorted(
        {
            int(b)
            for s in results["stacks"].values()
            for t in s["threads"].values()
            for b in t["runs"]["short"]
        }
    )
    return "32" if 32 in batches else (str(max(b for b in batches if b <= 32)) if batches else None)


def targets(results: dict) -> dict:
    stacks, out = results["stacks"], {}
    batch = out["compare_batch"] = _compare_batch(results)
    if "onnx" in stacks and "st" in stacks:
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
    for length in ("short", "long"):
        table = {}
        for t in map(str, results["threads"]):
            ours = _run(results, "onnx", t, length, batch)
            if not ours:
                continue
            row = {"onnx_texts_per_s": ours["texts_per_s"]}
            for peer in ("st", "torch", "fastembed"):
                theirs = _run(results, peer, t, length, batch)
                if theirs:
                    row[f"{peer}_texts_per_s"] = theirs["texts_per_s"]
                    row[f"ratio_vs_{peer}"] = ours["texts_per_s"] / theirs["texts_per_s"]
            if length == "short" and "ratio_vs_st" in row:
                row["target_vs_st"], row["met"] = ">= 1.5", row["ratio_vs_st"] >= 1.5
            table[t] = row
        out[f"{length}_throughput_b{batch}"] = table
    util = {}
    for t in map(str, results["threads"]):
        runs = stacks.get("onnx", {}).get("threads", {}).get(t, {}).get("runs", {}).get("long", {})
        if runs:
            b, best = max(runs.items(), key=lambda kv: kv[1]["gflops"])
            util[t] = {
                "batch": int(b),
                "gflops": best["gflops"],
                "tokens_per_s": best["tokens_per_s"],
                "peak_gflops": results["matmul_peak"]["gflops"].get(t),
                "fraction_of_peak": best["peak_fraction"],
            }
    out["flop_utilisation_long"] = util
    return out


def memory_sizing(results: dict) -> dict:
    """Lambda memory that minimises cost at acceptable latency (see ACCEPTABLE), from the
    1-thread (one vCPU) and 2-thread figures of our ONNX path."""
    onnx = results["stacks"].get("onnx", {}).get("threads", {})
    if "1" not in onnx or "2" not in onnx:
        return {"skipped": "needs the onnx stack at 1 and 2 threads"}
    rie = results.get("lambda_rie", {}).get("onnx")
    init_ms = rie["init_ms"] if rie else results["stacks"]["onnx"]["cold_start"]["total_s"] * 1000
    need_mb = max(onnx["1"]["peak_rss_mb"], rie["runtime_rss_mb"] if rie else 0) * ACCEPTABLE["rss_headroom"]

    def workload_ms(t: str) -> dict:
        r = onnx[t]["runs"]
        out = {"seed": r["short"]["1"]["mean_ms"], "long_x1": r["long"]["1"]["mean_ms"]}
        for length in ("short", "long"):
            big = str(max(int(b) for b in r[length] if int(b) <= 32))
            out[f"{length}_x{big}"] = r[length][big]["median_s"] * 1000
        return out

    w1, w2 = workload_ms("1"), workload_ms("2")
    cold_fraction = cost.default_cold_fraction(1000)
    price = cost.PRICES["lambda_gb_second"]["x86_64"]
    req = cost.PRICES["lambda_requests_per_million"] / 1e6
    rows = []
    for m in MEMORY_SIZES:
        scale = max(1.0, cost.ONE_VCPU_MB / m)
        # two vCPUs: the better of the two measurements (one would configure the faster)
        ms = (
            {k: v * scale for k, v in w1.items()}
            if m < 2 * cost.ONE_VCPU_MB
            else {k: min(w1[k], w2[k]) for k in w1}
        )
        init = init_ms * scale
        warm_usd = m / 1024 * math.ceil(ms["seed"]) / 1000 * price + req
        cold_usd = m / 1024 * math.ceil(init + ms["seed"]) / 1000 * price + req
        long_key = next(k for k in ms if k.startswith("long_x") and k != "long_x1")
        ok = {
            "fits": need_mb <= m,
            "seed_warm": ms["seed"] <= ACCEPTABLE["seed_warm_ms"],
            "cold": init + ms["seed"] <= ACCEPTABLE["cold_ms"],
            "long_batch": ms[long_key] <= ACCEPTABLE["long_x32_ms"],
        }
        rows.append(
            {
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
        )
    good = [r for r in rows if r["acceptable"]]
    if not good:
        return {"rows": rows, "recommended_mb": None, "note": "no size meets the latency/memory targets"}
    cheapest = min(r["usd_per_million_mix"] for r in good)
    # Within 10% of the cheapest counts as the same price (the CPU-share model and the 1 ms
    # billing granularity are not more precise than that); among those, the fastest wins.
    ties = [r for r in good if r["usd_per_million_mix"] <= cheapest * (1 + ACCEPTABLE["same_price_within"])]
    best = min(ties, key=lambda r: (r["ms"]["seed"], r["memory_mb"]))
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


# ---------------------------------------------------------------------------------------------
def charts(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (used as matplotlib.ticker)

    files = []
    stacks = results["stacks"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, length in zip(axes, ("short", "long")):
        for stack, entry in stacks.items():
            for t, style in (("1", "--"), ("2", "-")):
                runs = entry["threads"].get(t, {}).get("runs", {}).get(length, {})
                if runs:
                    xs = sorted(map(int, runs))
                    ax.plot(
                        xs,
                        [runs[str(x)]["texts_per_s"] for x in xs],
                        style,
                        marker="o",
                        markerfacecolor="white" if t == "1" else COLORS[stack],
                        color=COLORS[stack],
                        label=f"{LABELS[stack]}, {t} thread{'s' if t == '2' else ''}",
                    )
        c = results["corpus"][length]
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="texts per call (batch)",
            ylabel="texts/s",
            title=f"{length} texts (mean {c['mean_tokens']:.0f} tokens)",
        )
        ax.set_xticks(results["config"]["batches"], [str(b) for b in results["config"]["batches"]])
        ax.grid(True, which="both", alpha=0.3)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(
            matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")
        )
    axes[0].legend(fontsize=7, title="dashed/open: 1 thread; solid/filled: 2 threads", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)
    files.append("throughput.png")

    fig, ax = plt.subplots(figsize=(10, 3.8))
    names, parts, totals = [], [], []
    for stack, entry in stacks.items():
        c = entry.get("cold_start")
        if c:
            names.append(LABELS[stack])
            parts.append([c["interpreter_s"], c["import_s"], c["load_s"], c["first_embed_s"]])
            totals.append(c["total_s"])  # the median of the totals (phases are medians too)
    for backend, rie in results.get("lambda_rie", {}).items():
        names.append(f"Lambda init + first invoke, RIE ({backend})")
        parts.append([0, 0, rie["init_ms"] / 1000, rie["first_invoke_ms"] / 1000])
        totals.append(sum(parts[-1]))
    left = [0.0] * len(names)
    for i, (label, color) in enumerate(
        zip(
            ("python start", "imports", "model load", "first embedding"),
            ("0.7", "tab:purple", "tab:cyan", "tab:olive"),
        )
    ):
        vals = [p[i] for p in parts]
        ax.barh(names, vals, left=left, color=color, label=label)
        left = [a + b for a, b in zip(left, vals)]
    for y, (end, total) in enumerate(zip(left, totals)):
        ax.text(end, y, f" {total:.2f} s", va="center", fontsize=8)
    ax.set(
        xlabel="seconds, fresh process to first embedding (one CPU; median)",
        title="Cold start",
        xlim=(0, max(left + [0.1]) * 1.18),
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out / "cold_start.png", dpi=110)
    plt.close(fig)
    files.append("cold_start.png")

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, length in zip(axes, ("short", "long")):
        labels, width = list(stacks), 0.2
        for k, (t, q) in enumerate((("1", "p50_ms"), ("1", "p99_ms"), ("2", "p50_ms"), ("2", "p99_ms"))):
            vals = [(_run(results, s, t, length, "1") or {}).get(q, 0) for s in labels]
            ax.bar(
                [i + (k - 1.5) * width for i in range(len(labels))],
                vals,
                width,
                label=f"{q[:3]}, {t} thread{'s' if t == '2' else ''}",
                alpha=0.55 if "p99" in q else 1,
                color="tab:blue" if t == "1" else "tab:orange",
            )
        ax.set_xticks(range(len(labels)), [LABELS[s] for s in labels], fontsize=8)
        ax.set(ylabel="ms", title=f"single-text latency, {length} text")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    files.append("latency.png")
    return files


# ---------------------------------------------------------------------------------------------
def _f(x, digits=1) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


FAILS = {
    "fits": "peak RSS does not fit",
    "seed_warm": "seed request too slow",
    "cold": "cold start too slow",
    "long_batch": "32 passages too slow",
}
NOISY = 0.10  # other processes' share of the machine above which a row is flagged


def _th(entry: dict, th: str) -> str:
    """The thread column, with a dagger when other processes were busy during that worker."""
    share = entry["threads"][th].get("interference", {}).get("other_share")
    return f"{th} †{100 * share:.0f}%" if share is not None and share > NOISY else th


def _noise_note(stacks: dict) -> str:
    flagged = any(
        (x.get("interference", {}).get("other_share") or 0) > NOISY
        for e in stacks.values()
        for x in e["threads"].values()
    )
    return (
        f"\n† other processes used that share of the machine's CPU while the row ran (> {100 * NOISY:.0f}%): "
        "its numbers are disturbed, most of all for 2 threads (a 2-thread runtime on 2 busy cores waits "
        "for its descheduled thread). Rerun on a quiet machine before quoting them.\n"
        if flagged
        else ""
    )


def headline(results: dict) -> list[str]:
    t, lines = results["targets"], []
    if "cold_start_vs_seed" in t:
        c = t["cold_start_vs_seed"]
        lines.append(
            f"cold start: ours {c['ours_s']:.2f} s vs seed stack {c['seed_s']:.2f} s = "
            f"{c['ratio']:.3f}x (target <= 0.10: {'met' if c['met'] else 'NOT met'})"
        )
    for th, row in t.get(f"short_throughput_b{t['compare_batch']}", {}).items():
        parts = [f"{row[k]:.2f}x vs {k[9:]}" for k in row if k.startswith("ratio_vs_")]
        met = "" if "met" not in row else f" (target >= 1.5x vs st: {'met' if row['met'] else 'NOT met'})"
        lines.append(
            f"short b={t['compare_batch']} t={th}: ours {row['onnx_texts_per_s']:.0f} texts/s"
            + "".join(", " + p for p in parts)
            + met
        )
    for th, u in t.get("flop_utilisation_long", {}).items():
        lines.append(
            f"long texts t={th}: {u['gflops']:.1f} GFLOP/s useful = "
            f"{100 * (u['fraction_of_peak'] or 0):.0f}% "
            f"of the {u['peak_gflops']} GFLOP/s matmul peak"
        )
    ms = results.get("memory_sizing", {})
    if ms.get("recommended_mb"):
        lines.append(
            f"Lambda memory: {ms['recommended_mb']} MB recommended (terraform default 1769: "
            f"{'change it' if ms['change_terraform_default'] else 'keep it'})"
        )
    return lines


def markdown(results: dict, charts_: list[str]) -> str:
    m, stacks, t = results["machine"], results["stacks"], results["targets"]
    L = []
    w = L.append
    w("# Benchmarks\n")
    w(
        f"Generated by `{results['command']}` on {m['date']} in {results['duration_s']:.0f} s"
        f"{' (**quick mode**: few repetitions, small sizes; not for quoting)' if results['quick'] else ''}. "
        "Every number below comes from that one run on one machine, same texts for every stack; "
        "raw data in [results.json](results.json).\n"
    )
    w("## Machine\n")
    w(
        f"- CPU: {m['cpu_model']} ({m['cpu_vendor']}, {m['cpu_family_model']}"
        f"{', ' + m['cpu_generation'] if m['cpu_generation'] else ''}), {m['logical_cpus']} vCPUs"
        f"{' under a hypervisor' if m['hypervisor'] else ''}; SIMD: {', '.join(m['cpu_flags_of_note'])}"
    )
    w(
        f"- Clock reported {m['cpu_mhz_reported']} MHz (boost may be higher), L3 {m['l3_cache']}; nominal "
        f"fp32 "
        f"peak {m['nominal_fp32_gflops_per_core']} GFLOP/s per core at that clock (FMA throughput x clock)"
    )
    w(f"- Memory: {m['memory_gb']} GB; OS: {m['os']}; Python {m['python']}")
    inter = results.get("interference", {})
    w(
        f"- Load average when the run started: {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}"
        + (
            f"; other processes used **{100 * inter['other_share']:.0f}%** of the machine's CPU time "
            f"during the run "
            f"(hypervisor steal {100 * (inter['steal_share'] or 0):.0f}%)"
            if inter.get("other_share") is not None
            else ""
        )
    )
    w("- Packages: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    mp = results["matmul_peak"]
    w(
        f"- fp32 matmul peak: "
        f"{', '.join(f'{v} GFLOP/s with {k} thread(s)' for k, v in mp['gflops'].items())} "
        f"({mp['method']}; BLAS {mp['blas'][0]['internal_api'] if mp['blas'] else '?'} "
        f"{mp['blas'][0]['version'] if mp['blas'] else ''}, kernel "
        f"{mp['blas'][0]['architecture'] if mp['blas'] else '?'}; "
        f"OPENBLAS_CORETYPE={mp['openblas_coretype_env'] or 'unset'})"
    )
    g = results["gpu"]
    w(f"- GPU: {g['name'] if g.get('available') else g.get('note', 'none')}\n")
    w(
        "Reproduce: `make bench` (= `.venv/bin/python bench/bench.py`); options `--quick`, `--skip-sizes`, "
        "`--stacks onnx,torch,fastembed,st`, `--out DIR`.\n"
    )

    w("## Stacks\n")
    for s, e in stacks.items():
        w(f"- **{LABELS[s]}** (`{s}`): {e['description']}")
    c = results["corpus"]
    w(
        f"\nTexts: {c['short']['count']} short ({c['short']['source']}, {c['short']['mean_tokens']:.1f} "
        f"tokens "
        f"on average, {c['short']['min_tokens']}-{c['short']['max_tokens']}) and {c['long']['count']} long "
        f"({c['long']['source']}, truncated at 256: {c['long']['mean_tokens']:.1f} tokens on average). "
        "Token counts include [CLS]/[SEP]. Each stack runs in a fresh process per thread count, pinned "
        "to that many CPUs, with each library's own defaults for internal batching (ours and "
        "sentence-transformers: 32, fastembed: 256).\n"
    )

    if any(k in t for k in ("cold_start_vs_seed", "lambda_init_vs_seed_cold_start")) or any(
        k.startswith("ratio_vs_")
        for rows in (
            t.get(f"short_throughput_b{t['compare_batch']}", {}),
            t.get(f"long_throughput_b{t['compare_batch']}", {}),
        )
        for row in rows.values()
        for k in row
    ):
        w("## Targets\n")
        w("| target | measured | goal | |\n|---|---:|---:|---|")
        if "cold_start_vs_seed" in t:
            x = t["cold_start_vs_seed"]
            w(
                f"| cold start, ours / seed stack (sentence-transformers + torch) | {x['ours_s']:.2f} s / "
                f"{x['seed_s']:.2f} s = **{x['ratio']:.3f}** | <= 0.10 | "
                f"{'met' if x['met'] else '**not met**'} |"
            )
        if "lambda_init_vs_seed_cold_start" in t:
            x = t["lambda_init_vs_seed_cold_start"]
            w(
                f"| Lambda init under the RIE (ours) / seed cold start | {x['ours_init_s']:.2f} s / "
                f"{x['seed_s']:.2f} s "
                f"= {x['ratio']:.3f} | | |"
            )
        b = t["compare_batch"]
        for th, row in t.get(f"short_throughput_b{b}", {}).items():
            if "ratio_vs_st" in row:
                w(
                    f"| short texts, batch {b}, {th} thread(s): ours / seed stack | "
                    f"{row['onnx_texts_per_s']:.0f} / "
                    f"{row['st_texts_per_s']:.0f} texts/s = **{row['ratio_vs_st']:.2f}x** | >= 1.5x | "
                    f"{'met' if row['met'] else '**not met**'} |"
                )
            if "ratio_vs_fastembed" in row:
                w(
                    f"| short texts, batch {b}, {th} thread(s): ours / fastembed (same model file) | "
                    f"{row['onnx_texts_per_s']:.0f} / {row['fastembed_texts_per_s']:.0f} texts/s = "
                    f"{row['ratio_vs_fastembed']:.2f}x | | |"
                )
        for th, row in t.get(f"long_throughput_b{b}", {}).items():
            peers = [f"{row[k]:.2f}x vs {LABELS[k[9:]]}" for k in row if k.startswith("ratio_vs_")]
            if peers:
                w(
                    f"| long texts, batch {b}, {th} thread(s): ours {row['onnx_texts_per_s']:.1f} texts/s | "
                    f"{', '.join(peers)} | | |"
                )
        w("")

    w("## Throughput (texts/s and tokens/s; median of repetitions)\n")
    if "throughput.png" in charts_:
        w("![throughput](throughput.png)\n")
    batches = results["config"]["batches"]
    for length in ("short", "long"):
        w(f"**{length} texts**\n")
        w(
            "| stack | threads | "
            + " | ".join(f"b={b}" for b in batches)
            + " | tokens/s at b="
            + str(batches[-1])
            + " |"
        )
        w("|---|---:|" + "---:|" * (len(batches) + 1))
        for s in stacks:
            for th in stacks[s]["threads"]:
                runs = stacks[s]["threads"][th]["runs"][length]
                cells = [_f(runs[str(b)]["texts_per_s"]) if str(b) in runs else "–" for b in batches]
                last = runs.get(str(max(int(x) for x in runs))) if runs else None
                w(
                    f"| {LABELS[s]} | {_th(stacks[s], th)} | "
                    + " | ".join(cells)
                    + f" | {_f(last and last['tokens_per_s'], 0)} |"
                )
        pad = results["corpus"][length].get("padded_per_real_token", {})
        if pad:
            w(
                "\nTokens computed per real token with 32-text sub-batches padded to their longest (ours, "
                "sentence-transformers): " + ", ".join(f"b={b}: {v:.2f}" for b, v in pad.items()) + "."
            )
        w("")
    w(
        "Repetitions per cell: batch 1 = a latency loop (one text per call, cycling through the texts; "
        "texts/s = calls / total time); larger batches = median of up to "
        f"{results['config']['reps']['max_reps']} timed calls after a warm-up call (long batches that take "
        "more than a few seconds get fewer repetitions, down to one; see `reps` in results.json).\n"
        + _noise_note(stacks)
    )

    w("## Single-text latency (ms)\n")
    if "latency.png" in charts_:
        w("![latency](latency.png)\n")
    w("| stack | threads | short p50 | short p99 | long p50 | long p99 |\n|---|---:|---:|---:|---:|---:|")
    for s in stacks:
        for th in stacks[s]["threads"]:
            r = stacks[s]["threads"][th]["runs"]
            sh, lo = r["short"].get("1", {}), r["long"].get("1", {})
            w(
                f"| {LABELS[s]} | {_th(stacks[s], th)} | {_f(sh.get('p50_ms'))} | {_f(sh.get('p99_ms'))} | "
                f"{_f(lo.get('p50_ms'))} | "
                f"{_f(lo.get('p99_ms'))} |"
            )
    calls = results["config"]["latency_calls"]
    w(
        f"\n{calls['short']} calls for short texts, {calls['long']} for long (so the long p99 is close to "
        f"the maximum).\n"
    )

    w("## Cold start, memory, fidelity, size\n")
    if "cold_start.png" in charts_:
        w("![cold start](cold_start.png)\n")
    w(
        "| stack | cold start (s) | import | load | first embedding | peak RSS 1 thread (MB) | peak RSS 2 "
        "threads (MB) "
        "| RSS after load (MB) | min cosine vs sentence-transformers | installed deps (MB) |"
    )
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s, e in stacks.items():
        c = e.get("cold_start", {})
        t1, t2 = e["threads"].get("1", {}), e["threads"].get("2", {})
        w(
            f"| {LABELS[s]} | **{_f(c.get('total_s'), 2)}** "
            f"({_f(c.get('min_s'), 2)}-{_f(c.get('max_s'), 2)}) | "
            f"{_f(c.get('import_s'), 2)} | {_f(c.get('load_s'), 2)} | "
            f"{_f(c.get('first_embed_s', 0) * 1000, 0)} ms | "
            f"{_f(t1.get('peak_rss_mb'), 0)} | {_f(t2.get('peak_rss_mb'), 0)} | "
            f"{_f(t1.get('rss_after_load_mb'), 0)} | "
            f"{e.get('fidelity_min_cosine', float('nan')):.7f} | {_f(e.get('installed_mb'))} |"
        )
    runs = next(iter(stacks.values()))["cold_start"]["runs"] if stacks else 0
    w(
        '\nCold start: a fresh `python -c` process from exec to the first embedding of "hello, world!", '
        f"pinned to one CPU (`taskset -c 0`, like Lambda at 1,769 MB), median of {runs} runs "
        "(range in brackets); files "
        'are in the page cache (a real cold start also pulls the image). "import" is the first `import` '
        "line, "
        '"load" the model (ours includes importing onnxruntime/torch and a warm-up call). Peak RSS is the '
        "worker's maximum over every batch, long texts included. Fidelity: minimum cosine similarity with "
        "sentence-transformers over every benchmark text (short and long), over both thread counts.\n"
    )
    sizes = results.get("installed_sizes", {})
    if sizes and not sizes.get("skipped"):
        w(
            "Installed size of each target's Python dependencies (`pip install --target`, Python "
            f"{m['python']}, MB = 10^6 bytes; cached in `.tools/bench-sizes/`):\n"
        )
        w("| target | MB | largest packages |\n|---|---:|---|")
        for name, x in sizes.items():
            if "mb" in x:
                w(
                    f"| {x['label']} | {x['mb']:.1f} | "
                    + ", ".join(f"{k} {v:.0f}" for k, v in x["largest"].items())
                    + " |"
                )
            else:
                w(f"| {x['label']} | failed | {x.get('error', '')[:100]} |")
        w("")

    if "flop_utilisation_long" in t and t["flop_utilisation_long"]:
        f = results["model_flops"]
        w("## How close to the FLOP limit\n")
        w(
            f"The encoder does {f['linear_flops_per_token'] / 1e6:.1f} MFLOP per token in its linear layers "
            f"({f['layers']} layers, hidden {f['hidden']}, intermediate {f['intermediate']}: "
            f"{f['layers']} x (8h^2 + 4hi)) plus {f['attention_flops_per_token_per_position']:,} FLOP per "
            f"token per "
            f"attended position (4hL per layer), {f['flops_per_token_at_256'] / 1e6:.1f} MFLOP per token "
            f"at 256 "
            "tokens. Useful FLOP/s counts only real tokens (padding is waste), for long texts:\n"
        )
        nominal = m.get("nominal_fp32_gflops_per_core")
        w(
            "| threads | best batch | tokens/s | useful GFLOP/s | numpy matmul peak GFLOP/s | fraction of "
            "matmul peak "
            "| fraction of nominal peak |\n|---:|---:|---:|---:|---:|---:|---:|"
        )
        for th, u in t["flop_utilisation_long"].items():
            nom = f"{100 * u['gflops'] / (nominal * int(th)):.0f}%" if nominal else "–"
            w(
                f"| {th} | {u['batch']} | {u['tokens_per_s']:,.0f} | {u['gflops']:.1f} | "
                f"{u['peak_gflops']} | "
                f"**{100 * (u['fraction_of_peak'] or 0):.0f}%** | {nom} |"
            )
        w(
            "\nThe nominal peak is FMA throughput x the reported clock per core; boost clocks can exceed it. "
            "onnxruntime's own matmul kernels may beat numpy's OpenBLAS, so more than 100% of the matmul "
            "peak "
            "is possible, as is a disturbed peak measurement on a busy machine.\n"
        )

    rie = results.get("lambda_rie", {})
    if rie:
        w("## Lambda handler under the real Runtime Interface Emulator\n")
        w(
            "| backend | init (INIT REPORT) | first invoke | first REPORT Duration | warm invoke (median) | "
            "32 short texts | 1 passage | 32 passages | runtime RSS "
            "|\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        )
        for backend, x in rie.items():
            bi = x["batch_invoke_ms"]
            w(
                f"| {backend} | **{x['init_ms']:.0f} ms** | {x['first_invoke_ms']:.1f} ms | "
                f"{x['first_report_duration_ms']:.0f} ms | "
                f"**{x['warm_invoke_ms']:.1f} ms** | "
                + " | ".join(f"{v:.0f} ms" for v in bi.values())
                + f" | {x['runtime_rss_mb']:.0f} MB |"
            )
        w(
            f"\n`.tools/aws-lambda-rie ... python -m awslambdaric lambda_function.handler`, pinned to one "
            f"CPU, "
            f"median of {', '.join(str(x['runs']) + ' (' + b + ')' for b, x in rie.items())} fresh starts; "
            f"each sends the seed's direct invocation "
            '`{"input": "hello, world!"}` once cold and then warm. Init is the RIE\'s '
            "`INIT REPORT(durationMs)` "
            "(imports + model load + warm-up); in the RIE the first REPORT's `Duration` includes the init "
            "and its "
            "`Init Duration` is meaningless, so the first invoke is the `INVOKE RTDONE` duration. Batch "
            "columns: "
            "warm invocations with that many texts. RSS: the runtime process (the RIE's `Max Memory Used` "
            "is not "
            "measured).\n"
        )

    db = results.get("dynamic_batching")
    if db:
        w("## Dynamic batching (FastAPI target)\n")
        w(
            f"uvicorn with EMBEDDING_THREADS=2, {db['clients']} concurrent async clients on loopback each "
            f"sending one "
            f"short text per `POST /`, for {db['seconds']:.0f} s; {db['note']}.\n"
        )
        w(
            "| mode | texts/s | p50 ms | p99 ms | model calls | mean texts per model call | errors |\n"
            "|---|---:|---:|---:|---:|---:|---|"
        )
        for name in ("no_batching", "dynamic_batching"):
            x = db[name]
            w(
                f"| {name.replace('_', ' ')} ({', '.join(f'{k}={v}' for k, v in x['env'].items())}) | "
                f"{x['texts_per_s']:.0f} | {_f(x['p50_ms'])} | {_f(x['p99_ms'])} | {x['model_calls']} | "
                f"{_f(x['mean_batch'])} | {x['errors'] or 'none'} |"
            )
        w(f"\nDynamic batching: **{db['speedup']:.2f}x** the throughput.\n")

    ms = results.get("memory_sizing", {})
    if ms.get("rows"):
        a = ms["acceptable"]
        w("## Lambda memory size\n")
        w(
            "Lambda gives CPU in proportion to memory (1,769 MB = one vCPU). Model: a duration measured on "
            "one "
            "thread/CPU scales by 1769/M below 1,769 MB; from 1,769 to 3,537 MB we keep the one-thread "
            "figure; "
            "from 3,538 MB (two vCPUs) the two-thread figure. Costs are x86_64 list prices without the "
            "free tier; "
            f"the mix assumes a cold fraction of {ms['cold_fraction']:.3f} (1,000 calls/day, see "
            f"`bench/cost.py`). "
            f"Acceptable: seed request warm <= {a['seed_warm_ms']:.0f} ms, cold start (init + first call) <= "
            f"{a['cold_ms'] / 1000:.0f} s, 32 passages <= {a['long_x32_ms'] / 1000:.0f} s (under the 30 s "
            f"timeout), "
            f"and peak RSS x {a['rss_headroom']} <= memory (needs {ms.get('need_mb', 0):.0f} MB). Sizes "
            f"within "
            f"{100 * a['same_price_within']:.0f}% of the cheapest mix count as the same price; the fastest "
            f"of them "
            "is recommended.\n"
        )
        keys = list(ms["rows"][0]["ms"])
        w(
            "| memory MB | vCPU | "
            + " | ".join(f"{k} ms" for k in keys)
            + " | init ms | $/1M warm | $/1M cold | "
            "$/1M mix | acceptable |"
        )
        w("|---:|---:|" + "---:|" * (len(keys) + 4) + "---|")
        for r in ms["rows"]:
            fails = [k for k, v in r["checks"].items() if not v]
            mark = (
                "**yes (recommended)**"
                if r["memory_mb"] == ms["recommended_mb"]
                else ("yes" if r["acceptable"] else "no: " + ", ".join(FAILS[k] for k in fails))
            )
            w(
                f"| {r['memory_mb']} | {r['vcpu']} | "
                + " | ".join(f"{r['ms'][k]:.1f}" for k in keys)
                + f" | {r['init_ms']:.0f} | {r['usd_per_million_warm']:.2f} | "
                f"{r['usd_per_million_cold']:.2f} | "
                f"{r['usd_per_million_mix']:.2f} | {mark} |"
            )
        if ms.get("recommended_mb"):
            change = ms["change_terraform_default"]
            w1, w2 = ms["workloads_1_thread_ms"], ms["workloads_2_threads_ms"]
            speedup = {k: w1[k] / w2[k] for k in w1 if w2.get(k)}
            why = (
                "Below 1,769 MB the cost per call stays the same (less memory, proportionally longer) while "
                "latency and cold start grow; between 1,769 and 3,537 MB the single-threaded work gets no "
                "faster, so the extra memory is paid for without return; from two full vCPUs the measured "
                "two-thread speed-up ("
                + ", ".join(f"{k} {v:.2f}x" for k, v in speedup.items())
                + ") does not make up for the doubled price per second. "
                if ms["recommended_mb"] == cost.ONE_VCPU_MB
                else "It is the fastest size whose cost is within the tolerance of the cheapest. "
            )
            free = (
                "At 1,000 calls a day the Lambda compute and requests fit in the free tier (`make cost`).\n"
                if ms.get("free_tier_covers_1000_per_day")
                else "See `make cost` for monthly figures.\n"
            )
            w(
                f"\n**Recommendation: {ms['recommended_mb']} MB** ({'change' if change else 'keep'} "
                f"terraform's `memory_size` default of 1769). " + why + free
            )
    w("## Notes\n")
    w(
        "- One machine, one run: other processes on a shared machine add noise; compare stacks within the "
        "run, "
        "not across runs or machines."
    )
    w(
        "- fastembed reads its maximum length (512) from tokenizer_config.json; the model is trained for 256 "
        "(sentence_bert_config.json), so the benchmark sets fastembed's tokenizer to truncate at 256."
    )
    w(
        "- The torch backend also runs on CUDA (`EMBEDDING_DEVICE=cuda`); the GPU line above says whether "
        "this "
        "run could measure it."
    )
    return "\n".join(L) + "\n"
