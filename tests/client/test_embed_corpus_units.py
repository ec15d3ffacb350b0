"""embed-corpus's parts on their own: request packing, retries and splits, the bill, progress."""

from __future__ import annotations

import base64
import io
import random

import numpy as np
import pytest

from embedding_client import prices
from embedding_client.corpus.errors import PermanentError, SplitRequest, TransientError
from embedding_client.corpus.plan import RequestBudget, pack_requests, shards
from embedding_client.corpus.progress import Progress
from embedding_client.corpus.readers import Row
from embedding_client.corpus.report import RunStats, lambda_bill, render
from embedding_client.corpus.retry import Counters, RetryPolicy, embed_with_retries
from embedding_client.corpus.target_lambda import LambdaTarget, _invocation
from embedding_client.corpus.targets import Embedded, EmbedOptions, Invocation, TargetInfo


def test_given_rows_then_shards_of_the_size_in_order():
    rows = [Row(i + 1, i, f"t{i}") for i in range(25)]
    cut = list(shards(rows, 10))
    assert [shard.index for shard in cut] == [0, 1, 2]
    assert [len(shard.rows) for shard in cut] == [10, 10, 5]
    assert [row for shard in cut for row in shard.rows] == rows


@pytest.mark.parametrize(
    "budget, texts, expected",
    [
        (RequestBudget(max_items=3), ["a"] * 7, [(0, 3), (3, 6), (6, 7)]),
        # ~256 estimated tokens each (the model's maximum): four fit in 1,024
        (
            RequestBudget(max_items=100, max_tokens=1024, max_seq_length=256),
            ["x" * 5000] * 9,
            [(0, 4), (4, 8), (8, 9)],
        ),
        # the body limit: each text ~1 kB of JSON
        (RequestBudget(max_items=100, max_request_bytes=2048 + 3 * 1003), ["y" * 1000] * 5, [(0, 3), (3, 5)]),
        # the response limit: 10 vectors of 2,048 base64 bytes (+ item overhead) per ~22 kB
        (
            RequestBudget(max_items=100, max_response_bytes=2048 + 10 * (2048 + 96), bytes_per_vector=2048),
            ["z"] * 25,
            [(0, 10), (10, 20), (20, 25)],
        ),
        (
            RequestBudget(max_items=2, max_tokens=1),
            ["one", "two", "three"],
            [(0, 1), (1, 2), (2, 3)],
        ),  # alone fits
    ],
)
def test_given_a_budget_then_requests_stay_within_it(budget, texts, expected):
    assert pack_requests(texts, budget) == expected


def test_given_lambda_limits_then_2048_float_vectors_of_768_dims_never_share_one_response():
    target = LambdaTarget.__new__(LambdaTarget)
    target._options = EmbedOptions()
    target.info = TargetInfo("lambda", "m", 768)
    slices = pack_requests(["short"] * 2048, target.budget(2048))
    per_request = max(end - start for start, end in slices)
    assert per_request * (4 * 1024 + 96) < 6 * 1024 * 1024  # base64 of 768 float32 is 4,096 bytes
    assert per_request > 1000


def fake_target(script: list):
    """Each call takes the next entry: an exception to raise, or None to answer."""
    calls = []

    def embed(texts):
        calls.append(list(texts))
        outcome = script.pop(0) if script else None
        if outcome is not None:
            raise outcome
        return Embedded(
            np.array([[float(len(t))] for t in texts], dtype=np.float32),
            [len(t) for t in texts],
            0,
            [Invocation(0.01)],
        )

    return embed, calls


def test_given_transient_errors_then_retried_with_backoff_honouring_retry_after():
    embed, calls = fake_target([TransientError("429", retry_after=7.0), TransientError("dropped")])
    sleeps, counters = [], Counters()
    result = embed_with_retries(
        embed, ["ab", "c"], RetryPolicy(rng=random.Random(0)), counters, sleeps.append
    )
    assert result.vectors[:, 0].tolist() == [2.0, 1.0] and len(calls) == 3
    assert counters.retries == 2 and sleeps[0] >= 7.0 and 0 <= sleeps[1] <= 1.0


def test_given_a_split_request_then_halves_in_order():
    embed, calls = fake_target([SplitRequest("413: too large"), SplitRequest("504: timed out")])
    counters = Counters()
    result = embed_with_retries(embed, ["a", "bb", "ccc", "dddd"], RetryPolicy(), counters, lambda s: None)
    assert calls == [["a", "bb", "ccc", "dddd"], ["a", "bb"], ["a"], ["bb"], ["ccc", "dddd"]]
    assert result.vectors[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0] and result.tokens == [1, 2, 3, 4]
    assert counters.splits == 2 and len(result.invocations) == 3


