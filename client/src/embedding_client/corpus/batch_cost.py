"""What a Batch run costs: before (`--dry-run`, on every engine) and after (the report, on the
engine that ran it).

Before a run the figure is CPU time: passages x the measured CPU time per 256-token passage on one
vCPU (`make bench-bulk`, docs/benchmarks/bulk.md: billed ms per passage at 1,769 MB, one vCPU,
Zen 4, 2026-11-27), divided among the vCPUs. After a run it is what the children reported:
each part's seconds x the job's vCPUs and memory. Prices come from prices.py, dated.
"""

from __future__ import annotations

from dataclasses import dataclass

from embedding_client import prices

CPU_MS_PER_PASSAGE = {"int8": 43.6, "fp32": 79.5}
CPU_SOURCE = "make bench-bulk, docs/benchmarks/bulk.md (2026-11-27, Zen 4): billed ms per 256-token passage on one vCPU"
LAMBDA_MB = 1769  # one vCPU
LAMBDA_PASSAGES_PER_INVOCATION = 5000


@dataclass(frozen=True)
class Quote:
    engine: str
    hours: float
    usd: float
    note: str


def quotes(passages: float, precision: str, vcpus: int, child_vcpus: float, child_memory_mb: int) -> list[Quote]:
    """The job on Lambda, Fargate, Fargate Spot and one GPU instance: hours at `vcpus` and $."""
    vcpu_hours = passages * CPU_MS_PER_PASSAGE[precision] / 1000 / 3600
    gb_hours = vcpu_hours / child_vcpus * child_memory_mb / 1024
    hours = vcpu_hours / vcpus
    gb_seconds = vcpu_hours * 3600 * LAMBDA_MB / 1024
    invocations = max(1, round(passages / LAMBDA_PASSAGES_PER_INVOCATION))
    gpu = prices.GPU_INSTANCE
    gpu_hours = passages / gpu["passages_per_s"] / 3600
    return [
        Quote("Lambda x86_64", hours, prices.lambda_usd(gb_seconds, invocations, "x86_64"),
              f"{LAMBDA_MB} MB (one vCPU) per worker, {vcpus:,} concurrent; list prices {prices.AS_OF[:7]}"),
        Quote("Fargate x86_64", hours, prices.fargate_usd(vcpu_hours, gb_hours),
              f"{child_vcpus:g} vCPU + {child_memory_mb / 1024:g} GB per child; {prices.FARGATE_AS_OF}"),
        Quote("Fargate Spot x86_64", hours, prices.fargate_usd(vcpu_hours, gb_hours, spot=True), prices.FARGATE_SPOT_AS_OF),
        Quote(f"GPU {gpu['name']}", gpu_hours, gpu_hours * gpu["usd_per_hour"], f"one instance; {gpu['as_of']}"),
    ]


def engine_usd(engine: str, vcpu_seconds: float, gb_seconds: float) -> float:
    """What children billed this many vCPU- and GB-seconds cost on `engine` (the queue's first
    compute environment: FARGATE_SPOT, FARGATE, or EC2/SPOT priced as Fargate, said in the report)."""
    spot = engine in ("FARGATE_SPOT", "SPOT")
    return prices.fargate_usd(vcpu_seconds / 3600, gb_seconds / 3600, spot=spot)


def render_quotes(items: list[Quote]) -> str:
    cheapest = min(items, key=lambda quote: quote.usd)
    lines = [f"  {'engine':<34} {'hours':>8} {'$':>10}  assumptions"]
    lines += [f"  {q.engine:<34} {q.hours:>8.2f} {q.usd:>10,.2f}  {q.note}" for q in items]
    lines.append(f"  cheapest: {cheapest.engine} (${cheapest.usd:,.2f})")
    return "\n".join(lines)
