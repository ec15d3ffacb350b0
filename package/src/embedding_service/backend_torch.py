"""sentence-transformers on torch: the seed's stack, kept as an option and as the GPU path.

Loaded through `SentenceTransformer` exactly as the seed did; we call its transformer module
and pool on the device with `pooling_torch` (pooling.py's modes in torch), so only `n x dim`
floats cross to the host: on a GPU, copying every hidden state back and pooling in numpy
costs more than the forward pass. The same code runs on CPU, where the tests check it.
Half precision (fp16/bf16 weights) is for CUDA only; pooling and normalisation always run in
fp32. Imported lazily: the ONNX path never loads torch.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from embedding_service.settings import SettingsError

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class TorchBackend:
    name = "torch"
    returns_pooled = True  # forward() gives (n, dim) sentence vectors, pooled on the device

    def __init__(
        self,
        model_dir: Path,
        onnx_file: str,
        threads: int,
        device: str = "cpu",
        *,
        precision: str = "fp32",
        pooling: str = "mean",
        normalize: bool = True,
    ):
        import torch
        from sentence_transformers import SentenceTransformer

        from embedding_service import pooling_torch
        if precision not in DTYPES:
            raise SettingsError(
                f"the torch backend runs fp32, fp16 or bf16, not EMBEDDING_PRECISION={precision}"
            )
        if precision != "fp32" and not device.startswith("cuda"):
            raise SettingsError(
                f"EMBEDDING_PRECISION={precision} runs on a GPU only (EMBEDDING_DEVICE=cuda); use fp32 on CPU"
            )
        if threads > 0:
            torch.set_num_threads(threads)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"EMBEDDING_DEVICE={device} but torch sees no CUDA device")
        self._torch = torch
        self._pooling = pooling_torch
        self._device = torch.device(device)
        self._mode = pooling
        self._normalize = normalize
        model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
        self._transformer = model[0].auto_model.eval().to(getattr(torch, DTYPES[precision]))
        # MPNet and its kind take no token_type_ids; pass them only where forward() does.
        self._token_types = "token_type_ids" in inspect.signature(self._transformer.forward).parameters

    def forward(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray,
        pooling_mask: np.ndarray | None = None,
    ) -> np.ndarray:
        torch = self._torch
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._token_types:
            inputs["token_type_ids"] = token_type_ids
        with torch.inference_mode():
            mask = torch.from_numpy(attention_mask).to(self._device)
            out = self._transformer(**{k: torch.from_numpy(v).to(self._device) for k, v in inputs.items()})
            if pooling_mask is not None:  # the prompt's tokens are read but not pooled
                mask = torch.from_numpy(pooling_mask).to(self._device)
            vectors = self._pooling.pool(out.last_hidden_state.float(), mask, self._mode)
            if self._normalize:
                vectors = self._pooling.l2_normalize(vectors)
            return vectors.cpu().numpy()

    def close(self) -> None:
        self._transformer = None
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()
