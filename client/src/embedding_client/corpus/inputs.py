"""INPUT -> the files it names, and each file (or split of one) -> rows, read as a stream.

INPUT is one file (a path or `s3://bucket/key`), a local folder, an `s3://bucket/prefix/`
(trailing slash) or a glob (`data/*.jsonl.gz`, `s3://bucket/corpus/part-*.parquet`). A folder
or prefix is taken whole, recursively, in name order, skipping names that start with `_` or `.`
(Spark's and Hadoop's markers, editors' temp files). Nothing is downloaded whole: line formats
are read through buffered ranged reads, Parquet one row group at a time.

A dataset's rows without an id get `<name>:<n>`: the file's path below INPUT, then the byte
offset of the line (JSONL, text), the CSV record's line number, or the Parquet row's index in its
file. A re-run, a resumed run and a worker reading one split of the file all give the same id.
A single-file INPUT keeps line (row) numbers, as before datasets existed.
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import gzip
import hashlib
import io
import os
import sys
import zlib
from dataclasses import dataclass
from typing import IO, Iterator

import orjson

from embedding_client.corpus.errors import CorpusError, InputError
from embedding_client.corpus.locations import Location, Storage
from embedding_client.corpus.readers import (
    Rejected,
    Row,
    DELIMITERS,
    csv_header,
    detect_format,
    json_record,
    parquet_columns,
    parse_record,
    text_record,
)
from embedding_client.corpus.splits import Split, lines_in_range, seek_offset, splittable

GLOB_CHARS = "*?["
UTF8_BOM = b"\xef\xbb\xbf"
PARQUET_BATCH_ROWS = 8192  # rows decoded at a time: a big row group never sits in memory whole


@dataclass(frozen=True)
class InputFile:
    location: Location
    name: str  # below INPUT (a folder, prefix or glob's fixed part); the file's own name otherwise
    size: int
    version: str  # an S3 ETag, or a local file's modification time: a changed file is noticed

    def describe(self) -> dict:
        return {"name": self.name, "size": self.size, "version": self.version}


@dataclass(frozen=True)
class Inputs:
    uri: str
    files: list[InputFile]
    fmt: str
    dataset: bool  # a folder, prefix or glob: ids `<name>:<n>`, however many files it holds

    def version(self) -> dict:
        """What a resumed run must find unchanged: every file's name, size and version."""
        if not self.dataset:
            return {"size": self.files[0].size, "version": self.files[0].version}
        listing = orjson.dumps([file.describe() for file in self.files])
        return {"files": len(self.files), "bytes": self.total_bytes, "listing_sha256": hashlib.sha256(listing).hexdigest()}

    @property
    def total_bytes(self) -> int:
        return sum(file.size for file in self.files)


def list_inputs(uri: str, storage: Storage, fmt: str | None) -> Inputs:
    """The files INPUT names, in name order, all of one format; one sentence when there are none."""
    if uri.startswith("s3://"):
        files, dataset = _s3_files(uri, storage)
    elif "://" in uri:
        raise InputError(f"INPUT {uri!r}: only local paths and s3:// are supported")
    else:
        files, dataset = _local_files(os.path.expanduser(uri))
    if not files:
        what = "matches no files" if any(char in uri for char in GLOB_CHARS) else "holds no files"
        raise InputError(f"INPUT {uri} {what}: nothing to embed")
    if fmt is None:
        formats = {file.name: detect_format(file.name) for file in files}
        kinds = sorted(set(formats.values()))
        if len(kinds) > 1:
            examples = {kind: next(name for name, f in formats.items() if f == kind) for kind in kinds}
            raise InputError(
                f"INPUT {uri} mixes formats ("
                + ", ".join(f"{examples[kind]} is {kind}" for kind in kinds)
                + "): keep one format under a prefix, or narrow INPUT with a glob such as "
                f"{uri.rstrip('/')}/*.{'jsonl' if 'jsonl' in kinds else kinds[0]}"
            )
        fmt = kinds[0]
    return Inputs(uri, files, fmt, dataset)


def _hidden(relative: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.split("/"))


def _local_files(path: str) -> tuple[list[InputFile], bool]:
    if any(char in path for char in GLOB_CHARS):
        base = _fixed_part(path)
        matches = sorted(name for name in glob.glob(path, recursive=True) if os.path.isfile(name))
        return [_local_file(name, os.path.relpath(name, base or ".")) for name in matches], True
    if os.path.isdir(path):
        found = []
        for folder, subfolders, names in os.walk(path):
            subfolders.sort()
            for name in names:
                full = os.path.join(folder, name)
                relative = os.path.relpath(full, path).replace(os.sep, "/")
                if not _hidden(relative):
                    found.append((relative, full))
        return [_local_file(full, relative) for relative, full in sorted(found)], True
    if not os.path.exists(path):
        raise InputError(f"{path} does not exist")
    return [_local_file(path, os.path.basename(path))], False


