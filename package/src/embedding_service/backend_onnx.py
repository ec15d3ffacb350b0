"""ONNX Runtime backend: token ids -> hidden states, with no torch anywhere.

This is the default for both images: onnxruntime + tokenizers + numpy import in a
fraction of a second, which is most of the Lambda cold start.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from embedding_service.model_config import ModelFilesError


class OnnxBackend:
    name = "onnx"
    returns_pooled = False  # forward() gives hidden states; the model layer pools them

    def __init__(self, model_dir: Path, onnx_file: str, threads: int, device: str = "cpu"):
        if device != "cpu":
            raise ModelFilesError(
                "the onnx backend runs on CPU only; use EMBEDDING_BACKEND=torch for CUDA"
            )
        path = Path(model_dir) / onnx_file
        if not path.is_file():
            raise ModelFilesError(
                f"{path} is missing. Run `make setup` (scripts/prepare_model.py writes onnx/model.onnx "
                "and, for EMBEDDING_PRECISION=int8, onnx/model_int8.onnx)."
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        if threads > 1:
            # Spinning workers burn the CPU that uvicorn's event loop and the tokenizer need
            # between calls; measured in the FastAPI target: less CPU per request, more texts/s.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._output = self._session.get_outputs()[0].name

    def forward(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray,
        pooling_mask: np.ndarray | None = None,  # hidden states out: the model layer pools
    ) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = token_type_ids
        return self._session.run([self._output], feeds)[0]

    def close(self) -> None:
        self._session = None
