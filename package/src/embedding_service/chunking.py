"""Chunk, don't truncate: long texts as spans that each fit the model's window, cut where the
text itself says, so an edit moves only the chunks around it.

A chunk is `[start, end)` in Python string indices of the source text, trimmed of surrounding
whitespace. Each chunk's text, tokenised on its own, fits `chunk_tokens` (at most the model's
maximum less its special tokens and the prompt), and together the spans cover every character
but the whitespace between them.

How the cuts are chosen (one tokenisation of the whole text, with offsets):

1. Units: sentences (ending in . ! ? and the like before whitespace, a CJK full stop, or a line
   break), each marked with what ends it: a paragraph break (strongest), a sentence end, and,
   inside a sentence longer than the window, whitespace; a run with no whitespace at all
   (a URL, a hash, CJK text) is cut between tokens, the weakest.
2. Anchors, found from the content, never counted from the top: every boundary gets a rank,
   (its strength, a CRC-32 of the unit before it), and a boundary is an anchor when no boundary
   within `chunk_tokens / 3` tokens on either side outranks it. Whether a boundary is an anchor
   depends only on the text near it, the way backup tools cut files with a rolling hash, so
   an insertion upstream re-synchronises at the next anchor instead of shifting every window.
3. Between two anchors, a stretch longer than the window is split at its own highest-ranked
   boundary (one leaving at least a quarter of the window on each side where there is one),
   again and again until every piece fits: still a function of that stretch's text alone.
4. Overlap: each chunk after the first starts up to `overlap` tokens earlier, at the earliest
   sentence start (else word start) whose tail of the previous chunk fits; the chunks are
   first cut to `chunk_tokens - overlap`, so the whole still fits.

WordPiece (BERT, MPNet) never lets a token span whitespace, so a span cut at whitespace holds
exactly the whole text's tokens within it; spans cut between tokens are tokenised again on
their own and shrunk until they fit.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from embedding_service.contract import MIN_CHUNK_TOKENS

PARAGRAPH, SENTENCE, SPACE, TOKEN = 3, 2, 1, 0  # boundary strengths, strongest first
ANCHOR_RADIUS = 3  # anchors are at least chunk_tokens / 3 tokens apart
SIDE_MINIMUM = 4  # a stretch is split leaving at least chunk_tokens / 4 on each side, where it can
# A sentence ends at . ! ? (and closing quotes or brackets) before whitespace, at a CJK full stop,
# or at a line break; a blank line ends a paragraph.
# Whitespace as the tokenizer sees it (BERT's normaliser drops control characters such as \x85
# or \x0c first, gluing their neighbours, and reads every other Unicode space as a space): a token
# never spans one of these, so a span cut at them holds exactly the tokens inside it.
WHITESPACE = "\t\n\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_WS = f"[{WHITESPACE}]"
_WS_NOT_NEWLINE = f"[{WHITESPACE.replace(chr(10), '')}]"
# A sentence ends at . ! ? (and closing quotes or brackets) before whitespace, at a CJK full stop,
# or at a line break; a blank line ends a paragraph.
_BREAKS = re.compile(
    f"{_WS_NOT_NEWLINE}*\n{_WS_NOT_NEWLINE}*\n{_WS}*"  # a blank line: a paragraph break
    f"|{_WS_NOT_NEWLINE}*\n{_WS}*"  # a line break
    f"|(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]])){_WS}+"  # a sentence end (closing quote or bracket kept)
    f"|(?<=[。！？]){_WS}*"  # a CJK full stop, with or without space after it
)
_WORDS = re.compile(f"[^{WHITESPACE}]+")
_SENTENCE_ENDS = ".!?…。！？\"'”’)]"


class ChunkingError(ValueError):
    """A chunking request the model can't honour; the message says why."""


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    tokens: int


@dataclass(frozen=True)
class Units:
    """A text's units: starts, ends (trailing whitespace excluded), tokens, the strength of the
    boundary after each, and the rank of that boundary."""

    starts: np.ndarray
    ends: np.ndarray
    tokens: np.ndarray
    strength: np.ndarray
    rank: np.ndarray


