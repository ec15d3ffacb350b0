"""The chunker (package/src/chunking.py) on the real MiniLM tokenizer, by property.

Random Unicode, runs of whitespace, long unbroken strings (URLs, hashes) and CJK: the spans
cover every non-whitespace character, each fits the window tokenised on its own, the overlap
is respected, chunking is deterministic, and an edit leaves chunks far from it unchanged. Then
a realistic 40-chunk document edited in one sentence: at most 3 chunks' text changes. On real
documents (the standard library's docstrings): chunks hold at least 90 tokens on average at 128
and 180 at 256, and an edited word, an inserted or a deleted sentence changes at most 2 chunks
in 9 edits of 10 and at most 6 at worst.
"""

from __future__ import annotations

import random
import re
import sys

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import MODEL_DIR, REPO

from embedding_service.chunking import WHITESPACE, Chunker, ChunkingError  # noqa: E402
from corpus import _docstrings  # noqa: E402
from embedding_service.tokenization import load_tokenizer  # noqa: E402

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker.of(load_tokenizer(MODEL_DIR, 256), 256)


WORDS = st.sampled_from(
    ["the", "model", "reads", "tokens", "naïve", "café", "Ünïcödé", "🚀", "embeddings", "x", "9.5", "(see", "it)"]
)
SEPARATORS = st.sampled_from([" ", " ", " ", "  ", ". ", "! ", "? ", "\n", "\n\n", "\t", ".\n\n", "。", " \n \n "])
UNBROKEN = st.one_of(
    st.just("https://example.com/" + "a1b2c3d4" * 40),
    st.text(alphabet="0123456789abcdef", min_size=200, max_size=900),
    st.text(alphabet="日本語のテキストを分割する中文文本", min_size=50, max_size=700),
)
PIECE = st.one_of(WORDS, SEPARATORS, UNBROKEN, st.text(min_size=1, max_size=12))
DOCUMENT = st.lists(PIECE, min_size=1, max_size=400).map("".join)


def check_chunks(chunker: Chunker, text: str, size: int, overlap: int) -> list:
    chunks, total = chunker.chunk(text, size, overlap)
    assert chunks, "every text has at least one chunk"
    covered = [False] * len(text)
    for chunk in chunks:
        piece = text[chunk.start : chunk.end]
        assert piece == piece.strip(WHITESPACE) or not text.strip(WHITESPACE), (chunk, piece)
        assert chunker.count([piece])[0] == chunk.tokens <= size, (chunk, piece)
        for index in range(chunk.start, chunk.end):
            covered[index] = True
    missing = [index for index, char in enumerate(text) if not covered[index] and not char.isspace()]
    assert not missing, (missing[:10], [text[i] for i in missing[:10]])
    starts = [chunk.start for chunk in chunks]
    assert starts == sorted(starts)
    return chunks


@SETTINGS
@given(text=DOCUMENT, size=st.integers(8, 254))
def test_spans_cover_the_text_and_each_fits_the_window_on_its_own(chunker, text, size):
    check_chunks(chunker, text, size, 0)
    assert chunker.chunk(text, size) == chunker.chunk(text, size)  # deterministic


@SETTINGS
@given(text=DOCUMENT, size=st.integers(8, 254), share=st.floats(0, 0.49))
def test_the_overlap_repeats_at_most_m_tokens_of_the_previous_chunk_at_a_word_start(chunker, text, size, share):
    overlap = int(size * share)
    assume(2 * overlap < size)
    chunks = check_chunks(chunker, text, size, overlap)
    for previous, chunk in zip(chunks, chunks[1:]):
        if chunk.start < previous.end:  # repeated: the tail of the previous chunk, from a word start
            assert chunker.count([text[chunk.start : previous.end]])[0] <= overlap
            assert chunk.start == 0 or text[chunk.start - 1] in WHITESPACE


SENTENCES = [s for doc in _docstrings()[:400] for s in doc.replace("\n", " ").split(". ") if len(s) > 20]


def document(seed: int, sentences: int) -> str:
    rng = random.Random(seed)
    picked = rng.sample(SENTENCES, sentences)
    paragraphs, at = [], 0
    while at < len(picked):
        take = rng.randint(2, 7)
        paragraphs.append(". ".join(picked[at : at + take]) + ".")
        at += take
    return "\n\n".join(paragraphs)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), where=st.floats(0, 1), edit=st.sampled_from(["insert", "delete", "replace"]))
