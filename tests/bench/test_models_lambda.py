"""bench/models_lambda.py: the model bytes it says an image carries are what Dockerfile.lambda keeps."""

from __future__ import annotations

import models_lambda


def test_image_bytes_leave_out_the_weights_and_the_other_precisions_onnx_file(tmp_path):
    folder = tmp_path / "model"
    (folder / "onnx").mkdir(parents=True)
    sizes = {"model.safetensors": 7_000_000, "tokenizer.json": 500_000, "config.json": 1_000,
             "onnx/model.onnx": 2_000_000, "onnx/model_int8.onnx": 600_000, "quantization_calibration.npy": 3_000}
    for name, size in sizes.items():
        (folder / name).write_bytes(b"\0" * size)
    shared = 500_000 + 1_000 + 3_000
    assert models_lambda.image_mb(folder, "fp32") == (shared + 2_000_000) / 1e6
    assert models_lambda.image_mb(folder, "int8") == (shared + 600_000) / 1e6
