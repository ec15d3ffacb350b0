"""`embed-corpus INPUT --output OUTPUT [--target ...]`: the command line around runner.Run.

Every failure the user can act on ends in one sentence on stderr and a non-zero exit status:
1 the run failed (target, network, a request that failed for good), 2 bad input or options
(nothing was embedded), 130 interrupted (committed shards stay; --resume continues).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from embedding_client.corpus.errors import CorpusError, InputError
from embedding_client.corpus.readers import FORMATS
from embedding_client.corpus.report import render
from embedding_client.corpus.runner import DEFAULT_SHARD_SIZE, Options, Run
from embedding_client.corpus.targets import INPUT_TYPES, OUTPUT_TYPES, SPARSE_OUTPUT
from embedding_client.workers.batch_interface import DEFAULT_JOB_DEFINITION

EXAMPLES = """\
examples:
  embed-corpus corpus.jsonl --output vectors.parquet                      # the model in this process
  embed-corpus corpus.csv --output vectors.parquet --target http://localhost:8000
  embed-corpus s3://bucket/corpus.jsonl --output s3://bucket/vectors.parquet \\
      --target lambda://embedding-model --region eu-west-1
  embed-corpus corpus.jsonl --output vectors.parquet --resume            # after a crash or Ctrl-C
  embed-corpus corpus.jsonl --output new.parquet --reuse old.parquet --changes changes.parquet
  embed-corpus docs.jsonl --output chunks.parquet --chunk-tokens 200 --chunk-overlap 20 --with-text
  embed-corpus corpus.jsonl --output sparse.parquet --sparse --target http://localhost:8000  # SPLADE
  embed-corpus 'corpus/*.jsonl.gz' --output vectors/                      # a folder of Parquet parts
  embed-corpus s3://bucket/corpus/ --output s3://bucket/vectors/ \\
      --target lambda://embedding-model-bulk --embedding-type int8          # the workers read and write S3
  embed-corpus s3://bucket/corpus/ --output s3://bucket/vectors/ \\
      --target batch://embedding-model-batch --detach                       # AWS Batch; then the same with --resume
