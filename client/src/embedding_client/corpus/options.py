"""What one `embed-corpus` run was asked to do: the command's flags, as one typed value.

It lives apart from the run so that the command line, the run and its paths (the client's own,
worker mode) all read the same fields without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from embedding_client.workers.batch_interface import DEFAULT_JOB_DEFINITION

DEFAULT_SHARD_SIZE = 10_000


@dataclass
class Options:
    input: str
    output: str
    target: str = "local"
    endpoint_urls: list[str] = field(default_factory=list)
    region: str | None = None
    text_field: str = "text"
    id_field: str = "id"
    concurrency: int | None = None
    batch_size: int | None = None
    resume: bool = False
    api_key: str | None = None
    on_error: str = "stop"
    input_type: str | None = None
    embedding_type: str = "float"  # or "sparse": --sparse ({indices, values} from a sparse model)
    model: str | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    format: str | None = None
    overwrite: bool = False
    retries: int = 8
    request_timeout: float | None = None  # seconds; None: the target's default
    reuse: str | None = None  # an earlier output whose vectors stand in for unchanged texts
    changes: str | None = None  # where to write the OLD -> NEW change set (needs reuse)
    chunk_tokens: int | None = None  # cut each text into chunks of at most this many tokens
    chunk_overlap: int = 0
    with_text: bool = False  # write each row's (chunk's) text too
    tokenizer: str | None = None  # a model folder to chunk with where the target can't
    io: str | None = None  # worker | client; None: worker where it can be, else client
    batch_job_definition: str = DEFAULT_JOB_DEFINITION  # --target batch://: what each child runs
    batch_splits_per_child: int | None = None  # None: as many as run about ten minutes
    detach: bool = False  # batch://: submit, print the job ids and the follow-up command, exit
    dry_run: bool = False  # plan and price, write and submit nothing
