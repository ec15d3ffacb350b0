"""bench/cost.py (`make cost`): the arithmetic (bench/lambda_cost.py) against hand-computed values,
log parsing (bench/lambda_log.py), input errors."""

from __future__ import annotations

import json
import math

import cost
import lambda_cost
import lambda_log
import pytest

X86 = 0.0000166667
ARM = 0.0000133334
REQ = 0.20 / 1e6
MONTH = 1000 * 30.4  # invocations a month at 1,000 a day


def report(request_id: str, *fields: str) -> str:
    """A REPORT line as the RIE / Lambda print it (tab-separated fields)."""
    return "\t".join(
        [f"REPORT RequestId: {request_id}", *fields, "Memory Size: 3008 MB", "Max Memory Used: 3008 MB"]
    )


RAPID = "25 Nov 2026 16:44:33,355 [INFO] (rapid)"
# A real RIE log (trimmed): init 603.762 ms, then one cold and three warm invocations.
RIE_LOG = (
    "\n".join(
        [
            f"{RAPID} exec '/venv/bin/python' (cwd=/work/main/package/src, handler=lambda_function.handler)",
            "START RequestId: e62d9344-e78b-40ed-bb0a-be03b422947d Version: $LATEST",
            f"{RAPID} INIT START(type: on-demand, phase: init)",
            f"{RAPID} INIT RTDONE(status: success)",
            f"{RAPID} INIT REPORT(durationMs: 603.762000)",
            f"{RAPID} INVOKE START(requestId: e62d9344-e78b-40ed-bb0a-be03b422947d)",
            f"{RAPID} INVOKE RTDONE(status: success, produced bytes: 0, duration: 5.800000ms)",
            "END RequestId: e62d9344-e78b-40ed-bb0a-be03b422947d",
            report("e62d9344", "Init Duration: 0.41 ms", "Duration: 609.56 ms", "Billed Duration: 610 ms"),
            "START RequestId: 92a7cbbc-9bf2-4e40-b7d2-6fced9ce1497 Version: $LATEST",
            report("92a7cbbc", "Duration: 10.20 ms", "Billed Duration: 11 ms"),
            report("09023404", "Duration: 7.50 ms", "Billed Duration: 8 ms"),
            report("19023404", "Duration: 8.00 ms", "Billed Duration: 8 ms"),
        ]
    )
    + "\n"
)

# Real Lambda (CloudWatch) puts Init Duration at the end of a cold REPORT, and Duration excludes it.
LAMBDA_LOG = (
    "\n".join(
        [
            report("1", "Duration: 12.00 ms", "Billed Duration: 12 ms") + "\tInit Duration: 700.00 ms",
            report("2", "Duration: 8.00 ms", "Billed Duration: 8 ms"),
            report("3", "Duration: 9.00 ms", "Billed Duration: 9 ms"),
        ]
    )
    + "\n"
)


def month(**kw):
    args = dict(
        arch="x86_64",
        memory_mb=1769,
        daily=1000,
        init_ms=0.0,
        invoke_ms=500.0,
        cold_fraction=0.0,
        free_tier=False,
        image_gb=0.0,
        log_bytes=0.0,
    )
    args.update(kw)
    return lambda_cost.monthly(**args)


def test_prices_are_one_dated_table():
    assert lambda_cost.PRICES["as_of"].startswith("2025")
    assert lambda_cost.PRICES["lambda_gb_second"] == {"x86_64": X86, "arm64": ARM}
    assert (
        lambda_cost.PRICES["free_tier"]["gb_seconds"] == 400_000
        and lambda_cost.PRICES["free_tier"]["requests"] == 1_000_000
    )


def test_hand_computed_month_without_free_tier():
    # 1,000/day x 30.4 days x (0.5 s x 1769/1024 GB) x price, plus $0.20 per million requests
    line = month()
    gb_s = MONTH * 0.5 * 1769 / 1024
    assert line.invocations == pytest.approx(30_400)
    assert line.gb_seconds == pytest.approx(gb_s)  # 26,258.6 GB-s
    assert line.compute_usd == pytest.approx(gb_s * X86)  # $0.4376
    assert line.requests_usd == pytest.approx(MONTH * REQ)  # $0.00608
    assert line.total_usd == pytest.approx(0.4376 + 0.00608, abs=1e-4)


def test_free_tier_covers_small_use_and_is_subtracted_from_large():
    assert month(free_tier=True).compute_usd == 0 and month(free_tier=True).requests_usd == 0
    big = month(daily=100_000, free_tier=True)  # 3.04 M calls, 2.63 M GB-s
    gb_s = 100_000 * 30.4 * 0.5 * 1769 / 1024
    assert big.compute_usd == pytest.approx((gb_s - 400_000) * X86)
    assert big.requests_usd == pytest.approx((3_040_000 - 1_000_000) * REQ)


