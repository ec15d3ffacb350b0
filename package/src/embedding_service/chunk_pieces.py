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

import re
import zlib

from embedding_service.contract import CHUNK_PIECE_CHARS

# A line break and the whitespace after it (ASCII only: the rule must not depend on a Unicode
# table's version); the next line starts where the match ends.
_LINE_BREAKS = re.compile("[\r\n][\t\n\x0b\x0c\r ]*")


def piece_starts(text: str) -> list[int]:
    """Where the text's pieces after the first start, in increasing order."""
    starts: list[int] = []
    data = memoryview(text.encode("ascii")) if text.isascii() else None
    line = 0
    for match in _LINE_BREAKS.finditer(text):
        start, end = match.span()
        if end == len(text):
            break
        length = start - line
        if data is not None:
            crc = zlib.crc32(data[line:start])
        else:
            crc = zlib.crc32(text[line:start].encode("utf-8", "surrogatepass"))
        if crc % CHUNK_PIECE_CHARS < length:
            starts.append(end)
        line = end
    return starts
