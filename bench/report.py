"""docs/benchmarks/README.md from the results dict: the prose lives in templates/report.md (one
string.Template per section); this module computes the values and renders the tables."""

from __future__ import annotations

import bench_env
import peak
from analysis import run_of
from bench_worker import LABELS, PRECISION, STACKS
from lambda_cost import ONE_VCPU_MB
from pages import TEMPLATES, Sections, document, met, num, table

TEMPLATE = TEMPLATES / "report.md"
NOISY = 0.10  # other processes' share of the machine above which a row is flagged
FAILS = {
    "fits": "peak RSS does not fit",
    "seed_warm": "seed request too slow",
    "cold": "cold start too slow",
    "long_batch": "32 passages too slow",
}
COLD_HEADER = (
    "stack|cold start (s)|import|load|first embedding|peak RSS 1 thread (MB)|"
    "peak RSS 2 threads (MB)|RSS after load (MB)|min cosine vs sentence-transformers|"
    "installed deps (MB)"
).split("|")
FLOPS_HEADER = "threads|best batch|tokens/s|useful GFLOP/s|fp32 peak GFLOP/s|fraction of peak".split("|")
RIE_HEADER = (
    "backend|init (INIT REPORT)|first invoke|first REPORT Duration|warm invoke (median)|"
    "32 short texts|1 passage|32 passages|runtime RSS"
).split("|")


def _chart(charts: list[str], name: str, alt: str) -> str:
    return f"![{alt}]({name})" if name in charts else ""


def _thread_cell(entry: dict, th: str) -> str:
    """The thread column, with a dagger when other processes were busy during that worker."""
    share = entry["threads"][th].get("interference", {}).get("other_share")
    return f"{th} †{100 * share:.0f}%" if share is not None and share > NOISY else th


# ---- sections ------------------------------------------------------------------------------------
def header(s: Sections, results: dict) -> str:
    quick = " (**quick mode**: few repetitions, small sizes; not for quoting)" if results["quick"] else ""
    return s("header", command=results["command"], date=results["machine"]["date"],
             duration=f"{results['duration_s']:.0f}", quick_note=quick)


def _interference(results: dict) -> str:
    inter = results.get("interference", {})
    if inter.get("other_share") is None:
        return ""
    return (
        f"; other processes used **{100 * inter['other_share']:.0f}%** of the machine's CPU time "
        f"during the run (hypervisor steal {100 * (inter['steal_share'] or 0):.0f}%)"
    )


def _peak_line(mp: dict) -> str:
    by_threads = ", ".join(f"{peak.describe(mp, t)} with {t} thread(s)" for t in mp["gflops"])
    return f"{by_threads}; the method is under [How close to the FLOP limit](#how-close-to-the-flop-limit)"


def machine(s: Sections, results: dict) -> str:
    m, g = results["machine"], results["gpu"]
    return s(
        "machine",
        cpu=f"{m['cpu_model']} ({m['cpu_vendor']}, {m['cpu_family_model']}"
        f"{', ' + m['cpu_generation'] if m['cpu_generation'] else ''})",
        logical_cpus=m["logical_cpus"], hypervisor=" under a hypervisor" if m["hypervisor"] else "",
        simd=", ".join(m["cpu_flags_of_note"]), mhz=m["cpu_mhz_reported"], l3=m["l3_cache"],
        nominal=m["nominal_fp32_gflops_per_core"], memory_gb=m["memory_gb"], os=m["os"], python=m["python"],
        load=", ".join(f"{x:.2f}" for x in m["load_average_at_start"]), interference=_interference(results),
        packages=", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        peak=_peak_line(results["fp32_peak"]),
        gpu=g["name"] if g.get("available") else g.get("note", "none"), stack_names=",".join(STACKS),
    )


