"""Load, infer, unload: the model layer under both targets.

Keeps the seed's three names (`model_load`, `model_infer`, `model_unload`) so the
article's readers recognise it. The backend (ONNX Runtime by default, or
sentence-transformers on torch) only maps token ids to hidden states, or to pooled vectors
when it pools on its device (the torch backend, so a GPU sends back `n x dim` floats);
tokenisation, length-bucketed batching, pooling and normalisation are shared, and the model
layer knows nothing about HTTP or Lambda. On a GPU it tokenises the next window of texts
while the device runs the current one (settings.tokenize_ahead); on CPU it does not, since
the runtime's threads already use every core.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol

import numpy as np

from tokenizers import Tokenizer

from embedding_service.chunking import Chunk, Chunker
from embedding_service.contract import EMBEDDING, RERANKER, SPARSE
from embedding_service.model_config import ModelFilesError, ModelSpec, read_model_spec
from embedding_service.pooling import exclude_prompt, keep_largest, l2_normalize, pool
from embedding_service.prefetch import Prefetch
from embedding_service.quantize import load_ranges
from embedding_service.settings import Settings, load_settings
from embedding_service.tokenization import (
    CALL_OVERHEAD_TOKENS,
    Batch,
    BatchTokenizer,
    load_tokenizer,
    lowercase_inputs,
    pad_id_of,
    prompt_token_count,
)

log = logging.getLogger("embedding.model")

# name -> "module:Class"; modules are imported only when chosen, so torch stays out
# of the ONNX path entirely.
BACKENDS = {"onnx": "embedding_service.backend_onnx:OnnxBackend", "torch": "embedding_service.backend_torch:TorchBackend"}


class Backend(Protocol):
    name: str
    # False: forward() returns (n, seq, dim) hidden states and the model layer pools them.
    # True: forward() returns (n, dim) vectors already pooled (and normalised when the model
    # says so) on the backend's device, with pooling.py's definition (see pooling_torch.py).
    returns_pooled: bool

    def forward(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray,
        pooling_mask: np.ndarray | None = None,  # used only by backends that pool themselves
    ) -> np.ndarray: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Embeddings:
    # (n, dimension) float32, in input order: unit vectors (embedding), the vocabulary's SPLADE
    # weights (sparse), or one logit per (query, document) pair (reranker)
    vectors: np.ndarray
    token_counts: list[int]  # tokens read per input, after truncation
    truncated: list[bool]  # per input: was it cut at the model's maximum length?

    @property
    def total_tokens(self) -> int:
        return sum(self.token_counts)

    @property
    def truncated_count(self) -> int:
        return sum(self.truncated)


# (offset of its first text, token ids, truncated flags, padded sub-batches): one run of
# consecutive texts.
Window = tuple[int, list[list[int]], list[bool], Iterable[Batch]]
# What a model reads: texts (embedding, sparse) or (query, document) pairs (reranker).
Item = "str | tuple[str, str]"


class DeadlineExceeded(RuntimeError):
    """The caller's time budget ran out between two sub-batches."""


