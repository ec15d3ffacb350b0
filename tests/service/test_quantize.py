"""quantize.py against sentence-transformers' own quantize_embeddings, byte for byte."""

from __future__ import annotations

import sys

import numpy as np
import pytest


from embedding_service.quantize import EMBEDDING_TYPES, CalibrationError, load_ranges, quantize  # noqa: E402


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(5)
    data = rng.normal(size=(64, 48)).astype(np.float32)
    data[0, :8] = 0.0  # exactly zero: not > 0, so a 0 bit
    return data / np.linalg.norm(data, axis=1, keepdims=True)


@pytest.mark.parametrize("embedding_type", EMBEDDING_TYPES)
def test_every_type_equals_quantize_embeddings(vectors, embedding_type, tmp_path):
    from sentence_transformers.util.quantization import quantize_embeddings

    calibration = vectors[:40] * 0.8  # narrower than the data: values beyond it must clip, not wrap
    calibration[:, 3] = 0.25  # a dimension with no spread (step 0)
    np.save(tmp_path / "calibration.npy", calibration)
    ranges = load_ranges(tmp_path, "calibration.npy", 48)
    precision = "float32" if embedding_type == "float" else embedding_type
    expected = quantize_embeddings(vectors, precision, calibration_embeddings=calibration)
    ours = quantize(vectors, embedding_type, ranges)
    assert ours.dtype == expected.dtype and ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)


def test_calibration_files_must_fit_the_model(tmp_path):
    assert load_ranges(tmp_path, "", 48) is None  # a folder without its own file: int8/uint8 refused per request
    with pytest.raises(CalibrationError, match="EMBEDDING_CALIBRATION_FILE .*absent.npy does not exist"):
        load_ranges(tmp_path, "absent.npy", 48)
    np.save(tmp_path / "wrong.npy", np.zeros((10, 47), dtype=np.float32))
    with pytest.raises(CalibrationError, match=r"want \(n >= 2, 48\)"):
        load_ranges(tmp_path, "wrong.npy", 48)
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(CalibrationError, match="not a numpy"):
        load_ranges(tmp_path, str(tmp_path / "text.npy"), 48)
    with pytest.raises(CalibrationError):
        quantize(np.zeros((1, 48), dtype=np.float32), "int8", None)
