"""Documents longer than one chunk request carries, sent as pieces and stitched back.

The service's chunker cuts every text at content-defined line starts (its pieces) and chunks
each piece on its own (`embedding_service.chunk_pieces`), so a document's chunks are its
pieces' chunks, offset by where each piece starts. A document whose JSON would not fit one
request is sent as runs of whole pieces, each within the request, and the chunks that come back
are shifted to the document's offsets: exactly the chunks of the whole document at once, while
the target (and its memory) only ever sees one run. `piece_starts` repeats the service's rule
for a client installed without it; tests/client/test_chunk_pieces.py holds the two equal.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

import orjson

from embedding_client.contract import CHUNK_PIECE_CHARS
from embedding_client.corpus.targets import Chunked

_LINE_BREAKS = re.compile("[\r\n][\t\n\x0b\x0c\r ]*")


def piece_starts(text: str) -> list[int]:
    """Where the text's pieces after the first start (the service's rule, repeated)."""
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


def runs(text: str, most_bytes: int) -> list[tuple[int, int]]:
    """[start, end) runs of whole pieces, in order, each at most `most_bytes` as JSON (a piece
    alone over that is a run of its own: the caller refuses it)."""
    if 6 * len(text) + 2 <= most_bytes:  # JSON never takes more than 6 bytes a character
        return [(0, len(text))]
    bounds = [0, *piece_starts(text), len(text)]
    out: list[tuple[int, int]] = []
    run_start, size = 0, 2
    for start, end in zip(bounds, bounds[1:]):
        piece_bytes = len(orjson.dumps(text[start:end])) - 2
        if size + piece_bytes > most_bytes and start > run_start:
            out.append((run_start, start))
            run_start, size = start, 2
        size += piece_bytes
    out.append((run_start, len(text)))
    return out


def longest_run_bytes(text: str, most_bytes: int) -> int:
    """The JSON size of the text's largest run: over `most_bytes`, no request can carry it."""
    return max(len(orjson.dumps(text[start:end])) for start, end in runs(text, most_bytes))


@dataclass
class PieceRequests:
    """Texts as the runs to send (a short text is one run), and how to put their chunks back."""

    texts: list[str] = field(default_factory=list)  # what to send, in order
    owners: list[int] = field(default_factory=list)  # the text each run belongs to
    offsets: list[int] = field(default_factory=list)  # where each run starts in its text

    @classmethod
    def of(cls, texts: list[str], most_bytes: int) -> "PieceRequests":
        requests = cls()
        for owner, text in enumerate(texts):
            for start, end in runs(text, most_bytes):
                requests.texts.append(text if (start, end) == (0, len(text)) else text[start:end])
                requests.owners.append(owner)
                requests.offsets.append(start)
        return requests

    def stitched(self, results: list[Chunked]) -> list[Chunked]:
        """One Chunked per original text: its runs' chunks in order, at the text's offsets."""
        out: list[Chunked] = []
        for owner, offset, result in zip(self.owners, self.offsets, results):
            spans = [(start + offset, end + offset, tokens) for start, end, tokens in result.spans]
            if owner == len(out):
                out.append(Chunked(result.tokens, spans))
            else:
                out[owner] = Chunked(out[owner].tokens + result.tokens, out[owner].spans + spans)
        return out
