"""Where each of a text's tokens starts, fast: the chunker's one tokenisation of every text.

The tokenizer's own `encode` was the chunker's floor (nine tenths of its time). But on a
tokenizer that reads every whitespace-separated word on its own (a word-level pre-tokenizer such
as BERT's, WordPiece, normalisers that work per character), a word's tokens are a function of
the word alone. Text repeats its words (Zipf), so each distinct word is tokenised once, into a
cache that lives as long as the chunker, and a text's token starts are assembled from its
words' with array operations. A new word is itself assembled from the pieces between ASCII
punctuation where BERT's pre-tokenizer splits there too ("model," and "(model" share "model"),
so only new pieces meet the tokenizer. The result is exactly the tokenizer's: tests compare the
two on random and real text, and a word whose tokens don't stay inside it turns the cache off.
Any other tokenizer (byte-level BPE, SentencePiece's Metaspace, a normaliser that may glue words
together) is encoded whole, in blocks.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from operator import itemgetter

import numpy as np
from tokenizers import Tokenizer

BLOCK_CHARS = 8192  # the tokenizer reads a text in blocks of about this many characters
# Whitespace as the tokenizer sees it (BERT's normaliser drops control characters such as \x85
# or \x0c first, gluing their neighbours, and reads every other Unicode space as a space): a token
# never spans one of these, so a span cut at them holds exactly the tokens inside it.
WHITESPACE = "\t\n\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"  # BERT's pre-tokenizer isolates each of these
IS_SPACE = np.zeros(0x3002, dtype=bool)  # by code point: WHITESPACE (0x3001 stands for every code above)
IS_SPACE[[ord(char) for char in WHITESPACE]] = True
_IS_PUNCTUATION = np.zeros(len(IS_SPACE), dtype=bool)
_IS_PUNCTUATION[[ord(char) for char in PUNCTUATION]] = True
_PUNCTUATION = re.escape(PUNCTUATION)
WORDS = re.compile(f"[^{WHITESPACE}]+")  # runs of characters no token spans out of
_OTHER_SPACES = "\x0b\x0c\x1c\x1d\x1e\x1f\x85"  # str.split's whitespace, not the tokenizer's
_PIECES = re.compile(f"[^{WHITESPACE}{_PUNCTUATION}]+|[{_PUNCTUATION}]")

# Components that keep every whitespace-separated word's tokens a function of the word: they
# work per character or split further, and never join two words into one token.
_PUNCTUATION_KEEPING_NORMALIZERS = {"BertNormalizer", "Lowercase", "NFD", "StripAccents", "Strip"}  # no NFC
_WORD_LOCAL_NORMALIZERS = _PUNCTUATION_KEEPING_NORMALIZERS | {"NFC", "NFKC", "NFKD"}
_WORD_SPLITTING_PRE_TOKENIZERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
_WORD_LOCAL_PRE_TOKENIZERS = _WORD_SPLITTING_PRE_TOKENIZERS | {"Punctuation", "Digits"}
CACHE_WORDS = 1 << 17  # distinct words kept (and as many pieces): tens of MB; a full cache starts again
FRESH_WORDS = 1 << 16  # a text with more new words than this is encoded whole (no repeats to gain)


def codes_of(text: str) -> np.ndarray:
    """The text's code points: a byte each where it is ASCII (less to scan), else four."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def looked_up(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """table[code] for each code; the last entry stands for every code past the table."""
    return table[codes] if codes.dtype == np.uint8 else table[np.minimum(codes, len(table) - 1)]


def ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of counts[i] items laid end to end: for each item, its run and its place in the run."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return owner, np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)


