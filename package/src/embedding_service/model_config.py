"""What a prepared sentence-transformers folder says about itself, and what we refuse.

Dimension, maximum sequence length, pooling, normalisation and prompts all come from the
model's own files (`modules.json`, `sentence_bert_config.json`, `tokenizer_config.json`,
`1_Pooling/config.json`, `config.json`, `config_sentence_transformers.json`), read the way
sentence-transformers reads them, in both its old (2.x) and current (6.x) file formats.
Anything we could not serve faithfully (an unknown module, pooling mode or architecture,
custom code) is refused here with a message that says so, before any request is served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# Our pooling names; sentence-transformers 6 calls the last one "mean_sqrt_len_tokens".
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")
# Encoders whose ONNX export and serving the test suite proves (tests/service/test_any_model.py).
SUPPORTED_ARCHITECTURES = ("bert", "mpnet")
# Module types by their last name: 2.x writes sentence_transformers.models.Pooling, 6.x
# sentence_transformers.sentence_transformer.modules.pooling.Pooling.
TRANSFORMER, POOLING, NORMALIZE = "Transformer", "Pooling", "Normalize"
# `input_type` -> the prompt names that serve it, first match wins. query is what
# encode_query uses; document takes the first of encode_document's candidates that the
# model gives a non-empty prompt (ST 6 saves an empty "document" placeholder beside e5's
# "passage: ", which would otherwise hide it).
INPUT_TYPE_PROMPTS = {"query": ("query",), "document": ("document", "passage", "corpus")}


class ModelFilesError(RuntimeError):
    """The model folder is missing, incomplete or unservable; the message says why."""


@dataclass(frozen=True)
class ModelSpec:
    path: Path
    dimension: int
    max_seq_length: int
    pooling: str
    normalize: bool
    architecture: str = "bert"
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    include_prompt: bool = True  # False: prompt tokens are left out of pooling, as ST does
    do_lower_case: bool = False
    pad_token: str | None = None

    @property
    def default_prompt(self) -> str | None:
        """The prompt `SentenceTransformer.encode(texts)` applies when asked for none."""
        return self.prompts.get(self.default_prompt_name) if self.default_prompt_name else None

    def prompt_name_for(self, input_type: str) -> str | None:
        """The prompt name an `input_type` maps to on this model (None: no prompt)."""
        for name in INPUT_TYPE_PROMPTS[input_type]:
            if self.prompts.get(name):
                return name
        return None

    def prompt_info(self) -> dict:
        """What /health and /v1/models say: non-empty prompts and what each input_type applies."""
        return {
            "prompts": {name: text for name, text in self.prompts.items() if text},
            "default_prompt_name": self.default_prompt_name,
            "input_types": {kind: self.prompt_name_for(kind) for kind in INPUT_TYPE_PROMPTS},
        }

    def prompt_for(self, input_type: str | None) -> str | None:
        """Prompt text for a request: None means the model's default (what encode() does),
        "" means explicitly none (a query on a model without a query prompt)."""
        if input_type is None:
            return None
        name = self.prompt_name_for(input_type)
        return self.prompts[name] if name else ""


def _read_json(path: Path, required: bool = True) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if not required:
            return {}
        raise ModelFilesError(
            f"{path} is missing. Prepare the model first: `make setup` "
            "(or `python scripts/prepare_model.py`), or point MODEL_DIR at a prepared folder."
        ) from None


def _module_kind(module: dict) -> str:
    kind = module["type"].rsplit(".", 1)[-1]
    if kind not in (TRANSFORMER, POOLING, NORMALIZE):
        raise ModelFilesError(
            f"module {module['type']!r} in modules.json is not supported: this service serves "
            "Transformer -> Pooling [-> Normalize] models only, and would otherwise return "
            "vectors that differ from sentence-transformers"
        )
    return kind


def _check_pipeline(modules: list[dict]) -> dict[str, dict]:
    kinds = [_module_kind(m) for m in modules]
    if kinds not in ([TRANSFORMER, POOLING], [TRANSFORMER, POOLING, NORMALIZE]):
        raise ModelFilesError(
            f"modules.json lists {kinds}; supported: Transformer, Pooling and an optional Normalize, in that order"
        )
    if modules[0].get("path", "") not in ("", "."):
        raise ModelFilesError("the Transformer module must live at the folder's root (path \"\")")
    return dict(zip(kinds, modules))


def _pooling(config: dict) -> tuple[str, bool]:
    """(mode, include_prompt) from either file format; one mode only."""
    mode = config.get("pooling_mode")
    if mode is None:  # 2.x booleans: pooling_mode_mean_tokens, pooling_mode_cls_token, ...
        legacy = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
                  "mean": "pooling_mode_mean_tokens", "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
                  "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}
        modes = [name for name, key in legacy.items() if config.get(key)]
        mode = modes if len(modes) != 1 else modes[0]
        if not modes:
            mode = "mean"  # sentence-transformers' own default when no flag is set
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if mode == "mean_sqrt_len_tokens":
        mode = "mean_sqrt_len"
    if mode not in POOLING_MODES:
        raise ModelFilesError(
            f"pooling mode {mode!r} is not supported; supported: {', '.join(POOLING_MODES)} (one at a time)"
        )
    return mode, bool(config.get("include_prompt", True))


def _check_architecture(hf_config: dict) -> str:
    if hf_config.get("auto_map"):
        raise ModelFilesError(
            "this model needs trust_remote_code (its config.json has auto_map): custom model code "
            "is not supported, because its ONNX export and vectors cannot be checked here"
        )
    architecture = str(hf_config.get("model_type", ""))
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise ModelFilesError(
            f"architecture {architecture!r} is not supported; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    return architecture


def _max_seq_length(st_config: dict, tokenizer_config: dict, hf_config: dict) -> int:
    """As sentence-transformers decides it: sentence_bert_config's max_seq_length when set,
    else the tokenizer's model_max_length capped at max_position_embeddings."""
    if st_config.get("max_seq_length"):
        return int(st_config["max_seq_length"])
    positions = int(hf_config.get("max_position_embeddings", 512))
    return min(int(tokenizer_config.get("model_max_length") or positions), positions)


