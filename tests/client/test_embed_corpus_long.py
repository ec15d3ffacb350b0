"""embed-corpus --chunk-tokens on a 50 MB document, on every target, in bounded memory.

One document of 50,000,000 characters of real text (the standard library's sources and the
installed packages' READMEs) is far past what one chunk request carries (about 5.7 MB of
JSON), so the client sends it as runs of the chunker's pieces and stitches the chunks back.
On the local model, uvicorn over HTTP and the Lambda handler under the real RIE, the chunks
must be exactly the chunker's on the whole document at once, each vector must equal `POST /`
of its span (a sample), and the peak resident memory of the client and of the server must stay
under 1 GB (each process's own high-water mark, VmHWM). The model is a tiny random-weight BERT
with MiniLM's tokenizer and window, so the test is about chunking, stitching and memory, not
about the model's speed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest

from conftest import MODEL_DIR, RieServer, UvicornServer, service_env
from corpus_helpers import AWS_TEST_ENV, library_text, seed_vectors, write_jsonl

from embedding_service.chunking import Chunker
from embedding_service.model_config import read_model_spec
from embedding_service.tokenization import load_tokenizer

DOCUMENT_CHARS = 50_000_000
CHUNK_TOKENS = 254
PEAK_BYTES = 1 << 30  # the bound, client and server alike
# The CLI in a fresh process that writes its own peak resident memory (VmHWM, bytes) to a file
# on the way out: the process's own, where a parent's rusage would also count the parent's pages.
MEASURED_CLI = """
import sys
from embedding_client.corpus.cli import main
code = main(sys.argv[2:])
status = open("/proc/self/status").read()
peak_kib = int(status.split("VmHWM:")[1].split()[0])
open(sys.argv[1], "w").write(str(peak_kib * 1024))
sys.exit(code)
"""


def peak_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    import prepare_model
    from tiny_models import MINILM_WINDOW, build

    folder = tmp_path_factory.mktemp("long-model")
    prepare_model.main(["--model", str(build(MINILM_WINDOW, MODEL_DIR, folder)), "--output", str(folder / "prepared")])
    return folder / "prepared" / MINILM_WINDOW.name


@pytest.fixture(scope="module")
def document() -> str:
    return library_text(DOCUMENT_CHARS)


@pytest.fixture(scope="module")
def source(document, tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("long-source") / "manual.jsonl", [document])


@pytest.fixture(scope="module")
def expected(model, document) -> list[tuple[int, int]]:
    """The chunker's spans on the whole document at once (it reads one piece at a time)."""
    spec = read_model_spec(model)
    chunker = Chunker.of(load_tokenizer(model, spec.max_seq_length), spec.max_seq_length)
    return [(chunk.start, chunk.end) for chunk in chunker.chunk(document, CHUNK_TOKENS)[0]]


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    server = UvicornServer(tmp_path_factory.mktemp("long-uvicorn") / "server.log", MODEL_DIR=str(model))
    yield server
    server.stop()


def run_measured(folder: Path, source: Path, flags: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, int]:
    peak = folder / "client-peak"
    args = [source, "--output", folder / "out.parquet", "--chunk-tokens", CHUNK_TOKENS, "--quiet", *flags]
    result = subprocess.run([sys.executable, "-c", MEASURED_CLI, peak, *map(str, args)], env=service_env(**env),
                            capture_output=True, text=True, timeout=900)
    return result, int(peak.read_text()) if peak.exists() else -1


@pytest.mark.slow
@pytest.mark.parametrize("target", ["local", "http", "lambda"])
def test_a_50_mb_document_is_chunked_as_a_whole_and_embedded_in_bounded_memory_on_every_target(
        tmp_path, model, document, source, expected, server, target):
    env = {"MODEL_DIR": str(model)}
    rie = None
    if target == "local":
        flags, server_pid = [], None
    elif target == "http":
        flags, server_pid = ["--target", server.url], server.process.pid
    else:
        rie = RieServer(tmp_path / "rie.log", MODEL_DIR=str(model))
        flags = ["--target", "lambda://function", "--endpoint-url", rie.url]
        env.update(AWS_TEST_ENV)
    try:
        result, client_peak = run_measured(tmp_path, source, flags, env)
        if rie is not None:
            runtimes = psutil.Process(rie.process.pid).children(recursive=True)
            server_pid = next(p.pid for p in runtimes if "python" in p.name())
        server_peak = peak_bytes(server_pid) if server_pid else None
    finally:
        if rie is not None:
            rie.stop()
    assert result.returncode == 0, result.stderr
    print(f"{target}: client peak {client_peak / 1e6:.0f} MB"
          + (f", server peak {server_peak / 1e6:.0f} MB" if server_peak else ""))
    table = pq.read_table(tmp_path / "out.parquet", columns=["id", "chunk", "start", "end", "embedding"])
    assert table.column("chunk").to_pylist() == list(range(len(expected)))
    assert list(zip(table.column("start").to_pylist(), table.column("end").to_pylist())) == expected
    assert expected[-1][1] == len(document.rstrip())  # read to the end
    sample = range(0, len(expected), len(expected) // 16)
    vectors = np.asarray(table.column("embedding").take(list(sample)).to_pylist(), dtype=np.float32)
    texts = [document[expected[i][0] : expected[i][1]] for i in sample]
    assert np.array_equal(vectors, seed_vectors(server.url, texts))
    assert 0 < client_peak < PEAK_BYTES, f"client peak {client_peak / 1e6:.0f} MB"
    if server_peak is not None:
        assert server_peak < PEAK_BYTES, f"server peak {server_peak / 1e6:.0f} MB"
