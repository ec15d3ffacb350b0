"""Chunk, don't truncate: long texts as spans that each fit the model's window, filled close to
the size asked, cut where the text itself says, so an edit moves only the chunks around it.

A chunk is `[start, end)` in Python string indices of the source text, trimmed of surrounding
whitespace. Each chunk's text, tokenised on its own, fits `chunk_tokens` (at most the model's
maximum less its special tokens and the prompt), and together the spans cover every character
but the whitespace between them.

How the cuts are chosen (one tokenisation of the whole text: where each token starts, from
token_starts.py, exactly the tokenizer's offsets, faster than its `encode` by caching words):

1. Units: sentences (ending in . ! ? and the like before whitespace, a CJK full stop, or a line
   break), each marked with what ends it: a paragraph break (strongest), a sentence end, and,
   inside a sentence longer than the budget, whitespace (filled greedily); a run with no
   whitespace at all (a URL, a hash, CJK text) is cut between tokens, the weakest.
2. Every boundary gets a rank from the content alone: its strength, then a CRC-32 of the unit
   before it (then, to order repeated units, of the unit after it). An anchor is a boundary that
   outranks every other within 24 tokens on either side.
3. Merging by rank: every boundary starts as a cut, and the cuts are visited weakest first (by
   strength; within a strength, anchors after the others; then by rank). A cut is dropped when
   the two chunks on either side of it, as they stand at that moment, fit the budget together.
   So every chunk fits and no two neighbours would fit together (chunks hold about 70% of the
   budget on average); sentences merge into paragraphs before paragraphs merge, and the cuts
   left standing are the strong ones, at anchors where they can be (so an edit seldom leaves a
   sliver beside a cut to merge into the next chunk). Nothing is counted from the top of the
   text: whether a cut stays depends on the chunks beside it when its turn comes, which only
   the weaker boundaries around it have built, so an edit changes the chunk it falls in and,
   when that chunk no longer fits, mostly one more (the way backup tools cut files with a
   rolling hash, an insertion upstream does not shift every window).
4. Overlap: each chunk after the first starts up to `overlap` tokens earlier, at the earliest
   sentence start (else word start) among the previous chunk's last `overlap` tokens; the chunks
   are first cut to `chunk_tokens - overlap`, so the whole still fits. The repeated tokens are
   counted from the offsets (tokenised again only where the two chunks were cut between tokens).

5. Pieces: a text is first cut at content-defined line starts about every 256K characters
   (chunk_pieces.py) and each piece is chunked as above on its own; no chunk crosses a piece
   boundary and none overlaps into the piece before. That keeps the work and memory of a
   document of any length to one piece at a time, and lets a client send the pieces of a
   document too long for one request apart and get exactly the chunks of the whole.

WordPiece (BERT, MPNet) never lets a token span whitespace, so a span cut at whitespace holds
exactly the whole text's tokens within it; spans cut between tokens are tokenised again on
their own and shrunk until they fit.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
from tokenizers import Tokenizer

from embedding_service.chunk_pieces import piece_starts
from embedding_service.contract import MIN_CHUNK_TOKENS
from embedding_service.token_starts import IS_SPACE, WHITESPACE, WORDS, TokenStarts, codes_of, looked_up, ragged

PARAGRAPH, SENTENCE, SPACE, TOKEN = 3, 2, 1, 0  # boundary strengths, strongest first
ANCHOR_TOKENS = 24  # an anchor outranks every other boundary within this many tokens either side
_WS = f"[{WHITESPACE}]"
# A sentence ends at . ! ? (and a closing quote or bracket) before whitespace, at a CJK full stop,
# or at a line break; a blank line (two line breaks in one run of whitespace) ends a paragraph.
# Each match starts at the character that ends the unit (scanned for quickly) and takes the
# whitespace after it.
_BREAKS = re.compile(
    "[\n.!?…。！？]"
    f"(?:(?<=\n)|(?<=[.!?…])[\"'”’)\]]?(?={_WS})|(?<=[。！？]))"
    f"{_WS}*"
)
_IS_SENTENCE_END = np.zeros(0xFF21, dtype=bool)  # by code point (the last stands for every code above)
_IS_SENTENCE_END[[ord(char) for char in ".!?…。！？\"'”’)]"]] = True


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


@dataclass(frozen=True)
class Layout:
    """A text's characters as arrays, built once and read by the units and the overlap: the code
    points, which are whitespace, the last non-whitespace at or before each position, and the
    line breaks before each position."""

    codes: np.ndarray
    space: np.ndarray
    last_solid: np.ndarray
    newlines: np.ndarray

    @classmethod
    def of(cls, text: str) -> "Layout":
        codes = codes_of(text)
        space = looked_up(IS_SPACE, codes)
        index = np.arange(len(text), dtype=np.int32 if len(text) < 2**31 else np.int64)  # 4 bytes a character
        last_solid = np.maximum.accumulate(np.where(space, -1, index))
        newlines = np.append(0, np.cumsum(codes == 10, dtype=index.dtype))
        return cls(codes, space, last_solid, newlines)


class Chunker:
    """Chunks texts on one model's tokenizer (no truncation, no special tokens)."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int, special_tokens: int):
        self._tokenizer = tokenizer
        self.max_tokens = max_tokens  # the model's maximum sequence length
        self.special_tokens = special_tokens  # e.g. [CLS] and [SEP]
        self.token_starts = TokenStarts(tokenizer)  # learns the words it meets: keep one chunker

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
        """The text's chunks, and its tokens in all (untruncated): each piece (chunk_pieces.py)
        chunked on its own, so memory follows the piece and a client may send the pieces apart."""
        starts = piece_starts(text)
        if not starts:
            return self._chunk_piece(text, chunk_tokens, overlap)
        chunks: list[Chunk] = []
        total = 0
        for start, end in zip([0, *starts], [*starts, len(text)]):
            piece = text[start:end]
            if not piece.strip(WHITESPACE):  # blank lines between pieces: nothing to chunk
                continue
            found, tokens = self._chunk_piece(piece, chunk_tokens, overlap)
            chunks.extend(Chunk(c.start + start, c.end + start, c.tokens) for c in found)
            total += tokens
        if not chunks:  # nothing but whitespace: one chunk, so the text keeps its row
            return self._chunk_piece(text, chunk_tokens, overlap)
        return chunks, total

    def _chunk_piece(self, text: str, chunk_tokens: int, overlap: int) -> tuple[list[Chunk], int]:
        token_starts = self.token_starts(text)
        total = len(token_starts)
        stripped = text.strip(WHITESPACE)
        if not stripped:  # nothing but whitespace: one chunk, so the text keeps its row
            return [Chunk(0, len(text), total)], total
        if total <= chunk_tokens:
            start = len(text) - len(text.lstrip(WHITESPACE))
            return [Chunk(start, start + len(stripped), total)], total
        budget = chunk_tokens - overlap
        layout = Layout.of(text)
        units = self._units(text, layout, token_starts, budget)
        firsts, lasts = _groups(units, budget)
        position = np.concatenate(([0], np.cumsum(units.tokens)))
        tokens = position[lasts + 1] - position[firsts]
        token_cut = (units.strength[lasts] == TOKEN) | ((firsts > 0) & (units.strength[firsts - 1] == TOKEN))
        chunks: list[Chunk] = []
        for first, last, start, end, count, cut in zip(
            firsts.tolist(), lasts.tolist(), units.starts[firsts].tolist(), units.ends[lasts].tolist(),
            tokens.tolist(), token_cut.tolist(),
        ):
            if cut:
                chunks.extend(self._fitted(text, units, first, last, budget))
            else:
                chunks.append(Chunk(start, end, count))
        if overlap:
            chunks = self._overlapped(text, layout, chunks, token_starts, overlap, chunk_tokens)
        return chunks, total

    # -- units -----------------------------------------------------------------------------

    def _units(self, text: str, layout: Layout, token_starts: np.ndarray, budget: int) -> Units:
        starts, ends, strength = _sentences(text, layout)
        counts = np.searchsorted(token_starts, ends) - np.searchsorted(token_starts, starts)
        spans = list(zip(starts.tolist(), ends.tolist(), strength.tolist()))  # start, end, strength after
        if counts.max(initial=0) > budget:
            spans = self._split_long(text, spans, counts, token_starts, budget)
            starts, ends, counts = _counted(spans, token_starts)
        strength = np.fromiter(map(itemgetter(2), spans), dtype=np.int64, count=len(spans))
        data = text.encode("utf-8", "surrogatepass")
        if len(data) == len(text):  # ASCII: a character is a byte
            pieces = (data[s:e] for s, e, _ in spans)
        else:
            pieces = (text[s:e].encode("utf-8", "surrogatepass") for s, e, _ in spans)
        hashes = np.fromiter(map(zlib.crc32, pieces), dtype=np.int64, count=len(spans))
        # rank: the strength, the unit's CRC-32, then (for repeated units) 29 bits of the next one's
        following = np.append(hashes[1:], 0) >> 3
        return Units(starts, ends, counts, strength, (strength << 61) | (hashes << 29) | following)

    def _split_long(self, text, spans, counts, token_starts, budget) -> list[tuple[int, int, int]]:
        """Units over the budget: cut at whitespace, greedily (a long sentence is rare and its cuts
        move only within it); a word over the budget is cut between tokens."""
        out: list[tuple[int, int, int]] = []
        for (start, end, strength), count in zip(spans, counts):
            if count <= budget:
                out.append((start, end, strength))
                continue
            pieces: list[tuple[int, int, int]] = []
            piece_start = piece_end = None
            for word in WORDS.finditer(text, start, end):
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

    def _overlapped(self, text, layout, chunks, token_starts, overlap: int, chunk_tokens: int) -> list[Chunk]:
        """Each chunk after the first, started up to `overlap` tokens into the previous one: at
        the earliest of those tokens that starts a sentence, else the earliest that starts a word."""
        ends = np.searchsorted(token_starts, [chunk.end for chunk in chunks])
        firsts = np.searchsorted(token_starts, [chunk.start for chunk in chunks])
        stops = ends[:-1]  # the tail of chunk i - 1: tokens begins[i - 1] .. stops[i - 1]
        begins = np.maximum(firsts[:-1], stops - overlap)
        lengths = np.maximum(stops - begins, 0)
        tail, within = ragged(lengths)  # whose tail each candidate token is in, and where
        token = begins[tail] + within
        word, sentence = _starts_of_words_and_sentences(layout, token_starts[token])
        picks = {}  # chunk -> the token it starts at
        for found in (word, word & sentence):  # a sentence start, where there is one, wins
            where = np.flatnonzero(found)
            if not len(where):
                continue
            owners = tail[where]
            first = where[np.concatenate(([True], owners[1:] != owners[:-1]))]  # the tails are in order
            picks.update(zip((tail[first] + 1).tolist(), token[first].tolist()))
        out = [chunks[0]]
        for index in range(1, len(chunks)):
            previous, chunk, pick = chunks[index - 1], chunks[index], picks.get(index)
            if pick is None:
                out.append(chunk)
                continue
            start = int(token_starts[pick])
            if previous.end < chunk.start:  # cut at whitespace: the tail's tokens are the text's own
                out.append(Chunk(start, chunk.end, int(stops[index - 1]) - pick + chunk.tokens))
                continue
            # cut between tokens: the word made whole again may tokenise longer, then no overlap
            tokens = self.count([text[start : chunk.end]])[0]
            out.append(Chunk(start, chunk.end, tokens) if tokens <= chunk_tokens else chunk)
        return out


