"""What does the Lambda target cost? Monthly cost of N daily invocations (`make cost`).

The arithmetic is bench/lambda_cost.py's; this is the command around it. Durations come from
docs/benchmarks/results.json (the Lambda handler under the real RIE, pinned to one CPU =
1,769 MB), from flags, or from an RIE or CloudWatch log (`--from-rie`). Reranking and sparse
encoding are priced from docs/benchmarks/rerank-cost.json (`make bench-rerank`: billed ms
under the real RIE), beside Cohere's rerank price.

    .venv/bin/python bench/cost.py                       # 1,000 calls/day, from results.json
    .venv/bin/python bench/cost.py --daily 100000 --memory 1024,1769 --no-free-tier
    .venv/bin/python bench/cost.py --from-rie rie.log --json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path

import lambda_log
import rerank_cost
from lambda_cost import (DAYS_PER_MONTH, KEEP_WARM_S, LOG_BYTES_PER_INVOCATION, ONE_VCPU_MB, PRICES,
                         default_cold_fraction, hosted_usd, monthly, per_million_embeddings)
from pages import table

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "benchmarks" / "results.json"
RERANK_RESULTS = REPO / "docs" / "benchmarks" / "rerank-cost.json"
RERANK_MISSING = "Reranking and sparse encoding: not measured ({path} is missing): run `make bench-rerank`."
IMAGES_DOC = REPO / "docs" / "images.md"
# Which benchmark stack measures each precision (docs/benchmarks/results.json, bench/bench.py).
PRECISION_STACKS = {"fp32": "onnx", "int8": "int8"}
MISSING = "not measured: {results} has no such stack; run `make bench` (int8: after `make setup`)"
ARM_NOTE = (
    "arm64 durations = x86_64's x {factor}: an ASSUMPTION, not measured. Lambda's arm64 is Graviton2, "
    "whose 128-bit NEON has half the fp32 SIMD width of x86 AVX-512, so it may well be slower per text"
)
DEFAULT_MEMORY = (1024, 1769, 2048, 3008)


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    number = _positive(float)
    parser.add_argument("--daily", type=number, default=1000.0, help="invocations per day (1000)")
    parser.add_argument("--memory", type=_memory_list, default=list(DEFAULT_MEMORY),
                        help="memory sizes in MB, comma-separated (1024,1769,2048,3008)")
    parser.add_argument("--arch", type=_arch_list, default=["x86_64", "arm64"], help="x86_64,arm64")
    parser.add_argument("--init-ms", type=number, help="init duration at 1,769 MB (default: results.json)")
    parser.add_argument("--invoke-ms", type=number, help="warm invoke duration at 1,769 MB")
    parser.add_argument("--cold-fraction", type=_fraction,
                        help="share of calls that start a sandbox (default: Poisson estimate, "
                        f"exp(-{KEEP_WARM_S} s / mean gap between calls))")
    parser.add_argument("--free-tier", action=argparse.BooleanOptionalAction, default=True,
                        help="apply Lambda's always-free monthly allowance (default: on)")
    parser.add_argument("--image-gb", type=number, help="image size in ECR (default: docs/images.md)")
    parser.add_argument("--arm-speed-factor", type=number, default=1.0,
                        help="arm64 duration / x86_64 duration (default 1.0: an ASSUMPTION, not measured)")
    parser.add_argument("--log-bytes", type=number, default=LOG_BYTES_PER_INVOCATION,
                        help=f"CloudWatch Logs bytes per invocation ({LOG_BYTES_PER_INVOCATION})")
    parser.add_argument("--short-ms-per-text", type=number, help="per-text ms for ~15-token texts")
    parser.add_argument("--long-ms-per-text", type=number, help="per-text ms for 256-token passages")
    parser.add_argument("--texts-per-request", type=int, default=32,
                        help="texts per request for cost per million (32)")
    parser.add_argument("--from-rie", type=Path, metavar="LOGFILE",
                        help="read init/invoke durations from an RIE (or CloudWatch) log")
    parser.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    parser.add_argument("--rerank-results", type=Path, default=RERANK_RESULTS, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _durations(args: argparse.Namespace, parser: argparse.ArgumentParser, measured: dict) -> None:
    """init/invoke and per-text durations: flags first, then an RIE log, then results.json."""
    args.source = {"init_ms": "flag", "invoke_ms": "flag"}
    if args.from_rie:
        try:
            parsed = lambda_log.durations(args.from_rie.read_text(errors="replace"))
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
                a: per_million_embeddings(a, ONE_VCPU_MB, ms, args.texts_per_request, args.arm_speed_factor)
                for a in args.arch
            }
            rows.append({"precision": precision, "length": length, "tokens_per_text": tokens,
                         "ms_per_text_at_1769": ms, "usd": usd, "hosted_api_usd": hosted_usd(tokens),
                         "hosted_api_batch_usd": hosted_usd(tokens, "batch")})
    return rows


def _month(inputs: dict, arch: str, memory_mb: int, cold_fraction: float, free_tier: bool):
    """`monthly` at the run's durations, image, arm factor and log bytes."""
    return monthly(arch, memory_mb, inputs["daily"], inputs["init_ms"], inputs["invoke_ms"], cold_fraction,
                   free_tier, inputs["image_gb"], inputs["arm_speed_factor"], inputs["log_bytes"])