def test_init_is_billed_on_cold_starts_only():
    warm = month(init_ms=600, invoke_ms=10, cold_fraction=0.0)
    cold = month(init_ms=600, invoke_ms=10, cold_fraction=1.0)
    half = month(init_ms=600, invoke_ms=10, cold_fraction=0.5)
    assert (warm.billed_ms_warm, cold.billed_ms_cold) == (10, 610)
    assert warm.gb_seconds == pytest.approx(MONTH * 0.010 * 1769 / 1024)
    assert cold.gb_seconds == pytest.approx(MONTH * 0.610 * 1769 / 1024)
    assert half.gb_seconds == pytest.approx((warm.gb_seconds + cold.gb_seconds) / 2)


def test_billing_rounds_up_to_the_millisecond_and_scales_below_one_vcpu():
    assert month(invoke_ms=7.2).billed_ms_warm == 8
    assert month(invoke_ms=10, memory_mb=1024).billed_ms_warm == math.ceil(10 * 1769 / 1024)  # 18
    assert month(invoke_ms=10, memory_mb=3008).billed_ms_warm == 10  # no speed-up assumed above 1,769


def test_arm64_price_and_assumed_speed_factor():
    x86, arm = month(), month(arch="arm64")
    assert arm.compute_usd == pytest.approx(x86.compute_usd * ARM / X86)
    slower = month(arch="arm64", arm_speed_factor=1.2)
    assert slower.billed_ms_warm == 600


def test_ecr_and_logs():
    line = month(image_gb=0.44, log_bytes=600)
    assert line.ecr_usd == pytest.approx(0.044)
    assert line.logs_usd == pytest.approx(MONTH * 600 / 1e9 * 0.50)
    assert month(image_gb=0.44, log_bytes=600, free_tier=True).logs_usd == 0  # 5 GB free


def test_default_cold_fraction_is_poisson_with_five_minute_keep_warm():
    assert lambda_cost.default_cold_fraction(1000) == pytest.approx(math.exp(-300 / 86.4))  # 0.031
    assert lambda_cost.default_cold_fraction(10) == pytest.approx(math.exp(-300 / 8640))  # ~0.966
    assert lambda_cost.default_cold_fraction(0) == 1.0


def test_cost_per_million_embeddings():
    usd = lambda_cost.per_million_embeddings("x86_64", 1769, 8.0, 32)
    assert usd == pytest.approx(1e6 * 0.008 * 1769 / 1024 * X86 + 1e6 / 32 * REQ)


def test_parse_rie_log_uses_init_report_and_skips_the_cold_report():
    parsed = lambda_log.durations(RIE_LOG)
    assert parsed["format"] == "rie"
    assert parsed["init_ms"] == pytest.approx(603.762)  # not the REPORT's 0.41 ms
    assert parsed["invoke_ms"] == pytest.approx(8.0)  # median of 10.2, 7.5, 8.0; not the 609.56 ms
    assert parsed["invokes"] == 3


def test_parse_real_lambda_log():
    parsed = lambda_log.durations(LAMBDA_LOG)
    assert parsed["format"] == "lambda"
    assert parsed["init_ms"] == pytest.approx(700.0)
    assert parsed["invoke_ms"] == pytest.approx(9.0)


def test_one_parser_marks_cold_reports_in_both_logs():
    rie = lambda_log.parse(RIE_LOG)
    assert [r["cold"] for r in rie["reports"]] == [True, False, False, False]
    assert rie["reports"][0]["invoke_ms"] == pytest.approx(609.56 - 603.762)  # the RIE's Duration holds init
    assert rie["rtdone"] == pytest.approx([5.8]) and rie["reports"][1]["billed_ms"] == 11
    real = lambda_log.parse(LAMBDA_LOG)
    assert real["format"] == "lambda" and real["inits"] == [700.0] and real["rtdone"] == []
    assert [(r["cold"], r["invoke_ms"]) for r in real["reports"]] == [(True, 12.0), (False, 8.0), (False, 9.0)]


def test_only_cold_rie_calls_give_the_invoke_less_its_init():
    cold_only = RIE_LOG.split("START RequestId: 92a7cbbc")[0]
    parsed = lambda_log.durations(cold_only)
    assert parsed["invoke_ms"] == pytest.approx(609.56 - 603.762) and parsed["invokes"] == 1


def test_parse_log_without_reports_fails():
    with pytest.raises(ValueError):
        lambda_log.durations("nothing to see\n")


