"""The GPU path's correctness, proven on CPU with real torch (throughput needs a card: bench/gpu.py).

Pooling on the device equals pooling.py; the planner's GPU budgets; vectorised padding; the
tokenise-ahead pipeline keeps input order (torch and ONNX); half precision is refused on CPU.
"""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from conftest import MODEL_DIR, REPO
from corpus import mixed, passages, sentences

from embedding_service import pooling  # noqa: E402
from embedding_service import pooling_torch  # noqa: E402
from embedding_service.model import DeadlineExceeded, model_load  # noqa: E402
from embedding_service.model_config import POOLING_MODES  # noqa: E402
from embedding_service.settings import SettingsError, load_settings  # noqa: E402
from embedding_service.tokenization import BatchTokenizer, load_tokenizer, plan_sub_batches  # noqa: E402

CUDA_TORCH = {"EMBEDDING_DEVICE": "cuda", "EMBEDDING_BACKEND": "torch"}


def padded_hidden_states(seed: int = 0):
    """Rows of different lengths (one of a single token, one full); padding holds large
    garbage, so pooling that ignored the mask would be far off."""
    rng = np.random.default_rng(seed)
    lengths = np.array([1, 3, 9, 9, 5, 2])
    hidden = (rng.normal(size=(len(lengths), 9, 16)) * 3).astype(np.float32)
    mask = (np.arange(9) < lengths[:, None]).astype(np.int64)
    hidden[mask == 0] = 1000.0
    return hidden, mask


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_device_pooling_equals_shared_pooling_for_every_mode(mode):
    hidden, mask = padded_hidden_states()
    expected = pooling.pool(hidden, mask, mode)
    got = pooling_torch.pool(torch.from_numpy(hidden), torch.from_numpy(mask), mode)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        pooling_torch.l2_normalize(got).numpy(), pooling.l2_normalize(expected), rtol=1e-5, atol=1e-6
    )
    assert np.abs(expected).max() < 100  # the garbage in the padding was really left out


def test_normalising_a_zero_vector_gives_zeros_in_both():
    zeros = np.zeros((2, 4), dtype=np.float32)
    assert not pooling.l2_normalize(zeros).any()
    assert not pooling_torch.l2_normalize(torch.from_numpy(zeros)).any()


def test_torch_backend_pools_on_its_device_as_pooling_py_does_on_onnx_hidden_states():
    # Real model, real padded batch: the torch backend returns pooled vectors, the ONNX backend
    # hidden states; pooled with pooling.py they agree, mode by mode.
    from embedding_service.backend_onnx import OnnxBackend
    from embedding_service.backend_torch import TorchBackend

    tokens = BatchTokenizer(load_tokenizer(MODEL_DIR, 256))
    ids = tokens.encode(mixed(12, seed=5))
    (batch,) = tokens.batches(ids, 32, 10_000, call_overhead_tokens=100_000)  # one call, padded
    assert batch.attention_mask.min() == 0  # the batch really has padding
    arrays = (batch.input_ids, batch.attention_mask, batch.token_type_ids)
    onnx = OnnxBackend(MODEL_DIR, "onnx/model.onnx", 1)
    hidden = onnx.forward(*arrays)
    assert not onnx.returns_pooled and hidden.ndim == 3
    for mode in POOLING_MODES:
        backend = TorchBackend(MODEL_DIR, "", 1, "cpu", pooling=mode, normalize=True)
        assert backend.returns_pooled
        got = backend.forward(*arrays)
        expected = pooling.l2_normalize(pooling.pool(hidden, batch.attention_mask, mode))
        assert got.shape == expected.shape
        assert np.sum(got * expected, axis=1).min() > 0.99999, mode
        np.testing.assert_allclose(got, expected, atol=2e-4)


def _budgets(settings):
    return settings.batch_size, settings.batch_tokens, settings.batch_max_items, settings.tokenize_ahead


def test_budgets_follow_the_device_and_the_environment_overrides_them():
    cpu, gpu = load_settings({}), load_settings(CUDA_TORCH)
    assert _budgets(cpu) == (32, 2048, 64, False)
    assert _budgets(gpu) == (256, 65_536, 2048, True)
    assert gpu.call_overhead_tokens > cpu.call_overhead_tokens
    overrides = {"EMBEDDING_BATCH_SIZE": "512", "EMBEDDING_BATCH_TOKENS": "131072", "BATCH_MAX_ITEMS": "100"}
    custom = load_settings({**CUDA_TORCH, **overrides})
    assert (custom.batch_size, custom.batch_tokens, custom.batch_max_items) == (512, 131_072, 100)
    with pytest.raises(SettingsError, match="EMBEDDING_BATCH_TOKENS"):
        load_settings({**CUDA_TORCH, "EMBEDDING_BATCH_TOKENS": "0"})