def compute(args: argparse.Namespace) -> dict:
    fractions = sorted({round(args.cold_fraction, 4), 0.1, 1.0})
    lines = [_month(vars(args), arch, m, cf, args.free_tier) for arch in args.arch for m in args.memory
             for cf in fractions]
    per_million = [
        {"length": length, "tokens_per_text": args.tokens[length], "arch": arch, "memory_mb": m,
         "ms_per_text_at_1769": ms,
         "usd": per_million_embeddings(arch, m, ms, args.texts_per_request, args.arm_speed_factor),
         "hosted_api_usd": hosted_usd(args.tokens[length])}
        for length, ms in args.precisions.get("fp32", {}).items() for arch in args.arch for m in args.memory
    ]
    given = ("init_ms", "invoke_ms", "cold_fraction", "free_tier", "image_gb", "arm_speed_factor",
             "log_bytes", "texts_per_request", "arch")
    args.rerank_results = str(args.rerank_results)
    inputs = {"daily": args.daily, "days_per_month": DAYS_PER_MONTH, **{k: getattr(args, k) for k in given},
              "rerank_results": args.rerank_results}
    return {
        "prices": PRICES,
        "inputs": {**inputs, "sources": args.source},
        "lines": [asdict(x) for x in lines],
        "per_million_embeddings": per_million,
        "per_precision": per_precision(args),
        "rerank": _rerank(args.rerank_results),
    }


