"""bench/: the report rendered from known results (template, tables, the >100% guard, int8),
the fp32 peak's child environment, and bench/bench.py end to end in its quick mode (ONNX
stack only): structure and sanity of the outputs, never timings (they are noisy on a shared
machine)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import analysis
import lambda_log
import peak
import pytest
import report
from conftest import REPO, RIE

import bench as bench_main

RAPID = "25 Nov 2026 16:44:33,355 [INFO] (rapid)"
MEMORY = "Memory Size: 3008 MB\tMax Memory Used: 3008 MB\t"
RIE_LOG = "\n".join(
    [
        f"{RAPID} INIT REPORT(durationMs: 939.788000)",
        f"{RAPID} INVOKE RTDONE(status: success, produced bytes: 0, duration: 8.428000ms)",
        "REPORT RequestId: e62d9344\tInit Duration: 0.03 ms\tDuration: 948.52 ms\t"
        f"Billed Duration: 949 ms\t{MEMORY}",
        f"{RAPID} INVOKE RTDONE(status: success, produced bytes: 0, duration: 9.961000ms)",
        f"REPORT RequestId: 92a7cbbc\tDuration: 10.20 ms\tBilled Duration: 11 ms\t{MEMORY}",
    ]
)


def test_rie_log_parsing():
    parsed = lambda_log.parse(RIE_LOG)
    assert parsed["inits"][0] == pytest.approx(939.788)
    assert parsed["rtdone"] == pytest.approx([8.428, 9.961])
    assert [r["duration_ms"] for r in parsed["reports"]] == [948.52, 10.20]
    assert [(r["cold"], r["billed_ms"]) for r in parsed["reports"]] == [(True, 949), (False, 11)]


# ---- the report from known results ---------------------------------------------------------------
def _run(texts_per_s: float, batch: int, gflops: float, tokens: float) -> dict:
    rec = {
        "batch": batch,
        "reps": 3,
        "texts_per_s": texts_per_s,
        "tokens_per_s": texts_per_s * tokens,
        "median_s": batch / texts_per_s,
        "gflops": gflops,
    }
    if batch == 1:
        rec.update(mean_ms=1000 / texts_per_s, p50_ms=900 / texts_per_s, p99_ms=1500 / texts_per_s)
    return rec


def _threads(short: dict, long: dict, gflops: float) -> dict:
    """One worker: {batch: texts/s} for short (15 tokens) and long (250 tokens) texts."""
    runs = {
        "short": {str(b): _run(v, b, gflops / 10, 15) for b, v in short.items()},
        "long": {str(b): _run(v, b, gflops, 250) for b, v in long.items()},
    }
    return {
        "runs": runs,
        "peak_rss_mb": 250.0,
        "rss_after_load_mb": 170.0,
        "interference": {"other_share": 0.0},
    }


def _cold(total: float) -> dict:
    return {
        "total_s": total,
        "min_s": total,
        "max_s": total,
        "interpreter_s": 0.02,
        "import_s": 0.1,
        "load_s": total - 0.13,
        "first_embed_s": 0.01,
        "runs": 5,
    }


def known_results(long_gflops_t1: float = 60.0) -> dict:
    """A small, hand-made run: fp32 and int8 at 1 and 2 threads, every number chosen."""
    onnx = {
        "1": _threads({1: 100.0, 32: 200.0}, {1: 10.0, 32: 10.0}, long_gflops_t1),
        "2": _threads({1: 180.0, 32: 360.0}, {1: 18.0, 32: 20.0}, 110.0),
    }
    int8 = {
        "1": _threads({1: 200.0, 32: 400.0}, {1: 20.0, 32: 20.0}, 120.0),
        "2": _threads({1: 300.0, 32: 600.0}, {1: 30.0, 32: 30.0}, 170.0),
    }
    return {
        "command": "make bench",
        "quick": False,
        "duration_s": 123.4,
        "threads": [1, 2],
        "machine": {
            "date": "2026-11-27 12:00 UTC",
            "cpu_model": "AMD EPYC",
            "cpu_vendor": "AuthenticAMD",
            "cpu_family_model": "family 25 model 17 stepping 1",
            "cpu_generation": "Zen 4 (Genoa)",
            "logical_cpus": 2,
            "hypervisor": True,
            "cpu_flags_of_note": ["avx2", "avx512f"],
            "cpu_mhz_reported": 2600.0,
            "l3_cache": "32768K",
            "nominal_fp32_gflops_per_core": 83.2,
            "memory_gb": 24.7,
            "os": "Linux",
            "python": "3.11.7",
            "load_average_at_start": [0.5, 0.4, 0.3],
            "versions": {"onnxruntime": "1.31.1"},
        },
        "config": {"batches": [1, 32], "reps": {"max_reps": 5}, "latency_calls": {"short": 100, "long": 20}},
        "corpus": {
            k: {
                "count": 64,
                "source": f"bench/corpus.py {k}",
                "mean_tokens": n,
                "min_tokens": 9,
                "max_tokens": 256,
            }
            for k, n in (("short", 15.0), ("long", 250.0))
        },
        "model_flops": {
            "layers": 6,
            "hidden": 384,
            "intermediate": 1536,
            "linear_flops_per_token": 21_233_664,
            "attention_flops_per_token_per_position": 9216,
            "flops_per_token_at_256": 23_592_960,
        },
        "fp32_peak": peak.choose(
            {
                "method": "float32 2048x2048 @ 2048x2048, best of 8",
                "blas": [{"internal_api": "openblas", "version": "0.3.31", "architecture": "SkylakeX"}],
                "env_removed": {"OPENBLAS_CORETYPE": "Haswell"},
                "env_seen_by_probe": {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None},
                "references": {
                    "openblas": {"1": 100.0, "2": 200.0},
                    "onnxruntime": {"1": 90.0, "2": 180.0},
                    "nominal": {"1": 83.2, "2": 166.4},
                },
            }
        ),
        "gpu": {"available": False, "note": "no GPU"},
        "skipped_stacks": {},
        "stacks": {
            "onnx": {
                "description": "ours",
                "threads": onnx,
                "cold_start": _cold(0.5),
                "fidelity_min_cosine": 0.99999,
            },
            "int8": {
                "description": "int8",
                "threads": int8,
                "cold_start": _cold(0.3),
                "fidelity_min_cosine": 0.97,
            },
        },
        "installed_sizes": {"skipped": True},
        "interference": {"other_share": 0.01, "steal_share": 0.0},
    }


def analysed(results: dict) -> dict:
    analysis.set_peak_fractions(results)
    results["targets"] = analysis.targets(results)
    results["memory_sizing"] = analysis.memory_sizing(results)
    return results


def test_table_helper_renders_markdown():
    assert report.table(["a", "b", ""], "lrl", [[1, "x", ""]]) == "| a | b | |\n|---|---:|---|\n| 1 | x | |"


def test_template_sections_are_filled_strictly():
    sections = report.Sections(report.TEMPLATE)
    assert {"header", "machine", "targets", "flops", "reference_wrong", "notes"} <= set(sections.templates)
    with pytest.raises(KeyError):
        sections("header")  # a placeholder without a value is an error, not a "$command" in the page


def test_report_renders_known_results():
    results = analysed(known_results())
    md = report.markdown(results, ["throughput.png"])
    assert "<!--" not in md and not re.search(r"\$[a-z_]+", md) and "\n\n\n" not in md
    assert md.startswith("# Benchmarks\n\nGenerated by `make bench` on 2026-11-27 12:00 UTC in 123 s.")
    assert "![throughput](throughput.png)" in md and "![latency]" not in md
    # throughput table: texts/s per batch, tokens/s at the largest
    assert "| ours (ONNX) | 1 | 100.0 | 200.0 | 3,000 |" in md
    assert "| ours (ONNX int8) | 2 | 300.0 | 600.0 | 9,000 |" in md
    # the int8 targets: passages at 1 and 2 threads against the 1.6x goal, short texts without one
    passages = "| passages, batch 32, {} thread(s): int8 / fp32 | {} / {} texts/s = **{}x** | >= 1.6x | {} |"
    assert passages.format(1, "20.0", "10.0", "2.00", "met") in md
    assert passages.format(2, "30.0", "20.0", "1.50", "**not met**") in md
    assert "| short texts, batch 32, 1 thread(s): int8 / fp32 | 400.0 / 200.0 texts/s = 2.00x | | |" in md
    fidelity = "| fp32 (ours, ONNX) unchanged: min cosine vs sentence-transformers, every text |"
    assert f"{fidelity} 0.9999900 | > 0.9999 | met |" in md
    assert "0.9700000 (economy path: ranking quality by `make bench-quality`)" in md
    # the FLOP limit: the highest reference, how it was measured, and the fraction
    assert "| 1 | 1 | 2,500 | 60.0 | 100.0 (numpy/OpenBLAS fp32 matmul, the kernel OpenBLAS picks) | **60%** |" in md
    assert "| 2 | 1 | 4,500 | 110.0 | 200.0 (numpy/OpenBLAS fp32 matmul, the kernel OpenBLAS picks) | **55%** |" in md
    assert "| numpy/OpenBLAS fp32 matmul, the kernel OpenBLAS picks | **100.0** | **200.0** |" in md
    assert "| nominal: FMA width x reported clock | 83.2 | 166.4 |" in md
    assert (
        "(here: OPENBLAS_CORETYPE=Haswell; the child saw OPENBLAS_CORETYPE=unset, OPENBLAS_L2_SIZE=unset)"
        in md
    )
    assert "the kernel that ran: `SkylakeX`" in md and "32 fp32 FLOPs per cycle per core (Zen 4 (Genoa)" in md
    assert "**Recommendation: 1769 MB**" in md and "The reference is wrong" not in md
    assert "no ONNX bf16 stack" in md


def test_no_fraction_above_100_percent():
    assert peak.fraction(50.0, 100.0) == {"fraction_of_peak": 0.5}
    assert peak.fraction(50.0, None) == {"fraction_of_peak": None}
    over = peak.fraction(137.0, 100.0)
    assert over["fraction_of_peak"] is None and "the reference is wrong" in over["reference_wrong"]

    results = analysed(known_results(long_gflops_t1=137.0))  # faster than the 100 GFLOP/s reference
    util = results["targets"]["flop_utilisation_long"]
    assert util["1"]["fraction_of_peak"] is None and "137.0 GFLOP/s measured" in util["1"]["reference_wrong"]
    assert util["2"]["fraction_of_peak"] == pytest.approx(110 / 200)
    fractions = [
        rec["peak_fraction"]
        for entry in results["stacks"].values()
        for per_thread in entry["threads"].values()
        for runs in per_thread["runs"].values()
        for rec in runs.values()
    ]
    assert all(f is None or 0 <= f <= 1 for f in fractions)
    assert all(
        rec["peak_fraction"] is None
        for rec in results["stacks"]["int8"]["threads"]["1"]["runs"]["long"].values()
    )

    md = report.markdown(results, [])
    assert (
        "| 1 | 1 | 2,500 | 137.0 | 100.0 (numpy/OpenBLAS fp32 matmul, the kernel OpenBLAS picks) | reference wrong |" in md
    )
    assert "**The reference is wrong** with 1 thread(s): 137.0 GFLOP/s measured exceeds the 100.0" in md
    assert all(int(p) <= 100 for p in re.findall(r"(\d+)%", md))
    assert any("the reference is wrong" in line for line in report.headline(results))


def test_report_says_why_a_stack_was_skipped(tmp_path):
    (tmp_path / "onnx").mkdir()
    why = bench_main.missing_files(["onnx", "int8"], tmp_path)
    assert list(why) == ["int8"] and why["int8"].startswith("int8 file missing: run make setup")
    (tmp_path / "onnx" / "model_int8.onnx").write_bytes(b"")
    assert bench_main.missing_files(["onnx", "int8"], tmp_path) == {}

    results = known_results()
    del results["stacks"]["int8"]
    results["skipped_stacks"] = {"int8": "int8 file missing: run make setup"}
    md = report.markdown(analysed(results), [])
    assert "- **ours (ONNX int8)** (`int8`): skipped: int8 file missing: run make setup" in md
    assert "| passages: int8 / fp32 | not measured: int8 file missing: run make setup | >= 1.6x | |" in md


# ---- the fp32 peak -------------------------------------------------------------------------------
def test_every_stack_has_a_label_a_colour_and_a_size_target():
    import bench_env
    import bench_worker

    for table in (bench_worker.LABELS, bench_worker.COLORS, bench_env.STACK_SIZE_TARGET):
        assert set(table) == set(bench_worker.STACKS)
    assert set(bench_worker.STACKS) <= set(bench_worker.COLD_START)


def test_peak_child_runs_without_openblas_pins(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    assert not {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"} & set(peak.probe_env())
    measured = peak.measure(True, [1], None, size=64)  # tiny matrices: the wiring, not the speed
    assert measured["env_seen_by_probe"] == {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None}
    assert measured["env_removed"] == {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576"}
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"  # only the child lost it
    assert measured["blas"] and measured["blas"][0]["architecture"]  # threadpoolctl names the kernel
    # no nominal without a CPU generation; OpenBLAS's AVX2 kernel where it picked another one
    kernel = measured["blas"][0]["architecture"]
    expected = {"openblas", "onnxruntime"} | ({"openblas_avx2"} if kernel != "Haswell" else set())
    assert set(measured["references"]) <= expected and {"openblas", "onnxruntime"} <= set(
        measured["references"]
    )
    assert measured["chosen"]["1"] in measured["references"] and measured["gflops"]["1"] > 0


def test_peak_takes_the_highest_reference_and_keeps_the_better_run():
    first = peak.choose(
        {
            "method": "m",
            "references": {"openblas": {"1": 90.0, "2": 100.0}, "nominal": {"1": 80.0, "2": 160.0}},
        }
    )
    assert first["chosen"] == {"1": "openblas", "2": "nominal"} and first["gflops"] == {"1": 90.0, "2": 160.0}
    second = peak.choose(
        {
            "method": "m",
            "references": {"openblas": {"1": 95.0, "2": 170.0}, "nominal": {"1": 80.0, "2": 160.0}},
        }
    )
    merged = peak.merge(first, second)
    assert merged["references"]["openblas"] == {"1": 95.0, "2": 170.0}
    assert merged["gflops"] == {"1": 95.0, "2": 170.0} and len(merged["samples"]) == 2
    assert "the higher kept" in merged["method"]


@pytest.mark.slow
def test_quick_bench_writes_json_markdown_and_charts(tmp_path):
    if not RIE.exists():
        pytest.fail(f"{RIE} missing: run `make setup`")
    out = tmp_path / "bench"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "bench.py"),
            "--quick",
            "--skip-sizes",
            "--stacks",
            "onnx",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[1/" in proc.stdout and "texts/s" in proc.stdout  # progress lines

    results = json.loads((out / "results.json").read_text())
    for key in (
        "machine",
        "config",
        "corpus",
        "model_flops",
        "fp32_peak",
        "gpu",
        "stacks",
        "lambda_rie",
        "dynamic_batching",
        "installed_sizes",
        "targets",
        "memory_sizing",
        "duration_s",
    ):
        assert key in results, key
    assert results["quick"] is True
    assert results["machine"]["logical_cpus"] >= 1 and results["machine"]["python"]
    fp32_peak = results["fp32_peak"]
    assert all(v > 0 for v in fp32_peak["gflops"].values())
    assert {"openblas", "onnxruntime"} <= set(fp32_peak["references"])
    assert fp32_peak["env_seen_by_probe"]["OPENBLAS_CORETYPE"] is None
    for u in results["targets"]["flop_utilisation_long"].values():
        assert u["fraction_of_peak"] is None or 0 < u["fraction_of_peak"] <= 1
    assert results["model_flops"]["flops_per_token_at_256"] > 20e6

    onnx = results["stacks"]["onnx"]
    assert set(onnx["threads"]) == {"1", "2"}
    for entry in onnx["threads"].values():
        assert entry["peak_rss_mb"] > 50 and entry["load_s"] > 0
        for length in ("short", "long"):
            runs = entry["runs"][length]
            assert "1" in runs and len(runs) >= 2
            for run in runs.values():
                assert run["texts_per_s"] > 0 and run["tokens_per_s"] > run["texts_per_s"]
                assert run["gflops"] > 0
            assert 0 < runs["1"]["p50_ms"] <= runs["1"]["p99_ms"]
    assert onnx["fidelity_min_cosine"] > 0.9999
    assert 0 < onnx["cold_start"]["total_s"] < 120

    rie = results["lambda_rie"]["onnx"]
    assert rie["init_ms"] > 0 and rie["warm_invoke_ms"] > 0 and rie["first_invoke_ms"] > 0
    assert rie["first_report_duration_ms"] >= rie["init_ms"]  # the RIE's first Duration includes init
    batching = results["dynamic_batching"]
    for mode in ("no_batching", "dynamic_batching"):
        assert batching[mode]["requests"] > 0 and batching[mode]["p99_ms"] >= batching[mode]["p50_ms"]
    assert batching["no_batching"]["mean_batch"] == pytest.approx(1.0)
    assert results["memory_sizing"]["recommended_mb"] in {
        r["memory_mb"] for r in results["memory_sizing"]["rows"]
    }
    assert results["installed_sizes"] == {"skipped": True}

    readme = (out / "README.md").read_text()
    assert "| stack | threads |" in readme and "## Machine" in readme and "Recommendation:" in readme
    assert "## How close to the FLOP limit" in readme and "threadpoolctl reports the kernel" in readme
    assert "bench/bench.py" in readme  # the command to reproduce
    for chart in ("throughput.png", "cold_start.png", "latency.png"):
        assert (out / chart).stat().st_size > 1000
        assert f"({chart})" in readme


def test_bench_scale_runs_the_real_scheduler_and_writes_its_report(tmp_path):
    """`make bench-scale` at a tiny size: the stub fleet answers, every planned part is committed,
    the report is filled (no timing is asserted: the figures are the benchmark's, not a test's)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scale.py"), "--passages", "300000,600000", "--concurrency", "50",
         "--shard-seconds", "0.2", "--throttle-every", "7", "--skip-client-path", "--batch-quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "scale.json").read_text())
    assert [run["shards"] for run in data["runs"]] == [60, 120]  # 5,000 passages a job at most
    assert [run["rows"] for run in data["runs"]] == [300_000, 600_000]
    assert all(run["invocations"] == run["shards"] for run in data["runs"])
    assert sum(run["retries"] for run in data["runs"]) >= 90 // 7  # every 7th job is throttled once
    assert {(row["precision"], row["architecture"]) for row in data["projection"]} == {
        (p, a) for p in ("int8", "fp32") for a in ("x86_64", "arm64")
    }
    text = (tmp_path / "scale.md").read_text()
    assert "(assumed)" in text and "600,000" in text
    batch = data["batch"]  # AWS Batch: planned and submitted on moto, the worker at 1 and 2 vCPUs, the projection
    assert [(run["splits"], run["array_jobs"]) for run in batch["submissions"]] == [(60, 1), (120, 1)]
    assert [row["passages"] for row in batch["worker"]] == [16, 32, 32]
    assert {quote["engine"].split()[0] for quote in batch["projection"]["quotes"]} == {"Lambda", "Fargate", "GPU"}
    assert "Fargate Spot" in text and "speed-up (dedicated)" in text
