"""bench/quality.py: its metrics on vectors whose answers are known, the STS reader, and one
small end-to-end run on the real model (fp32 against itself is perfect; int8 close, not equal)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

import quality
from conftest import MODEL_DIR

RNG = np.random.default_rng(42)
VECTORS = RNG.normal(size=(200, 16)).astype(np.float32)
QUERIES = quality.query_rows(len(VECTORS))


def test_identical_vectors_agree_perfectly():
    assert quality.recall_at_k(VECTORS, VECTORS.copy(), QUERIES) == 1.0
    assert quality.similarity_spearman(VECTORS, VECTORS * 3.0, QUERIES) == pytest.approx(1.0)
    assert quality.cosines(VECTORS, VECTORS * 2).min() == pytest.approx(1.0)


def test_unrelated_vectors_agree_about_as_chance_predicts():
    other = RNG.normal(size=VECTORS.shape)
    assert quality.recall_at_k(VECTORS, other, QUERIES) < 0.2  # chance: 10 of 199
    assert abs(quality.similarity_spearman(VECTORS, other, QUERIES)) < 0.1


def test_recall_counts_the_reference_top_10_kept():
    # Each query's own row is excluded; nudging vectors a little keeps most neighbours.
    noisy = VECTORS + 0.3 * RNG.normal(size=VECTORS.shape)
    recall = quality.recall_at_k(VECTORS, noisy, QUERIES)
    assert 0.3 < recall < 1.0
    assert quality.top_k(quality.similarities(VECTORS, QUERIES)).shape == (len(QUERIES), 10)
    assert not (quality.top_k(quality.similarities(VECTORS, QUERIES)) == QUERIES[:, None]).any()


def test_spearman_matches_scipy_with_ties():
    a = np.array([1, 2, 2, 3, 5, 5, 5, 0.5, 4, 4], dtype=float)
    b = np.array([2, 1, 3, 3, 4, 6, 5, 0, 4, 7], dtype=float)
    assert quality.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert quality.ranks(np.array([10.0, 20.0, 20.0, 30.0])).tolist() == [0.0, 1.5, 1.5, 3.0]


def test_duplicates_are_counted_once():
    doubled = np.vstack([VECTORS[:5], VECTORS[:5] * 1.0000001, VECTORS[5:10]])
    assert quality.distinct_rows(doubled).tolist() == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]


def test_sts_reader_keeps_seven_fields_and_skips_short_lines(tmp_path):
    path = tmp_path / "sts.csv"
    path.write_text(
        "main-captions\tMSRvid\t2012test\t0001\t5.000\tA man is cutting up a cucumber.\t"
        "A man is slicing a cucumber.\n"
        "main-news\theadlines\t2015\t0002\t0.500\tFirst \"quoted\" text\tSecond text\textra\tfields\n"
        "broken line\n",
        encoding="utf-8",
    )
    first, second, gold = quality.read_sts(path)
    assert first == ["A man is cutting up a cucumber.", 'First "quoted" text']
    assert second == ["A man is slicing a cucumber.", "Second text"]
    assert gold.tolist() == [5.0, 0.5]


def test_sts_spearman_is_x100_of_the_cosines_rank_correlation():
    first = RNG.normal(size=(30, 8))
    gold = np.linspace(0, 5, 30)
    second = first + (5 - gold)[:, None] * RNG.normal(size=(30, 8))  # less similar as gold falls
    score = quality.sts_spearman(first, second, gold)
    assert 50 < score <= 100
    assert quality.sts_spearman(first, second, 5 - gold) == pytest.approx(-score)  # the sign follows the gold


def test_end_to_end_on_the_real_model_writes_the_report(tmp_path):
    sts = tmp_path / "sts.csv"
    rows = [("A man is playing a guitar.", "A man plays the guitar.", 4.8),
            ("A woman is slicing onions.", "A man is driving a car.", 0.2),
            ("A dog runs in the park.", "A dog is running on grass.", 4.0),
            ("Stocks fell sharply today.", "The cat sleeps on the sofa.", 0.0)]
    lines = (f"g\tf\t2024\t{i:04d}\t{score}\t{a}\t{b}\n" for i, (a, b, score) in enumerate(rows))
    sts.write_text("".join(lines))
    quality.main(["--model-dir", str(MODEL_DIR), "--out", str(tmp_path), "--draw", "90", "--sts", str(sts)])
    report = json.loads((tmp_path / "quality.json").read_text())
    by_precision = {row["precision"]: row for row in report["precisions"]}
    assert list(by_precision) == ["fp32", "int8"]
    fp32, int8 = by_precision["fp32"], by_precision["int8"]
    assert fp32["recall_at_10"] == 1.0 and fp32["min_cosine"] == pytest.approx(1.0)
    assert 0.5 < int8["recall_at_10"] <= 1.0 and 0.98 < int8["min_cosine"] < 0.99999
    assert fp32["sts_spearman"] == pytest.approx(100.0) and int8["sts_spearman"] > 50
    markdown = (tmp_path / "quality.md").read_text()
    assert "| int8 | `onnx/model_int8.onnx` |" in markdown and "sts.csv" in markdown
    assert "$" not in markdown.replace("${", "")  # every placeholder filled