def _sentences(text: str, layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Starts, ends (trailing whitespace excluded) and the strength of the boundary after each of
    the text's sentences and lines: one regex pass for the breaks, the rest on arrays. A unit ends
    before the whitespace a line break ends, or after a full stop and its closing quote or bracket;
    two line breaks in the whitespace after it make a paragraph break; the last unit ends one."""
    codes, space, last_solid, newlines = layout.codes, layout.space, layout.last_solid, layout.newlines
    first = int(np.argmin(space)) if not space.all() else len(text)
    breaks = np.array([m.span() for m in _BREAKS.finditer(text, first)], dtype=np.int64).reshape(-1, 2)
    at, after = np.append(first, breaks[:, 1])[:-1], breaks[:, 1]
    unit_end = breaks[:, 0]
    line = codes[unit_end] == 10
    before = np.where(unit_end > 0, last_solid[np.maximum(unit_end - 1, 0)], -1)
    next_char = np.minimum(unit_end + 1, len(text) - 1)
    closed = np.where((unit_end + 1 == after) | space[next_char], 1, 2)
    end = np.where(line, np.maximum(at, before + 1), unit_end + closed)
    strength = np.where(newlines[after] - newlines[end] >= 2, PARAGRAPH, SENTENCE)
    keep = end > at
    starts, ends, strength = at[keep], end[keep], strength[keep]
    tail_start = int(after[-1]) if len(after) else first
    tail_end = int(last_solid[-1]) + 1 if len(text) else 0
    if tail_end > tail_start:
        starts, ends = np.append(starts, tail_start), np.append(ends, tail_end)
        strength = np.append(strength, PARAGRAPH)
    return starts, ends, strength.astype(np.int64)


def _groups(units: Units, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """The first and the last unit of each chunk: every boundary starts as a cut, the cuts are visited
    weakest first (of each strength, anchors last), and a cut is dropped where the two chunks on
    either side of it fit the budget together."""
    count = len(units.rank)
    ends = np.cumsum(units.tokens)
    position = [0, *ends.tolist()]  # the tokens before cut k (cut k: before unit k)
    before, after = list(range(-1, count)), list(range(1, count + 2))  # the neighbouring live cuts
    live = [True] * (count + 1)
    order = np.lexsort((units.rank, _anchors(units.rank, ends), units.strength))  # strength, anchor, rank
    for unit in order[order < count - 1].tolist():
        cut = unit + 1
        left, right = before[cut], after[cut]
        if position[right] - position[left] <= budget:
            live[cut] = False
            after[left], before[right] = right, left
    cuts = np.flatnonzero(live)
    return cuts[:-1], cuts[1:] - 1


def _anchors(rank: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Whether each boundary outranks every other within ANCHOR_TOKENS tokens on either side."""
    anchor = np.ones(len(rank), dtype=bool)
    for shift in range(1, len(rank)):
        near = ends[shift:] - ends[:-shift] <= ANCHOR_TOKENS
        if not near.any():
            break
        anchor[:-shift] &= ~(near & (rank[shift:] > rank[:-shift]))
        anchor[shift:] &= ~(near & (rank[:-shift] >= rank[shift:]))
    return anchor


def _counted(spans: list[tuple[int, int, int]], token_starts: np.ndarray):
    """Starts, ends and token counts of the spans (the tokens that start inside each)."""
    starts = np.fromiter(map(itemgetter(0), spans), dtype=np.int64, count=len(spans))
    ends = np.fromiter(map(itemgetter(1), spans), dtype=np.int64, count=len(spans))
    return starts, ends, np.searchsorted(token_starts, ends) - np.searchsorted(token_starts, starts)


def _starts_of_words_and_sentences(layout: Layout, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each position starts a word (text start, or whitespace before it) and whether it
    starts a sentence (only whitespace back to a line break, a sentence end or the text start)."""
    before = np.maximum(at - 1, 0)
    word = (at == 0) | layout.space[before]
    solid = np.where(at > 0, layout.last_solid[before], -1)  # the last non-whitespace before `at`
    line_break = layout.newlines[at] > layout.newlines[solid + 1]
    ended = looked_up(_IS_SENTENCE_END, layout.codes[np.maximum(solid, 0)])
    return word, (solid < 0) | line_break | ended
