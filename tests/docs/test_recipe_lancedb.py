"""docs/recipes/apply_changes_lancedb.py, run unchanged against a real LanceDB store.

A corpus is embedded (OLD), edited (3 texts changed, 2 ids deleted, 2 ids added, one text moved
to a new id) and embedded again with `--reuse OLD --changes CHANGES` (NEW), through the installed
CLI. The recipe builds the store from OLD and applies CHANGES; the store must then answer exactly
like one rebuilt from NEW: the same ids, the same vector bytes and tokens, the same nearest
neighbours in the same order. Once with string ids (some holding quotes and a backslash, which the
recipe's delete filter must quote), once with int64 ids; and applying CHANGES twice changes nothing.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO
from corpus_helpers import corpus_texts, read_output, run_cli, write_jsonl

RECIPE = REPO / "docs" / "recipes" / "apply_changes_lancedb.py"
SIZE = 40
CHANGED = (2, 10, 20)  # their texts are replaced
DELETED = (1, 30)
MOVED = 15  # its text moves to a new id


def old_ids(kind: str) -> list:
    if kind == "int":
        return [2**40 + i for i in range(SIZE)]  # int64 beyond int32
    ids = [f"doc-{i}" for i in range(SIZE)]
    ids[1] = "O'Brien's notes"  # deleted: the IN-list must double its quotes
    ids[2] = "back\\slash 'quoted'"  # changed: upserted by merge_insert
    ids[30] = "it''s -- DROP TABLE passages; \\'"  # deleted
    return ids


def new_keys(kind: str) -> list:
    """The two added ids, then the moved text's id."""
    return [7, 8, 9] if kind == "int" else ["added-0", "added-1", f"moved-{MOVED}"]


@pytest.fixture(scope="module", params=["str", "int"])
def corpus(request, tmp_path_factory):
    """(OLD, CHANGES, NEW, expected upsert ids, expected delete ids), from two CLI runs."""
    kind, folder = request.param, tmp_path_factory.mktemp(f"lancedb-{request.param}")
    texts = corpus_texts(SIZE + len(CHANGED) + 2)
    assert len(set(texts)) == len(texts)  # no duplicate texts: no ties among nearest neighbours
    spare = iter(texts[SIZE:])
    ids = old_ids(kind)
    result = run_cli(write_jsonl(folder / "old.jsonl", texts[:SIZE], ids), "--output", folder / "old.parquet")
    assert result.returncode == 0, result.stderr

    new_ids, new_texts = [], []
    for index, (key, text) in enumerate(zip(ids, texts[:SIZE])):
        if index not in DELETED and index != MOVED:
            new_ids.append(key)
            new_texts.append(next(spare) if index in CHANGED else text)
    added = new_keys(kind)
    new_ids += added
    new_texts += [next(spare), next(spare), texts[MOVED]]
    result = run_cli(
        write_jsonl(folder / "new.jsonl", new_texts, new_ids),
        "--output", folder / "new.parquet",
        "--reuse", folder / "old.parquet",
        "--changes", folder / "changes.parquet",
    )
    assert result.returncode == 0, result.stderr
    upserts = {ids[i] for i in CHANGED} | set(added)
    deletes = {ids[i] for i in (*DELETED, MOVED)}
    return folder / "old.parquet", folder / "changes.parquet", folder / "new.parquet", upserts, deletes


def run_recipe(monkeypatch, folder: Path, corpus) -> dict:
    old, changes, *_ = corpus
    monkeypatch.chdir(folder)  # LANCEDB_URI keeps its default, ./lancedb
    monkeypatch.delenv("LANCEDB_URI", raising=False)
    monkeypatch.setenv("OLD", str(old))
    monkeypatch.setenv("CHANGES", str(changes))
    return runpy.run_path(str(RECIPE), run_name="__main__")