def _prompts(st_model_config: dict) -> tuple[dict[str, str], str | None]:
    prompts = {str(k): str(v) for k, v in (st_model_config.get("prompts") or {}).items() if v is not None}
    default = st_model_config.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise ModelFilesError(f"default_prompt_name {default!r} is not one of the model's prompts {sorted(prompts)}")
    return prompts, default


def read_model_spec(model_dir: Path) -> ModelSpec:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFilesError(
            f"model folder {model_dir} does not exist. Run `make setup` to prepare it, "
            "or set MODEL_DIR to a prepared sentence-transformers folder."
        )
    modules = _check_pipeline(_read_json(model_dir / "modules.json"))
    pooling_config = _read_json(model_dir / modules[POOLING]["path"] / "config.json")
    st_config = _read_json(model_dir / "sentence_bert_config.json")
    if st_config.get("transformer_task", "feature-extraction") != "feature-extraction":
        raise ModelFilesError(f"transformer_task {st_config['transformer_task']!r} is not supported")
    hf_config = _read_json(model_dir / "config.json")
    tokenizer_config = _read_json(model_dir / "tokenizer_config.json", required=False)
    if not (model_dir / "tokenizer.json").is_file():
        raise ModelFilesError(f"{model_dir / 'tokenizer.json'} is missing: a fast tokenizer file is required")
    pooling, include_prompt = _pooling(pooling_config)
    prompts, default_prompt_name = _prompts(
        _read_json(model_dir / "config_sentence_transformers.json", required=False)
    )
    pad_token = tokenizer_config.get("pad_token")
    return ModelSpec(
        path=model_dir,
        dimension=int(
            pooling_config.get("embedding_dimension")
            or pooling_config.get("word_embedding_dimension")
            or hf_config["hidden_size"]
        ),
        max_seq_length=_max_seq_length(st_config, tokenizer_config, hf_config),
        pooling=pooling,
        normalize=NORMALIZE in modules,
        architecture=_check_architecture(hf_config),
        prompts=prompts,
        default_prompt_name=default_prompt_name,
        include_prompt=include_prompt,
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        pad_token=pad_token.get("content") if isinstance(pad_token, dict) else pad_token,
    )