def _local_file(path: str, name: str) -> InputFile:
    stat = os.stat(path)
    if not os.access(path, os.R_OK):
        raise InputError(f"{path} is not readable (permission denied)")
    return InputFile(Location(path), name, stat.st_size, str(stat.st_mtime_ns))


def _fixed_part(pattern: str) -> str:
    """The folder (or key prefix) before the first glob character."""
    head = pattern[: min(pattern.find(char) for char in GLOB_CHARS if char in pattern)]
    return head.rsplit("/", 1)[0] if "/" in head else ""


def _s3_files(uri: str, storage: Storage) -> tuple[list[InputFile], bool]:
    where = Location(uri)
    if not where.bucket:
        raise InputError(f"INPUT {uri!r} must name a bucket: s3://bucket/key or s3://bucket/prefix/")
    pattern = where.key if any(char in where.key for char in GLOB_CHARS) else None
    if pattern is None and where.key and not where.key.endswith("/"):
        head = storage.head(where)
        return [InputFile(where, where.name, int(head["ContentLength"]), head.get("ETag", ""))], False
    prefix = _fixed_part(pattern) + "/" if pattern and "/" in pattern else ("" if pattern else where.key)
    if pattern and "/" not in pattern:
        prefix = ""
    files = []
    for key, size, etag in storage.list_objects(where.bucket, prefix, where):
        relative = key[len(prefix) :]
        if key.endswith("/") or _hidden(relative):
            continue
        if pattern is not None and not fnmatch.fnmatchcase(key, pattern):
            continue
        files.append(InputFile(Location(f"s3://{where.bucket}/{key}"), relative, size, etag))
    return sorted(files, key=lambda file: file.name), True


# --- reading ---------------------------------------------------------------------------------


def open_binary(storage: Storage, file: InputFile, at: int = 0) -> IO[bytes]:
    """The file's bytes from `at` (ranged reads from S3), gunzipped for `.gz`."""
    handle = storage.open_read(file.location)
    try:
        if file.name.lower().endswith(".gz"):
            return gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[return-value]
        if at:
            handle.seek(at)
        return handle
    except BaseException:
        handle.close()
        raise


def split_rows(
    storage: Storage, inputs: Inputs, split: Split, text_field: str, id_field: str
) -> Iterator[Row | Rejected]:
    """The rows of one split, in file order. `Row.number` is the line (row) number from 1 where
    the split starts at the file's start, else the line's byte offset."""
    file = inputs.files[split.file]
    ids = (lambda n: f"{file.name}:{n}") if inputs.dataset else (lambda n: None)
    if inputs.fmt == "parquet":
        items = _parquet_rows(storage, file, split, text_field, id_field, ids)
    elif inputs.fmt in DELIMITERS:
        items = _csv_rows(storage, file, DELIMITERS[inputs.fmt], text_field, id_field, ids)
    else:
        items = _line_rows(storage, inputs.fmt, file, split, text_field, id_field, ids)
    if not inputs.dataset:
        yield from items
        return
    for item in items:  # a dataset's rejected rows name their file
        yield Rejected(item.number, item.id, item.reason, file.name) if isinstance(item, Rejected) else item


def _line_rows(
    storage: Storage, fmt: str, file: InputFile, split: Split, text_field: str, id_field: str, ids
) -> Iterator[Row | Rejected]:
    """JSONL and text lines (this loop runs once per row of the corpus: kept flat)."""
    whole = split.whole or not splittable(file.name, fmt)
    start, end = (0, sys.maxsize) if whole else (split.start, split.end)
    with _reading(file), open_binary(storage, file, seek_offset(start)) as stream:
        if start == 0 and whole:
            lines = enumerate(_lines(stream), 1)
        else:
            lines = _numbered(_offset_lines(lines_in_range(stream, start, end)))
        offset = 0
        for number, line in lines:
            if isinstance(line, tuple):
                offset, line = line
            where = number if start == 0 else offset
            size = len(line)
            if offset == 0 and line.startswith(UTF8_BOM):  # an editor's byte-order mark: not text
                line = line[len(UTF8_BOM):]
            if fmt == "text":
                yield text_record(where, line, ids(offset))
            elif line.strip():  # blank lines (a trailing newline, a separator) hold no record
                record = json_record(where, line)
                if isinstance(record, Rejected):
                    yield Rejected(record.number, ids(offset), record.reason)
                else:
                    yield parse_record(where, record, text_field, id_field, ids(offset))
            if start == 0 and whole:
                offset += size


