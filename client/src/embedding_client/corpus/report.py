"""The end-of-run report: texts, tokens, wall time, texts/s, retries; for Lambda, what it cost.

Lambda's bill is summed from the REPORT lines AWS returns with `LogType=Tail` (billed
duration x memory). Where they are missing (an emulator), it is estimated from the measured
invocation times and the function's memory (or 1,769 MB, one vCPU), and says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from string import Template

import numpy as np

from embedding_client import prices
from embedding_client.corpus.targets import Invocation

ASSUMED_MEMORY_MB = 1769  # Terraform's default: one full vCPU

REPORT = Template("""\
embed-corpus: $rows $unit -> $output
  target      $target ($model, $dimension dims, $embedding_type)
  $unit_label$texts$embedded_word in this run$reused_note$skipped_note$rejected_note
  tokens      $tokens$chunks_note
  wall time   $wall ($rate texts/s)
  requests    $requests ($retries retries, $splits splits)$truncated_note$saved_note$changes_note$ids_note
$cost""")

LAMBDA_COST = Template("""\
  billed      $gb_seconds GB-s over $invocations invocations ($basis)
  price       $$$usd for this run = $$$per_million per 1M texts on $arch ($as_of)
              $other_arch
              hosted API, $hosted_name: $$$hosted_standard standard / $$$hosted_batch batch per 1M texts of \
$tokens_per_text tokens
""")


@dataclass
class RunStats:
    target: str
    model: str
    dimension: int
    embedding_type: str
    output: str
    texts: int = 0
    tokens: int | None = 0  # None once any request's token counts were unknown
    wall_s: float = 0.0  # the whole run: probe, checks, embedding, assembly
    embed_s: float = 0.0  # embedding alone: first request sent to last shard committed
    embed_cpu_s: float = 0.0  # this process's CPU time (all threads) over embed_s: what the client costs
    requests: int = 0
    retries: int = 0
    splits: int = 0
    truncated: int | None = 0
    skipped_texts: int = 0  # in shards an earlier run committed
    rejected: int = 0  # --on-error skip
    rows_numbered: int = 0  # rows without an id: their id is their line number (or <name>:<n>)
    invocations: list[Invocation] = field(default_factory=list)
    lambda_memory_mb: int | None = None
    lambda_architecture: str | None = None
    reuse: str | None = None  # --reuse OLD
    rows_reused: int = 0  # rows whose vector came from OLD (no model call)
    tokens_reused: int = 0
    changes: dict | None = None  # --changes: file, upserts, deletes
    chunk_tokens: int | None = None  # --chunk-tokens
    documents: int = 0  # texts chunked in this run
    chunks: int = 0
    documents_split: int = 0  # texts cut into more than one chunk
    input_tokens: int = 0  # the chunked texts' tokens, untruncated
    chunk_tokens_total: int = 0  # tokens in their chunks (overlap counted again)
    batch: dict | None = None  # --target batch://: the queue, the job's shape and what it cost

    @property
    def rows_embedded(self) -> int:
        return self.texts

    def model_seconds_saved(self) -> float | None:
        """Reused rows x this run's measured model seconds per embedded row (None: none embedded)."""
        if not self.rows_reused:
            return 0.0
        if not self.texts:
            return None
        return self.rows_reused * sum(call.seconds for call in self.invocations) / self.texts

    def usd_saved(self) -> dict | None:
        """Lambda: reused rows x this run's $ per embedded row, per architecture."""
        if not self.target.startswith("lambda://"):
            return None
        if not self.rows_reused:
            return {name: 0.0 for name in prices.LAMBDA_GB_SECOND}
        per_text = lambda_bill(self)["usd_per_million_texts"]
        return {name: None if usd is None else usd * self.rows_reused / 1e6 for name, usd in per_text.items()}

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("invocations")
        data["texts_per_s"] = self.texts / self.wall_s if self.wall_s else None
        data["rows_embedded"] = self.rows_embedded
        data["model_seconds_saved"] = self.model_seconds_saved()
        data["usd_saved"] = self.usd_saved()
        if self.target.startswith("lambda://"):
            data["lambda"] = lambda_bill(self)
        return data