def test_cli_from_rie_json(tmp_path, capsys):
    log = tmp_path / "rie.log"
    log.write_text(RIE_LOG)
    assert (
        cost.main(
            [
                "--from-rie",
                str(log),
                "--results",
                str(tmp_path / "none.json"),
                "--image-gb",
                "0.5",
                "--memory",
                "1769",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["inputs"]["init_ms"] == pytest.approx(603.762)
    assert out["inputs"]["invoke_ms"] == pytest.approx(8.0)
    assert {x["arch"] for x in out["lines"]} == {"x86_64", "arm64"}
    line = next(x for x in out["lines"] if x["arch"] == "x86_64" and x["cold_fraction"] == 1.0)
    assert line["billed_ms_cold"] == math.ceil(603.762 + 8.0)
    assert "1,000 invocations a day" in out["answer"]


def test_cli_table_and_answer(tmp_path, capsys):
    assert (
        cost.main(
            [
                "--init-ms",
                "600",
                "--invoke-ms",
                "10",
                "--results",
                str(tmp_path / "none.json"),
                "--image-gb",
                "0.44",
                "--short-ms-per-text",
                "8",
                "--long-ms-per-text",
                "120",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| x86_64 | 1769 |" in out and "| arm64 | 3008 |" in out
    assert "OpenAI text-embedding-3-small" in out
    assert "What do 1,000 invocations a day cost?" in out
    assert "ASSUMPTION" in out


def test_cli_reads_results_json(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps(
            {
                "lambda_rie": {"onnx": {"init_ms": 650.0, "warm_invoke_ms": 9.5}},
                "corpus": {"short": {"mean_tokens": 15.7}, "long": {"mean_tokens": 255.0}},
                "stacks": {
                    "onnx": {
                        "threads": {
                            "1": {
                                "runs": {
                                    "short": {"32": {"median_s": 0.32}},
                                    "long": {"32": {"median_s": 3.2}},
                                }
                            }
                        }
                    }
                },
            }
        )
    )
    assert cost.main(["--results", str(results), "--image-gb", "0.44", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["inputs"]["init_ms"], out["inputs"]["invoke_ms"]) == (650.0, 9.5)
    short = next(x for x in out["per_million_embeddings"] if x["length"] == "short")
    assert short["ms_per_text_at_1769"] == pytest.approx(10.0)
    assert short["hosted_api_usd"] == pytest.approx(15.7 * 0.02)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--daily", "-5"], "--daily"),
        (["--daily", "many"], "--daily"),
        (["--memory", "64"], "--memory"),
        (["--memory", "1769,lots"], "--memory"),
        (["--cold-fraction", "1.5"], "--cold-fraction"),
        (["--arch", "sparc"], "--arch"),
        (["--init-ms", "nan"], "--init-ms"),
        (["--texts-per-request", "0"], "--texts-per-request"),
    ],
)
def test_bad_inputs_are_argparse_errors(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cost.main(
            [*argv, "--init-ms", "600", "--invoke-ms", "10", "--results", str(tmp_path / "none.json")]
            if "--init-ms" not in argv
            else [*argv, "--invoke-ms", "10"]
        )
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_durations_say_what_to_give(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cost.main(["--results", str(tmp_path / "none.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--init-ms" in err and "--from-rie" in err


def test_missing_rie_log_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cost.main(["--from-rie", str(tmp_path / "absent.log"), "--results", str(tmp_path / "none.json")])
    assert "--from-rie" in capsys.readouterr().err


def _results_with(stacks: dict) -> dict:
    """A results.json with these stacks' 1-thread batch-32 medians ({stack: (short_s, long_s)})."""
    return {
        "lambda_rie": {"onnx": {"init_ms": 650.0, "warm_invoke_ms": 9.5}},
        "corpus": {"short": {"mean_tokens": 15.7}, "long": {"mean_tokens": 255.0}},
        "stacks": {
            name: {
                "threads": {
                    "1": {"runs": {"short": {"32": {"median_s": short}}, "long": {"32": {"median_s": long}}}}
                }
            }
            for name, (short, long) in stacks.items()
        },
    }


def test_prices_carry_the_hosted_batch_price():
    assert lambda_cost.PRICES["hosted_api"]["usd_per_million_tokens"] == 0.02
    assert lambda_cost.PRICES["hosted_api"]["batch_usd_per_million_tokens"] == 0.01


def test_each_precision_is_priced_from_its_measured_cpu_time(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results_with({"onnx": (0.32, 3.2), "int8": (0.16, 1.6)})))
    assert cost.main(["--results", str(results), "--image-gb", "0.44", "--json"]) == 0
    rows = {(x["precision"], x["length"]): x for x in json.loads(capsys.readouterr().out)["per_precision"]}
    assert set(rows) == {("fp32", "short"), ("fp32", "long"), ("int8", "short"), ("int8", "long")}
    int8 = rows[("int8", "long")]
    assert int8["ms_per_text_at_1769"] == pytest.approx(50.0)  # 1.6 s / 32 passages
    # 1M passages x 50 ms at 1,769 MB, plus 1M / 32 requests
    compute_s = 1e6 * 0.050 * 1769 / 1024
    assert int8["usd"]["x86_64"] == pytest.approx(compute_s * X86 + 1e6 / 32 * REQ)
    assert int8["usd"]["arm64"] == pytest.approx(compute_s * ARM + 1e6 / 32 * REQ)  # factor 1: assumed
    assert int8["hosted_api_usd"] == pytest.approx(255.0 * 0.02)
    assert int8["hosted_api_batch_usd"] == pytest.approx(255.0 * 0.01)
    assert rows[("fp32", "short")]["ms_per_text_at_1769"] == pytest.approx(10.0)
    assert int8["usd"]["x86_64"] < rows[("fp32", "long")]["usd"]["x86_64"]

    assert cost.main(["--results", str(results), "--image-gb", "0.44"]) == 0
    out = capsys.readouterr().out
    assert "| int8 | long (~255 tokens) | 50.00 | $1.45 | $1.16 | $5.10 | $2.55 |" in out
    assert "| fp32 | long (~255 tokens) | 100.00 | $2.89 | $2.31 | $5.10 | $2.55 |" in out
    assert "Batch API $0.01/1M tokens" in out and "Graviton2" in out and "ASSUMPTION" in out


def test_a_precision_without_measurements_says_so(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results_with({"onnx": (0.32, 3.2)})))
    assert cost.main(["--results", str(results), "--image-gb", "0.44", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["per_precision"]
    assert [x["precision"] for x in rows] == ["fp32", "fp32", "int8"]
    assert "not measured" in rows[-1]["missing"] and "make setup" in rows[-1]["missing"]
    assert cost.main(["--results", str(results), "--image-gb", "0.44"]) == 0
    assert "| int8 | not measured:" in capsys.readouterr().out


# --- reranking and sparse encoding (bench/rerank_cost.py's figures) ---------------------------------

def _rerank_results(reranker_ms: dict, sparse_ms: dict) -> dict:
    import rerank_cost

    def figures(billed: dict, per_call: int) -> dict:
        out = {"tokens_per_item": 180.0}
        for precision, ms in billed.items():
            usd = {arch: rerank_cost.usd_per_million_calls(ms, arch) for arch in ("x86_64", "arm64")}
            out[precision] = {"warm_billed_ms": ms, "init_ms": 900.0, "usd_per_million_calls": usd,
                              "usd_per_million_passages": {a: u / per_call for a, u in usd.items()}}
        return out

    return {"model_note": "MiniLM-shaped", "documents_per_call": 50, "sparse_passages_per_call": 32,
            "memory_mb": 1769, "warm_calls": 12, "prices": "2025-08",
            "rerank_api": rerank_cost.prices.RERANK_API, "cohere_usd_per_million_calls": 2000.0,
            "kinds": {"reranker": figures(reranker_ms, 1), "sparse": figures(sparse_ms, 32)}}


def test_a_million_rerank_calls_cost_their_billed_gb_seconds_and_requests():
    import rerank_cost

    assert rerank_cost.usd_per_million_calls(300, "x86_64") == pytest.approx(
        0.3 * 1769 / 1024 * X86 * 1e6 + REQ * 1e6)
    assert rerank_cost.usd_per_million_calls(300, "arm64") == pytest.approx(0.3 * 1769 / 1024 * ARM * 1e6 + REQ * 1e6)
    # (query, 50 passages) is one Cohere search: $2 per 1,000 searches
    assert rerank_cost.cohere_usd_per_million_calls() == pytest.approx(2000.0)


def test_cli_prices_reranking_and_sparse_encoding_from_the_measured_json(tmp_path, capsys):
    measured = tmp_path / "rerank-cost.json"
    measured.write_text(json.dumps(_rerank_results({"fp32": 400.0, "int8": 200.0}, {"fp32": 3200.0, "int8": 1600.0})))
    argv = ["--init-ms", "600", "--invoke-ms", "10", "--results", str(tmp_path / "none.json"), "--image-gb", "0.44"]
    assert cost.main([*argv, "--rerank-results", str(measured)]) == 0
    out = capsys.readouterr().out
    fp32 = 0.4 * 1769 / 1024 * X86 * 1e6 + 0.2
    assert f"| fp32 | 400 | ${fp32:,.2f} |" in out and "Cohere Rerank 3.5" in out and "$2,000.00" in out
    sparse_int8 = (1.6 * 1769 / 1024 * X86 * 1e6 + 0.2) / 32
    assert f"| int8 | 1600 | ${sparse_int8:,.2f} |" in out
    assert cost.main([*argv, "--rerank-results", str(tmp_path / "missing.json")]) == 0
    assert "not measured" in capsys.readouterr().out and "make bench-rerank" in cost.RERANK_MISSING
