"""`--target` -> the target: `local`, `http(s)://HOST[:PORT]` or `lambda://FUNCTION_NAME`.

Apart from targets.py so the dependency runs one way: this module imports the target modules,
and they import targets.py, never this.
"""

from __future__ import annotations

from embedding_client.corpus.errors import InputError
from embedding_client.corpus.target_http import HttpTarget
from embedding_client.corpus.target_lambda import LambdaTarget
from embedding_client.corpus.target_local import LocalTarget
from embedding_client.corpus.targets import OUTPUT_TYPES, SPARSE_OUTPUT, EmbedOptions, Target


def open_target(
    spec: str,
    options: EmbedOptions,
    *,
    endpoint_urls: list[str],
    region: str | None,
    api_key: str | None,
    concurrency: int | None,
    timeout: float | None = None,
) -> Target:
    """`local`, `http(s)://HOST[:PORT]` or `lambda://FUNCTION_NAME`; probes it before returning."""
    if options.embedding_type not in OUTPUT_TYPES and options.embedding_type != SPARSE_OUTPUT:
        raise InputError(f"--embedding-type must be one of {', '.join(OUTPUT_TYPES)}")
    if endpoint_urls and not spec.startswith("lambda://"):
        raise InputError("--endpoint-url points boto3 at Lambda endpoints: it needs --target lambda://NAME")
    if spec == "local":
        return LocalTarget(options)
    if spec.startswith(("http://", "https://")):
        return HttpTarget(spec, options, api_key=api_key, concurrency=concurrency, timeout=timeout)
    if spec.startswith("lambda://"):
        return LambdaTarget(
            spec[len("lambda://") :],
            options,
            endpoint_urls=endpoint_urls,
            region=region,
            api_key=api_key,
            concurrency=concurrency,
            timeout=timeout,
        )
    raise InputError(f"--target {spec!r}: use local, http(s)://HOST[:PORT], lambda://FUNCTION_NAME or batch://JOB_QUEUE")
