"""A run's fingerprint: the service's parts (its /health `fingerprint`) plus the run's own choices.

Two outputs whose fingerprints are equal hold vectors made the same way, so `--reuse` may copy
one's vector into the other. The parts are stored beside the digest in the Parquet metadata, so
a mismatch can say in one line what differs ("precision int8 (OLD) != fp32 (now)"). A server that
is not this project's service says no parts: its fingerprint is its address and model name,
so its vectors are only ever reused by runs against the same server and model.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from embedding_client.contract import CALIBRATED_TYPES  # values that depend on calibration ranges

SHOWN_CHARS = 40  # long values (prompts) are cut to this in messages
SHOWN_HASH_CHARS = 12  # sha256 values: enough to tell two apart


def run_parts(
    service: dict | None, where: str, model_id: str, dimension: int, input_type: str | None, embedding_type: str
) -> dict[str, Any]:
    """Every part that decides this run's vectors (service parts, prompt, output type)."""
    if not service:
        parts: dict[str, Any] = {"server": where, "model": model_id, "input_type": input_type or ""}
    else:
        parts = {name: value for name, value in service.items() if name != "prompts"}
        parts["prompt"] = (service.get("prompts") or {}).get(input_type or "default", "")
        if embedding_type not in CALIBRATED_TYPES:
            parts["calibration_sha256"] = ""  # ranges change only int8/uint8 values
    parts["embedding_type"] = embedding_type
    parts["dimensions"] = dimension  # embed-corpus keeps every dimension
    return parts


def digest(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`name old (OLD) != new (now)` for each part that differs, in name order."""
    return [
        f"{name} {_shown(old.get(name))} (OLD) != {_shown(new.get(name))} (now)"
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    ]


def _shown(value: Any) -> str:
    if value is None:
        return "absent"
    if not isinstance(value, str):
        return json.dumps(value)
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:SHOWN_HASH_CHARS] + "..."
    if not value or len(value) > SHOWN_CHARS or value != value.strip():
        return repr(value[:SHOWN_CHARS] + ("..." if len(value) > SHOWN_CHARS else ""))
    return value