def _numbered(lines: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, tuple[int, bytes]]]:
    return enumerate(lines, 1)


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream's lines ending in \n, \r\n or a lone \r (old Mac files, some exports): a binary
    stream splits at \n only, so a line holding a lone \r is cut there too."""
    for line in stream:
        if _has_lone_cr(line):
            yield from _split_cr(line)
        else:
            yield line


def _offset_lines(lines: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
    """`_lines` for (offset, line) pairs: each piece keeps its own byte offset."""
    for offset, line in lines:
        if _has_lone_cr(line):
            for piece in _split_cr(line):
                yield offset, piece
                offset += len(piece)
        else:
            yield offset, line


def _has_lone_cr(line: bytes) -> bool:
    """A \r before the line's own terminator (the first test is the cheap one, for the hot path)."""
    return b"\r" in line and b"\r" in line.rstrip(b"\r\n")


def _split_cr(line: bytes) -> list[bytes]:
    """A line cut after every lone \r (one not followed by \n), terminators kept."""
    pieces, at = [], 0
    while True:
        cut = line.find(b"\r", at)
        if cut < 0 or cut + 1 >= len(line) or line[cut + 1:cut + 2] == b"\n":
            break
        pieces.append(line[at:cut + 1])
        at = cut + 1
    pieces.append(line[at:])
    return [piece for piece in pieces if piece]


def _csv_rows(
    storage: Storage, file: InputFile, delimiter: str, text_field: str, id_field: str, ids
) -> Iterator[Row | Rejected]:
    """A header row names the columns; values are strings, so ids are too. `newline=""` lets the
    csv module take \r\n, \n and \r line endings, and quoted fields keep their own."""
    csv.field_size_limit(sys.maxsize)  # long texts are checked against the service's limit instead
    with _reading(file), io.TextIOWrapper(open_binary(storage, file), encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            header = csv_header(next(reader, None), file.location.uri, text_field, id_field)
            end = reader.line_num
            for values in reader:
                start, end = end + 1, reader.line_num
                if any(values):  # not a blank line
                    yield parse_record(start, dict(zip(header, values)), text_field, id_field, ids(start))
        except UnicodeDecodeError as error:
            raise InputError(f"{file.location.uri} is not UTF-8 after line {reader.line_num} ({error.reason})") from None
        except csv.Error as error:
            raise InputError(f"{file.location.uri}: broken CSV at line {reader.line_num} ({error})") from None


def parquet_groups(storage: Storage, file: InputFile) -> list[int]:
    """Rows per row group, from the footer alone."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _reading(file), storage.open_read(file.location) as handle:
        try:
            metadata = pq.ParquetFile(handle).metadata
        except (pa.ArrowInvalid, OSError) as error:
            raise InputError(f"{file.location.uri} is not a readable Parquet file ({error})") from None
        return [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)]


def _parquet_rows(
    storage: Storage, file: InputFile, split: Split, text_field: str, id_field: str, ids
) -> Iterator[Row | Rejected]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _reading(file), storage.open_read(file.location) as handle:
        try:
            parquet = pq.ParquetFile(handle)
        except (pa.ArrowInvalid, OSError) as error:
            raise InputError(f"{file.location.uri} is not a readable Parquet file ({error})") from None
        columns = parquet_columns(parquet.schema_arrow, file.location.uri, text_field, id_field)
        groups = range(parquet.num_row_groups) if split.whole else range(split.start, split.end)
        first = sum(parquet.metadata.row_group(group).num_rows for group in range(groups.start))
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=list(groups), columns=columns):
            texts = batch.column(columns[0]).to_pylist()  # the columns as the file names them (`Text`)
            ids_read = batch.column(columns[1]).to_pylist() if len(columns) > 1 else [None] * len(texts)
            for text, raw_id in zip(texts, ids_read):
                record = {text_field: text, id_field: raw_id}
                yield parse_record(first + 1, record, text_field, id_field, ids(first))
                first += 1


class _reading:
    """Turns a failure to read an object (gone, access denied, corrupt gzip) into one sentence."""

    def __init__(self, file: InputFile):
        self.file = file

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is None or isinstance(error, (CorpusError, GeneratorExit)):
            return False
        if isinstance(error, (OSError, EOFError, zlib.error)):  # BadGzipFile is an OSError
            raise InputError(f"{self.file.location.uri} can't be read ({type(error).__name__}: {error})") from None
        return False
