#!/usr/bin/env python3
"""What MODELS= costs at start-up: the resident memory and load time of each list of models.

Every served model loads (and warms up) before the first request, so a container's memory and
cold start are the sum of its models'; this measures that sum for the lists given, in one process
each, after the runtime's own imports (docs/containers.md, "Several models in one container").

    flock /tmp/timing.lock .venv/bin/python bench/models_memory.py MODELS [MODELS ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


def _resident_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(models: str) -> str:
    """One list in this process: its models' load time and the resident memory they add."""
    import numpy  # noqa: F401  (imports every image pays anyway, outside the measurement)
    import onnxruntime  # noqa: F401
    import tokenizers  # noqa: F401

    from embedding_service.model import models_load
    from embedding_service.settings import load_settings

    before = _resident_mb()
    started = time.perf_counter()
    loaded = models_load(load_settings({"MODELS": models, "LOG_LEVEL": "error", "EMBEDDING_THREADS": "1"}))
    kinds = ", ".join(f"{model_id} ({embedder.kind})" for model_id, embedder in loaded.items())
    return (f"{len(loaded)} model(s): loaded in {time.perf_counter() - started:.2f} s, "
            f"+{_resident_mb() - before:.0f} MB resident: {kinds}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="a MODELS value: prepared folders, comma-separated")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: measure one list
    args = parser.parse_args(argv)
    if args.one:
        print(measure(args.models[0]), flush=True)
        return
    for models in args.models:  # a fresh process per list, so no list pays for another's
        subprocess.run([sys.executable, __file__, "--one", models], check=True)


if __name__ == "__main__":
    main()