def stacks(s: Sections, results: dict) -> str:
    c = results["corpus"]
    return s(
        "stacks",
        stack_list="\n".join(
            f"- **{LABELS[k]}** (`{k}`): {e['description']}" for k, e in results["stacks"].items()
        ),
        skipped="\n".join(
            s("skipped", label=LABELS[k], stack=k, why=why)
            for k, why in results.get("skipped_stacks", {}).items()
        ),
        short_count=c["short"]["count"], short_source=c["short"]["source"],
        short_mean=f"{c['short']['mean_tokens']:.1f}",
        short_range=f"{c['short']['min_tokens']}-{c['short']['max_tokens']}",
        long_count=c["long"]["count"], long_source=c["long"]["source"],
        long_mean=f"{c['long']['mean_tokens']:.1f}",
    )


def _target_rows(results: dict) -> list[list]:
    """The targets table: [what, measured, goal, met] rows, in the page's order."""
    t, b, rows = results["targets"], results["targets"]["compare_batch"], []
    if x := t.get("cold_start_vs_seed"):
        rows.append(["cold start, ours / seed stack (sentence-transformers + torch)",
                     f"{x['ours_s']:.2f} s / {x['seed_s']:.2f} s = **{x['ratio']:.3f}**", "<= 0.10",
                     met(x["met"])])
    if x := t.get("lambda_init_vs_seed_cold_start"):
        rows.append(["Lambda init under the RIE (ours) / seed cold start",
                     f"{x['ours_init_s']:.2f} s / {x['seed_s']:.2f} s = {x['ratio']:.3f}", "", ""])
    for th, row in t.get(f"short_throughput_b{b}", {}).items():
        peers = (("st", "seed stack", ">= 1.5x"), ("fastembed", "fastembed (same model file)", ""))
        for peer, name, goal in peers:
            if f"ratio_vs_{peer}" in row:
                ratio = f"{row[f'ratio_vs_{peer}']:.2f}x"
                rows.append([f"short texts, batch {b}, {th} thread(s): ours / {name}",
                             f"{row['onnx_texts_per_s']:.0f} / {row[f'{peer}_texts_per_s']:.0f} texts/s = "
                             + (f"**{ratio}**" if goal else ratio), goal, met(row["met"]) if goal else ""])
    for th, row in t.get(f"long_throughput_b{b}", {}).items():
        if peers := [f"{row[k]:.2f}x vs {LABELS[k[9:]]}" for k in row if k.startswith("ratio_vs_")]:
            rows.append([f"long texts, batch {b}, {th} thread(s): ours {row['onnx_texts_per_s']:.1f} texts/s",
                         ", ".join(peers), "", ""])
    if "int8" in results.get("skipped_stacks", {}):
        why = results["skipped_stacks"]["int8"]
        rows.append(["passages: int8 / fp32", f"not measured: {why}", ">= 1.6x", ""])
    for length, what in (("long", "passages"), ("short", "short texts")):
        for th, row in t.get("int8_vs_fp32", {}).get(length, {}).items():
            ratio = f"{row['ratio']:.2f}x"
            rows.append([f"{what}, batch {row['batch']}, {th} thread(s): int8 / fp32",
                         f"{row['int8_texts_per_s']:.1f} / {row['fp32_texts_per_s']:.1f} texts/s = "
                         + (f"**{ratio}**" if "met" in row else ratio),
                         f"{row['target']}x" if "target" in row else "",
                         met(row["met"]) if "met" in row else ""])
    if x := t.get("fp32_fidelity"):
        rows.append(["fp32 (ours, ONNX) unchanged: min cosine vs sentence-transformers, every text",
                     f"{x['min_cosine']:.7f}", "> 0.9999", met(x["met"])])
    return rows


def targets(s: Sections, results: dict) -> str:
    rows = _target_rows(results)
    return s("targets", table=table(["target", "measured", "goal", ""], "lrrl", rows)) if rows else ""


def _throughput_table(results: dict, length: str) -> str:
    batches, rows = results["config"]["batches"], []
    for k, entry in results["stacks"].items():
        for th, per_thread in entry["threads"].items():
            runs = per_thread["runs"][length]
            cells = [num(runs[str(b)]["texts_per_s"]) if str(b) in runs else "–" for b in batches]
            last = runs.get(str(max(int(x) for x in runs))) if runs else None
            rows.append([LABELS[k], _thread_cell(entry, th), *cells, num(last and last["tokens_per_s"], 0)])
    header = ["stack", "threads", *(f"b={b}" for b in batches), f"tokens/s at b={batches[-1]}"]
    return table(header, "lr" + "r" * (len(batches) + 1), rows)


