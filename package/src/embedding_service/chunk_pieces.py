"""Where a text of any length may be cut into pieces that are chunked on their own: the
chunker's hard boundaries, found from the characters alone (no tokenizer), so a client can cut
a document too long for one request at exactly the same places and get the same chunks.

A piece starts at a line: after a run of whitespace holding a line break, at its first other
character. A line becomes a piece boundary when the CRC-32 of its text (from the line's start
to that whitespace) modulo PIECE_CHARS is below its length in characters: so about one
boundary every PIECE_CHARS characters whatever the lines' lengths, a line longer than that
always ends one, and where the boundaries fall depends on one line each, so an edit moves at
most the boundary after the line it touches. The rule reads nothing before the line it tests,
so a piece that starts at a boundary finds every later boundary as the whole text does.

`embedding_client.corpus.pieces` repeats this rule for a client installed without the service;
tests/client/test_chunk_pieces.py fails when the two disagree.
"""

from __future__ import annotations

import zlib

import numpy as np

from embedding_service.contract import CHUNK_PIECE_CHARS
from embedding_service.token_starts import codes_of, looked_up

# A line break and the whitespace after it (ASCII only: the rule must not depend on a Unicode
# table's version); the next line starts where that whitespace ends.
_BREAK = np.zeros(129, dtype=bool)  # by code point (128 stands for every code above)
_BREAK[[10, 13]] = True
_BLANK = np.zeros(129, dtype=bool)
_BLANK[[9, 10, 11, 12, 13, 32]] = True


def piece_starts(text: str) -> list[int]:
    """Where the text's pieces after the first start, in increasing order: the lines found on
    arrays (the first line break of each run of ASCII whitespace, to the run's end), a CRC-32
    each (the client's regex loop, `embedding_client.corpus.pieces`, finds the same)."""
    codes = codes_of(text)
    blanks = np.flatnonzero(looked_up(_BLANK, codes))
    breaks = np.flatnonzero(looked_up(_BREAK, codes[blanks]))  # which of the blanks break a line
    if not len(breaks):
        return []
    new_run = _changes(blanks, blanks + 1)  # a run of whitespace starts here
    run = np.cumsum(new_run) - 1
    run_ends = blanks[np.append(new_run[1:], True)] + 1
    first = _changes(run[breaks], run[breaks])  # the first line break of its run
    first, ends = blanks[breaks[first]], run_ends[run[breaks[first]]]
    inside = ends < len(text)  # whitespace that ends the text starts no piece
    first, ends = first[inside], ends[inside]
    lines = np.concatenate(([0], ends[:-1]))
    if text.isascii():
        data = memoryview(text.encode("ascii"))
        crcs = [zlib.crc32(data[line:start]) for line, start in zip(lines.tolist(), first.tolist())]
    else:
        crcs = [zlib.crc32(text[line:start].encode("utf-8", "surrogatepass"))
                for line, start in zip(lines.tolist(), first.tolist())]
    boundary = np.array(crcs, dtype=np.int64) % CHUNK_PIECE_CHARS < first - lines
    return ends[boundary].tolist()


def _changes(values: np.ndarray, previous_plus: np.ndarray) -> np.ndarray:
    """values[i] != previous_plus[i - 1], True at 0: where a run starts (np.diff costs more)."""
    out = np.empty(len(values), dtype=bool)
    out[:1] = True
    np.not_equal(values[1:], previous_plus[:-1], out=out[1:])
    return out
