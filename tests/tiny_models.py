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


# ---- Rerankers and sparse encoders (issue 26): the kinds with a head on the encoder ----------

HEAD_KINDS = ("reranker", "sparse")


def _tiny_head(kind: str, folder: Path, tokenizer_source: Path, seed: int) -> Path:
    """A bare Hub checkpoint: BertForSequenceClassification (num_labels=1) or BertForMaskedLM,
    with the prepared MiniLM's tokenizer and no sentence-transformers file at all."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

    torch.manual_seed(seed)
    sizes = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=64)
    model = (BertForSequenceClassification(BertConfig(**sizes, num_labels=1)) if kind == "reranker"
             else BertForMaskedLM(BertConfig(**sizes)))
    if kind == "sparse":
        # Sparse as a trained SPLADE model is: random logits (std ~0.1) are positive for half the
        # vocabulary, 15,000 entries per text. A negative bias silences all but 500 words, whose
        # biases straddle zero so that some are active only for some texts and tokens.
        with torch.no_grad():
            bias = torch.full((sizes["vocab_size"],), -0.8)
            words = torch.randperm(sizes["vocab_size"])[:500]
            bias[words] = torch.empty(500).uniform_(-0.3, 0.3)
            model.cls.predictions.bias.copy_(bias)
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer_source / name, folder / name)
    return folder


def build_bare(kind: str, tokenizer_source: Path, root: Path) -> Path:
    return _tiny_head(kind, root / f"bare-{kind}", tokenizer_source, seed=26)


def build_xlm_roberta_reranker(tokenizer_source: Path, root: Path) -> Path:
    """A bare XLMRobertaForSequenceClassification (bge-reranker-base's architecture): no token types
    (type_vocab_size 1), positions offset past the padding id, and a RoBERTa-style pair template
    (`<s> q </s></s> d </s>`, every token type 0) over the MiniLM vocabulary."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    folder = root / "bare-xlm-roberta-reranker"
    torch.manual_seed(3)
    config = XLMRobertaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=66, type_vocab_size=1, pad_token_id=0,
                              bos_token_id=101, eos_token_id=102, num_labels=1)
    XLMRobertaForSequenceClassification(config).save_pretrained(folder)
    tokenizer = Tokenizer.from_file(str(tokenizer_source / "tokenizer.json"))
    tokenizer.post_processor = RobertaProcessing(("[SEP]", 102), ("[CLS]", 101))
    tokenizer.save(str(folder / "tokenizer.json"))
    # as XLM-R's own: 2 positions fewer than max_position_embeddings (the padding offset)
    tokenizer_config = json.loads((tokenizer_source / "tokenizer_config.json").read_text())
    tokenizer_config.update(model_max_length=64, tokenizer_class="PreTrainedTokenizerFast")
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    shutil.copy(tokenizer_source / "special_tokens_map.json", folder)
    return folder


def build_head(kind: str, tokenizer_source: Path, root: Path) -> Path:
    """What CrossEncoder.save / SparseEncoder.save write in the pinned sentence-transformers (6.2;
    6.3.0 writes the same files, checked by saving with both), loaded from a bare checkpoint."""
    from sentence_transformers import CrossEncoder, SparseEncoder

    bare = _tiny_head(kind, root / f"{kind}-hf", tokenizer_source, seed=6)
    folder = root / f"st-{kind}"
    if kind == "reranker":
        CrossEncoder(str(bare)).save(str(folder))
    else:  # with a query prompt, so input_type=query has something to apply
        SparseEncoder(str(bare), prompts={"query": "query: ", "document": ""}).save(str(folder))
    shutil.rmtree(bare)
    return folder


def to_sparse_v5_layout(folder: Path) -> None:
    """SparseEncoder.save's 5.x layout, which published SPLADE models (opensearch-project/...) still
    have: MLMTransformer and SpladePooling under sentence_transformers.sparse_encoder.models,
    max_seq_length in sentence_bert_config.json, word_embedding_dimension in the pooling config."""
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.sparse_encoder.models.MLMTransformer"},
        {"idx": 1, "name": "1", "path": "1_SpladePooling",
         "type": "sentence_transformers.sparse_encoder.models.SpladePooling"},
    ]))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 48, "do_lower_case": False}))
    (folder / "1_SpladePooling" / "config.json").write_text(json.dumps(
        {"pooling_strategy": "max", "activation_function": "log1p_relu", "word_embedding_dimension": 30522}))
