"""The client package stands alone: importing it pulls in no framework, and a helper whose
framework is missing says how to install it instead of failing deep inside an import."""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import REPO

CLIENT_SRC = str(REPO / "client" / "src")
FRAMEWORKS = ("openai", "langchain_openai", "llama_index", "haystack", "litellm", "chromadb")


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": CLIENT_SRC, "PATH": "/usr/bin:/bin"})


def test_given_a_plain_import_then_no_framework_is_loaded():
    done = run(f"import sys, embedding_client; print([m for m in {FRAMEWORKS!r} if m in sys.modules])")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_given_a_missing_framework_then_the_helper_names_the_extra_to_install():
    # sys.modules[name] = None is Python's own way to make `import name` fail as if it were absent.
    for module, call, extra in [
        ("langchain_openai", "langchain_embeddings('http://127.0.0.1:9', api_key='k')", "langchain"),
        ("llama_index.embeddings.openai_like", "llamaindex_embeddings('http://127.0.0.1:9', api_key='k')",
         "llamaindex"),
        ("openai", "openai_client('http://127.0.0.1:9', api_key='k')", "openai"),
    ]:
        done = run(f"import sys; sys.modules[{module!r}] = None\nimport embedding_client as c\nc.{call}")
        assert done.returncode != 0
        assert f"pip install 'embedding-client[{extra}]'" in done.stderr.strip().splitlines()[-1]


def test_given_a_venv_with_only_the_client_then_http_works_and_local_names_the_extra(tmp_path, http_url):
    """`pip install ./client` alone: no torch, no onnxruntime, no service; the HTTP target embeds, and
    `--target local` says in one sentence what to install."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    source = tmp_path / "client"  # a copy: pip builds in place and would leave build/ in the checkout
    shutil.copytree(REPO / "client", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                              str(source)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    python = str(venv / "bin" / "python")
    absent = subprocess.run([python, "-c", "import importlib.util as u; print([m for m in "
                             "('torch', 'onnxruntime', 'embedding_service') if u.find_spec(m)])"],
                            capture_output=True, text=True, timeout=60)
    assert absent.stdout.strip() == "[]", absent.stdout + absent.stderr
    cli = str(venv / "bin" / "embed-corpus")
    corpus = REPO / "docs" / "examples" / "corpus.jsonl"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    assert subprocess.run([cli, "--help"], capture_output=True, timeout=60, env=env).returncode == 0
    out = tmp_path / "vectors.parquet"
    done = subprocess.run([cli, str(corpus), "--output", str(out), "--target", http_url, "--quiet"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = subprocess.run([python, "-c", f"import pyarrow.parquet as pq; print(pq.read_table({str(out)!r}).num_rows)"],
                          capture_output=True, text=True, timeout=60)
    expected = sum(1 for line in corpus.read_text().splitlines() if line.strip())
    assert rows.stdout.strip() == str(expected), rows.stderr
    local = subprocess.run([cli, str(corpus), "--output", str(tmp_path / "local.parquet")],
                           capture_output=True, text=True, timeout=120, env=env)
    assert local.returncode == 2
    lines = local.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install" in lines[0] and "embedding-client[local]" in lines[0], local.stderr
    assert "Traceback" not in local.stderr and not (tmp_path / "local.parquet").exists()
