"""What a prepared sentence-transformers folder says about itself, and what we refuse.

Dimension, maximum sequence length, pooling, normalisation and prompts all come from the
model's own files (`modules.json`, `sentence_bert_config.json`, `tokenizer_config.json`,
`1_Pooling/config.json`, `config.json`, `config_sentence_transformers.json`), read the way
sentence-transformers reads them, in both its old (2.x) and current (6.x) file formats.
Anything we could not serve faithfully (an unknown module, pooling mode or architecture,
custom code) is refused here with a message that says so, before any request is served.

Three kinds (contract.MODEL_KINDS), told apart the way sentence-transformers tells them:
`config_sentence_transformers.json`'s model_type when the folder has one, else the modules
(a SpladePooling module: sparse; a lone sequence-classification Transformer: reranker), else,
for a bare Hub checkpoint without any sentence-transformers file, config.json's architecture
(`*ForSequenceClassification`: what CrossEncoder loads; `*ForMaskedLM`: what SparseEncoder
loads as Transformer(fill-mask) + SpladePooling(max, relu)).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from embedding_service.contract import EMBEDDING, RERANKER, SPARSE

# Our pooling names; sentence-transformers 6 calls the last one "mean_sqrt_len_tokens".
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")
# Encoders whose ONNX export and serving the test suite proves (tests/service/test_any_model.py).
SUPPORTED_ARCHITECTURES = ("bert", "mpnet")
# Rerankers also as XLM-RoBERTa (BAAI/bge-reranker-*): proven by tests/service/test_rerank_sparse.py.
RERANKER_ARCHITECTURES = (*SUPPORTED_ARCHITECTURES, "xlm-roberta")
# Module types by their last name: 2.x writes sentence_transformers.models.Pooling, 6.x
# sentence_transformers.sentence_transformer.modules.pooling.Pooling.
TRANSFORMER, POOLING, NORMALIZE = "Transformer", "Pooling", "Normalize"
# SparseEncoder's modules: 6.x saves Transformer(transformer_task="fill-mask"), 5.x saved
# sentence_transformers.sparse_encoder.models.MLMTransformer; both end in SpladePooling. (Asymmetric
# "inference-free" models, a Router over SparseStaticEmbedding and an MLM, are refused by the module check.)
MLM_TRANSFORMER, SPLADE_POOLING = "MLMTransformer", "SpladePooling"
SPLADE_STRATEGIES = ("max", "sum")
SPLADE_ACTIVATIONS = ("relu", "log1p_relu")
# CrossEncoder's activation on its logits, by the class name sentence-transformers stores
# ("torch.nn.modules.activation.Sigmoid"); ours applies the same function in numpy.
RERANK_ACTIVATIONS = {"Sigmoid": "sigmoid", "Identity": "identity", "Tanh": "tanh"}
# The model_type sentence-transformers writes into config_sentence_transformers.json.
ST_MODEL_TYPES = {"SentenceTransformer": EMBEDDING, "CrossEncoder": RERANKER, "SparseEncoder": SPARSE}
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
    kind: str = EMBEDDING  # contract.MODEL_KINDS
    activation: str | None = None  # reranker: sigmoid, identity or tanh on the logit (raw_scores skips it)
    splade_strategy: str = "max"  # sparse: SpladePooling's pooling_strategy
    splade_activation: str = "relu"  # sparse: relu (log1p(relu(x))) or log1p_relu (one more log1p)
    max_active_dims: int | None = None  # sparse: keep only the largest this many values per vector

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


def _check_architecture(hf_config: dict, supported: tuple[str, ...] = SUPPORTED_ARCHITECTURES) -> str:
    if hf_config.get("auto_map"):
        raise ModelFilesError(
            "this model needs trust_remote_code (its config.json has auto_map): custom model code "
            "is not supported, because its ONNX export and vectors cannot be checked here"
        )
    architecture = str(hf_config.get("model_type", ""))
    if architecture not in supported:
        raise ModelFilesError(f"architecture {architecture!r} is not supported; supported: {', '.join(supported)}")
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


def model_kind(model_dir: Path) -> str:
    """embedding, reranker or sparse: what sentence-transformers would load this folder as."""
    st_type = _read_json(model_dir / "config_sentence_transformers.json", required=False).get("model_type")
    if st_type is not None:
        if st_type not in ST_MODEL_TYPES:
            raise ModelFilesError(
                f"config_sentence_transformers.json says model_type {st_type!r}; supported: "
                f"{', '.join(ST_MODEL_TYPES)}"
            )
        return ST_MODEL_TYPES[st_type]
    if (model_dir / "modules.json").is_file():
        modules = _read_json(model_dir / "modules.json")
        names = [m["type"].rsplit(".", 1)[-1] for m in modules]
        if SPLADE_POOLING in names or MLM_TRANSFORMER in names:
            return SPARSE
        task = _read_json(model_dir / "sentence_bert_config.json", required=False).get("transformer_task")
        return RERANKER if names == [TRANSFORMER] and task == "sequence-classification" else EMBEDDING
    architectures = _read_json(model_dir / "config.json", required=False).get("architectures") or []
    if any(str(a).endswith("ForSequenceClassification") for a in architectures):
        return RERANKER
    if any(str(a).endswith("ForMaskedLM") for a in architectures):
        return SPARSE
    return EMBEDDING  # and modules.json's absence is reported as such


def read_model_spec(model_dir: Path) -> ModelSpec:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFilesError(
            f"model folder {model_dir} does not exist. Run `make setup` to prepare it, "
            "or set MODEL_DIR to a prepared sentence-transformers folder."
        )
    kind = model_kind(model_dir)
    if kind == RERANKER:
        return _reranker_spec(model_dir)
    if kind == SPARSE:
        return _sparse_spec(model_dir)
    return _embedding_spec(model_dir)


def _embedding_spec(model_dir: Path) -> ModelSpec:
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


def _shared(model_dir: Path, architectures: tuple[str, ...] = SUPPORTED_ARCHITECTURES) -> dict:
    """What every kind reads the same way: architecture, window, prompts, tokenizer."""
    hf_config = _read_json(model_dir / "config.json")
    st_config = _read_json(model_dir / "sentence_bert_config.json", required=False)
    tokenizer_config = _read_json(model_dir / "tokenizer_config.json", required=False)
    if not (model_dir / "tokenizer.json").is_file():
        raise ModelFilesError(f"{model_dir / 'tokenizer.json'} is missing: a fast tokenizer file is required")
    st_model_config = _read_json(model_dir / "config_sentence_transformers.json", required=False)
    prompts, default_prompt_name = _prompts(st_model_config)
    pad_token = tokenizer_config.get("pad_token")
    return dict(
        path=model_dir,
        max_seq_length=_max_seq_length(st_config, tokenizer_config, hf_config),
        architecture=_check_architecture(hf_config, architectures),
        prompts=prompts,
        default_prompt_name=default_prompt_name,
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        pad_token=pad_token.get("content") if isinstance(pad_token, dict) else pad_token,
    )


def _only_modules(model_dir: Path, allowed: list[list[str]], what: str) -> list[dict]:
    """modules.json, when the folder has one, must list exactly one of the `allowed` pipelines."""
    if not (model_dir / "modules.json").is_file():
        return []
    modules = _read_json(model_dir / "modules.json")
    names = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if names not in allowed:
        raise ModelFilesError(
            f"modules.json lists {names}; a {what} is served as {' or '.join(map(str, allowed))} only, "
            "and would otherwise score differently from sentence-transformers"
        )
    if modules[0].get("path", "") not in ("", "."):
        raise ModelFilesError("the Transformer module must live at the folder's root (path \"\")")
    return modules


def _activation_name(path: object) -> str | None:
    """A stored activation's class name, when sentence-transformers would trust it (torch.*)."""
    return str(path).rsplit(".", 1)[-1] if isinstance(path, str) and path.startswith("torch.") else None