def test_given_persistent_failures_then_permanent_with_the_reason():
    embed, _ = fake_target([TransientError("503: busy")] * 5)
    with pytest.raises(PermanentError, match="503: busy; gave up after 3 attempts"):
        embed_with_retries(embed, ["a"], RetryPolicy(attempts=3), Counters(), lambda s: None)
    embed, _ = fake_target([SplitRequest("413: too large")])
    with pytest.raises(PermanentError, match="for a single text"):
        embed_with_retries(embed, ["a"], RetryPolicy(), Counters(), lambda s: None)
    embed, calls = fake_target([PermanentError("400: bad")])
    with pytest.raises(PermanentError, match="400: bad"):
        embed_with_retries(embed, ["a"], RetryPolicy(), Counters(), lambda s: None)
    assert len(calls) == 1  # never retried


def test_full_jitter_stays_under_the_cap():
    policy = RetryPolicy(base_s=0.5, cap_s=30.0, rng=random.Random(1))
    delays = [policy.delay(attempt, None) for attempt in range(12) for _ in range(50)]
    assert max(delays) <= 30.0 and min(delays) >= 0.0
    assert max(policy.delay(1, None) for _ in range(200)) <= 1.0


def test_given_report_lines_then_the_bill_is_measured_from_them():
    tail = (
        "START RequestId: 1\nEND RequestId: 1\n"
        "REPORT RequestId: 1\tDuration: 812.33 ms\tBilled Duration: 813 ms\t"
        "Memory Size: 1769 MB\tMax Memory Used: 300 MB\t\n"
    )
    call = _invocation(0.9, base64.b64encode(tail.encode()).decode())
    assert (call.billed_ms, call.memory_mb) == (813.0, 1769)
    stats = RunStats(
        "lambda://f",
        "m",
        384,
        "float",
        "o",
        texts=1000,
        tokens=256_000,
        invocations=[call] * 10,
        lambda_architecture="arm64",
    )
    bill = lambda_bill(stats)
    gb_s = 10 * 0.813 * 1769 / 1024
    assert bill["measured"] and bill["gb_seconds"] == pytest.approx(gb_s)
    assert bill["usd"]["arm64"] == pytest.approx(gb_s * prices.LAMBDA_GB_SECOND["arm64"] + 10 * 0.2e-6)
    assert bill["hosted_usd_per_million_texts"] == pytest.approx(
        {"standard": 256 * 0.02, "batch": 256 * 0.01}
    )
    text = render(stats)
    assert "billed durations from the REPORT lines" in text and "on arm64" in text and "x86_64" in text


def test_given_no_report_lines_then_an_estimate_labelled_as_such():
    stats = RunStats(
        "lambda://f",
        "m",
        384,
        "float",
        "o",
        texts=10,
        tokens=None,
        invocations=[Invocation(0.1234), Invocation(0.2)],
    )
    bill = lambda_bill(stats)
    assert not bill["measured"] and bill["basis"].startswith("ESTIMATE") and "assumed" in bill["basis"]
    assert bill["gb_seconds"] == pytest.approx((0.124 + 0.2) * 1769 / 1024)
    assert "x86_64 (assumed)" in render(stats) and prices.ARM64_CAVEAT in render(stats)


def test_progress_on_a_terminal_draws_a_bar_and_keeps_it_under_log_lines():
    stream, now = io.StringIO(), [0.0]
    progress = Progress(1000, stream, tty=True, retries=lambda: 3, clock=lambda: now[0])
    now[0] = 2.0
    progress.advance(500)
    progress.message("retrying")
    text = stream.getvalue()
    assert "[############............] 500/1,000 texts (50%), 250 texts/s, ETA 0:02, 3 retries" in text
    assert "\r\x1b[2Kretrying\n" in text


def test_progress_without_a_terminal_writes_plain_lines_at_intervals():
    stream, now = io.StringIO(), [0.0]
    progress = Progress(100, stream, tty=False, clock=lambda: now[0])
    for step in range(1, 11):
        now[0] = step * 3.0
        progress.advance(10)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("progress: 10/100 texts") and lines[-1].startswith(
        "progress: 100/100 texts (100%)"
    )
    assert 2 <= len(lines) <= 5 and "\r" not in stream.getvalue()


def test_a_failed_request_names_a_long_documents_pieces_as_its_one_row():
    from embedding_client.corpus.embed_work import rows_named

    manual, short = Row(3, "manual", "x"), Row(4, "note", "y")
    assert rows_named("jsonl", [manual, manual, manual]) == "line 3 (id 'manual')"
    assert rows_named("jsonl", [manual, manual, short]) == "2 rows, lines 3-4 (ids 'manual' to 'note')"