"""


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return number


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="embed-corpus",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Embed a whole corpus into a Parquet file of vectors (id, embedding, tokens), locally, "
        "through an HTTP embedding server, or fanned out over AWS Lambda; resumable.",
    )
    p.add_argument(
        "input",
        metavar="INPUT",
        help="JSONL, CSV, Parquet or text (one text a line, .gz allowed): a file, a folder, a glob, "
        "s3://bucket/key or s3://bucket/prefix/ (every object under it, in name order, one format)",
    )
    p.add_argument(
        "--output",
        required=True,
        metavar="OUTPUT",
        help="the Parquet file to write (a path or s3://bucket/key), or, ending in /, a Parquet dataset: "
        "one part-NNNNNN.parquet per shard, then _SUCCESS",
    )
    p.add_argument(
        "--target",
        default="local",
        metavar="TARGET",
        help="local (default: the model in this process), http(s)://HOST[:PORT] (our service or any "
        "OpenAI-compatible server) or lambda://FUNCTION_NAME (the deployed function, invoked directly)",
    )
    p.add_argument(
        "--endpoint-url",
        default="",
        metavar="URL[,URL...]",
        help="Lambda endpoint(s) for boto3, e.g. local Runtime Interface Emulators; several make a fleet",
    )
    p.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    p.add_argument("--text-field", default="text", help="the text's field or column (default: text)")
    p.add_argument(
        "--id-field", default="id", help="the id's field or column (default: id; absent: line numbers)"
    )
    p.add_argument(
        "--concurrency",
        type=positive,
        help="requests in flight (default: local 1, http 4, lambda: the function's reserved concurrency, "
        "else the account's unreserved concurrency, or one per --endpoint-url)",
    )
    p.add_argument(
        "--batch-size",
        type=positive,
        help="most texts per request (default: local 1,024 on CPU and 8,192 on a GPU, http and "
        "lambda 256; Lambda requests also stay under its 6 MB payload limits)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run: only missing shards are embedded"
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("EMBEDDING_API_KEY"),
        help="the service's API key (default: $EMBEDDING_API_KEY)",
    )
    p.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="bad rows: stop before any model work (default), or skip them into OUTPUT.rejects.jsonl",
    )
    p.add_argument("--input-type", choices=INPUT_TYPES, help="apply the model's query or document prompt")
    p.add_argument(
        "--embedding-type",
        choices=tuple(OUTPUT_TYPES),
        default="float",
        help="the embedding column's type (default: float32); int8/uint8/binary/ubinary as "
        "sentence-transformers' quantize_embeddings",
    )
    p.add_argument(
        "--sparse",
        action="store_true",
        help="for a sparse (SPLADE) model: write each text's nonzero vocabulary weights as indices and values "
        "list columns instead of embedding",
    )
    p.add_argument("--model", help="the model name to send (default: the one the target serves)")
    p.add_argument("--format", choices=FORMATS, help="the input's format (default: from its name)")
    p.add_argument(
        "--shard-size",
        type=positive,
        default=DEFAULT_SHARD_SIZE,
        help=f"texts per committed shard (default: {DEFAULT_SHARD_SIZE:,})",
    )
    p.add_argument(
        "--request-timeout",
        type=positive,
        metavar="SECONDS",
        help="give up on one request after this long and retry it (default: http 300, lambda 905)",
    )
    p.add_argument(
        "--retries", type=positive, default=8, help="attempts per request, the first included (default: 8)"
    )
    p.add_argument(
        "--reuse",
        metavar="OLD",
        help="an earlier output (a path or s3://bucket/key): rows whose exact text it holds get its vector "
        "(same bytes, no model call) when its fingerprint equals this run's; other rows are embedded",
    )
    p.add_argument(
        "--changes",
        metavar="CHANGES",
        help="with --reuse: also write a Parquet file of what a vector store must do to go from OLD to "
        "OUTPUT (id, op upsert|delete, embedding, tokens); ids must be unique in both",
    )
    p.add_argument(
        "--chunk-tokens",
        type=positive,
        metavar="N",
        help="embed every token: cut each text into chunks of at most N tokens at paragraph, sentence and "
        "word breaks chosen from the content (an edit moves only nearby chunks); a row per chunk, with "
        "chunk, start and end; N at most the model's window (its maximum less special tokens and prompt)",
    )
    p.add_argument(
        "--chunk-overlap",
        type=int,
        default=0,
        metavar="M",
        help="repeat up to M tokens of a chunk's end at the next one's start, cut at a sentence or word "
        "start (default: 0; less than half of --chunk-tokens)",
    )
    p.add_argument("--with-text", action="store_true", help="also write each row's (chunk's) text")
    p.add_argument(
        "--tokenizer",
        metavar="DIR",
        help="with --chunk-tokens against a server that can't chunk (not this project's): the model's "
        "sentence-transformers folder, to chunk here with its tokenizer",
    )
    p.add_argument(
        "--io",
        choices=("client", "worker"),
        help="who reads INPUT and writes OUTPUT: worker (the Lambda workers, from and to S3; the default when "
        "INPUT and an OUTPUT/ dataset are on S3 and the function has the grants) or client (this process)",
    )
    p.add_argument(
        "--batch-job-definition",
        default=DEFAULT_JOB_DEFINITION,
        metavar="NAME",
        help=f"with --target batch://JOB_QUEUE: the job definition each child runs (default: {DEFAULT_JOB_DEFINITION}, "
        "the Terraform's)",
    )
    p.add_argument(
        "--batch-splits-per-child",
        type=positive,
        metavar="N",
        help="with --target batch://: splits each child embeds (default: as many as run about ten minutes at the "
        "measured CPU time per passage)",
    )
    p.add_argument(
        "--detach",
        action="store_true",
        help="with --target batch://: submit, print the job ids and the command that follows the run, and exit",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="with --target batch://: plan and price the job on Lambda, Fargate, Fargate Spot and a GPU instance; "
        "write and submit nothing",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--report-json", metavar="FILE", help="also write the report's figures as JSON")
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress or log lines; errors and the report only"
    )
    return p


def options_from(args: argparse.Namespace) -> Options:
    """The parsed flags as run options (the flags' names are the options' names)."""
    values = {name: getattr(args, name) for name in Options.__dataclass_fields__ if hasattr(args, name)}
    values["endpoint_urls"] = [url.strip() for url in args.endpoint_url.split(",") if url.strip()]
    values["api_key"] = args.api_key or None
    if args.sparse:
        if args.embedding_type != "float":
            raise InputError(
                f"--sparse writes a sparse model's float weights as indices and values: --embedding-type "
                f"{args.embedding_type} quantises dense vectors, leave it out"
            )
        values["embedding_type"] = SPARSE_OUTPUT
    return Options(**values)


class _Stderr(logging.Handler):
    """Log lines on stderr, through the progress bar once one exists."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")
        sys.stderr.flush()


def configure_logging(quiet: bool) -> None:
    logger = logging.getLogger("embed_corpus")
    logger.handlers[:] = [_Stderr()]
    logger.handlers[0].setFormatter(logging.Formatter("embed-corpus: %(message)s"))
    logger.setLevel(logging.ERROR if quiet else logging.INFO)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    configure_logging(args.quiet)
    try:
        run = Run(options_from(args), stream=open(os.devnull, "w") if args.quiet else None, command=argv)
        stats = run.execute()
    except CorpusError as error:
        print(f"embed-corpus: error: {error}", file=sys.stderr)
        return error.exit_status
    except OSError as error:  # a disk full, a permission denied on the way
        print(f"embed-corpus: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\nembed-corpus: interrupted; committed shards are kept: run the same command with --resume to "
            "continue",
            file=sys.stderr,
        )
        sys.stderr.flush()
        os._exit(130)  # worker threads may be inside a request: don't wait for them
    if stats is None:
        if not (args.detach or args.dry_run):
            print(f"embed-corpus: {args.output} is complete already", file=sys.stderr)
        return 0
    print(render(stats))
    if args.report_json:
        with open(args.report_json, "w") as handle:
            json.dump(stats.to_dict(), handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
