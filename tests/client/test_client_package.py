"""The client package stands alone: importing it pulls in no framework, and a helper whose
framework is missing says how to install it instead of failing deep inside an import."""

from __future__ import annotations

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