class TokenStarts:
    """text -> the start of each of its tokens (no special tokens, no truncation)."""

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self.by_word, by_piece, self._glued, self._punctuated = _word_local(tokenizer)
        self.pieces = _Cache(_PIECES.findall, _IS_PUNCTUATION, self.encoded) if by_piece else None
        self.words = _Cache(_words, None, self._learnt)

    def __call__(self, text: str) -> np.ndarray:
        if self.by_word and not any(token in text for token in self._glued):
            with self._lock:
                starts = self.words.starts(text)
            if starts is not None:
                return starts
            self.by_word = self.words.working
        return self.encoded(text)

    def clear(self) -> None:
        """Forget every word learnt (the benchmark's cold start; the cache also starts again
        by itself when full)."""
        with self._lock:
            for cache in (self.words, self.pieces):
                if cache is not None:
                    cache.clear()

    def encoded(self, text: str) -> np.ndarray:
        """The tokenizer's `encode`, in blocks of about BLOCK_CHARS cut after a line break (else
        a space), which no token spans, so the starts are the whole text's; the tokenizer's
        per-token objects then last one block, not the whole text (memory)."""
        blocks: list[np.ndarray] = []
        at, length = 0, len(text)
        while at < length:
            end = length if length - at <= BLOCK_CHARS else _block_end(text, at + BLOCK_CHARS)
            encoding = self._tokenizer.encode(text[at:end], add_special_tokens=False)
            starts = np.fromiter(map(itemgetter(0), encoding.offsets), dtype=np.int64, count=len(encoding))
            blocks.append(starts + at if at else starts)
            at = end
        if len(blocks) == 1:
            return blocks[0]
        return np.concatenate(blocks) if blocks else np.empty(0, dtype=np.int64)

    def _learnt(self, joined: str) -> np.ndarray:
        """New words, joined by spaces: from their pieces where the tokenizer splits at
        punctuation and no added token holds any ([MASK] would be cut up), else encoded."""
        pieces = self.pieces
        if pieces is not None and pieces.working and not any(token in joined for token in self._punctuated):
            starts = pieces.starts(joined)
            if starts is not None:
                return starts
        return self.encoded(joined)


class _Cache:
    """The token starts of distinct words, each a run of characters other than whitespace, or,
    with `single`, a run between those characters and each of them alone."""

    def __init__(self, split: Callable[[str], list[str]], single: np.ndarray | None,
                 learn: Callable[[str], np.ndarray]):
        self._split, self._single, self._learn = split, single, learn
        self.working = True  # False once a word's tokens were found outside it
        self.clear()

    def __len__(self) -> int:
        return self._words

    def starts(self, text: str) -> np.ndarray | None:
        """The text's token starts, or None: too many new words, or not word-local after all."""
        words = self._split(text)
        distinct = set(words)
        fresh = distinct.difference(self._ids)
        if len(fresh) > FRESH_WORDS:
            return None
        if self._words + len(fresh) > CACHE_WORDS:  # full: start again with this text's words
            self.clear()
            fresh = distinct
        if fresh and not self._add(list(fresh)):
            return None
        ids = np.fromiter(map(self._ids.__getitem__, words), dtype=np.int64, count=len(words))
        owner, within = ragged(self._counts[ids])  # the word each token is in, and its place there
        return self._word_starts(text)[owner] + self._relative[self._first[ids][owner] + within]

    def _word_starts(self, text: str) -> np.ndarray:
        """Where each of the pattern's matches starts, from the characters' classes."""
        codes = codes_of(text)
        space = looked_up(IS_SPACE, codes)
        if self._single is None:
            return np.flatnonzero(~space & np.concatenate(([True], space[:-1])))
        single = looked_up(self._single, codes)
        split = space | single
        return np.flatnonzero((~space & np.concatenate(([True], split[:-1]))) | single)

    def _add(self, fresh: list[str]) -> bool:
        """Learn new words from one text of them joined by spaces (a word's tokens are its own);
        False, and the cache stops for good, where a token starts outside its word after all."""
        lengths = np.fromiter(map(len, fresh), dtype=np.int64, count=len(fresh))
        word_starts = np.cumsum(lengths + 1) - lengths - 1
        token_starts = self._learn(" ".join(fresh))
        owner = np.searchsorted(word_starts, token_starts, side="right") - 1
        outside = len(token_starts) and (owner[0] < 0 or (token_starts - word_starts[owner] >= lengths[owner]).any())
        if outside:
            self.working = False
            return False
        counts = np.bincount(owner, minlength=len(fresh))
        words, tokens = self._words, self._tokens
        self._counts = _room(self._counts, words + len(fresh))
        self._first = _room(self._first, words + len(fresh))
        self._relative = _room(self._relative, tokens + len(token_starts))
        self._counts[words : words + len(fresh)] = counts
        self._first[words : words + len(fresh)] = tokens + np.cumsum(counts) - counts
        self._relative[tokens : tokens + len(token_starts)] = token_starts - word_starts[owner]
        self._ids.update(zip(fresh, range(words, words + len(fresh))))
        self._words, self._tokens = words + len(fresh), tokens + len(token_starts)
        return True

    def clear(self) -> None:
        self._ids: dict[str, int] = {}
        self._words = self._tokens = 0
        self._counts = np.empty(1024, dtype=np.int32)  # tokens in each word
        self._first = np.empty(1024, dtype=np.int64)  # where each word's token starts begin in _relative
        self._relative = np.empty(4096, dtype=np.int32)  # token starts within their word


