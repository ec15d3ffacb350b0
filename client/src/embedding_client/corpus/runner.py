"""One run of `embed-corpus`: check the locations, open the target, and hand the work to a path.

Everything both paths need is settled here first, before any model work: INPUT listed, OUTPUT,
OLD and CHANGES checked, a finished or foreign output refused, the target probed, the chunker and
the run's fingerprint chosen. Then one path runs with a typed `RunContext`: worker mode
(worker_run.py) where the Lambda workers can read and write S3 themselves, else the client path
(client_run.py). Both drive their shard work through the one scheduler (scheduler.py).
"""

from __future__ import annotations

import logging
import time
from typing import TextIO

from embedding_client.contract import MIN_CHUNK_TOKENS
from embedding_client.corpus.batch_run import BatchRun
from embedding_client.corpus.batch_run import check_locations as check_batch_locations
from embedding_client.corpus.choose_target import open_target
from embedding_client.corpus.client_run import ClientRun
from embedding_client.corpus.errors import InputError
from embedding_client.corpus.run_fingerprint import run_parts
from embedding_client.corpus.inputs import Inputs, list_inputs
from embedding_client.corpus.locations import Location, Storage, parse_location
from embedding_client.corpus.options import DEFAULT_SHARD_SIZE, Options
from embedding_client.corpus.report import RunStats
from embedding_client.corpus.run_context import RunContext, output_metadata
from embedding_client.corpus.shards import SUCCESS, open_store
from embedding_client.corpus.targets import EmbedOptions, Target, check_model_kind
from embedding_client.corpus.worker_run import WorkerRun, choose_io

__all__ = ["DEFAULT_SHARD_SIZE", "Options", "Run"]  # the command line's names
log = logging.getLogger("embed_corpus")


