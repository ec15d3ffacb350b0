"""The CSV, TSV and JSONL readers by property: whatever a spreadsheet or an editor saves (byte-order
marks, \\r\\n / \\n / \\r line endings, quoting, embedded newlines, the id column's case), the ids and
texts read are the ones written."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedding_client.corpus.errors import InputError
from embedding_client.corpus.inputs import list_inputs, split_rows
from embedding_client.corpus.locations import Storage
from embedding_client.corpus.readers import Row
from embedding_client.corpus.splits import Split

# Texts with the characters that break naive readers: quotes, delimiters, \r, \n, unicode.
TEXT = st.text(alphabet=st.sampled_from(list('ab yz,;"\'\t\r\n\u00e9\u4e2d\U0001f600')), min_size=1, max_size=40).filter(
    lambda t: t.strip() != "")
IDS = st.lists(st.text(alphabet="abcxyz0123456789-_", min_size=1, max_size=8), min_size=1, max_size=12, unique=True)
ENDINGS = st.sampled_from(["\r\n", "\n", "\r"])
ID_NAMES = st.sampled_from(["id", "ID", "Id", "\ufeffid"])
EXTRA = st.lists(st.sampled_from(["lang", "url", "Title", "score"]), unique=True, max_size=3)


def read(path) -> list:
    storage = Storage()
    inputs = list_inputs(str(path), storage, None)
    return list(split_rows(storage, inputs, Split(0, 0, 1, whole=True), "text", "id"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), ids=IDS, ending=ENDINGS, bom=st.booleans(), id_name=ID_NAMES, extra=EXTRA,
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
       suffix=st.sampled_from([".csv", ".tsv"]))
def test_delimited_files_read_back_the_ids_and_texts_written(tmp_path_factory, data, ids, ending, bom, id_name,
                                                             extra, quoting, suffix):
    texts = [data.draw(TEXT) for _ in ids]
    columns = data.draw(st.permutations([id_name, "text", *extra]))
    if ending != "\r\n" and quoting == csv.QUOTE_MINIMAL:
        # csv.writer quotes only fields holding the line terminator's own characters: a lone \n in a
        # \r file (or \r in a \n file) would go unquoted, which no spreadsheet writes and no reader
        # can tell from a line break.
        quoting = csv.QUOTE_ALL
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t" if suffix == ".tsv" else ",", lineterminator=ending, quoting=quoting)
    writer.writerow(columns)
    for row_id, text in zip(ids, texts):
        values = {id_name: row_id, "text": text}
        writer.writerow([values.get(column, f"{column}-value") for column in columns])
    path = tmp_path_factory.mktemp("csv") / f"corpus{suffix}"
    path.write_bytes(("\ufeff" if bom and id_name[0] != "\ufeff" else "").encode() + buffer.getvalue().encode())
    rows = read(path)
    assert all(isinstance(row, Row) for row in rows), rows
    assert [row.id for row in rows] == ids
    assert [row.text for row in rows] == texts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), ids=IDS, ending=ENDINGS, bom=st.booleans(), id_name=ID_NAMES)
def test_jsonl_files_read_back_the_ids_and_texts_written(tmp_path_factory, data, ids, ending, bom, id_name):
    texts = [data.draw(TEXT) for _ in ids]
    lines = [json.dumps({id_name.lstrip("\ufeff"): row_id, "text": text}) for row_id, text in zip(ids, texts)]
    path = tmp_path_factory.mktemp("jsonl") / "corpus.jsonl"
    path.write_bytes(("\ufeff" if bom else "").encode() + ending.join(lines).encode() + ending.encode())
    rows = read(path)
    assert [row.id for row in rows] == ids, rows
    assert [row.text for row in rows] == texts


@pytest.mark.parametrize("ending", ["\r\n", "\n", "\r"])
def test_text_files_take_every_line_ending_and_drop_a_bom(tmp_path, ending):
    path = tmp_path / "corpus.txt"
    path.write_bytes(("\ufeff" + ending.join(["first", "second", "third"]) + ending).encode())
    assert [(row.id, row.text) for row in read(path)] == [(1, "first"), (2, "second"), (3, "third")]


def test_a_spreadsheets_csv_keeps_its_ids(tmp_path):
    """The report's case: 'CSV UTF-8' from a spreadsheet, ids 1, 2, 3, one text over two lines."""
    path = tmp_path / "export.csv"
    path.write_bytes('\ufeffid,text\r\n1,"a text\r\nover two lines"\r\n2,two\r\n3,three\r\n'.encode())
    assert [row.id for row in read(path)] == ["1", "2", "3"]


@pytest.mark.parametrize("header, message", [
    ("id,text,text", "2 columns named 'text'"),
    ("Id,ID,text", "2 columns that could be 'id'"),
    ("ID,Text,TEXT", "2 columns that could be 'text'"),
])
def test_ambiguous_headers_are_refused_in_one_sentence_naming_the_columns(tmp_path, header, message):
    path = tmp_path / "bad.csv"
    path.write_text(f"{header}\n1,a,b\n")
    with pytest.raises(InputError, match=message):
        read(path)


def test_the_report_says_when_ids_fell_back_to_line_numbers(tmp_path):
    """Ids are never replaced silently: rows without one are counted in the report."""
    from corpus_helpers import run_cli

    with_ids, without = tmp_path / "ids.csv", tmp_path / "none.csv"
    with_ids.write_text("ID,text\na,one\nb,two\n")
    without.write_text("text\none\ntwo\nthree\n")
    figures = {}
    for source in (with_ids, without):
        report = tmp_path / f"{source.stem}.json"
        done = run_cli(source, "--output", tmp_path / f"{source.stem}.parquet", "--report-json", report)
        assert done.returncode == 0, done.stderr
        figures[source.stem] = (json.loads(report.read_text())["rows_numbered"], done.stdout)
    assert figures["ids"][0] == 0 and "had no id" not in figures["ids"][1]
    assert figures["none"][0] == 3 and "3 rows had no id: each got its line number" in figures["none"][1]
