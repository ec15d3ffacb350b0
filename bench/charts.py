"""The benchmark's PNG charts (throughput, cold start, latency) from the results dict."""

from __future__ import annotations

from pathlib import Path

from analysis import run_of
from bench_worker import COLORS, LABELS

PHASES = (
    ("python start", "0.7"),
    ("imports", "tab:purple"),
    ("model load", "tab:cyan"),
    ("first embedding", "tab:olive"),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    _pyplot().close(fig)
    return name


def _throughput_axis(ax, results: dict, length: str) -> None:
    import matplotlib.ticker

    for stack, entry in results["stacks"].items():
        for t, style in (("1", "--"), ("2", "-")):
            runs = entry["threads"].get(t, {}).get("runs", {}).get(length, {})
            if not runs:
                continue
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


def throughput(results: dict, out: Path) -> str:
    fig, axes = _pyplot().subplots(1, 2, figsize=(12, 4.5))
    for ax, length in zip(axes, ("short", "long")):
        _throughput_axis(ax, results, length)
    axes[0].legend(fontsize=7, title="dashed/open: 1 thread; solid/filled: 2 threads", title_fontsize=7)
    return _save(fig, out, "throughput.png")


def _cold_start_bars(results: dict) -> tuple[list[str], list[list[float]], list[float]]:
    names, parts, totals = [], [], []
    for stack, entry in results["stacks"].items():
        c = entry.get("cold_start")
        if c:
            names.append(LABELS[stack])
            parts.append([c["interpreter_s"], c["import_s"], c["load_s"], c["first_embed_s"]])
            totals.append(c["total_s"])  # the median of the totals (phases are medians too)
    for backend, rie in results.get("lambda_rie", {}).items():
        names.append(f"Lambda init + first invoke, RIE ({backend})")
        parts.append([0, 0, rie["init_ms"] / 1000, rie["first_invoke_ms"] / 1000])
        totals.append(sum(parts[-1]))
    return names, parts, totals


def cold_start(results: dict, out: Path) -> str:
    fig, ax = _pyplot().subplots(figsize=(10, 3.8))
    names, parts, totals = _cold_start_bars(results)
    left = [0.0] * len(names)
    for i, (label, color) in enumerate(PHASES):
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
    return _save(fig, out, "cold_start.png")


def latency(results: dict, out: Path) -> str:
    fig, axes = _pyplot().subplots(1, 2, figsize=(12, 4))
    labels, width = list(results["stacks"]), 0.2
    for ax, length in zip(axes, ("short", "long")):
        for k, (t, q) in enumerate((("1", "p50_ms"), ("1", "p99_ms"), ("2", "p50_ms"), ("2", "p99_ms"))):
            ax.bar(
                [i + (k - 1.5) * width for i in range(len(labels))],
                [(run_of(results, s, t, length, "1") or {}).get(q, 0) for s in labels],
                width,
                label=f"{q[:3]}, {t} thread{'s' if t == '2' else ''}",
                alpha=0.55 if "p99" in q else 1,
                color="tab:blue" if t == "1" else "tab:orange",
            )
        ax.set_xticks(range(len(labels)), [LABELS[s] for s in labels], fontsize=8)
        ax.set(ylabel="ms", title=f"single-text latency, {length} text")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, out, "latency.png")


def charts(results: dict, out: Path) -> list[str]:
    """Writes the PNGs into out; returns their file names (the report links those)."""
    return [draw(results, out) for draw in (throughput, cold_start, latency)]