def contents(table) -> dict:
    """id -> (float32 vector, tokens), and no id twice."""
    data = table.to_arrow()
    ids = data.column("id").to_pylist()
    assert len(set(ids)) == len(ids), "an id is in the store twice"
    flat = data.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    vectors, tokens = flat.reshape(len(ids), -1), data.column("tokens").to_pylist()
    assert vectors.dtype == np.float32
    return {key: (vector, count) for key, vector, count in zip(ids, vectors, tokens)}


def rebuilt_from(new: Path, uri: Path):
    ids, vectors, tokens, _ = read_output(new)
    rows = pa.table({
        "id": ids,
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
        "tokens": pa.array(tokens, pa.int32()),
    })
    return lancedb.connect(str(uri)).create_table("passages", rows)


def neighbours(table, query: np.ndarray) -> tuple[list, np.ndarray]:
    hits = table.search(query).limit(5).to_arrow()
    return hits.column("id").to_pylist(), hits.column("_distance").to_numpy()


def assert_same_store(store, reference, new: Path, upserts: set) -> None:
    got, want = contents(store), contents(reference)
    ids, vectors, tokens, _ = read_output(new)
    assert set(got) == set(want) == set(ids) and vectors.dtype == np.float32
    for key, vector, count in zip(ids, vectors, tokens):
        assert got[key][0].dtype == np.float32 and np.array_equal(got[key][0], vector), key
        assert got[key][0].tobytes() == want[key][0].tobytes(), key
        assert got[key][1] == want[key][1] == count, key
    mixed = vectors[3] + vectors[-1]  # between an unchanged passage and the moved one
    queries = [vectors[0], mixed / np.linalg.norm(mixed), -vectors[0]]
    queries += [vectors[ids.index(key)] for key in sorted(upserts, key=str)]  # changed, added, moved
    for query in queries:
        got_ids, got_distances = neighbours(store, query)
        want_ids, want_distances = neighbours(reference, query)
        assert got_ids == want_ids
        np.testing.assert_allclose(got_distances, want_distances, rtol=0, atol=1e-6)


def test_given_old_and_changes_then_the_store_answers_like_one_rebuilt_from_new(
        corpus, tmp_path, monkeypatch, capsys):
    old, changes, new, upserts, deletes = corpus
    ops = pq.read_table(changes, columns=["id", "op"]).to_pylist()
    assert {row["id"] for row in ops if row["op"] == "upsert"} == upserts
    assert {row["id"] for row in ops if row["op"] == "delete"} == deletes

    result = run_recipe(monkeypatch, tmp_path, corpus)

    assert result["applied"] == {"upserts": len(upserts), "deletes": len(deletes)}
    rows = len(read_output(new)[0])
    summary = f"passages: {len(upserts)} upserts, {len(deletes)} deletes -> {rows} rows\n"
    assert capsys.readouterr().out == summary
    assert (tmp_path / "lancedb").is_dir()
    store = lancedb.connect(str(tmp_path / "lancedb")).open_table("passages")
    assert store.count_rows() == rows
    assert_same_store(store, rebuilt_from(new, tmp_path / "reference"), new, upserts)


def test_given_changes_applied_twice_then_the_store_is_unchanged(corpus, tmp_path, monkeypatch):
    *_, new, upserts, deletes = corpus
    first = run_recipe(monkeypatch, tmp_path, corpus)
    before = contents(first["table"])
    monkeypatch.setenv("OLD", str(tmp_path / "absent.parquet"))  # the table exists now: OLD is not read
    second = runpy.run_path(str(RECIPE), run_name="__main__")

    assert second["applied"] == first["applied"] == {"upserts": len(upserts), "deletes": len(deletes)}
    after = contents(second["table"])
    assert set(after) == set(before)
    for key, (vector, tokens) in before.items():
        assert after[key][0].tobytes() == vector.tobytes() and after[key][1] == tokens, key
    assert_same_store(second["table"], rebuilt_from(new, tmp_path / "reference"), new, upserts)
