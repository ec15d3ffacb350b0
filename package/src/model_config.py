"""What a prepared sentence-transformers folder says about itself.

Dimension, maximum sequence length, pooling and normalisation all come from the model's
own files (`modules.json`, `sentence_bert_config.json`, `1_Pooling/config.json`,
`config.json`), so nothing in the service hard-codes 384 or 256 and another
sentence-transformers model prepared the same way just works.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")


class ModelFilesError(RuntimeError):
    """The model folder is missing or incomplete; the message says how to fix it."""


@dataclass(frozen=True)
class ModelSpec:
    path: Path
    dimension: int
    max_seq_length: int
    pooling: str
    normalize: bool


def _read_json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFilesError(
            f"{path} is missing. Prepare the model first: `make setup` "
            "(or `python scripts/prepare_model.py`), or point MODEL_DIR at a prepared folder."
        ) from None


def _pooling_mode(config: dict) -> str:
    for mode in POOLING_MODES:
        if config.get(f"pooling_mode_{mode}_tokens") or config.get(f"pooling_mode_{mode}_token"):
            return mode
    raise ModelFilesError(f"unsupported pooling configuration: {config}")


def read_model_spec(model_dir: Path) -> ModelSpec:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFilesError(
            f"model folder {model_dir} does not exist. Run `make setup` to prepare it, "
            "or set MODEL_DIR to a prepared sentence-transformers folder."
        )
    modules = _read_json(model_dir / "modules.json")
    pooling_dir = next(
        (m["path"] for m in modules if m["type"].endswith("models.Pooling")), "1_Pooling"
    )
    pooling = _read_json(model_dir / pooling_dir / "config.json")
    st_config = _read_json(model_dir / "sentence_bert_config.json")
    hf_config = _read_json(model_dir / "config.json")
    max_len = int(st_config.get("max_seq_length") or hf_config.get("max_position_embeddings", 512))
    max_len = min(max_len, int(hf_config.get("max_position_embeddings", max_len)))
    return ModelSpec(
        path=model_dir,
        dimension=int(pooling.get("word_embedding_dimension") or hf_config["hidden_size"]),
        max_seq_length=max_len,
        pooling=_pooling_mode(pooling),
        normalize=any(m["type"].endswith("models.Normalize") for m in modules),
    )
