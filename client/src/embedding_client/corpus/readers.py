"""Input records -> rows `(number, id, text)`, and what is wrong with the rows that can't be embedded.

One record at a time (inputs.py does the reading): a JSONL line, a text line, a CSV record or a
Parquet row becomes a `Row`, or a `Rejected` naming the line (row, for Parquet) and the reason.
Problems with a whole file (no text column, not UTF-8, not Parquet) raise `InputError`. Ids are
the id field's values where a row has one, else the row's own number (or, in a dataset, its
`<name>:<n>`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

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


class Row(NamedTuple):
    """A NamedTuple, not a dataclass: one is made per row of the corpus, twice, and a frozen
    dataclass costs three times as much to make."""

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
    source: str = ""  # the file below a dataset INPUT ("" for a single-file INPUT)


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


def parse_record(number: int, fields: dict, text_field: str, id_field: str, default_id: Any = None) -> Row | Rejected:
    """One record's text and id, checked the way the service will check them; a record without an
    id gets `default_id` (the line number when None)."""
    raw_id = fields.get(id_field)
    if raw_id is None or raw_id == "":
        raw_id = number if default_id is None else default_id
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


def json_record(number: int, line: bytes) -> dict | Rejected:
    """A JSONL line's object, or why it is not one."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return Rejected(number, None, f"not valid JSON ({error})")
    if not isinstance(record, dict):
        return Rejected(number, None, f"not a JSON object (a line holds {_kind(record)})")
    return record


def text_record(number: int, line: bytes, default_id: Any = None) -> Row | Rejected:
    """A text line (one text per line): empty lines are rejected, so numbers stay line numbers."""
    row_id = number if default_id is None else default_id
    try:
        text = line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as error:
        return Rejected(number, row_id, f"not valid UTF-8 ({error.reason} at byte {error.start})")
    return Row(number, row_id, text) if text else Rejected(number, row_id, "empty line")


def csv_header_problem(header: list[str] | None, where: str, text_field: str) -> str | None:
    if header is None:
        return f"{where} is empty: a CSV input needs a header row naming {text_field!r}"
    if text_field not in header:
        return (
            f"{where} has no {text_field!r} column (its columns: {', '.join(header)}); name the text "
            "column with --text-field"
        )
    return None


def parquet_columns(schema, path: str, text_field: str, id_field: str) -> list[str]:
    """The columns to read: the text, and the id where the file has one; checked."""
    import pyarrow as pa
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
    return columns