def lambda_bill(stats: RunStats) -> dict:
    """GB-seconds and dollars, measured from REPORT lines where every invocation had one."""
    measured = bool(stats.invocations) and all(call.billed_ms is not None for call in stats.invocations)
    memory = stats.lambda_memory_mb or ASSUMED_MEMORY_MB
    gb_s = sum(
        prices.gb_seconds(
            call.billed_ms if measured else math.ceil(call.seconds * 1000),
            call.memory_mb if measured and call.memory_mb else memory,
        )
        for call in stats.invocations
    )
    arch = stats.lambda_architecture or "x86_64"
    by_arch = {
        name: prices.lambda_usd(gb_s, len(stats.invocations), name) for name in prices.LAMBDA_GB_SECOND
    }
    per_million = {name: usd / stats.texts * 1e6 if stats.texts else None for name, usd in by_arch.items()}
    tokens_per_text = stats.tokens / stats.texts if stats.tokens and stats.texts else None
    return {
        "measured": measured,
        "basis": "billed durations from the REPORT lines"
        if measured
        else (
            f"ESTIMATE: no REPORT lines came back, so measured invocation times x "
            f"{memory} MB{'' if stats.lambda_memory_mb else ' (assumed: one vCPU)'}"
        ),
        "gb_seconds": gb_s,
        "invocations": len(stats.invocations),
        "architecture": arch,
        "architecture_known": stats.lambda_architecture is not None,
        "usd": by_arch,
        "usd_per_million_texts": per_million,
        "tokens_per_text": tokens_per_text,
        "hosted_usd_per_million_texts": (
            prices.hosted_usd_per_million_texts(tokens_per_text) if tokens_per_text else None
        ),
    }


def render(stats: RunStats) -> str:
    rate = stats.texts / stats.wall_s if stats.wall_s else 0.0
    return REPORT.substitute(
        rows=f"{stats.texts + stats.rows_reused:,}",
        unit="chunks" if stats.chunk_tokens is not None else "texts",
        unit_label="chunks      " if stats.chunk_tokens is not None else "texts       ",
        texts=f"{stats.texts:,}",
        embedded_word=" embedded" if stats.reuse else "",
        reused_note=_reused_note(stats),
        saved_note=_saved_note(stats),
        chunks_note=_chunks_note(stats),
        changes_note=(
            f"\n  changes     {stats.changes['upserts']:,} upserts, {stats.changes['deletes']:,} deletes -> "
            f"{stats.changes['file']}"
            if stats.changes
            else ""
        ),
        ids_note=f"\n  ids         {stats.rows_numbered:,} rows had no id: each got its line number "
        "(in a dataset, <file>:<byte offset>); --id-field names the id column"
        if stats.rows_numbered
        else "",
        output=stats.output,
        target=stats.target,
        model=stats.model,
        dimension=stats.dimension,
        embedding_type=stats.embedding_type,
        skipped_note=f"; {stats.skipped_texts:,} were already committed by an earlier run"
        if stats.skipped_texts
        else "",
        rejected_note=f"; {stats.rejected:,} rejected rows skipped (see the rejects file)"
        if stats.rejected
        else "",
        tokens=f"{stats.tokens:,}"
        if stats.tokens is not None
        else "unknown (the target does not count per text)",
        wall=f"{stats.wall_s:.1f} s",
        rate=f"{rate:,.1f}",
        requests=f"{stats.requests:,}",
        retries=f"{stats.retries:,}",
        splits=f"{stats.splits:,}",
        truncated_note=(
            f"\n  truncated   {stats.truncated:,} texts cut at the model's maximum length"
            if stats.truncated
            else ""
        ),
        cost=_lambda_cost(stats) if stats.target.startswith("lambda://") and stats.invocations else _batch_cost(stats),
    )


