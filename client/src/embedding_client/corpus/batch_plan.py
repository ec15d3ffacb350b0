"""The document a Batch run leaves under OUTPUT: the plan every child reads, and the records
children, the final job and the client leave beside it.

Everything lives under `OUTPUT/_embed-corpus-batch/` (readers skip names starting with `_`):
`plan-NNNN.json` (one per submission: the same splits, the children that submission runs),
`jobs.json` (the job ids of every submission, for `--resume`), `done/part-NNNNNN.json` (a part's
counts, written after the part), `failed/part-NNNNNN.json` (why a split can't be embedded) and
`finish.json` (why the final job refused `_SUCCESS`). The plan holds one small entry per split and
the options once, so 10^8 passages (20,000 splits) make a plan of about a megabyte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from embedding_client.corpus.errors import CorpusError, InputError
from embedding_client.corpus.inputs import InputFile
from embedding_client.corpus.locations import Location, Storage
from embedding_client.corpus.shards import DatasetStore
from embedding_client.corpus.splits import Split

PLAN_VERSION = 1
FOLDER = "_embed-corpus-batch"
JOBS = "jobs.json"
FINISH = "finish.json"


@dataclass
class BatchPlan:
    """One submission's plan: the run's splits and options, and which splits each child holds."""

    output: str  # the dataset's s3://bucket/prefix/
    job: dict  # the shard jobs' options (shard_job.JobOptions without the metadata)
    run: dict  # what the parts' metadata is made of, besides the worker's model
    files: list[InputFile]
    splits: list[Split]
    children: list[list[int]]  # child number -> split indexes
    submission: int = 1

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "version": PLAN_VERSION,
                "output": self.output,
                "submission": self.submission,
                "job": self.job,
                "run": self.run,
                "files": [
                    {"uri": f.location.uri, "name": f.name, "size": f.size, "version": f.version} for f in self.files
                ],
                "splits": [[s.file, s.start, s.end, int(s.whole)] for s in self.splits],
                "children": self.children,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> "BatchPlan":
        try:
            doc = json.loads(data)
            if doc.get("version") != PLAN_VERSION:
                raise InputError(f"{where} is plan version {doc.get('version')!r}; this worker reads {PLAN_VERSION}")
            return cls(
                output=doc["output"],
                job=doc["job"],
                run=doc["run"],
                files=[InputFile(Location(f["uri"]), f["name"], int(f["size"]), f["version"]) for f in doc["files"]],
                splits=[Split(int(f), int(s), int(e), bool(w)) for f, s, e, w in doc["splits"]],
                children=[[int(i) for i in child] for child in doc["children"]],
                submission=int(doc.get("submission", 1)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise InputError(f"{where} is not a plan written by embed-corpus ({type(error).__name__}: {error})") from None

    def describe_split(self, index: int) -> str:
        """`split 3 (a.jsonl bytes 0-4,096)`: how a message names a split."""
        split = self.splits[index]
        unit = "row groups" if self.job.get("fmt") == "parquet" else "bytes"
        where = "whole" if split.whole else f"{unit} {split.start:,}-{split.end:,}"
        return f"split {index} ({self.files[split.file].name} {where})"


def assign(todo: list[int], per_child: int) -> list[list[int]]:
    """Consecutive splits, `per_child` to a child (a child's parts are neighbours in the output)."""
    return [todo[start : start + per_child] for start in range(0, len(todo), per_child)]


class BatchRecords:
    """The records under OUTPUT/_embed-corpus-batch/."""

    def __init__(self, store: DatasetStore):
        self.store = store
        self.storage: Storage = store.storage
        self.folder = store.folder.child(FOLDER + "/")

    def plan_location(self, submission: int) -> Location:
        return self.folder.child(f"plan-{submission:04d}.json")

    def done(self, index: int) -> Location:
        return self.folder.child(f"done/{self.store.part_name(index)[:-8]}.json")

    def failed(self, index: int) -> Location:
        return self.folder.child(f"failed/{self.store.part_name(index)[:-8]}.json")

    def finish(self) -> Location:
        return self.folder.child(FINISH)

    def names(self, sub: str) -> set[str]:
        return self.storage.names(self.folder.child(sub + "/"))

    def indexes(self, sub: str) -> set[int]:
        prefix = self.store.part_prefix
        return {int(name[len(prefix) : len(prefix) + 6]) for name in self.names(sub) if name.startswith(prefix)}

    def read_json(self, location: Location) -> dict | None:
        try:
            return json.loads(self.storage.read_bytes(location))
        except CorpusError:
            return None if not self.storage.exists(location) else _raise_damaged(location)
        except ValueError:
            return _raise_damaged(location)

    def write_json(self, location: Location, value: dict) -> None:
        self.storage.write_bytes(location, json.dumps(value, indent=1).encode())

    def jobs(self) -> list[dict]:
        """Every submission so far: its plan, array job ids and final job id."""
        found = self.read_json(self.folder.child(JOBS))
        return found["submissions"] if found else []

    def add_submission(self, submission: dict) -> None:
        self.write_json(self.folder.child(JOBS), {"submissions": [*self.jobs(), submission]})

    def clear(self) -> None:
        """A new run (or --overwrite): the records of an earlier one go, every level down."""
        bucket, prefix = self.folder.bucket, self.folder.key
        for key, _, _ in self.storage.list_objects(bucket, prefix, self.folder):
            self.storage.delete(Location(f"s3://{bucket}/{key}"))


def _raise_damaged(location: Location):
    raise CorpusError(f"{location.uri} is damaged: delete it and run the same command with --resume")