def test_a_local_edit_leaves_chunks_far_from_it_unchanged(chunker, seed, where, edit):
    text = document(seed, 120)
    size = 128
    before = check_chunks(chunker, text, size, 0)
    at = text.find(". ", int(where * len(text)))
    assume(at > 0)
    at += 2
    end = text.find(". ", at)
    assume(end > at)
    new = {
        "insert": text[:at] + "A sentence that was not there before, inserted here. " + text[at:],
        "delete": text[:at] + text[end + 2 :],
        "replace": text[:at] + "Something else entirely was written here" + text[end:],
    }[edit]
    after = check_chunks(chunker, new, size, 0)
    # Far means more than two windows of text away from the edit (a window is ~4 characters a token).
    far = 2 * size * 8
    old_far = {text[c.start : c.end] for c in before if c.end < at - far or c.start > end + far}
    new_texts = {new[c.start : c.end] for c in after}
    assert old_far <= new_texts


def test_one_edited_sentence_in_a_40_chunk_document_changes_at_most_3_chunks(chunker):
    changed = []
    for seed in range(20):
        text = document(seed, 300)
        chunks = check_chunks(chunker, text, 128, 0)
        assert len(chunks) >= 40, len(chunks)
        at = text.find(". ", len(text) // 2) + 2
        end = text.find(". ", at)
        new = text[:at] + "This one sentence was rewritten by an editor" + text[end:]
        before = {text[c.start : c.end] for c in chunks}
        after = {new[c.start : c.end] for c in check_chunks(chunker, new, 128, 0)}
        changed.append(len(after - before))
    # The bar is 3 (the edited chunk, and where it overflows the one its surplus joins).
    assert sorted(changed)[len(changed) // 2] <= 1 and max(changed) <= 3, changed


def test_sizes_out_of_range_are_refused_with_the_window(chunker):
    assert chunker.window(None) == 254 and chunker.window("query: ") == 252
    with pytest.raises(ChunkingError, match="between 8 and 254"):
        chunker.check(7, 0, None)
    with pytest.raises(ChunkingError, match="between 8 and 252"):
        chunker.check(254, 0, "query: ")
    with pytest.raises(ChunkingError, match="less than half"):
        chunker.check(100, 50, None)


def test_a_short_text_is_one_chunk_without_its_surrounding_whitespace(chunker):
    chunks, total = chunker.chunk("  hello, world!\n", 128)
    assert [(c.start, c.end, c.tokens) for c in chunks] == [(2, 15, 4)] and total == 4
    assert [(c.start, c.end) for c in chunker.chunk("   ", 128)[0]] == [(0, 3)]  # a blank text keeps its row


def real_documents() -> list[str]:
    """The docstrings, in order, consecutive ones joined into documents of 8,000+ characters."""
    out, text = [], ""
    for doc in _docstrings():
        text = f"{text}\n\n{doc}" if text else doc
        if len(text) >= 8000:
            out.append(text)
            text = ""
    return out


REAL = real_documents()


@pytest.mark.parametrize("size, mean_at_least", [(128, 90), (256, 180)])
def test_chunks_are_filled_close_to_the_size_asked_on_real_documents(chunker, size, mean_at_least):
    chunks = [chunk for text in REAL for chunk in check_chunks(chunker, text, size, 0)]
    assert sum(chunk.tokens for chunk in chunks) / len(chunks) >= mean_at_least


def edited(text: str, kind: str, rng: random.Random) -> str:
    """A word replaced, or a sentence inserted or deleted after a random sentence end."""
    if kind == "word":
        word = rng.choice(list(re.finditer(r"[A-Za-z]{3,}", text)))
        return text[: word.start()] + "rewritten" + text[word.end() :]
    ends = [m.end() for m in re.finditer(r"[.!?]\s+", text)]
    at = rng.randrange(len(ends) - 1)
    if kind == "insert":
        return text[: ends[at]] + "An editor added this sentence to the documentation today. " + text[ends[at] :]
    return text[: ends[at]] + text[ends[at + 1] :]


@pytest.mark.parametrize("size", [128, 256])
def test_an_edit_changes_at_most_2_chunks_in_9_of_10_and_6_at_worst_on_real_documents(chunker, size):
    rng = random.Random(size)
    changed = {"word": [], "insert": [], "delete": []}
    for text in REAL:
        before = {text[c.start : c.end] for c in chunker.chunk(text, size)[0]}
        for kind, counts in changed.items():
            for _ in range(4):
                new = edited(text, kind, rng)
                counts.append(sum(new[c.start : c.end] not in before for c in chunker.chunk(new, size)[0]))
    for counts in changed.values():
        counts.sort()
        assert counts[len(counts) * 9 // 10] <= 2 and counts[-1] <= 6, changed
