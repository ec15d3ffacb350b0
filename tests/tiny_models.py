"""Tiny random-weight sentence-transformers folders, built at test time, one per configuration.

Each is a real BertModel or MPNetModel from transformers with a tiny config (two layers,
32 dimensions), the prepared MiniLM's WordPiece tokenizer, and sentence-transformers' own
Pooling/Normalize modules, saved by sentence-transformers itself, so the folders are
exactly what a user would point `make setup MODEL=/path/to/folder` at.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@dataclass(frozen=True)
class TinyConfig:
    name: str
    architecture: str  # "bert" or "mpnet"
    pooling: str  # sentence-transformers' name: mean, cls, max, mean_sqrt_len_tokens
    normalize: bool
    max_seq_length: int
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    include_prompt: bool = True
    legacy_files: bool = False  # rewrite the configs in sentence-transformers 2.x's format
    do_lower_case: bool = False  # a cased tokenizer, lowercased by sentence_bert_config's do_lower_case
    positions: int = 130  # the transformer's max_position_embeddings (at least max_seq_length)


CONFIGS = (
    TinyConfig("bert-cls-e5-prompts", "bert", "cls", True, 40,
               prompts={"query": "query: ", "passage": "passage: "}),
    TinyConfig("bert-max-unnormalised-legacy", "bert", "max", False, 64, legacy_files=True),
    TinyConfig("bert-sqrt-len-default-prompt", "bert", "mean_sqrt_len_tokens", True, 48,
               prompts={"query": "Represent this sentence for searching relevant passages: "},
               default_prompt_name="query"),
    TinyConfig("mpnet-mean", "mpnet", "mean", True, 32),
    TinyConfig("mpnet-cls-prompt-excluded", "mpnet", "cls", False, 56,
               prompts={"query": "search query: ", "document": "search document: "}, include_prompt=False),
    TinyConfig("bert-cased-tokenizer-do-lower-case", "bert", "mean", True, 48, do_lower_case=True),
)
# MiniLM's window (256) on a tiny transformer: chunking tests on tens of megabytes embed fast.
MINILM_WINDOW = TinyConfig("bert-mean-256", "bert", "mean", True, 256, positions=512)


def _transformer(config: TinyConfig, folder: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel

    torch.manual_seed(sum(map(ord, config.name)))
    sizes = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=config.positions)
    if config.architecture == "bert":
        model = BertModel(BertConfig(**sizes))
    else:
        model = MPNetModel(MPNetConfig(**sizes, relative_attention_num_buckets=32))
    model.save_pretrained(folder)


def build(config: TinyConfig, tokenizer_source: Path, root: Path) -> Path:
    """Save the configuration as a sentence-transformers folder under `root`; returns it."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    hf = root / f"{config.name}-hf"
    _transformer(config, hf)
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer_source / name, hf / name)
    if config.do_lower_case:  # a cased tokenizer: "Paris" and "paris" differ unless lowercased first
        for name, edit in (("tokenizer.json", lambda t: t["normalizer"].update(lowercase=False)),
                           ("tokenizer_config.json", lambda t: t.update(do_lower_case=False))):
            content = json.loads((hf / name).read_text())
            edit(content)
            (hf / name).write_text(json.dumps(content))
        cased = (hf / "tokenizer.json").read_text()
    transformer = Transformer(str(hf), max_seq_length=config.max_seq_length, do_lower_case=config.do_lower_case)
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode=config.pooling,
                                    include_prompt=config.include_prompt)]
    if config.normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, prompts=config.prompts or None,
                                default_prompt_name=config.default_prompt_name)
    folder = root / config.name
    model.save(str(folder))
    if config.do_lower_case:  # as 2.x-era models have it: only sentence_bert_config asks to lowercase
        (folder / "tokenizer.json").write_text(cased)
        st_config = json.loads((folder / "sentence_bert_config.json").read_text())
        (folder / "sentence_bert_config.json").write_text(json.dumps({**st_config, "do_lower_case": True}))
    shutil.rmtree(hf)
    if config.legacy_files:
        _to_legacy_format(folder, config)
    return folder


def _to_legacy_format(folder: Path, config: TinyConfig) -> None:
    """The 2.x layout most Hub models still have: pooling booleans, max_seq_length in
    sentence_bert_config.json, sentence_transformers.models.* module types."""
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    legacy = {"word_embedding_dimension": pooling["embedding_dimension"]}
    flags = {"cls": "cls_token", "max": "max_tokens", "mean": "mean_tokens",
             "mean_sqrt_len_tokens": "mean_sqrt_len_tokens"}
    for mode, flag in flags.items():
        legacy[f"pooling_mode_{flag}"] = mode == config.pooling
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(legacy))
    # max_seq_length lives in sentence_bert_config.json and wins over the tokenizer's own.
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": config.max_seq_length, "do_lower_case": False})
    )
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**tokenizer_config, "model_max_length": 512}))
    modules = json.loads((folder / "modules.json").read_text())
    for module in modules:
        module["type"] = "sentence_transformers.models." + module["type"].rsplit(".", 1)[-1]
    (folder / "modules.json").write_text(json.dumps(modules))