def _noise_note(s: Sections, results: dict) -> str:
    flagged = any(
        (x.get("interference", {}).get("other_share") or 0) > NOISY
        for e in results["stacks"].values()
        for x in e["threads"].values()
    )
    return s("noise", noisy=f"{100 * NOISY:.0f}") if flagged else ""


def throughput(s: Sections, results: dict, charts: list[str]) -> str:
    tables = []
    for length in ("short", "long"):
        pad = results["corpus"][length].get("padded_per_real_token", {})
        padding = s("padding", padding=", ".join(f"b={b}: {v:.2f}" for b, v in pad.items())) if pad else ""
        tables.append(
            s("throughput_length", length=length, table=_throughput_table(results, length), padding=padding)
        )
    return s(
        "throughput",
        chart=_chart(charts, "throughput.png", "throughput"),
        tables="\n\n".join(tables),
        max_reps=results["config"]["reps"]["max_reps"],
        noise_note=_noise_note(s, results),
    )


def latency(s: Sections, results: dict, charts: list[str]) -> str:
    rows = []
    for k, entry in results["stacks"].items():
        for th in entry["threads"]:
            sh, lo = (run_of(results, k, th, length, "1") or {} for length in ("short", "long"))
            cells = [num(x.get(q)) for x in (sh, lo) for q in ("p50_ms", "p99_ms")]
            rows.append([LABELS[k], _thread_cell(entry, th), *cells])
    header = ["stack", "threads", "short p50", "short p99", "long p50", "long p99"]
    calls = results["config"]["latency_calls"]
    return s("latency", chart=_chart(charts, "latency.png", "latency"), table=table(header, "lrrrrr", rows),
             short_calls=calls["short"], long_calls=calls["long"])


def _fidelity_cell(k: str, e: dict) -> str:
    cosine = f"{e.get('fidelity_min_cosine', float('nan')):.7f}"
    return f"{cosine} (economy path: ranking quality by `make bench-quality`)" if k in PRECISION else cosine


def _cold_row(k: str, e: dict) -> list:
    c = e.get("cold_start", {})
    t1, t2 = e["threads"].get("1", {}), e["threads"].get("2", {})
    return [
        LABELS[k], f"**{num(c.get('total_s'), 2)}** ({num(c.get('min_s'), 2)}-{num(c.get('max_s'), 2)})",
        num(c.get("import_s"), 2), num(c.get("load_s"), 2), f"{num(c.get('first_embed_s', 0) * 1000, 0)} ms",
        num(t1.get("peak_rss_mb"), 0), num(t2.get("peak_rss_mb"), 0), num(t1.get("rss_after_load_mb"), 0),
        _fidelity_cell(k, e), num(e.get("installed_mb")),
    ]


def _sizes(s: Sections, results: dict) -> str:
    sizes = results.get("installed_sizes", {})
    if not sizes or sizes.get("skipped"):
        return ""
    rows = [
        [x["label"], f"{x['mb']:.1f}", ", ".join(f"{k} {v:.0f}" for k, v in x["largest"].items())]
        if "mb" in x else [x["label"], "failed", x.get("error", "")[:100]]
        for x in sizes.values()
    ]
    table_ = table(["target", "MB", "largest packages"], "lrl", rows)
    return s("sizes", python=results["machine"]["python"], table=table_)


def cold(s: Sections, results: dict, charts: list[str]) -> str:
    stacks_ = results["stacks"]
    return s(
        "cold",
        chart=_chart(charts, "cold_start.png", "cold start"),
        table=table(COLD_HEADER, "l" + "r" * 9, [_cold_row(k, e) for k, e in stacks_.items()]),
        runs=next(iter(stacks_.values()))["cold_start"]["runs"] if stacks_ else 0,
        sizes=_sizes(s, results),
    )


def _util_row(th: str, u: dict) -> list:
    share = "reference wrong" if "reference_wrong" in u else f"**{100 * (u['fraction_of_peak'] or 0):.0f}%**"
    reference = f"{u['peak_gflops']} ({peak.NAMES[u['peak_reference']]})" if u["peak_gflops"] else "–"
    return [th, u["batch"], f"{u['tokens_per_s']:,.0f}", f"{u['gflops']:.1f}", reference, share]