def _reranker_spec(model_dir: Path) -> ModelSpec:
    """A CrossEncoder: one score per (query, document) pair from a *ForSequenceClassification,
    with the activation CrossEncoder.predict applies, found where each version stores it."""
    _only_modules(model_dir, [[TRANSFORMER]], "reranker")
    st_config = _read_json(model_dir / "sentence_bert_config.json", required=False)
    task = st_config.get("transformer_task", "sequence-classification")
    if task != "sequence-classification":
        raise ModelFilesError(f"a reranker's transformer_task must be sequence-classification, not {task!r}")
    hf_config = _read_json(model_dir / "config.json")
    architectures = hf_config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        raise ModelFilesError(
            f"config.json's architectures {architectures} has no *ForSequenceClassification: "
            "a cross-encoder reranker needs a classification head"
        )
    labels = int(hf_config.get("num_labels") or len(hf_config.get("id2label") or {}) or 2)
    if labels != 1:
        raise ModelFilesError(
            f"this classifier has {labels} labels; a reranker answers one relevance score per pair "
            "(num_labels=1), so it is not served"
        )
    # CrossEncoder's order: config_sentence_transformers.json (6.x), config.json's
    # sentence_transformers (4.x-5.x), sbert_ce_default_activation_function (<4), else
    # Sigmoid for one label. An untrusted (non-torch) path falls back to the default, as there.
    stored = [
        _read_json(model_dir / "config_sentence_transformers.json", required=False).get("activation_fn"),
        (hf_config.get("sentence_transformers") or {}).get("activation_fn"),
        hf_config.get("sbert_ce_default_activation_function"),
    ]
    name = next((n for n in map(_activation_name, stored) if n is not None), "Sigmoid")
    if name not in RERANK_ACTIVATIONS:
        raise ModelFilesError(
            f"activation function {name!r} is not supported; supported: {', '.join(RERANK_ACTIVATIONS)}"
        )
    activation = RERANK_ACTIVATIONS[name]
    # `pooling` names the head, so the model fingerprint (which lists it) tells scores apart too
    return ModelSpec(dimension=1, pooling=f"cross_encoder_{activation}", normalize=False, kind=RERANKER,
                     activation=activation, **_shared(model_dir, RERANKER_ARCHITECTURES))


