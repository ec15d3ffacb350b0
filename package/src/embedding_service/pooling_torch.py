"""pooling.py's modes in torch, so a backend can pool on its device.

Only `n x dim` floats then cross to the host instead of every hidden state. Same modes, same
masks and the same epsilons as `pooling.py` (the definition): `cls` takes the first attended token,
`max` ignores padding by filling it with the dtype's lowest value, the means divide by the
token count clamped at 1e-9, and L2 normalisation divides by the norm clamped at 1e-12.
tests/service/test_gpu_path.py proves both give the same vectors. Imported only by the torch backend.
"""

from __future__ import annotations

import torch


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(batch, seq, dim) hidden states + (batch, seq) mask -> (batch, dim), in hidden's dtype."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    if mode == "cls":  # the first attended token: [CLS], or the first after an excluded prompt
        first = attention_mask.to(torch.int32).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), first, :]
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    summed = torch.einsum("bsd,bs->bd", hidden, mask[:, :, 0])
    counts = mask.sum(dim=1).clamp(min=1e-9)
    if mode == "mean":
        return summed / counts
    if mode == "mean_sqrt_len":
        return summed / counts.sqrt()
    raise ValueError(f"unknown pooling mode {mode!r}")


def l2_normalize(vectors: torch.Tensor) -> torch.Tensor:
    """vectors / max(||vectors||, 1e-12), as pooling.l2_normalize."""
    return vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)
