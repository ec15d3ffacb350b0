"""What does the Lambda target cost? Monthly cost of N daily invocations (`make cost`).

Billed duration = invoke duration, plus the init phase on cold starts (container images
were always billed for init; since 2025-08-01 every Lambda function is), rounded up to the
millisecond, times memory in GB (MB / 1024, as AWS computes it), times the GB-second price
of the architecture; plus requests, ECR storage of the image and (optionally) CloudWatch
Logs ingestion. Durations come from docs/benchmarks/results.json (the Lambda handler under
the real RIE, pinned to one CPU = 1,769 MB), from flags, or from an RIE log (`--from-rie`).

    .venv/bin/python bench/cost.py                       # 1,000 calls/day, from results.json
    .venv/bin/python bench/cost.py --daily 100000 --memory 1024,1769 --no-free-tier
    .venv/bin/python bench/cost.py --from-rie rie.log --json
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from embedding_client import prices

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "benchmarks" / "results.json"
IMAGES_DOC = REPO / "docs" / "images.md"

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
# Which benchmark stack measures each precision (docs/benchmarks/results.json, bench/bench.py).
PRECISION_STACKS = {"fp32": "onnx", "int8": "int8"}
MISSING = "not measured: {results} has no such stack; run `make bench` (int8: after `make setup`)"
ARM_NOTE = (
    "arm64 durations = x86_64's x {factor}: an ASSUMPTION, not measured. Lambda's arm64 is Graviton2, "
    "whose 128-bit NEON has half the fp32 SIMD width of x86 AVX-512, so it may well be slower per text"
)
DAYS_PER_MONTH = 30.4
ONE_VCPU_MB = 1769  # Lambda allocates CPU in proportion to memory: 1,769 MB = one vCPU
KEEP_WARM_S = 300  # an idle sandbox lives ~5-15 minutes; we take the short end
DEFAULT_MEMORY = (1024, 1769, 2048, 3008)
LOG_BYTES_PER_INVOCATION = 600  # START/END/REPORT lines + our one JSON line, roughly

INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")
REPORT = re.compile(r"REPORT RequestId: [^\n]*")
REPORT_FIELD = re.compile(r"(Init Duration|Billed Duration|Duration): ([0-9.]+) ms")


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


def monthly(
    arch: str,
    memory_mb: int,
    daily: float,
    init_ms: float,
    invoke_ms: float,
    cold_fraction: float,
    free_tier: bool,
    image_gb: float,
    arm_speed_factor: float = 1.0,
    log_bytes: float = LOG_BYTES_PER_INVOCATION,
    prices: dict = PRICES,
) -> Line:
    factor = arm_speed_factor if arch == "arm64" else 1.0
    invocations = daily * DAYS_PER_MONTH
    warm = math.ceil(scaled_ms(invoke_ms, memory_mb) * factor)
    cold = math.ceil(scaled_ms(init_ms + invoke_ms, memory_mb) * factor)
    billed_s = (invocations * (1 - cold_fraction) * warm + invocations * cold_fraction * cold) / 1000
    gb_seconds = memory_mb / 1024 * billed_s
    free = prices["free_tier"] if free_tier else {"gb_seconds": 0, "requests": 0, "logs_gb": 0}
    compute = max(0.0, gb_seconds - free["gb_seconds"]) * prices["lambda_gb_second"][arch]
    requests = max(0.0, invocations - free["requests"]) * prices["lambda_requests_per_million"] / 1e6
    ecr = image_gb * prices["ecr_storage_gb_month"]
    logs = max(0.0, invocations * log_bytes / 1e9 - free["logs_gb"]) * prices["cloudwatch_logs_ingest_per_gb"]
    return Line(
        arch,
        memory_mb,
        cold_fraction,
        invocations,
        warm,
        cold,
        gb_seconds,
        compute,
        requests,
        ecr,
        logs,
        compute + requests + ecr + logs,
    )


def per_million_embeddings(
    arch: str,
    memory_mb: int,
    ms_per_text: float,
    texts_per_request: int,
    arm_speed_factor: float = 1.0,
    prices: dict = PRICES,
) -> float:
    """Warm, no free tier: compute for a million texts sent `texts_per_request` at a time."""
    factor = arm_speed_factor if arch == "arm64" else 1.0
    seconds = scaled_ms(ms_per_text, memory_mb) * factor / 1000 * 1e6
    requests = 1e6 / texts_per_request
    return (
        memory_mb / 1024 * seconds * prices["lambda_gb_second"][arch]
        + requests * prices["lambda_requests_per_million"] / 1e6
    )


def parse_rie_log(text: str) -> dict:
    """Init and invoke durations from a Lambda log.

    The RIE prints `INIT REPORT(durationMs: X)` for the init phase; its REPORT lines carry an
    `Init Duration` that means nothing there (a fraction of a ms), and the first REPORT after
    an init has a `Duration` that includes the init. Real Lambda (CloudWatch) logs have no
    INIT REPORT line; there `Init Duration` on a cold REPORT is the init and `Duration` the
    invoke alone. Both are handled: with INIT REPORT lines we use them and take the invoke
    durations from the REPORTs that do not follow an init; without, we read the REPORTs."""
    events = sorted(
        [(m.start(), "init", float(m.group(1))) for m in INIT_REPORT.finditer(text)]
        + [(m.start(), "report", dict(REPORT_FIELD.findall(m.group(0)))) for m in REPORT.finditer(text)],
        key=lambda e: e[0],
    )
    rie = any(kind == "init" for _, kind, _ in events)
    inits, invokes, cold_first = [], [], []
    after_init = False
    for _, kind, value in events:
        if kind == "init":
            inits.append(value)
            after_init = True
            continue
        if "Duration" not in value:
            continue
        init_field, duration = value.get("Init Duration"), float(value["Duration"])
        if rie:
            if after_init:
                cold_first.append(duration)  # includes init in the RIE
            else:
                invokes.append(duration)
        else:
            if init_field is not None:
                inits.append(float(init_field))
            invokes.append(duration)
        after_init = False
    if not inits and not invokes:
        raise ValueError(
            "no `INIT REPORT(durationMs: ...)` or `REPORT RequestId: ... Duration: ... ms` lines"
        )
    if rie and not invokes and cold_first and inits:  # only cold calls: invoke = Duration - init
        invokes = [d - i for d, i in zip(cold_first, inits)]
    return {
        "format": "rie" if rie else "lambda",
        "init_ms": statistics.median(inits) if inits else None,
        "invoke_ms": statistics.median(invokes) if invokes else None,
        "inits": len(inits),
        "invokes": len(invokes),
    }


def shown(path: Path) -> Path:
    """A path as the output shows it: relative to the repository where it is inside."""
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def image_gb_from_docs(path: Path = IMAGES_DOC) -> tuple[float, str] | None:
    """The Lambda image's size from docs/images.md (uncompressed; ECR stores it compressed)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    match = re.search(r"\|\s*`[^`]*embedding-lambda`\s*\|\s*([0-9.]+)\s*MB", text)
    if not match:
        return None
    where = shown(path)
    return float(match.group(1)) / 1000, f"{where}: uncompressed; ECR stores compressed layers"


