"""The chunker's token starts (package/src/embedding_service/token_starts.py) equal the
tokenizer's own `encode` offsets: on the real MiniLM tokenizer (words from a cache) for random
Unicode, whitespace of every kind, control characters, CJK, long words and special tokens in
the text, and on real documents; through a cache that fills and starts again; and on tokenizers
that don't read words on their own (byte-level BPE, an added token that takes the space beside
it), which are encoded whole.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from conftest import MODEL_DIR

from corpus import _docstrings  # noqa: E402
from embedding_service import token_starts as module  # noqa: E402
from embedding_service.token_starts import WHITESPACE, TokenStarts  # noqa: E402

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


def untruncated(tokenizer: Tokenizer) -> Tokenizer:
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


@pytest.fixture(scope="module")
def minilm() -> Tokenizer:
    return untruncated(Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json")))


def expected(tokenizer: Tokenizer, text: str) -> list[int]:
    return [start for start, _ in tokenizer.encode(text, add_special_tokens=False).offsets]


PIECES = st.one_of(
    st.sampled_from(["the", "Model", "naïve", "CAFÉ", "İstanbul", "ß", "🚀", "x9.5", "(see", "it)", "[MASK]",
                     "[CLS]x", "don't", "e\u0301", "\u0301", "a\x0cb", "\x85", "\x00", "\ufffd", "\u200b"]),
    st.sampled_from(list(WHITESPACE) + ["\x0b", "\x0c", "\x1c", "  ", "\r\n"]),
    st.text(alphabet="日本語のテキスト中文文本", min_size=1, max_size=30),
    st.text(alphabet="abcdefghij0123456789-_/.:", min_size=90, max_size=260),  # WordPiece's 100-character cap
    st.text(min_size=1, max_size=12),
)
TEXT = st.lists(PIECES, min_size=0, max_size=300).map("".join)


@SETTINGS
@given(text=TEXT)
def test_token_starts_equal_the_tokenizers_offsets(minilm, text):
    starts = TokenStarts(minilm)
    assert starts.by_word and starts.pieces is not None  # the fast path is the one under test
    assert starts(text).tolist() == expected(minilm, text)
    assert starts(text).tolist() == expected(minilm, text)  # again, every word from the cache


def test_real_documents_through_a_cache_that_fills_and_starts_again(minilm, monkeypatch):
    monkeypatch.setattr(module, "CACHE_WORDS", 2000)
    monkeypatch.setattr(module, "FRESH_WORDS", 1500)  # the larger documents are encoded whole
    starts = TokenStarts(minilm)
    documents = _docstrings()[:400]
    cleared = 0
    for document in documents:
        before = len(starts.words)
        assert starts(document).tolist() == expected(minilm, document)
        cleared += len(starts.words) < before
    assert cleared, "the cache never filled"


def test_a_lowercasing_normaliser_in_front_keeps_words_apart(minilm):
    """The service puts Lowercase before the model's normaliser where do_lower_case says so."""
    tokenizer = untruncated(minilm)
    tokenizer.normalizer = normalizers.Sequence([normalizers.Lowercase(), tokenizer.normalizer])
    text = "İSTANBUL Straße ΣΟΦΊΑ\u00a0Ǆemal\u3000ﬁne " * 20
    starts = TokenStarts(tokenizer)
    assert starts.by_word
    assert starts(text).tolist() == expected(tokenizer, text)


def wordpiece_with_a_mask(lstrip: bool) -> Tokenizer:
    vocab = {token: index for index, token in enumerate(["[UNK]", "a", "b", "##b", "<mask>", "mask"])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    config = json.loads(tokenizer.to_str())
    config["added_tokens"] = [{"id": 4, "content": "<mask>", "single_word": False, "lstrip": lstrip,
                               "rstrip": False, "normalized": False, "special": True}]
    return Tokenizer.from_str(json.dumps(config))


@pytest.mark.parametrize("lstrip", [False, True])
def test_an_added_token_that_takes_the_space_before_it_is_encoded_whole(lstrip):
    tokenizer = wordpiece_with_a_mask(lstrip)
    text = "ab a   <mask> b\n\n<mask>a  abb <mask>"
    starts = TokenStarts(tokenizer)
    assert starts.by_word
    assert starts("<mask>").tolist() == [0]  # alone, it starts where its word does
    assert starts("ab").tolist() == [0, 1]
    assert starts("ab   <mask>").tolist() == expected(tokenizer, "ab   <mask>")  # no word new to learn
    assert starts(text).tolist() == expected(tokenizer, text)
    if lstrip:  # the token starts at the spaces before it: words alone would say otherwise
        assert expected(tokenizer, text)[3] == 4


def test_a_token_found_outside_its_word_stops_the_cache_for_good():
    """A tokenizer that looks word-local but isn't (here: an lstrip token the configuration
    check is told to miss) is caught when its words are learnt, and encoded whole from then on."""
    tokenizer = wordpiece_with_a_mask(True)
    starts = TokenStarts(tokenizer)
    starts._glued = []
    text = "ab a   <mask> b <mask>a"  # two new words start with it: one isn't first when they're learnt
    assert starts(text).tolist() == expected(tokenizer, text)
    assert not starts.by_word


def test_a_byte_level_tokenizer_is_encoded_whole():
    tokenizer = Tokenizer(models.BPE({"a": 0, "b": 1, "Ġ": 2, "Ġa": 3}, [("Ġ", "a")]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    starts = TokenStarts(tokenizer)
    assert not starts.by_word
    text = "a a b  a"
    assert starts(text).tolist() == expected(tokenizer, text)


def test_many_new_words_at_once_are_encoded_whole_and_not_cached(minilm, monkeypatch):
    monkeypatch.setattr(module, "FRESH_WORDS", 50)
    starts = TokenStarts(minilm)
    text = " ".join(f"word{index}" for index in range(200))
    assert starts(text).tolist() == expected(minilm, text)
    assert len(starts.words) == 0
    assert np.array_equal(starts(text[:100]), expected(minilm, text[:100]))
    assert len(starts.words) > 0


def test_a_composing_normaliser_keeps_punctuation_in_its_word():
    """NFC makes "=" and a combining stroke one character, "≠", which BERT's pre-tokenizer does
    not split off: such a tokenizer is cached by whole words, never cut at punctuation."""
    vocab = {token: index for index, token in enumerate(["[UNK]", "a", "b", "=", "##b", "##="])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    starts = TokenStarts(tokenizer)
    assert starts.by_word and starts.pieces is None
    text = "a=\u0338b a = b a=b"
    assert starts(text).tolist() == expected(tokenizer, text)
