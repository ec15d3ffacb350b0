#!/usr/bin/env python3
"""One Lambda function with several models (MODELS=): its image bytes, init and memory under the real RIE.

Lambda allows a 10 GB image, 10,240 MB of memory and a 10 s init phase; whether one image with an
embedder, a reranker and a sparse encoder fits, and what its cold start costs against one function
per model, is measured here (docs/lambda.md, "Several models in one function"). For each list: the
bytes Dockerfile.lambda would bake in (each folder less its weights and the other precision's ONNX
file), the INIT REPORT duration of the handler under the real RIE on one CPU (1,769 MB), and the
runtime's resident memory after one warm call, medians of a few cold starts. The RIE runs hold
/tmp/timing.lock.

    .venv/bin/python bench/models_lambda.py --precision fp32 FOLDER [FOLDER,FOLDER ...]
"""

from __future__ import annotations

import argparse
import fcntl
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import psutil

import lambda_log
from bench_services import INVOKE_PATH, start_rie
from processes import free_port, stop, wait_for_port

TIMING_LOCK = Path("/tmp/timing.lock")
DROPPED = ("model.safetensors", "pytorch_model.bin")
ONNX_FILE = {"fp32": "model.onnx", "int8": "model_int8.onnx"}


def image_mb(folder: Path, precision: str) -> float:
    """What Dockerfile.lambda keeps of a prepared folder: all but the weights and other ONNX files."""
    kept = 0
    for path in folder.rglob("*"):
        if not path.is_file() or path.name in DROPPED:
            continue
        if path.parent.name == "onnx" and path.name != ONNX_FILE[precision]:
            continue
        kept += path.stat().st_size
    return kept / 1e6


def cold_start(models: str, precision: str, log_dir: Path) -> tuple[float, float]:
    """(init ms, runtime RSS MB) of one cold start serving `models`."""
    port = free_port()
    log_path = log_dir / f"rie-{port}.log"
    with open(log_path, "wb") as log:
        process = start_rie("onnx", "", port, log, extra_env={"MODELS": models, "EMBEDDING_PRECISION": precision})
        try:
            wait_for_port(port, timeout=120)
            event = {"version": "2.0", "rawPath": "/health", "headers": {}, "isBase64Encoded": False,
                     "requestContext": {"http": {"method": "GET", "path": "/health"}, "stage": "$default"}}
            httpx.post(f"http://127.0.0.1:{port}{INVOKE_PATH}", json=event, timeout=300).raise_for_status()
            rss = sum(child.memory_info().rss for child in psutil.Process(process.pid).children(recursive=True)
                      if "python" in child.name().lower())
        finally:
            stop(process)
    inits = lambda_log.parse(log_path.read_text(errors="replace"))["inits"]
    if not inits:
        raise RuntimeError(f"no INIT REPORT in {log_path}")
    return inits[0], rss / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", choices=tuple(ONNX_FILE), default="fp32")
    parser.add_argument("--runs", type=int, default=3, help="cold starts per list (3)")
    parser.add_argument("lists", nargs="+", help="comma-separated prepared folders, as MODELS takes them")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-models-lambda-") as tmp:
        for models in args.lists:
            folders = [Path(item.rpartition("=")[2]) for item in models.split(",")]
            size = sum(image_mb(folder, args.precision) for folder in folders)
            with open(TIMING_LOCK, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                runs = [cold_start(models, args.precision, Path(tmp)) for _ in range(args.runs)]
            init = statistics.median(ms for ms, _ in runs)
            rss = statistics.median(mb for _, mb in runs)
            names = " + ".join(folder.name for folder in folders)
            print(f"{names} ({args.precision}): {size:.1f} MB of model files in the image, init {init:.0f} ms, "
                  f"runtime RSS {rss:.0f} MB (median of {args.runs} cold starts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
