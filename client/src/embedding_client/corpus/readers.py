"""Input formats -> rows `(number, id, text)`, and what is wrong with the rows that can't be embedded.

Every reader streams (a corpus may not fit in memory) and yields, in input order, either a `Row`
or a `Rejected` naming the line (row, for Parquet) and the reason. Problems with the whole file
(no text column, not UTF-8, not Parquet) raise `InputError` at once. Ids are the id field's
values where a row has one, else the row's own number.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterator

import orjson

from embedding_client.corpus.errors import InputError

FORMATS = ("jsonl", "csv", "parquet", "text")
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
    ".text": "text",
}
PARQUET_BATCH_ROWS = 8192


@dataclass(frozen=True)
class Row:
    number: int  # 1-based line (row, for Parquet) in the input
    id: Any  # str or int
    text: str


@dataclass(frozen=True)
class ChunkRow:
    """One chunk of a row's text (`--chunk-tokens`): the row's number and id, the chunk's place."""

    number: int
    id: Any
    chunk: int  # 0, 1, 2... within the row's text
    start: int  # [start, end) in the row's text, Python string indices
    end: int
    text: str  # the chunk's own text: text[start:end]


@dataclass(frozen=True)
class Rejected:
    number: int
    id: Any
    reason: str


def detect_format(name: str) -> str:
    """The format a file name says, `.gz` allowed on the text formats."""
    lowered = name.lower().removesuffix(".gz")
    for extension, fmt in _EXTENSIONS.items():
        if lowered.endswith(extension):
            return fmt
    raise InputError(
        f"can't tell the format of {name!r} from its name: use .jsonl, .csv, .parquet or .txt, or --format"
    )


def row_label(fmt: str) -> str:
    return "row" if fmt == "parquet" else "line"


def read_rows(path: str, fmt: str, text_field: str, id_field: str) -> Iterator[Row | Rejected]:
    readers: dict[str, Callable[..., Iterator[Row | Rejected]]] = {
        "jsonl": _jsonl,
        "csv": _csv,
        "parquet": _parquet,
        "text": _text,
    }
    return readers[fmt](path, text_field, id_field)


def _open_binary(path: str) -> IO[bytes]:
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _row(number: int, fields: dict, text_field: str, id_field: str) -> Row | Rejected:
    """One record's text and id, checked the way the service will check them."""
    raw_id = fields.get(id_field)
    if raw_id is None or raw_id == "":
        raw_id = number
    elif isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        return Rejected(number, None, f"{id_field!r} must be a string or an integer, not {_kind(raw_id)}")
    if text_field not in fields:
        return Rejected(number, raw_id, f"no {text_field!r} field")
    text = fields[text_field]
    if not isinstance(text, str):
        return Rejected(number, raw_id, f"{text_field!r} is {_kind(text)}, not a string")
    if not text:
        return Rejected(number, raw_id, f"empty {text_field!r}")
    return Row(number, raw_id, text)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "a list"}.get(
        type(value), type(value).__name__
    )


def _jsonl(path: str, text_field: str, id_field: str) -> Iterator[Row | Rejected]:
    with _open_binary(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue  # blank lines (a trailing newline, a separator) hold no record
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                yield Rejected(number, None, f"not valid JSON ({error})")
                continue
            if not isinstance(record, dict):
                yield Rejected(number, None, f"not a JSON object (a line holds {_kind(record)})")
                continue
            yield _row(number, record, text_field, id_field)


def _text(path: str, text_field: str, id_field: str) -> Iterator[Row | Rejected]:
    """One text per line; the id is the line number."""
    with _open_binary(path) as handle:
        for number, line in enumerate(handle, 1):
            try:
                text = line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                yield Rejected(number, number, f"not valid UTF-8 ({error.reason} at byte {error.start})")
                continue
            yield Row(number, number, text) if text else Rejected(number, number, "empty line")


def _csv(path: str, text_field: str, id_field: str) -> Iterator[Row | Rejected]:
    """A header row names the columns; values are strings, so ids are too."""
    csv.field_size_limit(sys.maxsize)  # long texts are checked against the service's limit instead
    with io.TextIOWrapper(_open_binary(path), encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path} is empty: a CSV input needs a header row naming {text_field!r}")
            if text_field not in header:
                raise InputError(
                    f"{path} has no {text_field!r} column (its columns: {', '.join(header)}); name the text "
                    "column with --text-field"
                )
            end = reader.line_num
            for values in reader:
                start, end = end + 1, reader.line_num
                if not any(values):
                    continue  # a blank line
                fields = {name: value for name, value in zip(header, values)}
                yield _row(start, fields, text_field, id_field)
        except UnicodeDecodeError as error:
            raise InputError(f"{path} is not UTF-8 after line {reader.line_num} ({error.reason})") from None
        except csv.Error as error:
            raise InputError(f"{path}: broken CSV at line {reader.line_num} ({error})") from None


def _parquet(path: str, text_field: str, id_field: str) -> Iterator[Row | Rejected]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(f"{path} is not a readable Parquet file ({error})") from None
    schema = parquet.schema_arrow
    if text_field not in schema.names:
        raise InputError(
            f"{path} has no {text_field!r} column (its columns: {', '.join(schema.names)}); name the text "
            "column with --text-field"
        )
    if not (
        pa.types.is_string(schema.field(text_field).type)
        or pa.types.is_large_string(schema.field(text_field).type)
    ):
        raise InputError(f"{path}: column {text_field!r} is {schema.field(text_field).type}, not strings")
    columns = [text_field]
    if id_field in schema.names:
        id_type = schema.field(id_field).type
        if not (
            pa.types.is_integer(id_type) or pa.types.is_string(id_type) or pa.types.is_large_string(id_type)
        ):
            raise InputError(f"{path}: column {id_field!r} is {id_type}; ids must be integers or strings")
        columns.append(id_field)
    number = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
        texts = batch.column(text_field).to_pylist()
        ids = batch.column(id_field).to_pylist() if len(columns) > 1 else [None] * len(texts)
        for text, raw_id in zip(texts, ids):
            number += 1
            yield _row(number, {text_field: text, id_field: raw_id}, text_field, id_field)
