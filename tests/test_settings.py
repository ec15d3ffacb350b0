"""Settings: every variable validated at start-up, with its name in the message."""

from __future__ import annotations

import sys

import pytest

from conftest import SRC

sys.path.insert(0, str(SRC))
from settings import SettingsError, load_settings  # noqa: E402


def test_defaults_work_without_any_environment():
    settings = load_settings({})
    assert settings.backend == "onnx" and settings.device == "cpu"
    assert settings.model_dir.name == "all-MiniLM-L6-v2"
    assert settings.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert settings.limits.max_items == 2048 and settings.api_key is None
    assert settings.effective_threads >= 1


def test_values_are_read_from_the_environment():
    settings = load_settings({"EMBEDDING_BACKEND": "TORCH", "EMBEDDING_THREADS": "3", "MAX_INPUT_ITEMS": "10",
                              "API_KEY": "s3cret", "MODEL_DIR": "/tmp/m/foo", "BATCH_WAIT_MS": "0"})
    assert (settings.backend, settings.threads, settings.limits.max_items) == ("torch", 3, 10)
    assert settings.effective_threads == 3 and settings.api_key == "s3cret"
    assert settings.model_id == "sentence-transformers/foo" and settings.batch_wait_ms == 0


@pytest.mark.parametrize("name,value", [
    ("EMBEDDING_BACKEND", "tensorflow"),
    ("EMBEDDING_THREADS", "many"),
    ("EMBEDDING_THREADS", "-1"),
    ("MAX_INPUT_ITEMS", "0"),
    ("MAX_BODY_BYTES", "10"),
    ("BATCH_WAIT_MS", "nan"),
    ("REQUEST_TIMEOUT_S", "0"),
    ("EMBEDDING_DEVICE", "tpu"),
    ("LOG_LEVEL", "chatty"),
])
def test_a_bad_value_fails_fast_naming_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


@pytest.mark.parametrize("memory,expected", [("512", 1), ("1769", 1), ("3538", 2), ("10240", 5)])
def test_on_lambda_threads_follow_the_memory_size(memory, expected, monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(6)))
    assert load_settings({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": memory}).effective_threads == expected


def test_explicit_threads_win_over_the_lambda_memory_rule():
    assert load_settings({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512", "EMBEDDING_THREADS": "2"}).effective_threads == 2


@pytest.mark.parametrize("env", [
    {"EMBEDDING_PRECISION": "fp8"},
    {"EMBEDDING_PRECISION": "int8", "EMBEDDING_BACKEND": "torch"},
    {"EMBEDDING_PRECISION": "fp16"},
    {"EMBEDDING_PRECISION": "bf16", "EMBEDDING_BACKEND": "torch"},
    {"EMBEDDING_PRECISION": "fp16", "EMBEDDING_DEVICE": "cuda"},
])
def test_a_precision_no_backend_can_honour_is_refused_at_start_up(env):
    with pytest.raises(SettingsError, match="EMBEDDING_PRECISION"):
        load_settings(env)


def test_precision_defaults_to_fp32_and_accepts_the_supported_pairs():
    assert load_settings({}).precision == "fp32"
    assert load_settings({"EMBEDDING_PRECISION": "int8"}).precision == "int8"
    cuda = {"EMBEDDING_BACKEND": "torch", "EMBEDDING_DEVICE": "cuda", "EMBEDDING_PRECISION": "BF16"}
    assert load_settings(cuda).precision == "bf16"