def _plan(lengths, settings):
    return plan_sub_batches(sorted(lengths, reverse=True), settings.batch_size, settings.batch_tokens,
                            settings.call_overhead_tokens)


def test_gpu_budgets_fill_the_card_where_cpu_budgets_cut_small():
    gpu, cpu = load_settings(CUDA_TORCH), load_settings({})
    # 1,024 passages at the 256-token maximum: four full calls of 256 x 256 = 65,536 tokens
    assert _plan([256] * 1024, gpu) == [(0, 256), (256, 512), (512, 768), (768, 1024)]
    assert len(_plan([256] * 1024, cpu)) == 128  # 8 per call under 2,048 tokens
    # short texts of mixed lengths: padding is cheap on a card, calls are not
    tokens = BatchTokenizer(load_tokenizer(MODEL_DIR, 256))
    lengths = sorted((len(x) for x in tokens.encode(sentences(1024, seed=2))), reverse=True)
    plan = _plan(lengths, gpu)
    assert len(plan) == -(-len(lengths) // 256)
    assert all(end - start <= 256 and (end - start) * lengths[start] <= 65_536 for start, end in plan)
    assert len(_plan(lengths, cpu)) > 4 * len(plan)
    # a smaller token budget still bounds each call's memory
    tight = load_settings({**CUDA_TORCH, "EMBEDDING_BATCH_TOKENS": "32768"})
    assert all((end - start) * 256 <= 32_768 for start, end in _plan([256] * 1024, tight))


def _reference_plan_cost(lengths, batch_size, max_tokens, overhead):
    """The exhaustive dynamic programme (every start scored): the optimum to match."""
    best = [0.0] + [float("inf")] * len(lengths)
    for end in range(1, len(lengths) + 1):
        for start in range(end - 1, max(0, end - batch_size) - 1, -1):
            if (end - start) * lengths[start] > max_tokens and end - start > 1:
                break
            best[end] = min(best[end], best[start] + overhead + (end - start) * lengths[start])
    return best[-1]


def test_the_planner_finds_the_optimal_cuts_for_any_budget():
    rng = random.Random(0)
    for _ in range(400):
        count = rng.randrange(90)
        lengths = sorted((rng.choice([rng.randrange(2, 257), rng.randrange(2, 14)]) for _ in range(count)),
                         reverse=True)
        budget = (rng.choice([1, 3, 32, 256]), rng.choice([40, 2048, 65_536]), rng.choice([0, 16, 4096]))
        plan = plan_sub_batches(lengths, *budget)
        assert [s for s, _ in plan[1:]] == [e for _, e in plan[:-1]]
        assert not plan or (plan[0][0], plan[-1][1]) == (0, len(lengths))
        assert all(e - s <= budget[0] and ((e - s) * lengths[s] <= budget[1] or e - s == 1) for s, e in plan)
        cost = sum(budget[2] + (e - s) * lengths[s] for s, e in plan)
        assert cost == _reference_plan_cost(lengths, *budget), (lengths, budget)


def test_vectorised_padding_puts_every_id_in_its_row():
    tokens = BatchTokenizer(load_tokenizer(MODEL_DIR, 256))
    ids = tokens.encode(mixed(90, seed=4))
    seen = []
    for batch in tokens.batches(ids, 16, 2048):
        assert batch.input_ids.dtype == batch.attention_mask.dtype == np.int64
        for row, pos in enumerate(batch.positions):
            n = len(ids[pos])
            assert batch.input_ids[row, :n].tolist() == ids[pos]
            assert not batch.input_ids[row, n:].any()
            assert batch.attention_mask[row].tolist() == [1] * n + [0] * (batch.input_ids.shape[1] - n)
        seen.extend(batch.positions.tolist())
    assert sorted(seen) == list(range(90))


@pytest.fixture(scope="module", params=["onnx", "torch"])
def ahead_embedder(request):
    """A small window (4 x 8 texts), so 90 texts run as 3 windows, tokenised ahead."""
    settings = load_settings({"MODEL_DIR": str(MODEL_DIR), "EMBEDDING_BACKEND": request.param})
    return model_load(dataclasses.replace(settings, batch_size=8, tokenize_ahead=True))


def varied_texts(seed: int) -> list[str]:
    """Mostly short texts with some long ones: varied lengths, light enough for torch on CPU."""
    texts = sentences(80, seed=seed) + [p[: 200 + 80 * i] for i, p in enumerate(passages(10, seed=seed))]
    assert len(set(texts)) == len(texts)
    random.Random(seed).shuffle(texts)
    return texts


def _threads_seen(call):
    names: set[str] = set()
    threading.setprofile(lambda *_: names.add(threading.current_thread().name))
    try:
        return call(), names
    finally:
        threading.setprofile(None)


def test_tokenising_ahead_gives_the_sequential_results_in_input_order(ahead_embedder):
    texts = varied_texts(11)
    assert len(texts) > 2 * ahead_embedder.window_texts
    ahead, threads = _threads_seen(lambda: ahead_embedder.embed(texts))
    assert "tokenize-ahead" in threads  # the producer thread really ran
    ahead_embedder.tokenize_ahead = False
    try:
        sequential = ahead_embedder.embed(texts)
    finally:
        ahead_embedder.tokenize_ahead = True
    assert ahead.token_counts == sequential.token_counts
    np.testing.assert_allclose(ahead.vectors, sequential.vectors, atol=1e-5)
    similarity = ahead.vectors @ sequential.vectors.T
    assert (similarity.argmax(axis=1) == np.arange(len(texts))).all()  # each row is its own text
    alone = ahead_embedder.embed([texts[70]]).vectors[0]
    assert float(alone @ ahead.vectors[70]) > 0.99999


def test_tokenising_ahead_stops_cleanly_at_a_deadline_and_on_bad_input(ahead_embedder):
    texts = varied_texts(12)
    with pytest.raises(DeadlineExceeded):
        ahead_embedder.embed(texts, deadline=0.0)
    with pytest.raises(TypeError):  # the tokenizer's error, raised in the producer thread
        ahead_embedder.embed(texts[:60] + [None] + texts[60:])
    assert not [t for t in threading.enumerate() if t.name == "tokenize-ahead"]  # nothing left running
    assert ahead_embedder.embed(texts[:40]).vectors.shape == (40, 384)  # and the model still serves


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_is_refused_on_cpu_with_a_clear_message(precision):
    env = {"MODEL_DIR": str(MODEL_DIR), "EMBEDDING_BACKEND": "torch", "EMBEDDING_PRECISION": precision}
    with pytest.raises(SettingsError, match=f"EMBEDDING_PRECISION={precision} runs on a GPU only"):
        load_settings(env)
    # the model layer refuses too, even when settings were built around the check
    forced = dataclasses.replace(load_settings({**env, "EMBEDDING_PRECISION": "fp32"}), precision=precision)
    with pytest.raises(SettingsError, match="runs on a GPU only"):
        model_load(forced)


def test_bench_gpu_without_a_card_says_so_in_one_sentence():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "needs a CUDA GPU" in proc.stderr
    assert "--device cpu --quick" in proc.stderr


@pytest.mark.slow
def test_bench_gpu_cpu_smoke_mode_prints_and_writes_every_figure(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), "--device", "cpu", "--quick", "--json", str(out),
         "--price-per-hour", "2.0"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "smoke mode" in proc.stdout and "bare forward, pre-tokenised (ceiling)" in proc.stdout
    results = json.loads(out.read_text())
    assert results["card"].startswith("CPU") and set(results["tokenize_tokens_per_s"]) >= {"1"}
    (row,) = results["rows"]
    assert row["precision"] == "fp32"
    for kind in ("passages", "short"):
        assert row[kind]["ours_per_s"] > 0 and row[kind]["ceiling_per_s"] > 0
        assert row[kind]["ours_not_overlapped_per_s"] > 0 and row[kind]["ceiling_tokens_per_s"] > 0
        assert row[kind]["min_cosine"] > 0.9999
    expected_usd = 2.0 / (row["passages"]["ours_per_s"] * 3600) * 1e6
    assert row["usd_per_million_passages"] == pytest.approx(expected_usd)