def _references_table(mp: dict) -> str:
    counts = list(mp["gflops"])

    def cell(name: str, t: str) -> str:
        value = mp["references"][name].get(t, "–")
        return f"**{value}**" if mp["chosen"][t] == name else str(value)

    rows = [[peak.NAMES[name], *(cell(name, t) for t in counts)] for name in mp["references"]]
    return table(["reference", *(f"GFLOP/s, {t} thread(s)" for t in counts)], "l" + "r" * len(counts), rows)


def _peak_values(results: dict) -> dict:
    """The placeholders that state how the peak was measured."""
    mp, m = results["fp32_peak"], results["machine"]
    blas = mp["blas"][0] if mp["blas"] else {}
    removed = ", ".join(f"{k}={v}" for k, v in mp["env_removed"].items()) or "neither was set"
    seen = ", ".join(f"{k}={v or 'unset'}" for k, v in mp["env_seen_by_probe"].items())
    return {
        "method": mp["method"],
        "references": _references_table(mp),
        "removed": f"here: {removed}; the child saw {seen}",
        "kernel": blas.get("architecture", "?"),
        "blas": f"{blas.get('internal_api', '?')} {blas.get('version', '')}".strip(),
        "per_cycle": bench_env.FLOPS_PER_CYCLE.get(m["cpu_generation"] or "", "unknown"),
        "generation": m["cpu_generation"] or "generation unknown: no nominal reference",
        "mhz": m["cpu_mhz_reported"],
        **{k: peak.NAMES[k] for k in ("openblas", "openblas_avx2", "onnxruntime", "nominal")},
    }


def flops(s: Sections, results: dict) -> str:
    util = results["targets"].get("flop_utilisation_long")
    if not util:
        return ""
    f = results["model_flops"]
    wrong = [s("reference_wrong", threads=t, note=u["reference_wrong"]) for t, u in util.items()
             if "reference_wrong" in u]
    return s(
        "flops", linear_mflop=f"{f['linear_flops_per_token'] / 1e6:.1f}", layers=f["layers"],
        hidden=f["hidden"], intermediate=f["intermediate"],
        attention=f"{f['attention_flops_per_token_per_position']:,}",
        at_256=f"{f['flops_per_token_at_256'] / 1e6:.1f}",
        table=table(FLOPS_HEADER, "rrrrlr", [_util_row(th, u) for th, u in util.items()]),
        wrong="\n\n".join(wrong), **_peak_values(results),
    )


def rie(s: Sections, results: dict) -> str:
    found = results.get("lambda_rie", {})
    if not found:
        return ""
    rows = [
        [backend, f"**{x['init_ms']:.0f} ms**", f"{x['first_invoke_ms']:.1f} ms",
         f"{x['first_report_duration_ms']:.0f} ms", f"**{x['warm_invoke_ms']:.1f} ms**",
         *(f"{v:.0f} ms" for v in x["batch_invoke_ms"].values()), f"{x['runtime_rss_mb']:.0f} MB"]
        for backend, x in found.items()
    ]
    runs = ", ".join(f"{x['runs']} ({b})" for b, x in found.items())
    return s("rie", table=table(RIE_HEADER, "l" + "r" * 8, rows), runs=runs)


def batching(s: Sections, results: dict) -> str:
    db = results.get("dynamic_batching")
    if not db:
        return ""
    rows = []
    for name in ("no_batching", "dynamic_batching"):
        x = db[name]
        env = ", ".join(f"{k}={v}" for k, v in x["env"].items())
        rows.append([f"{name.replace('_', ' ')} ({env})", f"{x['texts_per_s']:.0f}", num(x["p50_ms"]),
                     num(x["p99_ms"]), x["model_calls"], num(x["mean_batch"]), x["errors"] or "none"])
    header = ["mode", "texts/s", "p50 ms", "p99 ms", "model calls", "mean texts per model call", "errors"]
    return s("batching", clients=db["clients"], seconds=f"{db['seconds']:.0f}", note=db["note"],
             table=table(header, "lrrrrrl", rows), speedup=f"{db['speedup']:.2f}x")


