"""What makes this service's vectors what they are, so a bulk client can tell whether a vector
it embedded earlier (on any target) is still the one this service would return.

`model_fingerprint` lists every part that changes a vector, and nothing else: the weights
(their sha256, as scripts/prepare_model.py recorded it), the graph the backend runs and its
sha256, the backend, the device kind, the precision, the window, lower-casing, pooling, the
dimension, the int8/uint8 calibration ranges, and the prompt each `input_type` applies. A
local run and a Lambda function serving the same prepared folder and precision say the same
parts, so one's vectors can stand in for the other's. `/health` returns it; embed-corpus adds
the run's own choices (prompt, output type) and stores the result in its Parquet metadata.
Hashes are computed once per process, on first use, so cold starts never pay for them.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from embedding_service.model_config import INPUT_TYPE_PROMPTS

STAMP = ".prepared.json"  # scripts/prepare_model.py's record of the weights' sha256
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
FINGERPRINT_VERSION = 1  # bump when the parts' meaning changes: older outputs then never match


@lru_cache(maxsize=8)
def file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256; cached on (path, size, mtime) so each file is read once per process."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256_of(path: Path) -> str:
    stat = path.stat()
    return file_sha256(str(path), stat.st_size, stat.st_mtime_ns)


def weights_sha256(model_dir: Path) -> str:
    """The stamp's recorded sha256 of model.safetensors (the images drop the weights file and
    keep the stamp), unless the weights beside it changed size; else the weights file's own
    sha256 ("" for a folder with neither)."""
    stamp_path = model_dir / STAMP
    weights = model_dir / "model.safetensors"
    try:
        stamp = json.loads(stamp_path.read_text()) if stamp_path.is_file() else {}
    except ValueError:
        stamp = {}
    recorded = stamp.get("model.safetensors.sha256")
    if recorded and (not weights.is_file() or stamp.get("size") == weights.stat().st_size):
        return str(recorded)
    for name in WEIGHT_FILES:
        if (model_dir / name).is_file():
            return _sha256_of(model_dir / name)
    return ""


def model_fingerprint(settings, embedder) -> dict:
    """The parts that decide this service's vectors (see the module's docstring)."""
    spec = embedder.spec
    onnx = settings.backend == "onnx"
    graph = Path(settings.onnx_file)
    graph_path = graph if graph.is_absolute() else Path(settings.model_dir) / graph
    ranges = embedder.calibration_ranges
    prompts = {"default": spec.default_prompt or ""}
    prompts.update({kind: spec.prompt_for(kind) or "" for kind in INPUT_TYPE_PROMPTS})
    return {
        "version": FINGERPRINT_VERSION,
        "model_sha256": weights_sha256(Path(settings.model_dir)),
        "backend": settings.backend,
        "graph": settings.onnx_file if onnx else "weights",
        "graph_sha256": _sha256_of(graph_path) if onnx and graph_path.is_file() else "",
        "device": "cuda" if settings.device.startswith("cuda") else "cpu",
        "precision": settings.precision,
        "max_seq_length": spec.max_seq_length,
        "do_lower_case": spec.do_lower_case,
        "pooling": spec.pooling,
        "normalize": spec.normalize,
        "include_prompt": spec.include_prompt,
        "dimension": spec.dimension,
        "calibration_sha256": hashlib.sha256(np.ascontiguousarray(ranges).tobytes()).hexdigest()
        if ranges is not None
        else "",
        "prompts": prompts,
    }