def _sparse_spec(model_dir: Path) -> ModelSpec:
    """A SparseEncoder: an MLM head's logits through SpladePooling, over the vocabulary."""
    modules = _only_modules(
        model_dir, [[TRANSFORMER, SPLADE_POOLING], [MLM_TRANSFORMER, SPLADE_POOLING]], "sparse encoder"
    )
    pooling = _read_json(model_dir / modules[1]["path"] / "config.json") if modules else {}
    task = _read_json(model_dir / "sentence_bert_config.json", required=False).get("transformer_task", "fill-mask")
    if task != "fill-mask":
        raise ModelFilesError(f"a sparse encoder's transformer_task must be fill-mask, not {task!r}")
    hf_config = _read_json(model_dir / "config.json")
    if not any(str(a).endswith("ForMaskedLM") for a in hf_config.get("architectures") or []):
        raise ModelFilesError("config.json's architectures has no *ForMaskedLM: SPLADE pooling needs an MLM head")
    strategy = pooling.get("pooling_strategy", "max")
    activation = pooling.get("activation_function", "relu")
    if strategy not in SPLADE_STRATEGIES or activation not in SPLADE_ACTIVATIONS:
        raise ModelFilesError(
            f"SpladePooling {strategy!r}/{activation!r} is not supported; supported: pooling_strategy "
            f"{' or '.join(SPLADE_STRATEGIES)}, activation_function {' or '.join(SPLADE_ACTIVATIONS)}"
        )
    st_model_config = _read_json(model_dir / "config_sentence_transformers.json", required=False)
    max_active = int(st_model_config["max_active_dims"]) if st_model_config.get("max_active_dims") else None
    # `pooling` spells out all of SpladePooling and the top-k, so the model fingerprint covers them
    pooling = f"splade_{strategy}_{activation}" + (f"_top{max_active}" if max_active else "")
    return ModelSpec(dimension=int(hf_config["vocab_size"]), pooling=pooling, normalize=False, kind=SPARSE,
                     splade_strategy=strategy, splade_activation=activation,
                     max_active_dims=max_active, **_shared(model_dir))