class Embedder:
    """A loaded model: texts in, unit vectors (and token counts) out; on a sparse model the
    vocabulary's SPLADE weights, on a reranker (query, document) pairs in and logits out. One
    class for the three kinds, so the batcher, deadlines and length-sorted batching are shared."""

    def __init__(
        self,
        spec: ModelSpec,
        backend: Backend,
        batch_size: int,
        batch_tokens: int,
        call_overhead_tokens: int = CALL_OVERHEAD_TOKENS,
        tokenize_ahead: bool = False,
    ):
        self.spec = spec
        self.backend = backend
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.call_overhead_tokens = call_overhead_tokens
        self.tokenize_ahead = tokenize_ahead
        # Texts tokenised, sorted and padded together: enough for several full sub-batches,
        # so sorting by length still packs them well.
        self.window_texts = 4 * batch_size
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
        self._chunker: Chunker | None = None
        self._untruncated: Tokenizer | None = None

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def untruncated(self) -> Tokenizer:
        """The model's tokenizer without the cut at max_seq_length (counting, /tokenize), built on first use."""
        if self._untruncated is None:
            counting = Tokenizer.from_str(self._tokenizer.to_str())
            counting.no_truncation()
            counting.no_padding()
            self._untruncated = counting
        return self._untruncated

    def overlong_pairs(self, query: str, documents: list[str], prompt: str | None = None) -> list[tuple[int, int]]:
        """(index, tokens) of each (query, document) pair the reranker would cut, special tokens included."""
        query = self.resolved_prompt(prompt) + query
        encodings = self.untruncated.encode_batch([(query, d) for d in documents], add_special_tokens=True)
        return [(i, len(e.ids)) for i, e in enumerate(encodings) if len(e.ids) > self.spec.max_seq_length]

    @property
    def chunker(self) -> Chunker:
        """The model's chunker (its tokenizer, untruncated), built on first use: no cold-start cost."""
        if self._chunker is None:
            self._chunker = Chunker.of(self._tokenizer, self.spec.max_seq_length)
        return self._chunker

    def resolved_prompt(self, prompt: str | None) -> str:
        """The prompt `embed(prompt=...)` applies: None is the model's default."""
        return (self.spec.default_prompt if prompt is None else prompt) or ""

    def chunk_window(self, prompt: str | None = None) -> int:
        return self.chunker.window(self.resolved_prompt(prompt))

    def chunk(
        self, texts: list[str], chunk_tokens: int | None, overlap: int = 0, prompt: str | None = None
    ) -> tuple[int, list[tuple[list[Chunk], int]]]:
        """Each text's chunks (spans that fit the window under this prompt) and its total tokens;
        `chunk_tokens` None is the whole window. Raises chunking.ChunkingError for bad sizes."""
        window = self.chunk_window(prompt) if chunk_tokens is None else chunk_tokens
        self.chunker.check(window, overlap, self.resolved_prompt(prompt))
        return window, [self.chunker.chunk(text, window, overlap) for text in texts]

    def overlong(self, texts: list[str], prompt: str | None = None) -> list[tuple[int, int]]:
        """(index, tokens) of each text the model would cut: prompt and special tokens included."""
        prompt = self.resolved_prompt(prompt)
        counts = self.chunker.count([prompt + text for text in texts])
        limit = self.spec.max_seq_length - self.chunker.special_tokens
        return [(index, count + self.chunker.special_tokens) for index, count in enumerate(counts) if count > limit]

    @property
    def dimension(self) -> int:
        return self.spec.dimension

    def embed(
        self, texts: list[Item], deadline: float | None = None, prompt: str | None = None
    ) -> Embeddings:
        """Vectors in input order. `deadline` (time.monotonic()) is checked between
        sub-batches, so a request that cannot finish in time stops early and cleanly.
        `prompt` is prefixed to every text before tokenisation, as sentence-transformers'
        encode(prompt=...) does (to a pair's query, as CrossEncoder.predict does); None applies
        the model's default prompt, "" none."""
        prompt = self.spec.default_prompt if prompt is None else prompt
        if prompt:
            texts = [(prompt + t[0], t[1]) if isinstance(t, tuple) else prompt + t for t in texts]
        # Pooling include_prompt=False: the prompt's tokens are read but left out of pooling.
        excluded = bool(prompt) and not self.spec.include_prompt and self.kind == EMBEDDING
        prompt_tokens = prompt_token_count(self._tokenizer, prompt) if excluded else 0
        vectors = np.empty((len(texts), self.spec.dimension), dtype=np.float32)
        token_counts: list[int] = []
        truncated: list[bool] = []
        with self._lock:
            if self.tokenize_ahead and len(texts) > self.window_texts:
                windows = (
                    (offset, ids, cut, list(batches))  # padded here, in the prefetch thread
                    for offset, ids, cut, batches in self._windows(texts, self.window_texts)
                )
                with Prefetch(windows, name="tokenize-ahead") as ahead:
                    self._run_windows(ahead, vectors, token_counts, truncated, deadline, prompt_tokens)
            else:  # one window, padded lazily: today's CPU path
                windows = self._windows(texts, max(len(texts), 1))
                self._run_windows(windows, vectors, token_counts, truncated, deadline, prompt_tokens)
        return Embeddings(vectors, token_counts, truncated)

    def _windows(self, texts: list[str], size: int) -> Iterator[Window]:
        """One window per run of `size` consecutive texts; sub-batches are padded as iterated."""
        for offset in range(0, len(texts), size):
            window = texts[offset : offset + size]
            if self.kind == RERANKER:
                ids, type_ids, truncated = self._tokens.encode_pairs(window)
            else:
                (ids, truncated), type_ids = self._tokens.encode_flagged(window), None
            batches = self._tokens.batches(
                ids, self.batch_size, self.batch_tokens, self.call_overhead_tokens, type_ids
            )
            yield offset, ids, truncated, batches

    def _run_windows(
        self,
        windows: Iterable[Window],
        vectors: np.ndarray,
        token_counts: list[int],
        truncated: list[bool],
        deadline: float | None,
        prompt_tokens: int,
    ) -> None:
        for offset, ids, cut, batches in windows:
            token_counts.extend(len(x) for x in ids)
            truncated.extend(cut)
            for batch in batches:
                vectors[offset + batch.positions] = self._forward(batch, deadline, prompt_tokens)

    def _forward(self, batch: Batch, deadline: float | None, prompt_tokens: int) -> np.ndarray:
        """One sub-batch through the backend, pooled and normalised unless it did so itself.
        `prompt_tokens` > 0 leaves that many leading tokens out of pooling (include_prompt=False)."""
        cost = batch.input_ids.size * self._seconds_per_token
        if deadline is not None and time.monotonic() + cost > deadline:
            raise DeadlineExceeded("time budget exhausted before the last sub-batch")
        pooling_mask = exclude_prompt(batch.attention_mask, prompt_tokens) if prompt_tokens else None
        started = time.monotonic()
        out = self.backend.forward(batch.input_ids, batch.attention_mask, batch.token_type_ids, pooling_mask)
        rate = (time.monotonic() - started) / batch.input_ids.size
        self._seconds_per_token = max(rate, 0.8 * self._seconds_per_token + 0.2 * rate)
        if self.kind == RERANKER:  # logits, (n, 1): the activation is the response's choice (raw_scores)
            return out.reshape(len(out), -1)
        if self.kind == SPARSE:  # the graph pooled the MLM logits itself (SPLADE, see prepare_model.py)
            return keep_largest(out, self.spec.max_active_dims) if self.spec.max_active_dims else out
        if self.backend.returns_pooled:
            return out
        pooled = pool(out, batch.attention_mask if pooling_mask is None else pooling_mask, self.spec.pooling)
        return l2_normalize(pooled) if self.spec.normalize else pooled

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(x) for x in self._tokens.encode(texts)]


