"""Input records -> rows `(number, id, text)`, and what is wrong with the rows that can't be embedded.

One record at a time (inputs.py does the reading): a JSONL line, a text line, a CSV record or a
Parquet row becomes a `Row`, or a `Rejected` naming the line (row, for Parquet) and the reason.
Problems with a whole file (no text column, duplicate column names, not UTF-8, not Parquet) raise
`InputError`. Ids are the id field's values where a row has one, else the row's own number (or, in
a dataset, its `<name>:<n>`). Files as spreadsheets and editors save them are read as meant: a
UTF-8 byte-order mark is dropped, a column named like the id or text field but for case (`ID`) is
that field (two such columns are refused, naming both), and `.tsv` is tab-separated CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from embedding_client.corpus.errors import InputError

FORMATS = ("jsonl", "csv", "tsv", "parquet", "text")
DELIMITERS = {"csv": ",", "tsv": "\t"}  # the delimited formats: read whole, a header row first
BOM = "\ufeff"
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
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
    numbered: bool = False  # the row had no id: `id` is its line number (or `<name>:<n>`)


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
        f"can't tell the format of {name!r} from its name: use .jsonl, .csv, .tsv, .parquet or .txt, or --format"
    )


def row_label(fmt: str) -> str:
    return "row" if fmt == "parquet" else "line"


def parse_record(number: int, fields: dict, text_field: str, id_field: str, default_id: Any = None) -> Row | Rejected:
    """One record's text and id, checked the way the service will check them; a record without an
    id gets `default_id` (the line number when None)."""
    raw_id = fields.get(id_field)
    numbered = False
    if raw_id is None and id_field not in fields:  # `ID` for `id`: the same field, not a missing one
        key = _alike_key(fields, id_field)
        if isinstance(key, Rejected):
            return Rejected(number, None, key.reason)
        raw_id = fields.get(key)
    if raw_id is None or raw_id == "":
        raw_id, numbered = (number if default_id is None else default_id), True
    elif isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        return Rejected(number, None, f"{id_field!r} must be a string or an integer, not {_kind(raw_id)}")
    text = fields.get(text_field)
    if text is None and text_field not in fields:
        key = _alike_key(fields, text_field)
        if isinstance(key, Rejected):
            return Rejected(number, raw_id, key.reason)
        if key is None:
            return Rejected(number, raw_id, f"no {text_field!r} field")
        text = fields[key]
    if not isinstance(text, str):
        return Rejected(number, raw_id, f"{text_field!r} is {_kind(text)}, not a string")
    if not text:
        return Rejected(number, raw_id, f"empty {text_field!r}")
    return Row(number, raw_id, text, numbered)


def _alike_key(fields: dict, name: str) -> "str | None | Rejected":
    """The one key that is `name` but for case or a byte-order mark; None if there is none, and
    a Rejected (its reason) if there are several."""
    alike = _alike([key for key in fields if isinstance(key, str)], name)
    if len(alike) > 1:
        return Rejected(0, None, f"{len(alike)} fields could be {name!r} ({', '.join(map(repr, alike))})")
    return alike[0] if alike else None


def _alike(names: list[str], field: str) -> list[str]:
    """The names that are `field` but for case or a leading byte-order mark."""
    wanted = field.casefold()
    return [name for name in names if name.lstrip(BOM).casefold() == wanted]


def resolve_columns(names: list[str], where: str, text_field: str, id_field: str) -> tuple[str | None, str | None]:
    """A header's (text column, id column) as named in it: `Text` or `\ufeffid` stand for `text` and
    `id`; duplicate names, or two columns alike but for case, are refused in one sentence."""
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    doubled = [name for name, count in seen.items() if count > 1]
    if doubled:
        raise InputError(
            f"{where} has {seen[doubled[0]]} columns named {doubled[0]!r}: "
            "column names must be unique, so rename the copies"
        )
    found = []
    for field in (text_field, id_field):
        if field in seen:
            found.append(field)
            continue
        alike = _alike(names, field)
        if len(alike) > 1:
            raise InputError(
                f"{where} has {len(alike)} columns that could be {field!r} ({', '.join(map(repr, alike))}): "
                "rename all but one, or name the column with --text-field / --id-field"
            )
        found.append(alike[0] if alike else None)
    return found[0], found[1]


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
    return Row(number, row_id, text, True) if text else Rejected(number, row_id, "empty line")


def csv_header(header: list[str] | None, where: str, text_field: str, id_field: str) -> list[str]:
    """A CSV (TSV) header with its text and id columns renamed to the fields asked for, so each
    record reads as {text_field: ..., id_field: ...}; one sentence when it can't be read."""
    if header is None:
        raise InputError(f"{where} is empty: a CSV input needs a header row naming {text_field!r}")
    text_column, id_column = resolve_columns(header, where, text_field, id_field)
    if text_column is None:
        raise InputError(
            f"{where} has no {text_field!r} column (its columns: {', '.join(header)}); name the text "
            "column with --text-field"
        )
    names = {text_column: text_field, id_column: id_field}
    return [names.get(name, name) for name in header]


def parquet_columns(schema, path: str, text_field: str, id_field: str) -> list[str]:
    """The columns to read: the text, and the id where the file has one; checked."""
    import pyarrow as pa
    text_column, id_column = resolve_columns(list(schema.names), path, text_field, id_field)
    if text_column is None:
        raise InputError(
            f"{path} has no {text_field!r} column (its columns: {', '.join(schema.names)}); name the text "
            "column with --text-field"
        )
    text_type = schema.field(text_column).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise InputError(f"{path}: column {text_column!r} is {text_type}, not strings")
    columns = [text_column]
    if id_column is not None:
        id_type = schema.field(id_column).type
        if not (
            pa.types.is_integer(id_type) or pa.types.is_string(id_type) or pa.types.is_large_string(id_type)
        ):
            raise InputError(f"{path}: column {id_column!r} is {id_type}; ids must be integers or strings")
        columns.append(id_column)
    return columns