def _chunks_note(stats: RunStats) -> str:
    """Documents, chunks, and how much of the input the chunks hold (all of it)."""
    if stats.chunk_tokens is None:
        return ""
    covered = 100.0 if not stats.input_tokens else min(stats.chunk_tokens_total, stats.input_tokens) / stats.input_tokens * 100
    return (
        f"\n  documents   {stats.chunks:,} chunks of at most {stats.chunk_tokens} tokens from {stats.documents:,} "
        f"texts ({stats.documents_split:,} split); {stats.chunk_tokens_total:,} tokens in chunks for "
        f"{stats.input_tokens:,} in the input ({covered:.1f}% embedded, none truncated)"
    )


def _reused_note(stats: RunStats) -> str:
    if not stats.reuse:
        return ""
    total = stats.texts + stats.rows_reused
    share = stats.rows_reused / total * 100 if total else 0.0
    return f"; {stats.rows_reused:,} reused from {stats.reuse} ({share:.1f}% of {total:,})"


def _saved_note(stats: RunStats) -> str:
    if not stats.rows_reused:
        return ""
    seconds = stats.model_seconds_saved()
    if seconds is None:
        return "\n  saved       every row was reused: no model call at all (no rate measured to price it)"
    line = (
        f"\n  saved       ~{seconds:,.1f} s of model time ({stats.rows_reused:,} reused rows x this run's "
        f"{seconds / stats.rows_reused * 1000:,.2f} ms per embedded row)"
    )
    usd = stats.usd_saved()
    if usd:
        arch = stats.lambda_architecture or "x86_64"
        line += f"; ~${_money(usd[arch])} on {arch} at this run's price per text"
    return line


def _lambda_cost(stats: RunStats) -> str:
    bill = lambda_bill(stats)
    arch = bill["architecture"]
    others = [name for name in prices.LAMBDA_GB_SECOND if name != arch]
    other_lines = [
        f"{name}: ${_money(bill['usd_per_million_texts'][name])} per 1M texts"
        + (f" ({prices.ARM64_CAVEAT})" if name == "arm64" else "")
        for name in others
    ]
    hosted = bill["hosted_usd_per_million_texts"] or {"standard": None, "batch": None}
    return LAMBDA_COST.substitute(
        gb_seconds=f"{bill['gb_seconds']:,.1f}",
        invocations=f"{bill['invocations']:,}",
        basis=bill["basis"],
        usd=_money(bill["usd"][arch]),
        per_million=_money(bill["usd_per_million_texts"][arch]),
        arch=arch + ("" if bill["architecture_known"] else " (assumed)"),
        as_of=f"list prices {prices.AS_OF[:7]}",
        other_arch="; ".join(other_lines),
        hosted_name=prices.HOSTED_API["name"],
        hosted_standard=_money(hosted["standard"]),
        hosted_batch=_money(hosted["batch"]),
        tokens_per_text=f"{bill['tokens_per_text']:.0f}" if bill["tokens_per_text"] else "?",
    )


def _batch_cost(stats: RunStats) -> str:
    """What a Batch run's children cost on the queue's first compute environment."""
    batch = stats.batch
    if not batch:
        return ""
    spot = batch["engine"] in ("FARGATE_SPOT", "SPOT")
    priced = f"Fargate{' Spot' if spot else ''} x86_64 ({prices.FARGATE_AS_OF}" + (f"; {prices.FARGATE_SPOT_AS_OF}" if spot else "") + ")"
    if batch["engine"] in ("EC2", "SPOT"):
        priced += "; an EC2 environment priced as Fargate: its instances bill by the hour of the instance type"
    return (
        f"  batch       {batch['vcpu_seconds'] / 3600:,.3f} vCPU-hours on {batch['engine']} ({batch['vcpus']:g} vCPUs, "
        f"{batch['memory_mb']:,} MB per child; job definition {batch['job_definition']}, {batch['submissions']} submission(s))\n"
        f"  price       ${_money(batch['usd'])} for this run ({batch['basis']}), at {priced}\n"
    )


def _money(value: float | None) -> str:
    if value is None:
        return "?"
    if value < 0.01:  # a small run costs fractions of a cent: keep two significant digits
        return np.format_float_positional(value, precision=2, fractional=False, trim="-")
    return f"{value:,.4f}" if value < 1 else f"{value:,.2f}"