def ms_per_text(data: dict, stack: str) -> dict:
    """Per-text ms of one benchmark stack at 1 thread (= one vCPU, 1,769 MB), batch 32 or the
    largest measured: {length: ms} for the lengths it measured."""
    runs = data.get("stacks", {}).get(stack, {}).get("threads", {}).get("1", {}).get("runs", {})
    out = {}
    for length in ("short", "long"):
        by_batch = runs.get(length, {})
        if by_batch:
            batch = "32" if "32" in by_batch else max(by_batch, key=int)
            out[length] = by_batch[batch]["median_s"] / int(batch) * 1000
    return out


def from_results(path: Path = RESULTS) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    rie = data.get("lambda_rie", {}).get("onnx")
    if rie:
        out.update(init_ms=rie["init_ms"], invoke_ms=rie["warm_invoke_ms"])
    precisions = {p: ms_per_text(data, stack) for p, stack in PRECISION_STACKS.items()}
    for length, ms in precisions["fp32"].items():
        out[f"{length}_ms_per_text"] = ms
        out[f"{length}_tokens"] = data["corpus"][length]["mean_tokens"]
    out["precisions"] = {p: ms for p, ms in precisions.items() if ms}
    if not out["precisions"]:
        del out["precisions"]
    if out:
        out["source"] = str(shown(path))
    return out