def _words(text: str) -> list[str]:
    """The runs of characters other than WHITESPACE: str.split's where that agrees (4x faster)."""
    return WORDS.findall(text) if any(char in text for char in _OTHER_SPACES) else text.split()


def _room(array: np.ndarray, size: int) -> np.ndarray:
    """The array, or a copy twice as large when it can't hold `size`."""
    if size <= len(array):
        return array
    grown = np.empty(max(size, 2 * len(array)), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def _word_local(tokenizer: Tokenizer) -> tuple[bool, bool, list[str], list[str]]:
    """Whether the tokenizer reads each whitespace-separated word on its own; whether also each
    run between ASCII punctuation; the added tokens that take the whitespace beside them (a text
    holding one is encoded whole); and those holding punctuation (not cut into pieces)."""
    config = json.loads(tokenizer.to_str())
    normalizers = _flattened(config.get("normalizer"), "normalizers")
    pre_tokenizers = _flattened(config.get("pre_tokenizer"), "pretokenizers")
    model = config.get("model") or {}
    normalizer_types = {step.get("type") for step in normalizers}
    pre_tokenizer_types = {step.get("type") for step in pre_tokenizers}
    by_word = (
        model.get("type") == "WordPiece"
        and normalizer_types <= _WORD_LOCAL_NORMALIZERS
        and bool(pre_tokenizer_types & _WORD_SPLITTING_PRE_TOKENIZERS)
        and pre_tokenizer_types <= _WORD_LOCAL_PRE_TOKENIZERS
    )
    by_piece = (
        by_word and normalizer_types <= _PUNCTUATION_KEEPING_NORMALIZERS and "BertPreTokenizer" in pre_tokenizer_types
    )
    added = [token for token in config.get("added_tokens") or [] if token["content"]]
    glued = [
        token["content"]
        for token in added
        if token.get("lstrip") or token.get("rstrip") or any(char in WHITESPACE for char in token["content"])
    ]
    punctuated = [token["content"] for token in added if set(token["content"]) & set(PUNCTUATION)]
    return by_word, by_piece, glued, punctuated


def _flattened(step: dict | None, key: str) -> list[dict]:
    if step is None:
        return []
    if step.get("type") == "Sequence":
        return [inner for part in step[key] for inner in _flattened(part, key)]
    return [step]


def _block_end(text: str, at: int) -> int:
    """Where a block reaching `at` ends: after the next line break within BLOCK_CHARS, else after
    the next space, else at the text's end."""
    end = text.find("\n", at, at + BLOCK_CHARS)
    if end < 0:
        end = text.find(" ", at)
    return len(text) if end < 0 else end + 1
