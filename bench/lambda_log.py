"""Durations from a Lambda log: the Runtime Interface Emulator's or real Lambda's (CloudWatch).

One parser, so that `make bench` (the handler under the RIE), `make bench-bulk` (the fleet's
billed milliseconds) and `make cost --from-rie` read the same lines the same way. The two logs
differ: the RIE prints `INIT REPORT(durationMs: X)` for the init phase and
`INVOKE RTDONE(... duration: Xms)` for each invoke alone; its REPORT lines carry an
`Init Duration` that means nothing there (a fraction of a ms), and the first REPORT after an init
has a `Duration` that includes the init. Real Lambda has no INIT REPORT: there `Init Duration`
on a cold REPORT is the init and `Duration` the invoke alone.
"""

from __future__ import annotations

import re
import statistics

EVENT = re.compile(
    r"INIT REPORT\(durationMs: (?P<init>[0-9.]+)\)"
    r"|INVOKE RTDONE\(status: \w+.*?duration: (?P<rtdone>[0-9.]+)ms\)"
    r"|(?P<report>REPORT RequestId: [^\n]*)"
)
REPORT_FIELD = re.compile(r"(Init Duration|Billed Duration|Duration): ([0-9.]+) ms")


def parse(text: str) -> dict:
    """Every init, invoke and REPORT line, in order. Each report: its fields, `cold` (it follows an
    RIE init, or carries a real `Init Duration`) and `invoke_ms` (the invoke alone)."""
    events = list(EVENT.finditer(text))
    rie = any(match["init"] is not None for match in events)
    inits, rtdone, reports, after_init = [], [], [], False
    for match in events:
        if match["init"] is not None:
            inits.append(float(match["init"]))
            after_init = True
        elif match["rtdone"] is not None:
            rtdone.append(float(match["rtdone"]))
        else:
            fields = {name: float(value) for name, value in REPORT_FIELD.findall(match["report"])}
            if "Duration" not in fields:
                continue
            init = fields.get("Init Duration")
            if not rie and init is not None:
                inits.append(init)
            cold = after_init if rie else init is not None
            reports.append(
                {
                    "init_duration_ms": init,
                    "duration_ms": fields["Duration"],
                    "billed_ms": fields.get("Billed Duration"),
                    "cold": cold,
                    "invoke_ms": fields["Duration"] - inits[-1] if rie and cold else fields["Duration"],
                }
            )
            after_init = False
    return {"format": "rie" if rie else "lambda", "inits": inits, "rtdone": rtdone, "reports": reports}


def durations(text: str) -> dict:
    """Median init and invoke: the invokes are the REPORTs that did not include an init (the RIE's
    cold ones only when there is nothing else, less their init). A ValueError without any."""
    parsed = parse(text)
    reports = parsed["reports"]
    invokes = [r["invoke_ms"] for r in reports if not (parsed["format"] == "rie" and r["cold"])]
    invokes = invokes or [r["invoke_ms"] for r in reports]
    if not parsed["inits"] and not invokes:
        raise ValueError(
            "no `INIT REPORT(durationMs: ...)` or `REPORT RequestId: ... Duration: ... ms` lines"
        )
    return {
        "format": parsed["format"],
        "init_ms": statistics.median(parsed["inits"]) if parsed["inits"] else None,
        "invoke_ms": statistics.median(invokes) if invokes else None,
        "inits": len(parsed["inits"]),
        "invokes": len(invokes),
    }
