"""`--target local`: the service's own model layer, in this process, on every core (or the GPU).

It loads exactly what both services load (`model_load` with the service's settings, so
`MODEL_DIR`, `EMBEDDING_BACKEND`, `EMBEDDING_DEVICE`, `EMBEDDING_PRECISION`... apply) and
calls the same `Embedder.embed`, so the vectors are the ones `POST /` returns. The service is the
`embedding_service` package, which a client installed alone does not have: it comes with the
`local` extra (`pip install "./client[local]"` beside `./package`), and without it `--target
local` and `--tokenizer` say so in one sentence.
"""

from __future__ import annotations

import importlib
import time

from embedding_client.corpus.errors import CorpusError, InputError
from embedding_client.corpus.plan import RequestBudget
from embedding_client.corpus.targets import (
    SPARSE_OUTPUT,
    Chunked,
    Embedded,
    EmbedOptions,
    Invocation,
    Limits,
    TargetInfo,
    sparse_from_weights,
)

LOCAL_EXTRA_HINT = (
    "install the service package beside the client (pip install ./package, or the client's "
    "local extra: pip install \"embedding-client[local]\")"
)


def service_module(name: str, what: str):
    """`embedding_service.<name>`, or one sentence naming the extra that brings it."""
    try:
        return importlib.import_module(f"embedding_service.{name}")
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] == "embedding_service":
            raise InputError(f"{what} runs the service's code in this process: {LOCAL_EXTRA_HINT}") from None
        raise CorpusError(f"the service's {name} module can't be imported: {error}") from None
    except ImportError as error:
        raise CorpusError(f"the service's {name} module can't be imported: {error}") from None


class LocalTarget:
    default_concurrency = 1  # one model call at a time; it already uses every core
    # Texts per call: 8 of the model layer's windows (1,024 on CPU: enough to sort by length and
    # pad little; 8,192 on a GPU, where windows after the first are tokenised while the card runs).
    windows_per_call = 8

    def __init__(self, options: EmbedOptions, loaded=None, deadline: float | None = None):
        """`loaded`: (settings, embedder) a process already holds (a Lambda worker's model);
        otherwise the model is loaded here, with the service's settings. `deadline`
        (time.monotonic()): the model layer raises DeadlineExceeded past it (a worker's budget)."""
        model_fingerprint = service_module("fingerprint", "--target local").model_fingerprint
        self._quantize = service_module("quantize", "--target local").quantize
        self._deadline = deadline
        settings, self._embedder = loaded if loaded is not None else self._load()
        self._owned = loaded is None
        self._options = options
        self.default_batch_size = self.windows_per_call * self._embedder.window_texts
        names = (settings.model_id.lower(), settings.model_id.split("/")[-1].lower())
        if options.model and options.model.lower() not in names:
            raise InputError(
                f"--model {options.model!r}: the local model is {settings.model_id!r} (MODEL_DIR)"
            )
        spec = self._embedder.spec
        self._prompt = spec.prompt_for(options.input_type)
        if options.embedding_type in ("int8", "uint8") and self._embedder.calibration_ranges is None:
            raise InputError(
                f"--embedding-type {options.embedding_type} needs the model folder's calibration ranges "
                "(quantization_calibration.npy) or EMBEDDING_CALIBRATION_FILE"
            )
        limits = settings.limits
        self.info = TargetInfo(
            kind="local",
            model_id=settings.model_id,
            dimension=spec.dimension,
            limits=Limits(limits.max_items, limits.max_item_chars, limits.max_body_bytes),
            max_seq_length=spec.max_seq_length,
            notes=(
                f"model layer: {settings.backend} on {settings.device}, {settings.precision}, "
                f"{settings.effective_threads} threads",
            ),
            model_fingerprint=model_fingerprint(settings, self._embedder),
            where="local",
            chunk_window=self._embedder.chunk_window(self._prompt),
            model_kind=spec.kind,
        )

    @staticmethod
    def _load():
        model_load = service_module("model", "--target local").model_load
        settings_module = service_module("settings", "--target local")
        try:
            settings = settings_module.load_settings()
        except settings_module.SettingsError as error:
            raise InputError(str(error)) from None
        try:
            return settings, model_load(settings)
        except Exception as error:  # ModelFilesError, a missing file: say which
            raise CorpusError(f"the model in {settings.model_dir} can't be loaded: {error}") from None

    def budget(self, batch_size: int) -> RequestBudget:
        return RequestBudget(max_items=batch_size, max_seq_length=self.info.max_seq_length)

    def embed(self, texts: list[str]) -> Embedded:
        started = time.perf_counter()
        result = self._embedder.embed(texts, prompt=self._prompt, deadline=self._deadline)
        vectors = result.vectors
        if self._options.embedding_type == SPARSE_OUTPUT:  # the vocabulary's weights -> their nonzeros
            vectors = sparse_from_weights(vectors)
        elif self._options.embedding_type != "float":
            vectors = self._quantize(vectors, self._options.embedding_type, self._embedder.calibration_ranges)
        return Embedded(
            vectors,
            list(result.token_counts),
            result.truncated_count,
            [Invocation(time.perf_counter() - started)],
        )

    def chunk(self, texts: list[str], chunk_tokens: int, overlap: int) -> list[Chunked]:
        _, results = self._embedder.chunk(texts, chunk_tokens, overlap, prompt=self._prompt)
        return [Chunked(total, [(c.start, c.end, c.tokens) for c in chunks]) for chunks, total in results]

    def close(self) -> None:
        if self._owned:
            service_module("model", "--target local").model_unload(self._embedder)
