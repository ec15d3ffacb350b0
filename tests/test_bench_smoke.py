"""bench/bench.py end to end in its quick mode (ONNX stack only): structure and sanity of
the outputs, never timings (they are noisy on a shared machine)."""

from __future__ import annotations

import json
import subprocess
import sys

import bench_services
import pytest
from conftest import REPO, RIE

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
    parsed = bench_services.parse_rie_log(RIE_LOG)
    assert parsed["init_ms"] == pytest.approx(939.788)
    assert parsed["invoke_ms"] == pytest.approx([8.428, 9.961])
    assert [r["duration_ms"] for r in parsed["reports"]] == [948.52, 10.20]


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
        "matmul_peak",
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
    assert all(v > 0 for v in results["matmul_peak"]["gflops"].values())
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
    assert "bench/bench.py" in readme  # the command to reproduce
    for chart in ("throughput.png", "cold_start.png", "latency.png"):
        assert (out / chart).stat().st_size > 1000
        assert f"({chart})" in readme
