"""Load, infer, unload: the model layer under both targets.

Keeps the seed's three names (`model_load`, `model_infer`, `model_unload`) so the
article's readers recognise it. The backend (ONNX Runtime by default, or
sentence-transformers on torch) only maps token ids to hidden states; tokenisation,
length-bucketed batching, pooling and normalisation are shared, and the model layer knows
nothing about HTTP or Lambda.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from model_config import ModelSpec, read_model_spec
from pooling import exclude_prompt, l2_normalize, pool
from quantize import load_ranges
from settings import Settings, load_settings
from tokenization import BatchTokenizer, load_tokenizer, lowercase_inputs, pad_id_of, prompt_token_count

log = logging.getLogger("embedding.model")

# name -> "module:Class"; modules are imported only when chosen, so torch stays out
# of the ONNX path entirely.
BACKENDS = {"onnx": "backend_onnx:OnnxBackend", "torch": "backend_torch:TorchBackend"}


class Backend(Protocol):
    name: str

    def forward(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray
    ) -> np.ndarray: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # (n, dimension) float32, in input order
    token_counts: list[int]  # tokens read per input, after truncation

    @property
    def total_tokens(self) -> int:
        return sum(self.token_counts)


class DeadlineExceeded(RuntimeError):
    """The caller's time budget ran out between two sub-batches."""


class Embedder:
    """A loaded model: texts in, unit vectors (and token counts) out."""

    def __init__(self, spec: ModelSpec, backend: Backend, batch_size: int, batch_tokens: int):
        self.spec = spec
        self.backend = backend
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        tokenizer = load_tokenizer(spec.path, spec.max_seq_length)
        if spec.do_lower_case:
            lowercase_inputs(tokenizer)
        self._tokenizer = tokenizer
        self._tokens = BatchTokenizer(tokenizer, pad_id_of(tokenizer, spec.pad_token))
        # onnxruntime sessions are thread-safe, but two concurrent runs on 1-2 cores only
        # thrash caches; one at a time keeps latency predictable.
        self._lock = threading.Lock()
        self._seconds_per_token = 0.0  # measured; predicts whether the next sub-batch fits
        self.calibration_ranges: np.ndarray | None = None  # int8/uint8 outputs (quantize.py)

    @property
    def dimension(self) -> int:
        return self.spec.dimension

    def embed(
        self, texts: list[str], deadline: float | None = None, prompt: str | None = None
    ) -> Embeddings:
        """Vectors in input order. `deadline` (time.monotonic()) is checked between
        sub-batches, so a request that cannot finish in time stops early and cleanly.
        `prompt` is prefixed to every text before tokenisation, as sentence-transformers'
        encode(prompt=...) does; None applies the model's default prompt, "" none."""
        prompt = self.spec.default_prompt if prompt is None else prompt
        if prompt:
            texts = [prompt + text for text in texts]
        # Pooling include_prompt=False: the prompt's tokens are read but left out of pooling.
        hidden_prefix = 0 if self.spec.include_prompt or not prompt else prompt_token_count(self._tokenizer, prompt)
        ids = self._tokens.encode(texts)
        vectors = np.empty((len(texts), self.spec.dimension), dtype=np.float32)
        with self._lock:
            for batch in self._tokens.batches(ids, self.batch_size, self.batch_tokens):
                cost = batch.input_ids.size * self._seconds_per_token
                if deadline is not None and time.monotonic() + cost > deadline:
                    raise DeadlineExceeded("time budget exhausted before the last sub-batch")
                started = time.monotonic()
                hidden = self.backend.forward(
                    batch.input_ids, batch.attention_mask, batch.token_type_ids
                )
                rate = (time.monotonic() - started) / batch.input_ids.size
                self._seconds_per_token = max(rate, 0.8 * self._seconds_per_token + 0.2 * rate)
                mask = exclude_prompt(batch.attention_mask, hidden_prefix) if hidden_prefix else batch.attention_mask
                pooled = pool(hidden, mask, self.spec.pooling)
                if self.spec.normalize:
                    pooled = l2_normalize(pooled)
                vectors[batch.positions] = pooled
        return Embeddings(vectors, [len(x) for x in ids])

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(x) for x in self._tokens.encode(texts)]


def create_backend(settings: Settings) -> Backend:
    module_name, class_name = BACKENDS[settings.backend].split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    return backend_class(
        settings.model_dir, settings.onnx_file, settings.effective_threads, settings.device
    )


def model_load(settings: Settings | None = None) -> Embedder:
    """Load the configured model (MODEL_DIR, EMBEDDING_BACKEND, ...) and warm it up."""
    settings = settings or load_settings()
    started = time.perf_counter()
    spec = read_model_spec(settings.model_dir)
    embedder = Embedder(spec, create_backend(settings), settings.batch_size, settings.batch_tokens)
    embedder.calibration_ranges = load_ranges(settings.model_dir, settings.calibration_file, spec.dimension)
    embedder.embed(["warm-up"])  # first run allocates buffers; pay it at load, not per request
    log.info(
        "model loaded",
        extra={
            "model": settings.model_id,
            "backend": settings.backend,
            "dimension": spec.dimension,
            "max_seq_length": spec.max_seq_length,
            "threads": settings.effective_threads,
            "load_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return embedder


def model_infer(text_or_texts: str | list[str], model: Embedder) -> np.ndarray:
    """The seed's call: one text -> (dimension,), a list -> (n, dimension)."""
    if isinstance(text_or_texts, str):
        return model.embed([text_or_texts]).vectors[0]
    return model.embed(list(text_or_texts)).vectors


def model_unload(model: Embedder) -> None:
    model.backend.close()
