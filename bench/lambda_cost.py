"""What Lambda bills, as arithmetic: a month of N daily calls, and a million texts.

Billed duration = invoke duration, plus the init phase on cold starts (container images were
always billed for init; since 2025-08-01 every Lambda function is), rounded up to the
millisecond, times memory in GB (MB / 1024, as AWS computes it), times the GB-second price of
the architecture; plus requests, ECR storage of the image and CloudWatch Logs ingestion. Shared
by `make cost` (bench/cost.py) and `make bench`'s memory recommendation (bench/analysis.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from embedding_client import prices

# The one dated price table lives with the client (embed-corpus prices its runs with it); this
# dict is its view for the report and results.json. Sources and caveats: embedding_client/prices.py.
PRICES = {
    "as_of": prices.AS_OF,
    "region": prices.REGION,
    "lambda_gb_second": prices.LAMBDA_GB_SECOND,
    "lambda_requests_per_million": prices.LAMBDA_REQUESTS_PER_MILLION,
    # Always-free monthly allowance, per account, shared by all functions and both architectures:
    # the figures below assume this is the only function.
    "free_tier": prices.LAMBDA_FREE_TIER,
    "ecr_storage_gb_month": prices.ECR_STORAGE_GB_MONTH,
    "cloudwatch_logs_ingest_per_gb": prices.CLOUDWATCH_LOGS_INGEST_PER_GB,
    "init_billing": prices.INIT_BILLING,
    "hosted_api": prices.HOSTED_API,
}
DAYS_PER_MONTH = 30.4
ONE_VCPU_MB = 1769  # Lambda allocates CPU in proportion to memory: 1,769 MB = one vCPU
KEEP_WARM_S = 300  # an idle sandbox lives ~5-15 minutes; we take the short end
LOG_BYTES_PER_INVOCATION = 600  # START/END/REPORT lines + our one JSON line, roughly
NO_FREE_TIER = {"gb_seconds": 0, "requests": 0, "logs_gb": 0}


@dataclass
class Line:
    arch: str
    memory_mb: int
    cold_fraction: float
    invocations: float
    billed_ms_warm: int
    billed_ms_cold: int
    gb_seconds: float
    compute_usd: float
    requests_usd: float
    ecr_usd: float
    logs_usd: float
    total_usd: float


def default_cold_fraction(daily: float, keep_warm_s: float = KEEP_WARM_S) -> float:
    """Calls spread at random (Poisson) over the day: a call is cold when the gap since the
    previous one exceeds the time an idle sandbox is kept, P(gap > T) = exp(-T / mean gap)."""
    if daily <= 0:
        return 1.0
    return math.exp(-keep_warm_s / (86_400 / daily))


def scaled_ms(ms: float, memory_mb: int, reference_mb: int = ONE_VCPU_MB) -> float:
    """CPU-bound work measured on one vCPU takes longer below 1,769 MB (a fraction of a vCPU);
    above it we assume no speed-up (the single-thread figure; conservative)."""
    return ms * max(1.0, reference_mb / memory_mb)


def monthly(arch: str, memory_mb: int, daily: float, init_ms: float, invoke_ms: float, cold_fraction: float,
            free_tier: bool, image_gb: float, arm_speed_factor: float = 1.0,
            log_bytes: float = LOG_BYTES_PER_INVOCATION) -> Line:
    factor = arm_speed_factor if arch == "arm64" else 1.0
    invocations = daily * DAYS_PER_MONTH
    warm = math.ceil(scaled_ms(invoke_ms, memory_mb) * factor)
    cold = math.ceil(scaled_ms(init_ms + invoke_ms, memory_mb) * factor)
    billed_s = (invocations * (1 - cold_fraction) * warm + invocations * cold_fraction * cold) / 1000
    gb_seconds = memory_mb / 1024 * billed_s
    free = PRICES["free_tier"] if free_tier else NO_FREE_TIER
    compute = max(0.0, gb_seconds - free["gb_seconds"]) * PRICES["lambda_gb_second"][arch]
    requests = max(0.0, invocations - free["requests"]) * PRICES["lambda_requests_per_million"] / 1e6
    ecr = image_gb * PRICES["ecr_storage_gb_month"]
    logs = max(0.0, invocations * log_bytes / 1e9 - free["logs_gb"]) * PRICES["cloudwatch_logs_ingest_per_gb"]
    usd = (compute, requests, ecr, logs, compute + requests + ecr + logs)
    return Line(arch, memory_mb, cold_fraction, invocations, warm, cold, gb_seconds, *usd)


def per_million_embeddings(arch: str, memory_mb: int, ms_per_text: float, texts_per_request: int,
                           arm_speed_factor: float = 1.0) -> float:
    """Warm, no free tier: compute for a million texts sent `texts_per_request` at a time."""
    factor = arm_speed_factor if arch == "arm64" else 1.0
    seconds = scaled_ms(ms_per_text, memory_mb) * factor / 1000 * 1e6
    requests = 1e6 / texts_per_request
    return (
        memory_mb / 1024 * seconds * PRICES["lambda_gb_second"][arch]
        + requests * PRICES["lambda_requests_per_million"] / 1e6
    )


def hosted_usd(tokens_per_text: float, key: str = "standard") -> float:
    """The hosted API's price (standard or batch) for a million texts of this many tokens."""
    return prices.hosted_usd_per_million_texts(tokens_per_text)[key]