class Run:
    """`storage`: where locations are read and written (the AWS configuration's S3 by default)."""

    def __init__(
        self, options: Options, stream: TextIO | None = None, storage: Storage | None = None,
        command: list[str] | None = None,
    ):
        """`command`: the arguments as typed (a detached Batch run prints the command that follows it)."""
        self.options = options
        self.command = command
        self.stream = stream
        self.storage = storage or Storage(options.region)
        self.output = parse_location(options.output, "--output", folder=True)
        self.old = parse_location(options.reuse, "--reuse", folder=True) if options.reuse else None
        self.changes = parse_location(options.changes, "--changes") if options.changes else None
        self.store = open_store(self.output, self.storage)

    def execute(self) -> RunStats | None:
        """The report's figures, or None when an earlier run already finished this output."""
        options = self.options
        batch = options.target.startswith("batch://")
        if batch:
            check_batch_locations(options)
        elif options.detach or options.dry_run:
            raise InputError(f"{'--detach' if options.detach else '--dry-run'} applies to --target batch://JOB_QUEUE runs")
        inputs = list_inputs(options.input, self.storage, options.format)
        self._check_locations(inputs)
        input_version = inputs.version()
        old_version = self.storage.version(_old_marker(self.old)) if self.old else None
        self.storage.check_writable(self.output)
        if self.changes:
            self.storage.check_writable(self.changes)
        if batch:
            started = time.perf_counter()
            return BatchRun(options, self.storage, inputs, self.store, input_version, started, self.stream, self.command).execute()
        if self._finished_already():
            return None
        started = time.perf_counter()
        target = open_target(
            options.target,
            EmbedOptions(options.input_type, options.embedding_type, options.model),
            endpoint_urls=options.endpoint_urls,
            region=options.region,
            api_key=options.api_key,
            concurrency=options.concurrency,
            timeout=options.request_timeout,
        )
        try:
            check_model_kind(target.info, options.embedding_type)
            for note in target.info.notes:
                log.info("%s", note)
            chunk = self._chunker(target) if options.chunk_tokens is not None else None
            context = self.context(target, inputs, started, input_version, old_version)
            io, why = choose_io(options, target, inputs, self.output, self.storage)
            if io == "worker":
                log.info("--io worker: %s; this process only plans and schedules", why)
                return WorkerRun(context).execute()
            if options.io is None and target.info.kind == "lambda" and self.output.is_s3:
                log.info("--io client: the corpus and vectors pass through this process: %s", why)
            return ClientRun(context, self.old, self.changes, chunk).execute()
        finally:
            target.close()

    def context(
        self, target: Target, inputs: Inputs, started: float, input_version: dict, old_version: dict | None
    ) -> RunContext:
        """What either path needs of this run, and nothing else."""
        info = target.info
        parts = run_parts(
            info.model_fingerprint,
            info.where or self.options.target,
            info.model_id,
            info.dimension,
            self.options.input_type,
            self.options.embedding_type,
        )
        return RunContext(
            self.options,
            self.storage,
            inputs,
            self.output,
            self.store,
            target,
            parts,
            output_metadata(self.options, info, parts),
            input_version,
            old_version,
            started,
            self.stream,
        )

    def _check_locations(self, inputs: Inputs) -> None:
        if any(file.location.uri == self.output.uri for file in inputs.files):
            raise InputError("--output must not be the input file")
        if self.changes and not self.old:
            raise InputError("--changes lists what changed since an earlier output: name it with --reuse OLD")
        if self.old and self.old.uri == self.output.uri:
            raise InputError("--reuse must name an earlier output, not --output itself: write NEW beside OLD")
        if self.changes and self.changes.uri in (self.output.uri, self.options.input, self.old.uri):
            raise InputError("--changes must be a file of its own, not INPUT, --output or --reuse")
        if self.old and not self.storage.exists(_old_marker(self.old)):
            raise InputError(
                f"--reuse {self.old.uri} "
                + ("holds no finished dataset (no _SUCCESS)" if self.old.uri.endswith("/") else "does not exist")
            )

    def _chunker(self, target: Target):
        """The target's own chunker (our service's /v1/chunks, or the model in-process), else the
        service's chunker on --tokenizer's folder; the sizes are checked against its window."""
        options = self.options
        window, chunk = target.info.chunk_window, target.chunk
        if window is None:
            if not options.tokenizer:
                raise InputError(
                    f"--chunk-tokens: {target.info.where or options.target} cannot chunk (it is not this "
                    "project's service, so it can't tell its tokenizer): pass --tokenizer DIR, the model's "
                    "sentence-transformers folder, to chunk here with its tokenizer"
                )
            from embedding_client.corpus.tokenizer_chunker import TokenizerChunker

            local = TokenizerChunker(options.tokenizer)
            window, chunk = local.window, local.chunk
        elif options.tokenizer:
            log.info("--tokenizer is not needed: %s chunks with its own tokenizer", target.info.where)
        if not MIN_CHUNK_TOKENS <= options.chunk_tokens <= window:
            raise InputError(
                f"--chunk-tokens must be between {MIN_CHUNK_TOKENS} and {window}, the most tokens a chunk may "
                f"hold on this model (its maximum less its special tokens and any prompt); got "
                f"{options.chunk_tokens}"
            )
        if not 0 <= options.chunk_overlap or 2 * options.chunk_overlap >= options.chunk_tokens:
            raise InputError(
                f"--chunk-overlap must be at least 0 and less than half of --chunk-tokens "
                f"({options.chunk_tokens}); got {options.chunk_overlap}"
            )
        return chunk

    def _finished_already(self) -> bool:
        if not self.store.finished():
            if self.options.overwrite and not self.options.resume:
                self.store.clear()
            self.store.check_free()
            return False
        if self.options.resume:
            log.info("%s is complete already: nothing to resume", self.output.uri)
            return True
        if not self.options.overwrite:
            raise InputError(f"{self.output.uri} exists: pass --overwrite to replace it")
        self.store.clear()
        return False


def _old_marker(old: Location) -> Location:
    """What stands for OLD's version: the file, or a dataset's `_SUCCESS`."""
    return old.child(SUCCESS) if old.uri.endswith("/") else old
