"""Every setting the service reads from the environment, in one place.

Both targets (FastAPI and Lambda) call `load_settings()`; nothing else in the code
reads `os.environ`, so the README's configuration table can be checked against this file.
A bad value fails fast at start-up with the variable's name, never mid-request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

# <repo>/package/src/settings.py locally; /app/settings.py or /var/task/settings.py in images.
_HERE = Path(__file__).resolve().parent
REPO_ROOT = _HERE.parents[1] if len(_HERE.parents) > 1 else _HERE
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
IMAGE_MODEL_DIR = Path("/models") / DEFAULT_MODEL_NAME
BACKENDS = ("onnx", "torch")
# fp32: the reference (vectors equal sentence-transformers). int8: the ONNX backend's economy
# file on CPU. fp16/bf16: half precision for the torch backend on CUDA only.
PRECISIONS = ("fp32", "int8", "fp16", "bf16")
LAMBDA_MB_PER_VCPU = 1769


class SettingsError(ValueError):
    """A setting from the environment is invalid; the message names the variable."""


@dataclass(frozen=True)
class Limits:
    """Request limits shared by both targets (one source of truth for validation)."""

    max_items: int = 2048  # OpenAI's own cap on inputs per request
    max_item_chars: int = 100_000  # guards the tokenizer; the model reads 256 tokens anyway
    max_body_bytes: int = 6 * 1024 * 1024  # Lambda's synchronous payload limit


@dataclass(frozen=True)
class Settings:
    model_dir: Path
    model_id: str
    backend: str = "onnx"
    device: str = "cpu"
    precision: str = "fp32"
    onnx_file: str = "onnx/model.onnx"
    # int8/uint8 output ranges: calibration embeddings, relative to model_dir unless absolute;
    # "" = the model folder's own quantization_calibration.npy, if it has one.
    calibration_file: str = ""
    threads: int = 0  # 0 = one per CPU this process may use
    batch_size: int = 32  # most texts sent to the runtime in one call
    batch_tokens: int = 2048  # most padded tokens in one call (caps the runtime's memory arena)
    limits: Limits = Limits()
    api_key: str | None = None
    log_level: str = "INFO"
    # FastAPI target only: dynamic batching and overload protection.
    batch_wait_ms: float = 2.0
    batch_max_items: int = 64
    queue_max_items: int = 4096
    request_timeout_s: float = 30.0
    # Set by Lambda itself: CPU is granted in proportion to memory (1,769 MB = 1 vCPU).
    lambda_memory_mb: int | None = None

    @property
    def effective_threads(self) -> int:
        """EMBEDDING_THREADS, else one per CPU we may use. On Lambda, /proc shows 2+ CPUs
        even when the function's memory buys only a fraction of one, so threads follow the
        memory size instead: more threads than CPU share only adds contention."""
        if self.threads > 0:
            return self.threads
        try:
            cpus = max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            cpus = max(1, os.cpu_count() or 1)
        if self.lambda_memory_mb:
            return max(1, min(cpus, self.lambda_memory_mb // LAMBDA_MB_PER_VCPU))
        return cpus


def default_model_dir() -> Path:
    """The image's /models copy when present, else the repo's prepared copy."""
    if IMAGE_MODEL_DIR.is_dir():
        return IMAGE_MODEL_DIR
    return REPO_ROOT / "models" / DEFAULT_MODEL_NAME


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:  # also rejects NaN
        raise SettingsError(f"{name} must be >= {minimum}, got {raw}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _check_precision(precision: str, backend: str, device: str) -> None:
    """Refuse combinations no backend can honour, at start-up rather than per request."""
    if precision == "int8" and backend != "onnx":
        raise SettingsError("EMBEDDING_PRECISION=int8 needs EMBEDDING_BACKEND=onnx (the quantised ONNX file)")
    if precision in ("fp16", "bf16") and not device.startswith("cuda"):
        raise SettingsError(
            f"EMBEDDING_PRECISION={precision} runs on a GPU only (EMBEDDING_DEVICE=cuda with "
            "EMBEDDING_BACKEND=torch); on CPU use fp32, or int8 for the economy path"
        )
    if precision in ("fp16", "bf16") and backend != "torch":
        raise SettingsError(f"EMBEDDING_PRECISION={precision} needs EMBEDDING_BACKEND=torch")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the environment (defaults work locally and in both images)."""
    env = os.environ if env is None else env
    model_dir = Path(env.get("MODEL_DIR", "").strip() or default_model_dir())
    model_id = env.get("MODEL_ID", "").strip() or f"sentence-transformers/{model_dir.name}"
    defaults = Limits()
    limits = Limits(
        max_items=_int(env, "MAX_INPUT_ITEMS", defaults.max_items, 1),
        max_item_chars=_int(env, "MAX_INPUT_CHARS", defaults.max_item_chars, 1),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", defaults.max_body_bytes, 1024),
    )
    device = env.get("EMBEDDING_DEVICE", "").strip().lower() or "cpu"
    if device != "cpu" and not device.startswith("cuda"):
        raise SettingsError(f"EMBEDDING_DEVICE must be cpu or cuda[:N]; got {device!r}")
    backend = _choice(env, "EMBEDDING_BACKEND", "onnx", BACKENDS)
    precision = _choice(env, "EMBEDDING_PRECISION", "fp32", PRECISIONS)
    _check_precision(precision, backend, device)
    return Settings(
        model_dir=model_dir,
        model_id=model_id,
        backend=backend,
        device=device,
        precision=precision,
        onnx_file=env.get("ONNX_FILE", "").strip() or "onnx/model.onnx",
        calibration_file=env.get("EMBEDDING_CALIBRATION_FILE", "").strip(),
        threads=_int(env, "EMBEDDING_THREADS", 0, 0),
        batch_size=_int(env, "EMBEDDING_BATCH_SIZE", 32, 1),
        batch_tokens=_int(env, "EMBEDDING_BATCH_TOKENS", 2048, 1),
        limits=limits,
        api_key=env.get("API_KEY") or None,
        log_level=_choice(env, "LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper(),
        batch_wait_ms=_float(env, "BATCH_WAIT_MS", 2.0, 0.0),
        batch_max_items=_int(env, "BATCH_MAX_ITEMS", 64, 1),
        queue_max_items=_int(env, "QUEUE_MAX_ITEMS", 4096, 1),
        request_timeout_s=_float(env, "REQUEST_TIMEOUT_S", 30.0, 0.001),
        lambda_memory_mb=_int(env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 0, 0) or None,
    )