def _memory_row(r: dict, keys: list[str], recommended) -> list:
    fails = [FAILS[k] for k, v in r["checks"].items() if not v]
    mark = "yes" if r["acceptable"] else "no: " + ", ".join(fails)
    mark = "**yes (recommended)**" if r["memory_mb"] == recommended else mark
    usd = (f"{r[f'usd_per_million_{k}']:.2f}" for k in ("warm", "cold", "mix"))
    ms = (f"{r['ms'][k]:.1f}" for k in keys)
    return [r["memory_mb"], r["vcpu"], *ms, f"{r['init_ms']:.0f}", *usd, mark]


def _recommendation(s: Sections, ms: dict) -> str:
    if not ms.get("recommended_mb"):
        return ""
    w1, w2 = ms["workloads_1_thread_ms"], ms["workloads_2_threads_ms"]
    speedups = ", ".join(f"{k} {w1[k] / w2[k]:.2f}x" for k in w1 if w2.get(k))
    why = s("why_one_vcpu", speedups=speedups) if ms["recommended_mb"] == ONE_VCPU_MB else s("why_other")
    return s("recommendation", memory_mb=ms["recommended_mb"], why=why,
             verb="change" if ms["change_terraform_default"] else "keep",
             free=s("free_tier" if ms.get("free_tier_covers_1000_per_day") else "no_free_tier"))


def memory(s: Sections, results: dict) -> str:
    ms = results.get("memory_sizing", {})
    if not ms.get("rows"):
        return ""
    a, keys = ms["acceptable"], list(ms["rows"][0]["ms"])
    header = ["memory MB", "vCPU", *(f"{k} ms" for k in keys), "init ms", "$/1M warm", "$/1M cold",
              "$/1M mix"]
    rows = [_memory_row(r, keys, ms["recommended_mb"]) for r in ms["rows"]]
    return s(
        "memory", cold_fraction=f"{ms['cold_fraction']:.3f}", seed_warm_ms=f"{a['seed_warm_ms']:.0f}",
        cold_s=f"{a['cold_ms'] / 1000:.0f}", long_s=f"{a['long_x32_ms'] / 1000:.0f}",
        headroom=a["rss_headroom"],
        need_mb=f"{ms.get('need_mb', 0):.0f}", within=f"{100 * a['same_price_within']:.0f}",
        table=table([*header, "acceptable"], "rr" + "r" * (len(keys) + 4) + "l", rows),
        recommendation=_recommendation(s, ms),
    )


def markdown(results: dict, charts: list[str], template=TEMPLATE) -> str:
    s = Sections(template)
    sections = [header, machine, stacks, targets, throughput, latency, cold, flops, rie, batching, memory]
    with_charts = (throughput, latency, cold)
    parts = [f(s, results, charts) if f in with_charts else f(s, results) for f in sections]
    return document(parts + [s("notes")])


def headline(results: dict) -> list[str]:
    """The few lines bench.py prints at the end of a run: the targets, the FLOP limit, the memory."""
    lines = [f"{what}: {measured}" + (f" (target {goal}: {ok})" if goal else "")
             for what, measured, goal, ok in _target_rows(results)]
    for th, u in results["targets"].get("flop_utilisation_long", {}).items():
        share = (
            f"exceeds the {u['peak_gflops']} GFLOP/s reference: the reference is wrong"
            if "reference_wrong" in u
            else f"= {100 * (u['fraction_of_peak'] or 0):.0f}% of the {u['peak_gflops']} GFLOP/s fp32 peak"
        )
        lines.append(f"long texts t={th}: {u['gflops']:.1f} GFLOP/s useful {share} ({u['peak_reference']})")
    ms = results.get("memory_sizing", {})
    if ms.get("recommended_mb"):
        lines.append(
            f"Lambda memory: {ms['recommended_mb']} MB recommended (terraform default 1769: "
            f"{'change it' if ms['change_terraform_default'] else 'keep it'})"
        )
    return [line.replace("**", "") for line in lines]
