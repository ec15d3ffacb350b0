"""Every setting the service reads from the environment, in one place.

Both targets (FastAPI and Lambda) call `load_settings()`; nothing else in the code
reads `os.environ`. `SETTINGS_DOC` lists every variable with its default and meaning: the
documentation's configuration table is generated from it (scripts/gen_docs.py), and a test checks it
against what `load_settings` reads.
A bad value fails fast at start-up with the variable's name, never mid-request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from embedding_service import contract

# <repo>/package/src/embedding_service/settings.py in a checkout; the images use /models instead.
_HERE = Path(__file__).resolve().parent
REPO_ROOT = _HERE.parents[2] if len(_HERE.parents) > 2 else _HERE
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
IMAGE_MODEL_DIR = Path("/models") / DEFAULT_MODEL_NAME
BACKENDS = ("onnx", "torch")
# fp32: the reference (vectors equal sentence-transformers). int8: the ONNX backend's economy
# file on CPU. fp16/bf16: half precision for the torch backend on CUDA only.
PRECISIONS = ("fp32", "int8", "fp16", "bf16")
# The ONNX file each precision loads from MODEL_DIR (scripts/prepare_model.py writes both);
# ONNX_FILE overrides it. fp16/bf16 run on torch and read no ONNX file.
ONNX_FILES = {"fp32": "onnx/model.onnx", "int8": "onnx/model_int8.onnx"}
LAMBDA_MB_PER_VCPU = 1769
# tiktoken encodings whose token-id arrays /v1/embeddings decodes back to text ("none" refuses them).
TOKEN_ARRAY_ENCODINGS = ("cl100k_base", "o200k_base", "none")
IMAGE_ENCODINGS_DIR = Path("/models") / "encodings"


@dataclass(frozen=True)
class DeviceBudgets:
    """Per-call budgets that suit a device; EMBEDDING_BATCH_SIZE / _TOKENS / BATCH_MAX_ITEMS override.

    CPU: 32 texts / 2,048 padded tokens per runtime call (the cap on the runtime's memory arena),
    and the planner cuts a sub-batch wherever padding costs more than a call's fixed ~16 tokens.
    GPU: 256 texts / 65,536 tokens = 256 passages at the model's 256-token maximum in one call,
    so a full batch of long passages is still one launch (its activations stay within a few GB
    of memory: ~0.4 GB for 12 heads' fp16 attention scores at 256 x 256, any datacenter card).
    A GPU call costs about the same until the card is saturated, so padding is cheap and extra
    calls are not: the planner only cuts when it saves more than ~4,096 padded tokens (an
    estimate until `make bench-gpu` measures it on a card). The batcher coalesces up to 2,048
    texts (MAX_INPUT_ITEMS' default) so tokenising the next window overlaps the current one.
    """

    batch_size: int
    batch_tokens: int
    call_overhead_tokens: int
    batch_max_items: int
    tokenize_ahead: bool  # tokenise the next window of texts while the device runs this one


CPU_BUDGETS = DeviceBudgets(
    batch_size=32, batch_tokens=2048, call_overhead_tokens=16, batch_max_items=64, tokenize_ahead=False
)
GPU_BUDGETS = DeviceBudgets(
    batch_size=256, batch_tokens=65_536, call_overhead_tokens=4096, batch_max_items=2048, tokenize_ahead=True
)


def device_budgets(device: str) -> DeviceBudgets:
    return GPU_BUDGETS if device.startswith("cuda") else CPU_BUDGETS


class SettingsError(ValueError):
    """A setting from the environment is invalid; the message names the variable."""


@dataclass(frozen=True)
class Limits:
    """Request limits shared by both targets (one source of truth for validation)."""

    max_items: int = contract.MAX_ITEMS
    max_item_chars: int = contract.MAX_ITEM_CHARS
    max_body_bytes: int = contract.MAX_BODY_BYTES  # Lambda's synchronous payload limit


@dataclass(frozen=True)
class ModelEntry:
    """One served model: the id requests name it by, and its prepared folder."""

    model_id: str
    model_dir: Path


@dataclass(frozen=True)
class Settings:
    model_dir: Path  # the first (or only) model's; the one MODEL_ALIASES and the seed's routes refer to
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
    call_overhead_tokens: int = 16  # a call's fixed cost in tokens of work: where the planner cuts
    tokenize_ahead: bool = False  # overlap tokenising the next window with the device's work
    limits: Limits = Limits()
    # The key itself never appears in a repr (and so in no log line or traceback).
    api_key: str | None = field(default=None, repr=False)
    # Lambda: read the key once at init from SSM Parameter Store or Secrets Manager instead.
    api_key_ssm_parameter: str | None = None
    api_key_secret_arn: str | None = None
    # Extra model names accepted as the served model (framework defaults); responses report model_id.
    model_aliases: tuple[str, ...] = ()
    token_array_encoding: str = "cl100k_base"
    encodings_dir: Path = field(default_factory=lambda: default_encodings_dir())
    log_level: str = "INFO"
    # FastAPI target only: dynamic batching and overload protection.
    batch_wait_ms: float = 2.0
    batch_max_items: int = 64
    queue_max_items: int = 4096
    request_timeout_s: float = 30.0
    # Set by Lambda itself: CPU is granted in proportion to memory (1,769 MB = 1 vCPU).
    lambda_memory_mb: int | None = None
    # MODELS: every served model, the first one being model_dir/model_id; () is that one alone.
    models: tuple[ModelEntry, ...] = ()

    @property
    def served_models(self) -> tuple[ModelEntry, ...]:
        return self.models or (ModelEntry(self.model_id, self.model_dir),)

    def for_model(self, entry: ModelEntry) -> "Settings":
        """These settings for one of the served models (what model_load reads)."""
        return replace(self, model_dir=entry.model_dir, model_id=entry.model_id)

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


def default_encodings_dir() -> Path:
    """The tiktoken rank files `make setup` installs (scripts/fetch_encodings.py)."""
    if IMAGE_ENCODINGS_DIR.is_dir():
        return IMAGE_ENCODINGS_DIR
    return REPO_ROOT / "models" / "encodings"


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped, duplicates removed (first one kept)."""
    items = (item.strip() for item in env.get(name, "").split(","))
    return tuple(dict.fromkeys(item for item in items if item))


def _api_key_source(env: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """API_KEY, API_KEY_SSM_PARAMETER, API_KEY_SECRET_ARN: at most one may be set."""
    values = {name: env.get(name, "").strip() or None
              for name in ("API_KEY", "API_KEY_SSM_PARAMETER", "API_KEY_SECRET_ARN")}
    given = [name for name, value in values.items() if value]
    if len(given) > 1:
        raise SettingsError(f"set only one of {', '.join(given)}: each is a complete source of the API key")
    return values["API_KEY"], values["API_KEY_SSM_PARAMETER"], values["API_KEY_SECRET_ARN"]


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


# Every environment variable load_settings() reads, as (variable, default, meaning) in Markdown:
# scripts/gen_docs.py renders it as docs/reference/settings.md, and tests/service/test_settings.py checks that
# it names exactly the variables load_settings() reads. Change it together with the code it describes.
SETTINGS_DOC: tuple[tuple[str, str, str], ...] = (
    ("MODEL_DIR",
     "`/models/all-MiniLM-L6-v2` if it exists, else `<repo>/models/all-MiniLM-L6-v2`",
     "prepared model folder"),
    ("MODEL_ID",
     "`sentence-transformers/<folder name>`",
     "id reported in responses and accepted as `model`"),
    ("MODELS",
     "unset (one model: `MODEL_DIR`)",
     "several prepared folders served at once, comma-separated, each `folder` or `id=folder` (id default "
     "`sentence-transformers/<folder name>`), e.g. an embedder, a reranker and a sparse encoder; all load at "
     "start-up; a request's `model` picks one, else the only model of the kind its route needs; excludes "
     "`MODEL_DIR` and `MODEL_ID`"),
    ("EMBEDDING_BACKEND",
     "`onnx`",
     "`onnx` (onnxruntime, no torch) or `torch` (sentence-transformers)"),
    ("EMBEDDING_DEVICE",
     "`cpu`",
     "`cuda` or `cuda:N` runs the torch backend on a GPU"),
    ("EMBEDDING_PRECISION",
     "`fp32`",
     "`fp32` (vectors equal sentence-transformers); `int8` (the ONNX economy file `onnx/model_int8.onnx`, "
     "CPU, about half the CPU time per passage; see Economy precision: int8 under Performance and cost); "
     "`fp16`/`bf16` (torch on CUDA only); other pairs are refused at start-up"),
    ("ONNX_FILE",
     "`onnx/model.onnx` (`fp32`), `onnx/model_int8.onnx` (`int8`)",
     "ONNX file inside `MODEL_DIR`; setting it overrides the precision's file"),
    ("EMBEDDING_CALIBRATION_FILE",
     "`MODEL_DIR`'s `quantization_calibration.npy`, if present",
     "calibration embeddings (`(n, dimension)` `.npy`; relative to `MODEL_DIR` unless absolute) whose "
     "per-dimension min and max set the `int8`/`uint8` ranges; a set file that is missing or of the wrong "
     "shape stops start-up"),
    ("EMBEDDING_THREADS",
     "CPUs available to the process; on Lambda, one per 1,769 MB of memory "
     "(`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`)",
     "intra-op threads of the runtime"),
    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
     "unset (Lambda sets it)",
     "the function's memory in MB, set by Lambda itself; with `EMBEDDING_THREADS` unset, the threads "
     "follow it (one per 1,769 MB, at least one)"),
    ("EMBEDDING_BATCH_SIZE",
     "`32` on CPU, `256` on a GPU",
     "most texts per runtime call"),
    ("EMBEDDING_BATCH_TOKENS",
     "`2048` on CPU, `65536` on a GPU",
     "most padded tokens per runtime call (caps memory); sub-batches are cut where padding would cost more"
     " than another call"),
    ("MAX_INPUT_ITEMS",
     f"`{contract.MAX_ITEMS}`",
     "items per request"),
    ("MAX_INPUT_CHARS",
     f"`{contract.MAX_ITEM_CHARS}`",
     "characters per item"),
    ("MAX_BODY_BYTES",
     f"`{contract.MAX_BODY_BYTES}`",
     "request body size"),
    ("API_KEY",
     "unset",
     "require `Authorization: Bearer <key>` on every route but `/status` (and the docs), on FastAPI and on"
     " Lambda Function URL / API Gateway events"),
    ("API_KEY_SSM_PARAMETER",
     "unset",
     "name or ARN of an SSM SecureString holding the key, read once at start-up (instead of `API_KEY`; set"
     " at most one of the three)"),
    ("API_KEY_SECRET_ARN",
     "unset",
     "ARN (or name) of a Secrets Manager secret whose string is the key, read once at start-up"),
    ("MODEL_ALIASES",
     "unset",
     "comma-separated model names accepted as the served model, e.g. "
     "`text-embedding-ada-002,text-embedding-3-small`; responses report `MODEL_ID`"),
    ("TOKEN_ARRAY_ENCODING",
     "`cl100k_base`",
     "tiktoken encoding that token-id arrays are decoded with: `cl100k_base`, `o200k_base`, or `none` "
     "(refuse token arrays)"),
    ("ENCODINGS_DIR",
     "`/models/encodings` if it exists, else `<repo>/models/encodings`",
     "folder of the `*.tiktoken.gz` rank files (`make setup`); a missing file for the chosen encoding "
     "stops start-up"),
    ("BATCH_WAIT_MS",
     "`2`",
     "FastAPI: how long the batcher waits for concurrent requests to join a model call"),
    ("BATCH_MAX_ITEMS",
     "`64` on CPU, `2048` on a GPU",
     "FastAPI: most texts coalesced into one model call"),
    ("QUEUE_MAX_ITEMS",
     "`4096`",
     "FastAPI: texts allowed to wait; beyond that requests get 429"),
    ("REQUEST_TIMEOUT_S",
     "`30`",
     "FastAPI: a request waiting longer gets 504"),
    ("LOG_LEVEL",
     "`info`",
     "`debug`, `info`, `warning`, `error`; logs are JSON lines on stdout"),
)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the environment (defaults work locally and in both images)."""
    env = os.environ if env is None else env
    models = _models(env)
    if models:
        model_dir, model_id = models[0].model_dir, models[0].model_id
    else:
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
    api_key, api_key_ssm_parameter, api_key_secret_arn = _api_key_source(env)
    budgets = device_budgets(device)
    return Settings(
        model_dir=model_dir,
        model_id=model_id,
        backend=backend,
        device=device,
        precision=precision,
        onnx_file=env.get("ONNX_FILE", "").strip() or ONNX_FILES.get(precision, ONNX_FILES["fp32"]),
        calibration_file=env.get("EMBEDDING_CALIBRATION_FILE", "").strip(),
        threads=_int(env, "EMBEDDING_THREADS", 0, 0),
        batch_size=_int(env, "EMBEDDING_BATCH_SIZE", budgets.batch_size, 1),
        batch_tokens=_int(env, "EMBEDDING_BATCH_TOKENS", budgets.batch_tokens, 1),
        call_overhead_tokens=budgets.call_overhead_tokens,
        tokenize_ahead=budgets.tokenize_ahead,
        limits=limits,
        api_key=api_key,
        api_key_ssm_parameter=api_key_ssm_parameter,
        api_key_secret_arn=api_key_secret_arn,
        model_aliases=_names(env, "MODEL_ALIASES"),
        token_array_encoding=_choice(env, "TOKEN_ARRAY_ENCODING", "cl100k_base", TOKEN_ARRAY_ENCODINGS),
        encodings_dir=Path(env.get("ENCODINGS_DIR", "").strip() or default_encodings_dir()),
        log_level=_choice(env, "LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper(),
        batch_wait_ms=_float(env, "BATCH_WAIT_MS", 2.0, 0.0),
        batch_max_items=_int(env, "BATCH_MAX_ITEMS", budgets.batch_max_items, 1),
        queue_max_items=_int(env, "QUEUE_MAX_ITEMS", 4096, 1),
        request_timeout_s=_float(env, "REQUEST_TIMEOUT_S", 30.0, 0.001),
        lambda_memory_mb=_int(env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 0, 0) or None,
        models=models,
    )


def _models(env: Mapping[str, str]) -> tuple[ModelEntry, ...]:
    """MODELS: `folder` or `id=folder` entries, comma-separated; ids must differ."""
    entries = []
    for item in _names(env, "MODELS"):
        model_id, _, folder = item.rpartition("=")
        folder_path = Path(folder.strip())
        entries.append(ModelEntry(model_id.strip() or f"sentence-transformers/{folder_path.name}", folder_path))
    if not entries:
        return ()
    given = [name for name in ("MODEL_DIR", "MODEL_ID") if env.get(name, "").strip()]
    if given:
        raise SettingsError(f"set MODELS or {' and '.join(given)}, not both: MODELS names every served model")
    ids = [entry.model_id.lower() for entry in entries]
    if len(set(ids)) != len(ids):
        raise SettingsError(f"MODELS names two models with the same id: {', '.join(e.model_id for e in entries)}")
    return tuple(entries)
