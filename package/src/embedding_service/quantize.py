"""Compact output types for vector storage, exactly as sentence-transformers makes them.

`quantize` reproduces `sentence_transformers.util.quantization.quantize_embeddings` (6.x) on the
pooled, normalised float32 vectors, so a vector database fed by this service holds what
`model.encode(..., precision=...)` would have produced:

- int8 / uint8: per dimension, 256 buckets between the calibration minimum and maximum
  (`floor((x - min) / step)` clipped to 0..255; int8 subtracts 128). The ranges ship with
  the model folder (`quantization_calibration.npy`, written by scripts/prepare_model.py)
  or come from EMBEDDING_CALIBRATION_FILE: any (n, dimension) array of calibration
  embeddings, whose per-dimension min and max become the ranges.
- binary / ubinary: one bit per dimension, set where the value is > 0, packed 8 to a byte
  (numpy.packbits, big-endian bit order); binary stores each byte minus 128 as int8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedding_service.contract import CALIBRATED_TYPES, EMBEDDING_TYPES  # noqa: F401 (re-exported)

CALIBRATION_FILE = "quantization_calibration.npy"  # in the model folder, written by prepare_model.py


class CalibrationError(RuntimeError):
    """The calibration file is unusable; the message names it."""


def load_ranges(model_dir: Path, configured: str, dimension: int) -> np.ndarray | None:
    """(2, dimension) float32 min/max rows from calibration embeddings. The model folder's
    own file may be absent (None: int8/uint8 are then refused per request); a configured
    EMBEDDING_CALIBRATION_FILE must exist."""
    path = Path(model_dir) / (configured or CALIBRATION_FILE)
    if not path.is_file():
        if configured:
            raise CalibrationError(f"EMBEDDING_CALIBRATION_FILE {path} does not exist")
        return None
    try:
        calibration = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise CalibrationError(f"calibration file {path} is not a numpy .npy array: {error}") from None
    if calibration.ndim != 2 or calibration.shape[1] != dimension or len(calibration) < 2:
        raise CalibrationError(
            f"calibration file {path} holds an array of shape {calibration.shape}; "
            f"want (n >= 2, {dimension}) embeddings of this model"
        )
    return np.vstack((calibration.min(axis=0), calibration.max(axis=0))).astype(np.float32)


def quantize(vectors: np.ndarray, embedding_type: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """(n, dimension) float32 -> the requested type, as quantize_embeddings returns it."""
    if embedding_type == "float":
        return vectors.astype(np.float32, copy=False)
    if embedding_type in CALIBRATED_TYPES:
        if ranges is None:
            raise CalibrationError(f"{embedding_type} needs calibration ranges")
        starts = ranges[0, :]
        steps = (ranges[1, :] - starts) / 255
        steps = np.where(steps == 0, 1, steps)
        buckets = np.clip(np.floor((vectors - starts) / steps), 0, 255)
        return buckets.astype(np.uint8) if embedding_type == "uint8" else (buckets - 128).astype(np.int8)
    if embedding_type == "binary":
        return (np.packbits(vectors > 0, axis=-1) - 128).astype(np.int8)
    if embedding_type == "ubinary":
        return np.packbits(vectors > 0, axis=-1)
    raise ValueError(f"unknown embedding type {embedding_type!r}")
