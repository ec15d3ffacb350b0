"""Settings: every variable validated at start-up, with its name in the message."""

from __future__ import annotations

import sys

import pytest


from embedding_service.settings import ONNX_FILES, SETTINGS_DOC, SettingsError, load_settings  # noqa: E402


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


def test_the_precision_picks_the_onnx_file_and_onnx_file_still_wins():
    assert ONNX_FILES == {"fp32": "onnx/model.onnx", "int8": "onnx/model_int8.onnx"}
    assert load_settings({}).onnx_file == "onnx/model.onnx"
    assert load_settings({"EMBEDDING_PRECISION": "INT8"}).onnx_file == "onnx/model_int8.onnx"
    explicit = {"EMBEDDING_PRECISION": "int8", "ONNX_FILE": "onnx/custom.onnx"}
    assert load_settings(explicit).onnx_file == "onnx/custom.onnx"
    # A file is not a precision: /health and the logs keep saying fp32.
    assert load_settings({"ONNX_FILE": " onnx/model_int8.onnx "}).precision == "fp32"


def test_compatibility_settings_default_to_off_and_cl100k():
    settings = load_settings({})
    assert settings.model_aliases == () and settings.token_array_encoding == "cl100k_base"
    assert settings.api_key_ssm_parameter is None and settings.api_key_secret_arn is None
    assert settings.encodings_dir.name == "encodings"


def test_model_aliases_are_a_comma_separated_list_without_blanks_or_duplicates():
    settings = load_settings({"MODEL_ALIASES": " text-embedding-ada-002,,text-embedding-3-small , text-embedding-ada-002"})
    assert settings.model_aliases == ("text-embedding-ada-002", "text-embedding-3-small")


@pytest.mark.parametrize("value,expected", [("o200k_base", "o200k_base"), ("NONE", "none"), ("", "cl100k_base")])
def test_token_array_encoding_choices(value, expected):
    assert load_settings({"TOKEN_ARRAY_ENCODING": value}).token_array_encoding == expected


def test_an_unknown_token_array_encoding_is_refused():
    with pytest.raises(SettingsError, match="TOKEN_ARRAY_ENCODING"):
        load_settings({"TOKEN_ARRAY_ENCODING": "p50k_base"})


@pytest.mark.parametrize("env", [
    {"API_KEY": "sk-value-1", "API_KEY_SSM_PARAMETER": "/param/value-2"},
    {"API_KEY": "sk-value-1", "API_KEY_SECRET_ARN": "arn:value-3"},
    {"API_KEY_SSM_PARAMETER": "/param/value-2", "API_KEY_SECRET_ARN": "arn:value-3"},
])
def test_two_sources_of_the_api_key_are_refused_naming_both(env):
    with pytest.raises(SettingsError) as raised:
        load_settings(env)
    assert all(name in str(raised.value) for name in env)
    assert "value-" not in str(raised.value)  # names, never values


def test_the_api_key_never_appears_in_the_settings_repr():
    settings = load_settings({"API_KEY": "sk-very-secret-value"})
    assert settings.api_key == "sk-very-secret-value"
    assert "sk-very-secret-value" not in repr(settings)


class _RecordingEnv(dict):
    """An environment that notes every variable asked for, however it is asked."""

    def __init__(self, values: dict[str, str] | None = None):
        super().__init__(values or {})
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


def test_settings_doc_names_every_variable_load_settings_reads_and_no_other():
    """SETTINGS_DOC is what docs/reference/settings.md is generated from: one row per variable."""
    documented = [name for name, _default, _meaning in SETTINGS_DOC]
    assert len(documented) == len(set(documented))
    for values in ({}, {"EMBEDDING_DEVICE": "cuda", "EMBEDDING_BACKEND": "torch", "EMBEDDING_PRECISION": "fp16",
                        "API_KEY": "k", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3538"}):
        env = _RecordingEnv(values)
        load_settings(env)
        assert env.read == set(documented)
    assert all(default and meaning for _name, default, meaning in SETTINGS_DOC)


def test_models_lists_several_folders_and_keeps_model_dir_for_one():
    settings = load_settings({"MODELS": "/m/all-MiniLM-L6-v2, cross-encoder/ms-marco=/m/ms-marco ,/m/splade"})
    assert [(e.model_id, str(e.model_dir)) for e in settings.served_models] == [
        ("sentence-transformers/all-MiniLM-L6-v2", "/m/all-MiniLM-L6-v2"), ("cross-encoder/ms-marco", "/m/ms-marco"),
        ("sentence-transformers/splade", "/m/splade")]
    assert (settings.model_id, str(settings.model_dir)) == ("sentence-transformers/all-MiniLM-L6-v2",
                                                          "/m/all-MiniLM-L6-v2")
    single = load_settings({"MODEL_DIR": "/m/foo"})
    assert [(e.model_id, str(e.model_dir)) for e in single.served_models] == [("sentence-transformers/foo", "/m/foo")]


@pytest.mark.parametrize("env", [{"MODELS": "/m/a,/m/b", "MODEL_DIR": "/m/a"}, {"MODELS": "/m/a,/n/a"}])
def test_models_refuses_model_dir_beside_it_and_two_models_of_one_id(env):
    with pytest.raises(SettingsError, match="MODELS"):
        load_settings(env)
