"""The model layer against sentence-transformers itself, on real text."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import MODEL_DIR
from corpus import mixed

from embedding_service.model import DeadlineExceeded, model_infer, model_load  # noqa: E402
from embedding_service.model_config import ModelFilesError, read_model_spec  # noqa: E402
from embedding_service.settings import load_settings  # noqa: E402


@pytest.fixture(scope="module")
def texts():
    return mixed(240, seed=7)


@pytest.fixture(scope="module")
def reference_vectors(reference_model, texts):
    return reference_model.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)


def test_spec_comes_from_the_models_own_files():
    spec = read_model_spec(MODEL_DIR)
    assert (spec.dimension, spec.max_seq_length, spec.pooling, spec.normalize) == (384, 256, "mean", True)


def test_corpus_is_mixed_length_and_reaches_past_the_maximum(onnx_embedder, texts):
    tokens = onnx_embedder.count_tokens(texts)
    assert len(texts) >= 200
    assert min(tokens) < 24 and max(tokens) == 256
    assert sum(t == 256 for t in tokens) >= 40  # long texts really are truncated


@pytest.mark.slow
def test_onnx_matches_sentence_transformers_on_every_text(onnx_embedder, texts, reference_vectors):
    ours = onnx_embedder.embed(texts).vectors
    cosines = np.sum(ours * reference_vectors, axis=1)
    assert cosines.min() > 0.9999, f"worst text: {texts[int(cosines.argmin())][:80]!r}"


@pytest.mark.slow
def test_torch_backend_matches_sentence_transformers(texts, reference_vectors):
    torch_embedder = model_load(load_settings({"MODEL_DIR": str(MODEL_DIR), "EMBEDDING_BACKEND": "torch"}))
    assert torch_embedder.backend.name == "torch"
    ours = torch_embedder.embed(texts[:64]).vectors
    assert np.sum(ours * reference_vectors[:64], axis=1).min() > 0.99999


def test_order_is_kept_whatever_the_sub_batch_size(onnx_embedder, texts):
    subset = texts[:50]
    alone = np.stack([onnx_embedder.embed([t]).vectors[0] for t in subset[:10]])
    together = onnx_embedder.embed(subset).vectors[:10]
    assert np.sum(alone * together, axis=1).min() > 0.99999


def test_token_counts_match_sentence_transformers_tokenizer(onnx_embedder, reference_model, texts):
    features = reference_model.tokenize(texts[:30])
    expected = features["attention_mask"].sum(dim=1).tolist()
    assert onnx_embedder.embed(texts[:30]).token_counts == expected


def test_seed_functions_keep_their_shapes(onnx_embedder):
    assert model_infer("hello, world!", onnx_embedder).shape == (384,)
    assert model_infer(["a", "b"], onnx_embedder).shape == (2, 384)


def test_a_passed_deadline_stops_between_sub_batches(onnx_embedder):
    with pytest.raises(DeadlineExceeded):
        onnx_embedder.embed(["x"] * 100, deadline=0.0)


def test_limits_come_from_config_not_constants(tmp_path, onnx_embedder):
    copy = tmp_path / "model"
    shutil.copytree(MODEL_DIR, copy)
    config = json.loads((copy / "sentence_bert_config.json").read_text())
    (copy / "sentence_bert_config.json").write_text(json.dumps({**config, "max_seq_length": 64}))
    short = model_load(load_settings({"MODEL_DIR": str(copy)}))
    assert short.spec.max_seq_length == 64
    assert short.embed(["word " * 500]).token_counts == [64]


def test_a_missing_model_folder_says_how_to_fix_it(tmp_path):
    with pytest.raises(ModelFilesError, match="make setup"):
        model_load(load_settings({"MODEL_DIR": str(tmp_path / "absent")}))


def test_onnx_path_never_imports_torch():
    code = (
        "import sys\n"
        "from embedding_service.model import model_load\nfrom embedding_service.settings import load_settings\n"
        "m = model_load(load_settings({'MODEL_DIR': %r}))\n"
        "m.embed(['hello'])\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in ('torch', 'transformers', 'sentence_transformers')]\n"
        "assert not bad, bad\n"
    ) % (str(MODEL_DIR),)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sub_batches_cut_where_padding_would_cost_more_than_a_call():
    from embedding_service.tokenization import plan_sub_batches

    # one long text must not pad the short ones: it goes alone
    assert plan_sub_batches([256, 12, 11, 10, 9], batch_size=32, max_tokens=10_000) == [(0, 1), (1, 5)]
    # equal lengths need no cutting: as few calls as batch_size allows
    plan = plan_sub_batches([10] * 70, batch_size=32, max_tokens=10_000)
    assert len(plan) == 3 and all(end - start <= 32 for start, end in plan)
    # the padded-token cap bounds memory: 256-token texts go 8 at a time under 2048
    plan = plan_sub_batches([256] * 20, batch_size=32, max_tokens=2048)
    assert all((end - start) * 256 <= 2048 for start, end in plan) and plan[-1][1] == 20
    # every text is covered exactly once, in order
    lengths = sorted([5, 80, 17, 17, 256, 3, 40, 40, 41, 120] * 7, reverse=True)
    plan = plan_sub_batches(lengths, batch_size=16, max_tokens=2048)
    assert plan[0][0] == 0 and plan[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in zip(plan, plan[1:]))
