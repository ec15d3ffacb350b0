"""sentence-transformers on torch: the seed's stack, kept as an option and as a cross-check.

Loaded through `SentenceTransformer` exactly as the seed did; we call its transformer
module for hidden states and pool with the shared functions, so the two backends differ
only in the runtime that runs the network. Imported lazily: the ONNX path never loads torch.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np


class TorchBackend:
    name = "torch"

    def __init__(self, model_dir: Path, onnx_file: str, threads: int, device: str = "cpu"):
        import torch
        from sentence_transformers import SentenceTransformer

        if threads > 0:
            torch.set_num_threads(threads)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"EMBEDDING_DEVICE={device} but torch sees no CUDA device")
        self._torch = torch
        self._device = torch.device(device)
        model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
        self._transformer = model[0].auto_model.eval()
        # MPNet and its kind take no token_type_ids; pass them only where forward() does.
        self._token_types = "token_type_ids" in inspect.signature(self._transformer.forward).parameters

    def forward(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray
    ) -> np.ndarray:
        torch = self._torch
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._token_types:
            inputs["token_type_ids"] = token_type_ids
        with torch.inference_mode():
            out = self._transformer(**{k: torch.from_numpy(v).to(self._device) for k, v in inputs.items()})
        return out.last_hidden_state.float().cpu().numpy()

    def close(self) -> None:
        self._transformer = None
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()
