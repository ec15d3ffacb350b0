"""The reuse index (hashing.SortedKeys) against a plain dict, on keys built to collide.

Keys share their first 8 bytes far more often than sha256 ever would, so the walk past equal
high halves is exercised; duplicates must be found and named by their rows.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from embedding_client.corpus.run_fingerprint import differences, digest
from embedding_client.corpus.hashing import SortedKeys, id_keys, split_key, text_hashes

# Few distinct high halves, many low halves: plenty of equal highs.
key = st.tuples(st.integers(0, 3), st.integers(0, 2**64 - 1))


def as_keys(pairs: list[tuple[int, int]]) -> np.ndarray:
    raw = b"".join(high.to_bytes(8, "big") + low.to_bytes(8, "big") for high, low in pairs)
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 16)


@settings(max_examples=200, deadline=None)
@given(st.lists(key, max_size=60, unique=True), st.lists(key, max_size=60))
def test_lookup_finds_every_stored_key_and_nothing_else(stored, asked):
    index = SortedKeys.of(as_keys(stored))
    reference = {pair: row for row, pair in enumerate(stored)}
    queries = asked + stored
    found = index.lookup(as_keys(queries)) if queries else np.empty(0)
    assert [int(row) for row in found] == [reference.get(pair, -1) for pair in queries]


@settings(max_examples=200, deadline=None)
@given(st.lists(key, max_size=60, unique=True), st.lists(key, max_size=60))
def test_an_8_byte_index_finds_a_row_with_the_same_high_half(stored, asked):
    """The reuse index keeps 8 bytes: a hit names a row whose high half matches (the caller
    confirms the full hash); a miss means no stored key has that high half."""
    keys = as_keys(stored)
    index = SortedKeys(split_key(keys)[0])
    queries = asked + stored
    found = index.lookup(as_keys(queries)) if queries else np.empty(0, dtype=np.int64)
    highs = {pair[0] for pair in stored}
    for pair, row in zip(queries, found.tolist()):
        assert (row >= 0) == (pair[0] in highs)
        if row >= 0:
            assert stored[row][0] == pair[0]
    assert index.nbytes == 12 * len(stored)


@settings(max_examples=100, deadline=None)
@given(st.lists(key, min_size=2, max_size=40, unique=True), st.data())
def test_the_first_duplicate_is_named_by_its_two_rows(stored, data):
    assert SortedKeys.of(as_keys(stored)).first_duplicate() is None
    copy_of = data.draw(st.integers(0, len(stored) - 1))
    at = data.draw(st.integers(0, len(stored)))
    keys = stored[:at] + [stored[copy_of]] + stored[at:]
    original = copy_of if copy_of < at else copy_of + 1
    assert SortedKeys.of(as_keys(keys)).first_duplicate() == tuple(sorted((original, at)))


def test_text_and_id_keys_are_sha256_and_ids_match_by_their_text_form():
    import hashlib

    assert text_hashes(["héllo"])[0].tobytes() == hashlib.sha256("héllo".encode()).digest()
    assert id_keys([7])[0].tobytes() == id_keys(["7"])[0].tobytes() != id_keys(["07"])[0].tobytes()
    assert text_hashes([]).shape == (0, 32)


def test_fingerprint_differences_name_each_part_in_one_line():
    old = {"precision": "fp32", "prompt": "", "graph_sha256": "a" * 64}
    new = {"precision": "int8", "prompt": "query: ", "graph_sha256": "b" * 64}
    assert differences(old, new) == [
        "graph_sha256 aaaaaaaaaaaa... (OLD) != bbbbbbbbbbbb... (now)",
        "precision fp32 (OLD) != int8 (now)",
        "prompt '' (OLD) != 'query: ' (now)",
    ]
    assert differences(old, dict(old)) == [] and digest(old) == digest(dict(reversed(old.items())))