def _rerank(path: str) -> dict | None:
    """`make bench-rerank`'s measured figures, or None where they were never measured."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "." if text else ""


def _money(x: float) -> str:
    return f"${x:,.2f}" if x >= 1 else f"${x:.4f}"


def _monthly_table(result: dict) -> list[str]:
    header = ["arch", "memory MB", "billed ms warm / cold", "GB-s/month", "compute", "requests", "ECR",
              "logs", "total/month", "cold 10%", "cold 100%"]
    by_key = {(x["arch"], x["memory_mb"], x["cold_fraction"]): x for x in result["lines"]}
    rows = [
        [arch, memory, f"{x['billed_ms_warm']} / {x['billed_ms_cold']}", f"{x['gb_seconds']:,.0f}",
         *(_money(x[f"{k}_usd"]) for k in ("compute", "requests", "ecr", "logs")),
         f"**{_money(x['total_usd'])}**",
         *(_money(by_key[(arch, memory, f)]["total_usd"]) for f in (0.1, 1.0))]
        for (arch, memory, cf), x in by_key.items()
        if cf == round(result["inputs"]["cold_fraction"], 4)
    ]
    return [table(header, "lrrrrrrrrrr", rows)]


def _per_million_table(result: dict) -> list[str]:
    if not result["per_million_embeddings"]:
        return []
    hosted = PRICES["hosted_api"]
    header = ["texts", "arch", "memory MB", "ms/text at 1,769 MB", "Lambda $/1M texts",
              "hosted API $/1M texts"]
    rows = [
        [f"{x['length']} (~{x['tokens_per_text']:.0f} tokens)", x["arch"], x["memory_mb"],
         f"{x['ms_per_text_at_1769']:.2f}", _money(x["usd"]), _money(x["hosted_api_usd"])]
        for x in result["per_million_embeddings"]
    ]
    return [
        "",
        f"Cost per million embeddings (warm, no free tier, {result['inputs']['texts_per_request']} texts per "
        f"request) vs {hosted['name']} at ${hosted['usd_per_million_tokens']}/1M tokens ({hosted['as_of']}):",
        "",
        table(header, "llrrrr", rows),
    ]


def _precision_row(x: dict, archs: list[str]) -> list:
    if "missing" in x:
        return [x["precision"], x["missing"], *[""] * (len(archs) + 3)]
    return [x["precision"], f"{x['length']} (~{x['tokens_per_text']:.0f} tokens)",
            f"{x['ms_per_text_at_1769']:.2f}", *(_money(x["usd"][a]) for a in archs),
            _money(x["hosted_api_usd"]), _money(x["hosted_api_batch_usd"])]


def _precision_table(result: dict) -> list[str]:
    rows, inp, hosted = result["per_precision"], result["inputs"], PRICES["hosted_api"]
    archs = inp["arch"]
    if not rows:
        return []
    lambda_columns = [f"Lambda {a} $/1M{' (assumed)' if a == 'arm64' else ''}" for a in archs]
    header = ["precision", "texts", "ms/text at 1,769 MB", *lambda_columns, "hosted API $/1M",
              "hosted batch $/1M"]
    return [
        "",
        f"Cost per million texts by precision (warm, no free tier, 1,769 MB = one vCPU, "
        f"{inp['texts_per_request']} texts per request; ms/text measured at 1 thread "
        f"[{inp['sources'].get('precisions', 'flags')}]) vs {hosted['name']}: standard "
        f"${hosted['usd_per_million_tokens']}/1M tokens, Batch API "
        f"${hosted['batch_usd_per_million_tokens']}/1M tokens ({hosted['as_of']}):",
        "",
        table(header, "llr" + "r" * (len(archs) + 2), [_precision_row(x, archs) for x in rows]),
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
        *(rerank_cost.section(result["rerank"]) if result.get("rerank")
          else [RERANK_MISSING.format(path=shown(Path(result["inputs"]["rerank_results"])))]),
        "",
        answer(result),
    ]
    return "\n".join(out) + "\n"


def answer(result: dict) -> str:
    inp = result["inputs"]
    pick = lambda arch, cf, free: _month(inp, arch, ONE_VCPU_MB, cf, free)  # noqa: E731
    cf = inp["cold_fraction"]
    parts, notes = [], []
    for arch in sorted({x["arch"] for x in result["lines"]}, reverse=True):
        free, paid, worst = pick(arch, cf, True), pick(arch, cf, False), pick(arch, 1.0, False)
        parts.append(f"on {arch} {_money(free.total_usd)} a month with the free tier "
                     f"({_money(paid.total_usd)} without it; {_money(worst.total_usd)} without it if every "
                     "call were cold)")
        if arch == "x86_64":
            lambda_paid = paid.compute_usd + paid.requests_usd
            if free.compute_usd + free.requests_usd == 0:
                notes.append("the free tier covers all of the Lambda compute and requests")
            notes.append(f"without the free tier Lambda itself is {_money(lambda_paid)} and the ECR "
                         f"storage of the image {_money(paid.ecr_usd)}")
    arm = " (arm64 assumes the x86_64 durations: not measured)" if "arm64" in inp["arch"] else ""
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
