"""One stack, one thread count, in its own fresh process (started by bench/bench.py).

Loads the stack, then measures single-text latency and batch throughput for the short and
long texts the parent hands over, printing one JSON line per measurement (the parent turns
them into progress lines) and a final summary line. Vectors from the full pass over every
benchmark text are saved as .npy for the fidelity check. Nothing here knows about reports.

    python bench/bench_worker.py SPEC.json STACK THREADS DEVICE OUT_DIR
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

# What each stack is, in the words of the report (the key is the --stacks name).
STACKS = {
    "onnx": "this service, ONNX Runtime backend (default; both images)",
    "int8": "this service, ONNX Runtime backend on onnx/model_int8.onnx (EMBEDDING_PRECISION=int8: the "
    "economy path)",
    "torch": "this service, torch backend (EMBEDDING_BACKEND=torch; the seed's runtime)",
    "fastembed": "fastembed 0.9.1 on the same onnx/model.onnx (max length set to 256)",
    "st": "plain sentence-transformers on torch (the seed's stack)",
}
LABELS = {
    "onnx": "ours (ONNX)",
    "int8": "ours (ONNX int8)",
    "torch": "ours (torch)",
    "fastembed": "fastembed",
    "st": "sentence-transformers",
}
COLORS = {
    "onnx": "tab:blue",
    "int8": "tab:purple",
    "torch": "tab:orange",
    "fastembed": "tab:green",
    "st": "tab:red",
}
# Stacks that run another precision than fp32, and the file each precision loads from the
# model folder (the service's contract: settings.py maps EMBEDDING_PRECISION to the file).
PRECISION = {"int8": "int8"}
ONNX_FILES = {"fp32": "onnx/model.onnx", "int8": "onnx/model_int8.onnx"}

# A fresh `python -c` per run: exec -> first embedding of the seed's text. {model_dir} and
# {src} are filled in by the parent; `T0` marks the first line of Python that runs.
COLD_START = {
    "onnx": """
from embedding_service.model import model_load, model_infer
from embedding_service.settings import load_settings
T1 = time.time()
m = model_load(load_settings())
T2 = time.time()
v = model_infer("hello, world!", m)
""",
    "torch": None,  # same code as onnx; EMBEDDING_BACKEND=torch in the environment
    "int8": None,  # same code as onnx; EMBEDDING_PRECISION=int8 in the environment
    "st": """
from sentence_transformers import SentenceTransformer
T1 = time.time()
m = SentenceTransformer({model_dir!r}, device="cpu", local_files_only=True)
T2 = time.time()
v = m.encode("hello, world!")
""",
    "fastembed": """
from fastembed import TextEmbedding
from fastembed.common.model_description import ModelSource, PoolingType
T1 = time.time()
TextEmbedding.add_custom_model(model="local/all-MiniLM-L6-v2", pooling=PoolingType.MEAN,
    normalization=True, sources=ModelSource(hf="local/all-MiniLM-L6-v2"), dim=384,
    model_file="onnx/model.onnx")
m = TextEmbedding("local/all-MiniLM-L6-v2", specific_model_path={model_dir!r},
                  local_files_only=True, threads=1)
m.model.tokenizer.enable_truncation(max_length=256)
T2 = time.time()
v = list(m.embed(["hello, world!"]))[0]
""",
}
COLD_START["torch"] = COLD_START["int8"] = COLD_START["onnx"]


def cold_start_code(stack: str, model_dir: str) -> str:
    body = COLD_START[stack].format(model_dir=model_dir)
    return (
        "import time\nT0 = time.time()\nimport json\n"
        + body
        + "\nT3 = time.time()\nassert len(v) == 384\n"
        + "print(json.dumps({'t0': T0, 'imported': T1, 'loaded': T2, 'first': T3}))\n"
    )


def load_ours(stack: str, threads: int, device: str, model_dir: str):
    """This service's model.py, as the services load it."""
    from embedding_service.model import model_load
    from embedding_service.settings import load_settings

    precision = PRECISION.get(stack, "fp32")
    settings = load_settings(
        {
            "MODEL_DIR": model_dir,
            "EMBEDDING_BACKEND": "torch" if stack == "torch" else "onnx",
            "EMBEDDING_PRECISION": precision,
            "EMBEDDING_THREADS": str(threads),
            "EMBEDDING_DEVICE": device,
        }
    )
    if stack != "torch" and settings.onnx_file != ONNX_FILES[precision]:
        raise SystemExit(
            f"EMBEDDING_PRECISION={precision} loads {settings.onnx_file}, not {ONNX_FILES[precision]}"
        )
    model = model_load(settings)
    return lambda texts: model.embed(texts).vectors


