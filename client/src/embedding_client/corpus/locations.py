"""Where input, output and committed shards live: a local path or `s3://bucket/key`.

Both kinds offer the same few operations, each atomic where it writes: a local file is written
beside its final name and renamed; an S3 object appears whole or not at all. S3 settings come
from the standard AWS configuration (credentials chain, `AWS_ENDPOINT_URL_S3` for an emulator).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from embedding_client.corpus.errors import AccessDenied, CorpusError, InputError


@dataclass(frozen=True)
class Location:
    uri: str

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    @property
    def bucket(self) -> str:
        return self.uri[5:].split("/", 1)[0]

    @property
    def key(self) -> str:
        parts = self.uri[5:].split("/", 1)
        return parts[1] if len(parts) > 1 else ""

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    def sibling(self, suffix: str) -> "Location":
        """The same name plus a suffix: `out.parquet` -> `out.parquet.parts`."""
        return Location(self.uri + suffix)

    def child(self, name: str) -> "Location":
        return Location(f"{self.uri.rstrip('/')}/{name}")


def parse_location(uri: str, what: str, folder: bool = False) -> Location:
    """A local path or an S3 object; with `folder`, a name ending in `/` (a dataset) is allowed."""
    if uri.startswith("s3://"):
        location = Location(uri)
        if not location.bucket or not location.key or (location.key.endswith("/") and not folder):
            raise InputError(
                f"{what} {uri!r} must name an object: s3://bucket/key"
                + (" (or a dataset: s3://bucket/prefix/)" if folder else "")
            )
        return location
    if "://" in uri:
        raise InputError(f"{what} {uri!r}: only local paths and s3://bucket/key are supported")
    path = str(Path(uri).expanduser())
    return Location(path + "/" if folder and uri.endswith("/") else path)


class Storage:
    """Local files and S3 objects behind one small interface."""

    def __init__(self, region: str | None = None):
        self._region = region
        self._s3: Any = None

    @property
    def s3(self):
        if self._s3 is None:
            import boto3

            self._s3 = boto3.session.Session(region_name=self._region).client("s3")
        return self._s3

    def version(self, location: Location) -> dict:
        """The input version (size, ETag or mtime): what --resume compares to refuse a changed input.
        Not to be confused with the model or run fingerprints (embedding_service.contract)."""
        if location.is_s3:
            head = self._s3_call(location, "head_object", Bucket=location.bucket, Key=location.key)
            return {"size": head["ContentLength"], "etag": head.get("ETag", "")}
        try:
            stat = os.stat(location.uri)
        except FileNotFoundError:
            raise InputError(f"{location.uri} does not exist") from None
        if not os.path.isfile(location.uri):
            raise InputError(f"{location.uri} is not a file")
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def head(self, location: Location) -> dict:
        return self._s3_call(location, "head_object", Bucket=location.bucket, Key=location.key)

    def list_objects(self, bucket: str, prefix: str, where: Location):
        """(key, size, etag) of every object under `prefix`, in key order, a page at a time."""
        paginator = self.s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"], int(item["Size"]), item.get("ETag", "")
        except Exception as error:
            raise _s3_error(where, error) from None

    def exists(self, location: Location) -> bool:
        if not location.is_s3:
            return os.path.exists(location.uri)
        try:
            self._s3_call(location, "head_object", Bucket=location.bucket, Key=location.key)
            return True
        except InputError:
            return False

    def open_read(self, location: Location) -> IO[bytes]:
        """A seekable binary file: local, or an S3 object read in ranged GETs as it is read (a
        Parquet reader fetches only the footer and the columns it asks for)."""
        if not location.is_s3:
            try:
                return open(location.uri, "rb")
            except FileNotFoundError:
                raise InputError(f"{location.uri} does not exist") from None
            except IsADirectoryError:
                raise InputError(f"{location.uri} is a folder, not a file") from None
        head = self._s3_call(location, "head_object", Bucket=location.bucket, Key=location.key)
        raw = _S3RangeFile(self, location, int(head["ContentLength"]))
        return io.BufferedReader(raw, buffer_size=S3_READ_BLOCK)

    def read_range(self, location: Location, start: int, end: int) -> bytes:
        """Bytes [start, end) of a file or object (one ranged GET on S3); fewer at its end."""
        if location.is_s3:
            where = f"bytes={start}-{end - 1}"
            response = self._s3_call(location, "get_object", Bucket=location.bucket, Key=location.key, Range=where)
            return response["Body"].read()
        with open(location.uri, "rb") as handle:
            handle.seek(start)
            return handle.read(end - start)

    def read_bytes(self, location: Location) -> bytes:
        if location.is_s3:
            response = self._s3_call(location, "get_object", Bucket=location.bucket, Key=location.key)
            return response["Body"].read()
        return Path(location.uri).read_bytes()

    def write_bytes(self, location: Location, data: bytes) -> None:
        """Whole or not at all: a crash never leaves a half-written object under the name."""
        if location.is_s3:
            self._s3_call(location, "put_object", Bucket=location.bucket, Key=location.key, Body=data)
            return
        path = Path(location.uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)

    def put_file(self, path: str, location: Location) -> None:
        """Move a finished local file to its final place (rename, or upload then delete)."""
        if location.is_s3:
            self._s3_call(location, "upload_file", Filename=path, Bucket=location.bucket, Key=location.key)
            os.unlink(path)
            return
        Path(location.uri).parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, location.uri)

    def names(self, directory: Location) -> set[str]:
        """Names of the objects directly under a local folder or an S3 prefix."""
        if not directory.is_s3:
            try:
                return {entry.name for entry in os.scandir(directory.uri) if entry.is_file()}
            except FileNotFoundError:
                return set()
        prefix = directory.key.rstrip("/") + "/"
        try:
            names = {key[len(prefix) :] for key, _, _ in self.list_objects(directory.bucket, prefix, directory)}
        except InputError:  # no such bucket: nothing is there
            return set()
        return {name for name in names if name and "/" not in name}

    def copy(self, source: Location, target: Location) -> None:
        """S3 to S3 is a server-side copy (no bytes through this process); else read and write."""
        if source.is_s3 and target.is_s3:
            self._s3_call(
                target,
                "copy_object",
                Bucket=target.bucket,
                Key=target.key,
                CopySource={"Bucket": source.bucket, "Key": source.key},
            )
            return
        self.write_bytes(target, self.read_bytes(source))

    def delete(self, location: Location) -> None:
        if location.is_s3:
            self._s3_call(location, "delete_object", Bucket=location.bucket, Key=location.key)
        elif os.path.exists(location.uri):
            os.unlink(location.uri)

    def remove_tree(self, directory: Location) -> None:
        if not directory.is_s3:
            shutil.rmtree(directory.uri, ignore_errors=True)
            return
        for name in self.names(directory):
            self.delete(directory.child(name))

    def check_writable(self, location: Location) -> None:
        """Fail before any model work when the output's bucket or folder is unusable."""
        if location.is_s3:
            self._s3_call(location, "head_bucket", Bucket=location.bucket)
            return
        parent = Path(location.uri).resolve().parent
        if not parent.is_dir():
            raise InputError(f"the output's folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise InputError(f"the output's folder {parent} is not writable")

    def _s3_call(self, location: Location, operation: str, **kwargs):
        try:
            return getattr(self.s3, operation)(**kwargs)
        except Exception as error:
            raise _s3_error(location, error) from None


S3_READ_BLOCK = 1 << 20  # one GET per MiB at least: Parquet's small footer reads stay few


class _S3RangeFile(io.RawIOBase):
    """An S3 object as a seekable raw file: each read is one ranged GET."""

    def __init__(self, storage: Storage, location: Location, size: int):
        self._storage, self._location, self._size, self._at = storage, location, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: self._size}[whence]
        self._at = max(0, base + offset)
        return self._at

    def readinto(self, buffer) -> int:
        end = min(self._at + len(buffer), self._size)
        if end <= self._at:
            return 0
        data = self._storage.read_range(self._location, self._at, end)
        buffer[: len(data)] = data
        self._at += len(data)
        return len(data)


def _describe(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    detail = response.get("Error", {})
    code, message = detail.get("Code"), detail.get("Message")
    if code:
        return f"{code}: {message}" if message and message != code else str(code)
    return str(error) or type(error).__name__


def _s3_error(location: Location, error: Exception) -> CorpusError:
    name = type(error).__name__
    code = str(((getattr(error, "response", None) or {}).get("Error") or {}).get("Code", ""))
    if code in ("404", "NoSuchKey", "NotFound"):
        return InputError(f"{location.uri} does not exist")
    if code == "NoSuchBucket":
        return InputError(f"the bucket {location.bucket!r} of {location.uri} does not exist")
    if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
        return AccessDenied(
            f"S3 refused access to {location.uri} ({code}): check your AWS credentials and permissions"
        )
    if name == "NoCredentialsError":
        return CorpusError(
            f"no AWS credentials to read or write {location.uri}: set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run where a role is available"
        )
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
        return CorpusError(f"cannot reach S3 for {location.uri}: {error}")
    return CorpusError(f"S3 failed on {location.uri}: {_describe(error)}")
