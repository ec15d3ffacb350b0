"""A fixed, real-text corpus from the Python standard library's own docstrings.

Ships with every Python, so tests and benchmarks run offline and are reproducible:
the same seed gives the same texts on any machine with the same Python version.
"""

from __future__ import annotations

import importlib
import inspect
import random
import re

MODULES = (
    "argparse", "asyncio", "collections", "contextlib", "csv", "dataclasses", "datetime",
    "decimal", "email", "functools", "http.client", "inspect", "itertools", "json", "logging",
    "os", "pathlib", "pickle", "random", "re", "shutil", "socket", "sqlite3", "statistics",
    "string", "subprocess", "tarfile", "textwrap", "threading", "typing", "unittest",
    "urllib.parse", "uuid", "zipfile",
)


def _docstrings() -> list[str]:
    docs: list[str] = []
    for name in MODULES:
        module = importlib.import_module(name)
        for obj in [module, *vars(module).values()]:
            doc = inspect.getdoc(obj) if (inspect.ismodule(obj) or callable(obj)) else None
            if doc and doc not in docs:
                docs.append(doc)
    return docs


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def sentences(count: int, seed: int = 0) -> list[str]:
    """Short texts (~10-20 tokens): first sentences of docstrings."""
    pool = sorted({_clean(d.split("\n\n")[0].split(". ")[0]) for d in _docstrings()})
    pool = [s for s in pool if 6 <= len(s.split()) <= 18]
    return random.Random(seed).sample(pool, min(count, len(pool)))


def passages(count: int, seed: int = 0, min_words: int = 190) -> list[str]:
    """Long texts (~250+ tokens, beyond the model's 256): consecutive docstrings joined."""
    docs = [_clean(d) for d in _docstrings()]
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < count:
        start = rng.randrange(len(docs))
        words: list[str] = []
        for doc in docs[start:] + docs[:start]:
            words.extend(doc.split())
            if len(words) >= min_words:
                break
        out.append(" ".join(words[: min_words + rng.randrange(40)]))
    return out


def mixed(count: int, seed: int = 0) -> list[str]:
    """Short sentences, whole paragraphs and long passages, shuffled together."""
    rng = random.Random(seed)
    paragraphs = sorted({_clean(p) for d in _docstrings() for p in d.split("\n\n") if len(p) > 80})
    third = count // 3
    texts = sentences(third, seed) + rng.sample(paragraphs, third) + passages(count - 2 * third, seed)
    rng.shuffle(texts)
    return texts