def load_stack(stack: str, threads: int, device: str, model_dir: str):
    """Returns embed(texts) -> (n, 384) float32 array, with each stack's own defaults."""
    import numpy as np

    if stack in ("onnx", "int8", "torch"):
        return load_ours(stack, threads, device, model_dir)
    if stack == "st":
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        model = SentenceTransformer(model_dir, device=device, local_files_only=True)
        # encode's defaults (batch_size=32, length-sorted); the model's Normalize module normalises
        return lambda texts: model.encode(texts, convert_to_numpy=True)
    if stack == "fastembed":
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        TextEmbedding.add_custom_model(
            model="local/all-MiniLM-L6-v2",
            pooling=PoolingType.MEAN,
            normalization=True,
            sources=ModelSource(hf="local/all-MiniLM-L6-v2"),
            dim=384,
            model_file="onnx/model.onnx",
        )
        model = TextEmbedding(
            "local/all-MiniLM-L6-v2",
            specific_model_path=model_dir,
            local_files_only=True,
            threads=threads,
        )
        # fastembed reads model_max_length (512) from tokenizer_config.json; the model was
        # trained for 256 (sentence_bert_config.json), which is what the others use.
        model.model.tokenizer.enable_truncation(max_length=256)
        # embed's default batch_size=256 (one onnxruntime call for up to 256 texts)
        return lambda texts: np.asarray(list(model.embed(texts)), dtype=np.float32)
    raise SystemExit(f"unknown stack {stack!r}")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # ru_maxrss is KiB


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def measure_latency(embed, texts, tokens, calls: int, sync) -> dict:
    for text in texts[:3]:  # warm-up
        embed([text])
    sync()
    latencies, used_tokens = [], 0
    for i in range(calls):
        j = i % len(texts)
        started = time.perf_counter()
        embed([texts[j]])
        sync()
        latencies.append(time.perf_counter() - started)
        used_tokens += tokens[j]
    total = sum(latencies)
    return {
        "batch": 1,
        "reps": calls,
        "median_s": statistics.median(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": total / calls * 1000,
        "max_ms": max(latencies) * 1000,
        "texts_per_s": calls / total,
        "tokens_per_s": used_tokens / total,
    }


def measure_batch(embed, texts, tokens, reps: dict, warm: bool, sync):
    """Median of min_reps..max_reps timed calls: more while they fit in budget_s, fewer
    (down to one) when the next would pass cap_s."""
    if warm:
        embed(texts)
        sync()
    times, out = [], None
    while True:
        started = time.perf_counter()
        out = embed(texts)
        sync()
        times.append(time.perf_counter() - started)
        projected = sum(times) + times[-1]
        if len(times) >= reps["max_reps"] or projected > reps["cap_s"]:
            break
        if len(times) >= reps["min_reps"] and projected > reps["budget_s"]:
            break
    median = statistics.median(times)
    return out, {
        "batch": len(texts),
        "reps": len(times),
        "times_s": [round(t, 5) for t in times],
        "median_s": median,
        "texts_per_s": len(texts) / median,
        "tokens_per_s": sum(tokens) / median,
        "warmed": warm,
    }


def run(spec: dict, stack: str, threads: int, device: str, out_dir: Path) -> None:
    import numpy as np

    started = time.perf_counter()
    embed = load_stack(stack, threads, device, spec["model_dir"])
    load_s = time.perf_counter() - started
    summary = {
        "type": "done",
        "stack": stack,
        "threads": threads,
        "device": device,
        "load_s": load_s,
        "rss_after_load_mb": rss_mb(),
    }
    sync = lambda: None  # noqa: E731
    if device.startswith("cuda"):
        import torch

        sync = torch.cuda.synchronize
        summary["gpu_name"] = torch.cuda.get_device_name(0)
    for length in ("short", "long"):
        texts, tokens = spec["texts"][length], spec["tokens"][length]
        per_text_s = None
        for batch in spec["batches"]:
            if batch > len(texts):
                continue
            if batch == 1:
                result = measure_latency(embed, texts, tokens, spec["latency_calls"][length], sync)
                per_text_s = result["mean_ms"] / 1000
            else:
                # A warm-up call of the same size unless it would take long; then the smaller
                # batches before it have already warmed the code paths (and the median of
                # the timed calls absorbs any allocator growth on the first).
                warm = (per_text_s or 0.0) * batch < spec["reps"]["warm_cap_s"]
                vectors, result = measure_batch(
                    embed, texts[:batch], tokens[:batch], spec["reps"], warm, sync
                )
                per_text_s = result["median_s"] / batch
                if batch == len(texts):
                    np.save(out_dir / f"{stack}-{device}-t{threads}-{length}.npy", vectors)
            emit(
                {
                    "type": "result",
                    "stack": stack,
                    "threads": threads,
                    "device": device,
                    "length": length,
                    **result,
                }
            )
        vec_file = out_dir / f"{stack}-{device}-t{threads}-{length}.npy"
        if not vec_file.exists():  # the batch sizes did not cover every text: one untimed pass
            np.save(vec_file, embed(texts))
        summary[f"peak_rss_after_{length}_mb"] = peak_rss_mb()
    summary["peak_rss_mb"] = peak_rss_mb()
    from bench_env import package_versions

    summary["versions"] = package_versions()
    emit(summary)


def reference(spec: dict, out_dir: Path) -> None:
    """sentence-transformers' own vectors for every benchmark text (when `st` is not timed)."""
    import numpy as np

    embed = load_stack("st", 2, "cpu", spec["model_dir"])
    for length in ("short", "long"):
        np.save(out_dir / f"st-cpu-t2-{length}.npy", embed(spec["texts"][length]))
    emit({"type": "done", "stack": "st", "reference_only": True})


def main() -> None:
    spec_path, stack, threads, device, out_dir = sys.argv[1:6]
    spec = json.loads(Path(spec_path).read_text())
    threads_n = int(threads)
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, allowed[: max(1, threads_n)])  # t threads on t CPUs
    if stack == "reference":
        reference(spec, Path(out_dir))
    else:
        run(spec, stack, threads_n, device, Path(out_dir))


if __name__ == "__main__":
    main()