def create_backend(settings: Settings, spec: ModelSpec) -> Backend:
    if spec.kind != EMBEDDING and settings.backend != "onnx":
        raise ModelFilesError(
            f"a {spec.kind} model runs on the onnx backend only (its graph carries the head and pooling); "
            "unset EMBEDDING_BACKEND or set it to onnx"
        )
    module_name, class_name = BACKENDS[settings.backend].split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    args = (settings.model_dir, settings.onnx_file, settings.effective_threads, settings.device)
    if backend_class.returns_pooled:  # it pools on its device: tell it how, and in what precision
        return backend_class(
            *args, precision=settings.precision, pooling=spec.pooling, normalize=spec.normalize
        )
    return backend_class(*args)


def model_load(settings: Settings | None = None) -> Embedder:
    """Load the configured model (MODEL_DIR, EMBEDDING_BACKEND, ...) and warm it up."""
    settings = settings or load_settings()
    started = time.perf_counter()
    spec = read_model_spec(settings.model_dir)
    embedder = Embedder(
        spec,
        create_backend(settings, spec),
        settings.batch_size,
        settings.batch_tokens,
        settings.call_overhead_tokens,
        settings.tokenize_ahead,
    )
    if spec.kind == EMBEDDING:  # int8/uint8 output types quantise dense vectors only
        embedder.calibration_ranges = load_ranges(settings.model_dir, settings.calibration_file, spec.dimension)
    # the first run allocates buffers: pay it at load, not per request
    embedder.embed([("warm-up", "warm-up")] if spec.kind == RERANKER else ["warm-up"])
    log.info(
        "model loaded",
        extra={
            "model": settings.model_id,
            "backend": settings.backend,
            "device": settings.device,
            "precision": settings.precision,
            "kind": spec.kind,
            "dimension": spec.dimension,
            "max_seq_length": spec.max_seq_length,
            "threads": settings.effective_threads,
            "load_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return embedder


def models_load(settings: Settings, load=None) -> dict[str, Embedder]:
    """Every served model (MODELS, or MODEL_DIR alone) by id, each loaded by `load` (model_load) and
    warmed up at start-up: a request never waits for a model to load; memory is the sum of the models'."""
    load = load or model_load
    return {entry.model_id: load(settings.for_model(entry)) for entry in settings.served_models}


def model_infer(text_or_texts: str | list[str], model: Embedder) -> np.ndarray:
    """The seed's call: one text -> (dimension,), a list -> (n, dimension)."""
    if isinstance(text_or_texts, str):
        return model.embed([text_or_texts]).vectors[0]
    return model.embed(list(text_or_texts)).vectors


def model_unload(model: Embedder) -> None:
    model.backend.close()
