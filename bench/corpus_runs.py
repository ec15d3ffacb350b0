"""Running `embed-corpus` for `make bench-bulk`: the helpers bulk.py and its section modules
(bulk_reuse.py, bulk_chunks.py) share, so that the sections import them from here and bulk.py
imports the sections, with no import circle.

- `embed_corpus`: one run of the installed command in a clean environment, its --report-json
  plus the client process's CPU seconds and wall time;
- `Fleet`: N real Lambda Runtime Interface Emulators, each pinned to its own CPU;
- `write_formats` / `write_jsonl`: the same texts as every input format the command reads;
- `service_settings`: the service's settings (MODEL_DIR...), as the local target will read them.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

import lambda_log
import processes
from bench_services import start_rie
from processes import free_port, wait_for_port

EMBED_CORPUS = Path(sys.executable).parent / "embed-corpus"
FORMATS = ("jsonl", "csv", "parquet", "text")
DROP = ("EMBED", "API_KEY", "AWS_")  # the caller's service settings and AWS credentials
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def say(message: str) -> None:
    print(f"[bench-bulk] {message}", flush=True)


def write_jsonl(path: Path, texts: list[str]) -> Path:
    """The texts as JSONL rows {"id": "doc-<i>", "text": ...}."""
    path.write_text("".join(json.dumps({"id": f"doc-{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


def write_formats(folder: Path, texts: list[str]) -> dict[str, Path]:
    """The same texts (ids doc-0...) in each input format."""
    ids = [f"doc-{i}" for i in range(len(texts))]
    files = {fmt: folder / f"corpus.{'txt' if fmt == 'text' else fmt}" for fmt in FORMATS}
    write_jsonl(files["jsonl"], texts)
    pacsv.write_csv(pa.table({"id": ids, "text": texts}), files["csv"])
    pq.write_table(pa.table({"id": ids, "text": texts}), files["parquet"])
    files["text"].write_text("".join(t + "\n" for t in texts))
    return files


def embed_corpus(source: Path, folder: Path, *args: str, env: dict | None = None) -> dict:
    """One run of the installed command: its report, plus the client process's CPU seconds."""
    output, report = folder / "out.parquet", folder / "report.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [str(EMBED_CORPUS), str(source), "--output", str(output), "--overwrite", "-q",
         "--report-json", str(report), *args],
        env=processes.child_env(DROP, **(env or {})), capture_output=True, text=True,
    )
    if done.returncode:
        raise RuntimeError(f"{' '.join(map(str, done.args))} exited {done.returncode}: {done.stderr.strip()}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(report.read_text())
    result["client_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["process_wall_s"] = wall
    result["sustained_texts_per_s"] = result["texts"] / result["embed_s"]
    return result


def service_settings():
    """The service's settings as the fleet and the local target will read them (MODEL_DIR...)."""
    from embedding_service.settings import load_settings

    return load_settings()


class Fleet:
    """N real RIEs, each with its own runtime API address and pinned to its own CPU."""

    def __init__(self, count: int, folder: Path, precision: str = "fp32"):
        self.logs = [folder / f"rie-{precision}-{i}.log" for i in range(count)]
        self.ports = [free_port() for _ in range(count)]
        model_dir, env = str(service_settings().model_dir), {"EMBEDDING_PRECISION": precision}
        self.processes = []
        for index, (port, log) in enumerate(zip(self.ports, self.logs)):
            with open(log, "wb") as handle:
                self.processes.append(start_rie("onnx", model_dir, port, handle, cpu=index, extra_env=env))
        try:
            for port in self.ports:
                wait_for_port(port)
        except Exception:
            self.__exit__()
            raise

    @property
    def urls(self) -> str:
        return ",".join(f"http://127.0.0.1:{port}" for port in self.ports)

    def embed(self, source: Path, folder: Path, *args: str) -> dict:
        """`embed-corpus --target lambda://function` over this fleet."""
        return embed_corpus(
            source, folder, "--target", "lambda://function", "--endpoint-url", self.urls, *args, env=AWS_ENV
        )

    def warm(self, source: Path, folder: Path) -> None:
        """Every sandbox past its init, so the figures are a warm fleet's (small requests reach each)."""
        self.embed(source, folder, "--batch-size", "8")

    def billed_ms(self) -> list[float]:
        """The emulators' own REPORT lines for the embedding invocations (the probe's first excluded)."""
        logs = [lambda_log.parse(log.read_text(errors="replace")) for log in self.logs]
        reports = [report for log in logs for report in log["reports"]]
        return [r["billed_ms"] for r in reports if r["init_duration_ms"] is None]

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            processes.stop(process)