class Chunker:
    """Chunks texts on one model's tokenizer (no truncation, no special tokens)."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int, special_tokens: int):
        self._tokenizer = tokenizer
        self.max_tokens = max_tokens  # the model's maximum sequence length
        self.special_tokens = special_tokens  # e.g. [CLS] and [SEP]

    @classmethod
    def of(cls, tokenizer: Tokenizer, max_seq_length: int) -> "Chunker":
        counting = Tokenizer.from_str(tokenizer.to_str())
        counting.no_truncation()
        counting.no_padding()
        specials = len(counting.encode("", add_special_tokens=True).ids)
        return cls(counting, max_seq_length, specials)

    def window(self, prompt: str | None) -> int:
        """The most tokens a chunk may hold under this prompt (the prompt's own tokens and the
        special tokens take the rest of the model's maximum)."""
        prompt_tokens = len(self._tokenizer.encode(prompt, add_special_tokens=False).ids) if prompt else 0
        return self.max_tokens - self.special_tokens - prompt_tokens

    def count(self, texts: list[str]) -> list[int]:
        """Tokens of each text, untruncated, without special tokens."""
        return [len(e.ids) for e in self._tokenizer.encode_batch(texts, add_special_tokens=False)]

    def check(self, chunk_tokens: int, overlap: int, prompt: str | None) -> None:
        window = self.window(prompt)
        if not MIN_CHUNK_TOKENS <= chunk_tokens <= window:
            raise ChunkingError(
                f"chunk_tokens must be between {MIN_CHUNK_TOKENS} and {window} (the model reads "
                f"{self.max_tokens} tokens, less {self.special_tokens} special tokens"
                + (" and the prompt's" if prompt else "")
                + f"); got {chunk_tokens}"
            )
        if overlap < 0 or 2 * overlap >= chunk_tokens:
            raise ChunkingError(
                f"chunk_overlap must be at least 0 and less than half of chunk_tokens ({chunk_tokens}); "
                f"got {overlap}"
            )

    def chunk(self, text: str, chunk_tokens: int, overlap: int = 0) -> tuple[list[Chunk], int]:
        """The text's chunks, and its tokens in all (untruncated)."""
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        offsets = encoding.offsets
        total = len(offsets)
        stripped = text.strip(WHITESPACE)
        if not stripped:  # nothing but whitespace: one chunk, so the text keeps its row
            return [Chunk(0, len(text), total)], total
        if total <= chunk_tokens:
            start = len(text) - len(text.lstrip(WHITESPACE))
            return [Chunk(start, start + len(stripped), total)], total
        token_starts = np.fromiter((o[0] for o in offsets), dtype=np.int64, count=total)
        token_ends = np.fromiter((o[1] for o in offsets), dtype=np.int64, count=total)
        budget = chunk_tokens - overlap
        units = self._units(text, token_starts, token_ends, budget)
        groups = _groups(units, budget)
        chunks = [self._fitted(text, units, first, last, budget) for first, last in groups]
        chunks = [piece for group in chunks for piece in group]
        if overlap:
            chunks = self._overlapped(text, chunks, token_starts, overlap, chunk_tokens)
        return chunks, total

    # -- units -----------------------------------------------------------------------------

    def _units(self, text: str, token_starts: np.ndarray, token_ends: np.ndarray, budget: int) -> Units:
        spans: list[tuple[int, int, int]] = []  # start, end, strength of the boundary after
        at = len(text) - len(text.lstrip(WHITESPACE))
        for match in _BREAKS.finditer(text, at):
            if match.start() > at:
                strength = PARAGRAPH if match.group().count("\n") >= 2 else SENTENCE
                spans.append((at, match.start(), strength))
            at = match.end()
        end = len(text.rstrip(WHITESPACE))
        if end > at:
            spans.append((at, end, PARAGRAPH))
        starts = np.fromiter((s[0] for s in spans), dtype=np.int64, count=len(spans))
        ends = np.fromiter((s[1] for s in spans), dtype=np.int64, count=len(spans))
        counts = np.searchsorted(token_starts, ends) - np.searchsorted(token_starts, starts)
        if counts.max(initial=0) > budget:
            spans = self._split_long(text, spans, counts, token_starts, token_ends, budget)
            starts = np.fromiter((s[0] for s in spans), dtype=np.int64, count=len(spans))
            ends = np.fromiter((s[1] for s in spans), dtype=np.int64, count=len(spans))
            counts = np.searchsorted(token_starts, ends) - np.searchsorted(token_starts, starts)
        strength = np.fromiter((s[2] for s in spans), dtype=np.int64, count=len(spans))
        hashes = np.fromiter(
            (zlib.crc32(text[s:e].encode("utf-8", "surrogatepass")) for s, e, _ in spans),
            dtype=np.int64,
            count=len(spans),
        )
        return Units(starts, ends, counts, strength, strength * (1 << 32) + hashes)

    def _split_long(self, text, spans, counts, token_starts, token_ends, budget) -> list[tuple[int, int, int]]:
        """Units over the budget: cut at whitespace, greedily (a long sentence is rare and its cuts
        move only within it); a word over the budget is cut between tokens."""
        out: list[tuple[int, int, int]] = []
        for (start, end, strength), count in zip(spans, counts):
            if count <= budget:
                out.append((start, end, strength))
                continue
            pieces: list[tuple[int, int, int]] = []
            piece_start = piece_end = None
            for word in _WORDS.finditer(text, start, end):
                first = int(np.searchsorted(token_starts, word.start()))
                last = int(np.searchsorted(token_starts, word.end()))
                if last - first > budget:  # no whitespace to cut at: between tokens
                    if piece_start is not None:
                        pieces.append((piece_start, piece_end, SPACE))
                        piece_start = None
                    cuts = [word.start()] + [int(token_starts[cut]) for cut in range(first + budget, last, budget)]
                    cuts.append(word.end())
                    pieces.extend((a, b, TOKEN) for a, b in zip(cuts, cuts[1:]) if b > a)
                    pieces[-1] = (pieces[-1][0], word.end(), SPACE)
                    continue
                if piece_start is not None:
                    held = int(np.searchsorted(token_starts, word.end()) - np.searchsorted(token_starts, piece_start))
                    if held > budget:
                        pieces.append((piece_start, piece_end, SPACE))
                        piece_start = None
                if piece_start is None:
                    piece_start = word.start()
                piece_end = word.end()
            if piece_start is not None:
                pieces.append((piece_start, piece_end, SPACE))
            pieces[-1] = (pieces[-1][0], pieces[-1][1], strength)
            out.extend(pieces)
        return out

    # -- fitting ---------------------------------------------------------------------------

    def _fitted(self, text: str, units: Units, first: int, last: int, budget: int) -> list[Chunk]:
        """Units first..last as one chunk; where a token-level cut makes it overflow when
        tokenised alone, the chunk is cut again (the last unit moves to a chunk of its own,
        shrunk token by token if it still overflows)."""
        start, end = int(units.starts[first]), int(units.ends[last])
        tokens = int(units.tokens[first : last + 1].sum())
        token_cut = (first > 0 and units.strength[first - 1] == TOKEN) or units.strength[last] == TOKEN
        if not token_cut:
            return [Chunk(start, end, tokens)]
        alone = self.count([text[start:end]])[0]
        if alone <= budget:
            return [Chunk(start, end, alone)]
        if last > first:
            return self._fitted(text, units, first, last - 1, budget) + self._fitted(text, units, last, last, budget)
        pieces, at = [], start
        while at < end:  # one over-long token-cut piece: shrink from the end until it fits
            stop = end
            while self.count([text[at:stop]])[0] > budget:
                stop -= 1
            pieces.append(Chunk(at, stop, self.count([text[at:stop]])[0]))
            at = stop
        return pieces

    def _overlapped(self, text, chunks, token_starts, overlap: int, chunk_tokens: int) -> list[Chunk]:
        out = [chunks[0]]
        for previous, chunk in zip(chunks, chunks[1:]):
            first = int(np.searchsorted(token_starts, previous.start))
            stop = int(np.searchsorted(token_starts, previous.end))
            lowest = max(first, stop - overlap)
            # earliest token in the previous chunk's last `overlap` tokens that starts a sentence, else a word
            candidates = [i for i in range(lowest, stop) if _word_start(text, int(token_starts[i]))]
            sentence = [i for i in candidates if _sentence_start(text, int(token_starts[i]))]
            pick = (sentence or candidates or [None])[0]
            if pick is None:
                out.append(chunk)
                continue
            start = int(token_starts[pick])
            tokens = self.count([text[start : chunk.end]])[0]
            # a word the two chunks had cut between tokens, now whole, may tokenise longer: then none
            out.append(Chunk(start, chunk.end, tokens) if tokens <= chunk_tokens else chunk)
        return out


def _groups(units: Units, budget: int) -> list[tuple[int, int]]:
    """(first, last) unit of each chunk: between anchors, stretches split until they fit."""
    count = len(units.rank)
    position = np.cumsum(units.tokens)  # token position of the boundary after each unit
    anchor = np.ones(count, dtype=bool)
    radius = max(1, budget // ANCHOR_RADIUS)
    rank = units.rank
    for shift in range(1, count):
        near = position[shift:] - position[:-shift] <= radius
        if not near.any():
            break
        left, right = rank[:-shift], rank[shift:]
        anchor[:-shift] &= ~(near & (right > left))
        anchor[shift:] &= ~(near & (left >= right))
    anchor[-1] = True  # the text's end
    groups: list[tuple[int, int]] = []
    first = 0
    for last in np.flatnonzero(anchor):
        _split(units, position, int(first), int(last), budget, groups)
        first = last + 1
    return groups


def _split(units: Units, position: np.ndarray, first: int, last: int, budget: int, out: list) -> None:
    """Units first..last into groups that fit, cut at the stretch's highest-ranked boundaries."""
    before = position[first - 1] if first else 0
    if position[last] - before <= budget or first == last:
        out.append((first, last))
        return
    inner = np.arange(first, last)  # boundaries after units first..last-1
    side = budget // SIDE_MINIMUM
    balanced = inner[(position[inner] - before >= side) & (position[last] - position[inner] >= side)]
    pool = balanced if len(balanced) else inner
    cut = int(pool[np.argmax(units.rank[pool])])
    _split(units, position, first, cut, budget, out)
    _split(units, position, cut + 1, last, budget, out)


def _word_start(text: str, at: int) -> bool:
    return at == 0 or text[at - 1] in WHITESPACE


def _sentence_start(text: str, at: int) -> bool:
    """Whether `at` starts a sentence: only whitespace since a sentence end or a line break."""
    index = at - 1
    while index >= 0 and text[index] in WHITESPACE:
        if text[index] == "\n":
            return True
        index -= 1
    return index < 0 or text[index] in _SENTENCE_ENDS
