"""A document too long for one chunk request, sent as runs of the chunker's pieces and stitched
(embedding_client.corpus.pieces): the chunks are exactly those of the whole document at once.

The proof is by comparison, on real text none of us wrote (4 MB of the standard library's
sources and the installed packages' READMEs): the service's chunker on the whole document,
against the same chunker on each run the client cuts, shifted back by the run's offset, with
runs as small as a few pieces (so there are many seams) and with and without overlap. The
client's copy of the piece rule must find the service's boundaries on real and random text,
and no chunk may cross a piece boundary (what makes the runs independent).
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import MODEL_DIR
from corpus_helpers import assert_clear_error, library_text, run_cli, write_jsonl

from embedding_client.contract import CHUNK_PIECE_CHARS
from embedding_client.corpus import pieces
from embedding_client.corpus.targets import Chunked
from embedding_service import chunk_pieces
from embedding_service.chunking import Chunker
from embedding_service.tokenization import load_tokenizer

DOCUMENT_CHARS = 4_000_000


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker.of(load_tokenizer(MODEL_DIR, 256), 256)


@pytest.fixture(scope="module")
def document() -> str:
    text = library_text(DOCUMENT_CHARS)
    # Every line ending users have: \r\n and lone \r in parts of it.
    third = len(text) // 3
    return text[:third] + text[third : 2 * third].replace("\n", "\r\n") + text[2 * third :].replace("\n", "\r")


def spans(chunks) -> list[tuple[int, int, int]]:
    return [(c.start, c.end, c.tokens) for c in chunks]


def test_the_clients_piece_rule_is_the_services_on_real_text(document):
    found = pieces.piece_starts(document)
    assert found == chunk_pieces.piece_starts(document)
    assert len(found) > DOCUMENT_CHARS // CHUNK_PIECE_CHARS // 3  # about one every CHUNK_PIECE_CHARS
    assert all(document[at - 1] in "\r\n \t" and document[at] not in "\r\n \t" for at in found)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.lists(st.sampled_from(["a", "é", "語", " ", "\t", "\n", "\r", "\r\n", "\u2028", "\x0b", "\x0c", "🚀"]) | st.text(max_size=3),
                     max_size=1500).map("".join))
def test_the_clients_piece_rule_is_the_services_on_random_text(monkeypatch, text):
    with monkeypatch.context() as patch:  # boundaries every few characters, so there are some
        patch.setattr(pieces, "CHUNK_PIECE_CHARS", 16)
        patch.setattr(chunk_pieces, "CHUNK_PIECE_CHARS", 16)
        assert pieces.piece_starts(text) == chunk_pieces.piece_starts(text)


@pytest.mark.parametrize("size, overlap", [(128, 0), (200, 16)])
def test_runs_of_pieces_chunked_apart_and_stitched_equal_the_whole_document(chunker, document, size, overlap):
    whole, total = chunker.chunk(document, size, overlap)
    requests = pieces.PieceRequests.of(["A short one.", document], most_bytes=700_000)
    assert len(requests.texts) >= 6 and requests.owners[0] == 0 and set(requests.owners[1:]) == {1}
    assert all(len(orjson.dumps(text)) <= 700_000 or not pieces.piece_starts(text) for text in requests.texts)
    answers = [Chunked(tokens, spans(found)) for found, tokens in (chunker.chunk(text, size, overlap)
                                                                    for text in requests.texts)]
    short, stitched = requests.stitched(answers)
    assert short.spans == [(0, 12, 4)]
    assert stitched.spans == spans(whole) and stitched.tokens == total
    assert all(document[start:end] == document[start:end].strip() for start, end, _ in stitched.spans)
    assert stitched.spans[-1][1] == len(document.rstrip())
    boundaries = chunk_pieces.piece_starts(document)
    crossing = [b for b in boundaries for start, end, _ in stitched.spans if start < b < end]
    assert not crossing  # no chunk crosses a piece boundary: each run is chunked as in the whole


def test_a_text_within_one_request_is_sent_whole():
    text = "line\n" * 1000
    requests = pieces.PieceRequests.of([text], most_bytes=6 * len(text) + 2)
    assert requests.texts == [text] and requests.offsets == [0]
    assert pieces.runs(text, 6 * len(text) + 2) == [(0, len(text))]


def test_a_line_too_long_for_any_request_is_measured_so_it_can_be_refused():
    text = "x" * 5000 + "\n" + "y" * 10
    assert pieces.longest_run_bytes(text, most_bytes=1000) >= 5000


def test_a_document_with_a_line_longer_than_any_request_is_refused_in_one_sentence(tmp_path):
    line = "word " * 1_300_000  # 6.5 MB without a line break: no place the chunker may cut it into pieces
    source = write_jsonl(tmp_path / "docs.jsonl", ["A short one.", "First line.\n" + line])
    result = run_cli(source, "--output", tmp_path / "out.parquet", "--chunk-tokens", "128")
    assert_clear_error(result, 2, "line 2", "without a line break", "add line breaks")
    assert not list(tmp_path.glob("out.parquet*"))
