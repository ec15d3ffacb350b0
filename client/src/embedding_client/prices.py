"""Dated list prices: the one table `embed-corpus`'s report and `make cost` price with.

Source: AWS's public pricing pages (aws.amazon.com/lambda/pricing, /ecr/pricing,
/cloudwatch/pricing) for us-east-1 as recorded in the author's knowledge, which runs to mid-2025;
the init-billing change is AWS's announcement of 2025-08-01; OpenAI's price for
text-embedding-3-small; Cohere's rerank price (cohere.com/pricing). Not fetched live (the tools run offline): check the pages before quoting a
figure to anyone. Lambda bills duration per millisecond times memory in GB (MB / 1024), plus a
fee per request.
"""

from __future__ import annotations

AS_OF = (
    "2025-08 (us-east-1 list prices, from AWS's public pricing pages as known to the author; not "
    "fetched live)"
)
REGION = "us-east-1"
LAMBDA_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}  # first 6 bn GB-s/month tier
LAMBDA_REQUESTS_PER_MILLION = 0.20
# Always-free monthly allowance (not the 12-month kind), per account, shared by all functions.
LAMBDA_FREE_TIER = {"gb_seconds": 400_000, "requests": 1_000_000, "logs_gb": 5.0}
ECR_STORAGE_GB_MONTH = 0.10  # private repositories; the 12-month 500 MB-month free allowance not applied
CLOUDWATCH_LOGS_INGEST_PER_GB = 0.50
INIT_BILLING = (
    "INIT billed as duration on cold starts: always for container images; since 2025-08-01 for all "
    "functions (ZIP managed runtimes included)"
)
HOSTED_API = {
    "name": "OpenAI text-embedding-3-small",
    "usd_per_million_tokens": 0.02,  # standard
    "batch_usd_per_million_tokens": 0.01,  # Batch API: half price, results within 24 hours
    "as_of": "2024-01 list price (unchanged through mid-2025)",
}
# Cohere's hosted rerank price, beside which `make cost` prices reranking on Lambda. From cohere.com/pricing
# as known to the author (mid-2025); not fetched live. A "search" is one query with up to 100 documents
# (a document of over 500 tokens, query included, counts as several), so (query, 50 passages) is one.
RERANK_API = {
    "name": "Cohere Rerank 3.5",
    "usd_per_thousand_searches": 2.00,
    "documents_per_search": 100,
    "as_of": "2025-08 list price, cohere.com/pricing, as known to the author (not fetched live)",
}
# Graviton2's Neoverse N1 has two 128-bit FMA pipes; an AVX-512 x86 core has 512-bit ones (AVX2:
# 256-bit). fp32 GEMM is FMA-bound, so arm64 may need more time per text than x86_64.
ARM64_CAVEAT = (
    "arm64 assumes the x86_64 durations (nothing here runs arm64); Graviton2 has half the fp32 SIMD "
    "width of an AVX2 core (2x128-bit vs 2x256-bit FMA), so its durations may be longer"
)


def lambda_usd(gb_seconds: float, requests: int, arch: str) -> float:
    """Compute plus request charges, no free tier (a bulk run usually exceeds it)."""
    return gb_seconds * LAMBDA_GB_SECOND[arch] + requests * LAMBDA_REQUESTS_PER_MILLION / 1e6


def gb_seconds(billed_ms: float, memory_mb: int) -> float:
    """One invocation's GB-seconds, as AWS computes them."""
    return billed_ms / 1000 * memory_mb / 1024


def hosted_usd_per_million_texts(tokens_per_text: float) -> dict[str, float]:
    """The hosted API's standard and batch prices for a million texts of this length."""
    return {
        "standard": tokens_per_text * HOSTED_API["usd_per_million_tokens"],
        "batch": tokens_per_text * HOSTED_API["batch_usd_per_million_tokens"],
    }

# --- AWS Batch engines (issue 25's dated figures) -------------------------------------------------
FARGATE_AS_OF = "early 2026 (us-east-1 list prices as issue 25 states them; not fetched live)"
FARGATE_VCPU_HOUR = {"x86_64": 0.04048, "arm64": 0.03238}
FARGATE_GB_HOUR = {"x86_64": 0.004445, "arm64": 0.00356}
# Fargate Spot: AWS's own figure is "up to 70% off" Fargate; the actual discount varies by hour and
# zone. An assumption, dated like the list prices.
FARGATE_SPOT_DISCOUNT = 0.70
FARGATE_SPOT_AS_OF = "assumed 70% off Fargate (AWS's 'up to 70%'), early 2026"
# One GPU instance for the CUDA image: the price is g4dn.xlarge's on-demand list price (bench/gpu.py's
# table, mid-2025); the rate is an ASSUMPTION, unmeasured until `make bench-gpu` runs on a GPU
# (docs/benchmarks/gpu.md): a T4 at ~30% of its fp16 peak on 256-token MiniLM passages.
GPU_INSTANCE = {
    "name": "g4dn.xlarge (1 x T4)",
    "usd_per_hour": 0.526,
    "passages_per_s": 1000.0,
    "as_of": "mid-2025 on-demand price; 1,000 passages/s assumed, unmeasured",
}


def fargate_usd(vcpu_hours: float, gb_hours: float, arch: str = "x86_64", spot: bool = False) -> float:
    """Fargate's per-second bill for these vCPU- and GB-hours (Spot at the assumed discount)."""
    usd = vcpu_hours * FARGATE_VCPU_HOUR[arch] + gb_hours * FARGATE_GB_HOUR[arch]
    return usd * (1 - FARGATE_SPOT_DISCOUNT) if spot else usd
