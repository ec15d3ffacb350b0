"""What a run's paths are handed once INPUT is listed, OUTPUT checked and the target open.

The client path (client_run.py) and worker mode (worker_run.py) each get this typed value, never
the whole run, so what a path may use is written down here, and a new path (AWS Batch) starts
from the same set. The report's figures and the outputs' metadata are set up here, once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TextIO

from embedding_client.corpus.run_fingerprint import digest
from embedding_client.corpus.hashing import TEXT_HASH
from embedding_client.corpus.inputs import Inputs
from embedding_client.corpus.locations import Location, Storage
from embedding_client.corpus.options import Options
from embedding_client.corpus.report import RunStats
from embedding_client.corpus.shards import ShardStore
from embedding_client.corpus.targets import Target, TargetInfo


@dataclass(frozen=True)
class RunContext:
    """One run's settled facts, shared read-only by whichever path does the work."""

    options: Options
    storage: Storage
    inputs: Inputs
    output: Location
    store: ShardStore  # OUTPUT.parts/ for a file, the dataset itself for OUTPUT/
    target: Target
    parts: dict  # the fingerprint's parts (fingerprint.run_parts)
    metadata: dict[str, str]  # what every output file or part says about how it was made
    input_version: dict  # what --resume checks INPUT against
    old_version: dict | None  # ... and --reuse OLD
    started: float  # time.perf_counter() when the run began: the report's wall time counts from it
    stream: TextIO | None = None  # where progress goes (None: stderr)

    @property
    def concurrency(self) -> int:
        return self.options.concurrency or self.target.default_concurrency

    def stats(self, reuse: str | None, **figures) -> RunStats:
        """The report's figures, before any work: what ran, where to, priced how."""
        info, options = self.target.info, self.options
        return RunStats(
            options.target,
            info.model_id,
            info.dimension,
            options.embedding_type,
            self.output.uri,
            lambda_memory_mb=getattr(self.target, "memory_mb", None),
            lambda_architecture=getattr(self.target, "architecture", None),
            reuse=reuse,
            chunk_tokens=options.chunk_tokens,
            **figures,
        )


def output_metadata(options: Options, info: TargetInfo, parts: dict) -> dict[str, str]:
    """What every output (file or part) says about how it was made."""
    metadata = {
        "model": info.model_id,
        "dimension": str(info.dimension),
        "embedding_type": options.embedding_type,
        "input_type": options.input_type or "",
        "source": options.input,
        "text_hash": TEXT_HASH,
        "fingerprint": digest(parts),
        "fingerprint_parts": json.dumps(parts, sort_keys=True),
        "generator": "embed-corpus (embedding-client)",
    }
    if options.chunk_tokens is not None:
        metadata["chunk_tokens"] = str(options.chunk_tokens)
        metadata["chunk_overlap"] = str(options.chunk_overlap)
    return metadata