def _positive(kind):
    def parse(raw: str):
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
        if not value >= 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {raw!r}")
        return value

    return parse


def _memory_list(raw: str) -> list[int]:
    try:
        sizes = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"memory sizes must be whole MB, comma-separated: {raw!r}") from None
    bad = [m for m in sizes if not 128 <= m <= 10240]
    if not sizes or bad:
        raise argparse.ArgumentTypeError(f"memory sizes must be between 128 and 10240 MB, got {raw!r}")
    return sizes


def _arch_list(raw: str) -> list[str]:
    archs = [a.strip() for a in raw.split(",") if a.strip()]
    bad = [a for a in archs if a not in PRICES["lambda_gb_second"]]
    if not archs or bad:
        raise argparse.ArgumentTypeError(f"architectures are x86_64 and arm64, got {raw!r}")
    return archs


def _fraction(raw: str) -> float:
    value = _positive(float)(raw)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {raw!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--daily", type=_positive(float), default=1000.0, help="invocations per day (1000)")
    parser.add_argument(
        "--memory",
        type=_memory_list,
        default=list(DEFAULT_MEMORY),
        help="memory sizes in MB, comma-separated (1024,1769,2048,3008)",
    )
    parser.add_argument("--arch", type=_arch_list, default=["x86_64", "arm64"], help="x86_64,arm64")
    parser.add_argument(
        "--init-ms", type=_positive(float), help="init duration at 1,769 MB (default: results.json)"
    )
    parser.add_argument("--invoke-ms", type=_positive(float), help="warm invoke duration at 1,769 MB")
    parser.add_argument(
        "--cold-fraction",
        type=_fraction,
        help="share of calls that start a sandbox (default: Poisson estimate, "
        f"exp(-{KEEP_WARM_S} s / mean gap between calls))",
    )
    parser.add_argument(
        "--free-tier",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="apply Lambda's always-free monthly allowance (default: on)",
    )
    parser.add_argument(
        "--image-gb", type=_positive(float), help="image size in ECR (default: docs/images.md)"
    )
    parser.add_argument(
        "--arm-speed-factor",
        type=_positive(float),
        default=1.0,
        help="arm64 duration / x86_64 duration (default 1.0: an ASSUMPTION, not measured)",
    )
    parser.add_argument(
        "--log-bytes",
        type=_positive(float),
        default=LOG_BYTES_PER_INVOCATION,
        help=f"CloudWatch Logs bytes per invocation ({LOG_BYTES_PER_INVOCATION})",
    )
    parser.add_argument("--short-ms-per-text", type=_positive(float), help="per-text ms for ~15-token texts")
    parser.add_argument(
        "--long-ms-per-text", type=_positive(float), help="per-text ms for 256-token passages"
    )
    parser.add_argument(
        "--texts-per-request", type=int, default=32, help="texts per request for cost per million (32)"
    )
    parser.add_argument(
        "--from-rie", type=Path, metavar="LOGFILE", help="read init/invoke durations from an RIE log"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _durations(args: argparse.Namespace, parser: argparse.ArgumentParser, measured: dict) -> None:
    """init/invoke and per-text durations: flags first, then an RIE log, then results.json."""
    args.source = {"init_ms": "flag", "invoke_ms": "flag"}
    if args.from_rie:
        try:
            parsed = parse_rie_log(args.from_rie.read_text(errors="replace"))
        except (OSError, ValueError) as error:
            parser.error(f"--from-rie {args.from_rie}: {error}")
        for key in ("init_ms", "invoke_ms"):
            if getattr(args, key) is None and parsed[key] is not None:
                setattr(args, key, parsed[key])
                args.source[key] = f"{args.from_rie} ({parsed['format']} log)"
    for key in ("init_ms", "invoke_ms", "short_ms_per_text", "long_ms_per_text"):
        if getattr(args, key) is None and key in measured:
            setattr(args, key, measured[key])
            args.source[key] = measured["source"]
    missing = [f"--{k.replace('_', '-')}" for k in ("init_ms", "invoke_ms") if getattr(args, k) is None]
    if missing:
        parser.error(
            f"no measured durations ({args.results} has none): give {' and '.join(missing)} "
            "or --from-rie LOGFILE, or run `make bench`"
        )


def _precisions(args: argparse.Namespace, measured: dict) -> None:
    """Per-text ms by precision: fp32 as the flags or results.json give it, the others measured."""
    fp32 = {k: getattr(args, f"{k}_ms_per_text") for k in ("short", "long")}
    args.precisions = {
        "fp32": {k: ms for k, ms in fp32.items() if ms},
        **{p: ms for p, ms in measured.get("precisions", {}).items() if p != "fp32"},
    }
    if "precisions" in measured:
        args.source["precisions"] = measured["source"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.texts_per_request < 1:
        parser.error("--texts-per-request must be >= 1")
    if args.arm_speed_factor == 0:
        parser.error("--arm-speed-factor must be > 0")
    measured = from_results(args.results)
    _durations(args, parser, measured)
    _precisions(args, measured)
    args.tokens = {k: measured.get(f"{k}_tokens", d) for k, d in (("short", 15.0), ("long", 256.0))}
    if args.cold_fraction is None:
        args.cold_fraction = default_cold_fraction(args.daily)
        args.source["cold_fraction"] = f"Poisson estimate, {KEEP_WARM_S} s keep-warm"
    else:
        args.source["cold_fraction"] = "flag"
    if args.image_gb is None:
        found = image_gb_from_docs()
        args.image_gb, args.source["image_gb"] = (
            found if found else (0.5, "assumed 0.5 GB (no docs/images.md)")
        )
    else:
        args.source["image_gb"] = "flag"
    return args


def hosted_usd(tokens_per_text: float, key: str = "usd_per_million_tokens") -> float:
    """The hosted API's price for a million texts of this many tokens."""
    return tokens_per_text * PRICES["hosted_api"][key]


def per_precision(args: argparse.Namespace) -> list[dict]:
    """$ per million texts for each precision at 1,769 MB (one vCPU), warm, no free tier, next to
    the hosted API's standard and batch prices; a row saying so where a precision was not measured."""
    rows = []
    for precision in PRECISION_STACKS:
        measured = args.precisions.get(precision, {})
        if not measured:
            rows.append({"precision": precision, "missing": MISSING.format(results=shown(args.results))})
        for length, ms in measured.items():
            tokens = args.tokens[length]
            usd = {
                arch: per_million_embeddings(
                    arch, ONE_VCPU_MB, ms, args.texts_per_request, args.arm_speed_factor
                )
                for arch in args.arch
            }
            rows.append(
                {
                    "precision": precision,
                    "length": length,
                    "tokens_per_text": tokens,
                    "ms_per_text_at_1769": ms,
                    "usd": usd,
                    "hosted_api_usd": hosted_usd(tokens),
                    "hosted_api_batch_usd": hosted_usd(tokens, "batch_usd_per_million_tokens"),
                }
            )
    return rows


def compute(args: argparse.Namespace) -> dict:
    fractions = sorted({round(args.cold_fraction, 4), 0.1, 1.0})
    lines = [
        monthly(
            arch,
            m,
            args.daily,
            args.init_ms,
            args.invoke_ms,
            cf,
            args.free_tier,
            args.image_gb,
            args.arm_speed_factor,
            args.log_bytes,
        )
        for arch in args.arch
        for m in args.memory
        for cf in fractions
    ]
    per_million = [
        {
            "length": length,
            "tokens_per_text": args.tokens[length],
            "arch": arch,
            "memory_mb": m,
            "ms_per_text_at_1769": ms,
            "usd": per_million_embeddings(arch, m, ms, args.texts_per_request, args.arm_speed_factor),
            "hosted_api_usd": hosted_usd(args.tokens[length]),
        }
        for length, ms in args.precisions.get("fp32", {}).items()
        for arch in args.arch
        for m in args.memory
    ]
    return {
        "prices": PRICES,
        "inputs": {
            "daily": args.daily,
            "days_per_month": DAYS_PER_MONTH,
            "init_ms": args.init_ms,
            "invoke_ms": args.invoke_ms,
            "cold_fraction": args.cold_fraction,
            "free_tier": args.free_tier,
            "image_gb": args.image_gb,
            "arm_speed_factor": args.arm_speed_factor,
            "log_bytes": args.log_bytes,
            "texts_per_request": args.texts_per_request,
            "arch": args.arch,
            "sources": args.source,
        },
        "lines": [asdict(x) for x in lines],
        "per_million_embeddings": per_million,
        "per_precision": per_precision(args),
    }


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "." if text else ""


def _money(x: float) -> str:
    return f"${x:,.2f}" if x >= 1 else f"${x:.4f}"


def _monthly_table(result: dict) -> list[str]:
    out = [
        "| arch | memory MB | billed ms warm / cold | GB-s/month | compute | requests | ECR | logs | "
        "total/month | cold 10% | cold 100% |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_key = {(x["arch"], x["memory_mb"], x["cold_fraction"]): x for x in result["lines"]}
    default_cf = round(result["inputs"]["cold_fraction"], 4)
    for (arch, memory, cf), x in by_key.items():
        if cf != default_cf:
            continue
        other = [by_key[(arch, memory, f)]["total_usd"] for f in (0.1, 1.0)]
        out.append(
            f"| {arch} | {memory} | {x['billed_ms_warm']} / {x['billed_ms_cold']} | {x['gb_seconds']:,.0f} | "
            f"{_money(x['compute_usd'])} | {_money(x['requests_usd'])} | {_money(x['ecr_usd'])} | "
            f"{_money(x['logs_usd'])} | **{_money(x['total_usd'])}** | {_money(other[0])} | "
            f"{_money(other[1])} |"
        )
    return out


def _per_million_table(result: dict) -> list[str]:
    if not result["per_million_embeddings"]:
        return []
    hosted = PRICES["hosted_api"]
    out = [
        "",
        f"Cost per million embeddings (warm, no free tier, {result['inputs']['texts_per_request']} texts per "
        f"request) vs {hosted['name']} at ${hosted['usd_per_million_tokens']}/1M tokens ({hosted['as_of']}):",
        "",
        "| texts | arch | memory MB | ms/text at 1,769 MB | Lambda $/1M texts | hosted API $/1M texts |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for x in result["per_million_embeddings"]:
        out.append(
            f"| {x['length']} (~{x['tokens_per_text']:.0f} tokens) | {x['arch']} | {x['memory_mb']} | "
            f"{x['ms_per_text_at_1769']:.2f} | {_money(x['usd'])} | {_money(x['hosted_api_usd'])} |"
        )
    return out


def _precision_row(x: dict, archs: list[str]) -> str:
    if "missing" in x:
        return f"| {x['precision']} | {x['missing']} |" + " |" * (len(archs) + 3)
    usd = " | ".join(_money(x["usd"][a]) for a in archs)
    return (
        f"| {x['precision']} | {x['length']} (~{x['tokens_per_text']:.0f} tokens) | "
        f"{x['ms_per_text_at_1769']:.2f} | {usd} | {_money(x['hosted_api_usd'])} | "
        f"{_money(x['hosted_api_batch_usd'])} |"
    )


def _precision_table(result: dict) -> list[str]:
    rows, inp, hosted = result["per_precision"], result["inputs"], PRICES["hosted_api"]
    archs = inp["arch"]
    if not rows:
        return []
    head = " | ".join(f"Lambda {a} $/1M{' (assumed)' if a == 'arm64' else ''}" for a in archs)
    return [
        "",
        f"Cost per million texts by precision (warm, no free tier, 1,769 MB = one vCPU, "
        f"{inp['texts_per_request']} texts per request; ms/text measured at 1 thread "
        f"[{inp['sources'].get('precisions', 'flags')}]) vs {hosted['name']}: standard "
        f"${hosted['usd_per_million_tokens']}/1M tokens, Batch API "
        f"${hosted['batch_usd_per_million_tokens']}/1M tokens ({hosted['as_of']}):",
        "",
        f"| precision | texts | ms/text at 1,769 MB | {head} | hosted API $/1M | hosted batch $/1M |",
        "|---|---|---:|" + "---:|" * (len(archs) + 2),
        *(_precision_row(x, archs) for x in rows),
    ]


def render(result: dict) -> str:
    inp = result["inputs"]
    out = [
        f"# Lambda cost: {inp['daily']:,.0f} invocations/day ({inp['daily'] * DAYS_PER_MONTH:,.0f}/month)",
        "",
        f"Prices: {PRICES['as_of']}. Init billed on cold starts. Free tier "
        f"{'ON (this function alone in the account)' if inp['free_tier'] else 'OFF'}.",
        f"Durations at 1,769 MB (one vCPU): init {inp['init_ms']:.0f} ms, warm invoke "
        f"{inp['invoke_ms']:.1f} ms "
        f"[{inp['sources']['init_ms']}]; scaled by 1769/M below 1,769 MB, unchanged above.",
        ARM_NOTE.format(factor=inp["arm_speed_factor"]) + ".",
        f"Image {inp['image_gb']:.3f} GB in ECR [{inp['sources']['image_gb']}]; "
        f"cold fraction default {inp['cold_fraction']:.3f} [{inp['sources']['cold_fraction']}].",
        "",
        f"Columns up to `total` are at the default cold fraction {inp['cold_fraction']:.3f}; the last two "
        "show the total if 10% or 100% of calls were cold.",
        "",
        *_monthly_table(result),
        *_per_million_table(result),
        *_precision_table(result),
        "",
        answer(result),
    ]
    return "\n".join(out) + "\n"


def answer(result: dict) -> str:
    inp = result["inputs"]
    pick = lambda arch, cf, free: monthly(  # noqa: E731
        arch,
        ONE_VCPU_MB,
        inp["daily"],
        inp["init_ms"],
        inp["invoke_ms"],
        cf,
        free,
        inp["image_gb"],
        inp["arm_speed_factor"],
        inp["log_bytes"],
    )
    cf = inp["cold_fraction"]
    parts, notes = [], []
    for arch in sorted({x["arch"] for x in result["lines"]}, reverse=True):
        free, paid, worst = pick(arch, cf, True), pick(arch, cf, False), pick(arch, 1.0, False)
        parts.append(
            f"on {arch} {_money(free.total_usd)} a month with the free tier "
            f"({_money(paid.total_usd)} without it; {_money(worst.total_usd)} without it if every "
            f"call were cold)"
        )
        if arch == "x86_64":
            lambda_paid = paid.compute_usd + paid.requests_usd
            if free.compute_usd + free.requests_usd == 0:
                notes.append("the free tier covers all of the Lambda compute and requests")
            notes.append(
                f"without the free tier Lambda itself is {_money(lambda_paid)} and the ECR "
                f"storage of the image {_money(paid.ecr_usd)}"
            )
    arm = (
        " (arm64 assumes the x86_64 durations: not measured)"
        if "arm64" in {x["arch"] for x in result["lines"]}
        else ""
    )
    return (
        f"**What do {inp['daily']:,.0f} invocations a day cost?** At 1,769 MB with the measured "
        f"{inp['init_ms']:.0f} ms init and {inp['invoke_ms']:.1f} ms warm invoke and a cold fraction of "
        f"{cf:.3f}: " + "; ".join(parts) + ". " + _sentence("; ".join(notes)) + arm
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = compute(args)
    result["answer"] = answer(result)
    print(json.dumps(result, indent=1) if args.json else render(result), end="" if not args.json else "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
