"""Shared pieces of the embed-corpus tests: a real-text corpus, the real CLI, reading its output."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import sysconfig
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from conftest import REPO, RieServer, service_env

from corpus import mixed  # noqa: E402

EMBED_CORPUS = Path(sys.executable).parent / "embed-corpus"  # what `make setup` installs
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}
EDGE_TEXTS = [
    "hello, world!",
    "Ünïcödé — naïve café, 日本語のテキスト, emoji 🚀🔥",
    "a text that is far beyond the model's maximum length. " * 60,
    "  leading and trailing spaces  ",
    "line one\nline two\ttabbed",
]


def corpus_texts(count: int = 60) -> list[str]:
    return EDGE_TEXTS + mixed(count - len(EDGE_TEXTS), seed=3)


def library_text(chars: int) -> str:
    """One long document of real text none of us wrote, `chars` characters: the standard
    library's sources and the installed packages' READMEs (METADATA), in a fixed order, read
    again from the top until it is long enough (a long manual, as users have them)."""
    stdlib, packages = Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])
    files = sorted(stdlib.rglob("*.py")) + sorted(packages.glob("*.dist-info/METADATA"))
    parts, size = [], 0
    while size < chars:
        for path in files:
            if "site-packages" in path.parts and path.name != "METADATA":
                continue
            part = path.read_text(encoding="utf-8", errors="replace")
            parts.append(part)
            size += len(part) + 2
            if size >= chars:
                break
    return "\n\n".join(parts)[:chars]


def write_jsonl(path: Path, texts: list[str], ids: list | None = None) -> Path:
    """One object a line; an unchanged file is left alone, so a resumed run sees the same input."""
    ids = ids if ids is not None else [f"doc-{i}" for i in range(len(texts))]
    content = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts))
    if not (path.exists() and path.read_text() == content):
        path.write_text(content)
    return path


def write_csv(path: Path, texts: list[str], ids: list) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "extra"])
        writer.writerows([i, t, "x"] for i, t in zip(ids, texts))
    return path


def write_parquet(path: Path, texts: list[str], ids: list) -> Path:
    pq.write_table(pa.table({"id": ids, "text": texts}), path)
    return path


def write_text(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(text.replace("\n", " ") + "\n" for text in texts))
    return path


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """The installed command, in a fresh process, as a user runs it."""
    return subprocess.run(
        [str(EMBED_CORPUS), *map(str, args)],
        env=service_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Run:
    process: subprocess.CompletedProcess
    output: Path
    report: dict | None  # the --report-json figures, when the run finished


def embed_texts(folder: Path, texts: list[str], flags: str = "", env: dict[str, str] | None = None) -> Run:
    """`texts` as folder/corpus.jsonl (ids doc-0...) through the CLI into folder/out.parquet."""
    source = write_jsonl(folder / "corpus.jsonl", texts)
    output, report = folder / "out.parquet", folder / "report.json"
    process = run_cli(source, "--output", output, "--report-json", report, *flags.split(), env=env)
    return Run(process, output, json.loads(report.read_text()) if report.exists() else None)


def assert_clear_error(result: subprocess.CompletedProcess, status: int, *fragments: str) -> str:
    """A non-zero exit, one `embed-corpus: error:` sentence on stderr, no traceback."""
    assert result.returncode == status, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("embed-corpus: error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def read_output(path: Path) -> tuple[list, np.ndarray, list, dict]:
    table = pq.read_table(path)
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False))
    vectors = vectors.reshape(table.num_rows, -1)
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return table.column("id").to_pylist(), vectors, table.column("tokens").to_pylist(), metadata


def seed_vectors(http_url: str, texts: list[str]) -> np.ndarray:
    """What the service's `POST /` returns for these texts (float32, exactly as sent)."""
    vectors = []
    for start in range(0, len(texts), 64):
        response = httpx.post(f"{http_url}/", json={"input": texts[start : start + 64]}, timeout=120)
        response.raise_for_status()
        vectors.extend(response.json()["embedding"])
    return np.asarray(vectors, dtype=np.float32)


def token_counts(http_url: str, texts: list[str]) -> tuple[list[int], int]:
    """Tokens the service reads per text, and how many texts it truncates."""
    response = httpx.post(
        f"{http_url}/v1/embeddings", json={"input": texts, "token_counts": True}, timeout=120
    )
    response.raise_for_status()
    return [item["tokens"] for item in response.json()["data"]], int(response.headers["x-truncated-inputs"])


@contextmanager
def cli_target(target: str, http_url: str, folder: Path):
    """`--target` flags and environment for `local`, `http` (the session's uvicorn) or `lambda`
    (a fresh real RIE, stopped afterwards)."""
    if target == "local":
        yield [], None
    elif target == "http":
        yield ["--target", http_url], None
    else:
        rie = RieServer(folder / "rie.log")
        try:
            yield ["--target", "lambda://function", "--endpoint-url", rie.url], AWS_TEST_ENV
        finally:
            rie.stop()
