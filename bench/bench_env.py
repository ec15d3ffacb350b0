"""The machine, the model's FLOPs, other processes' load, and installed dependency sizes.

Helpers for bench/bench.py; each function returns plain JSON-able dicts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (
    "onnxruntime",
    "torch",
    "sentence-transformers",
    "transformers",
    "fastembed",
    "numpy",
    "tokenizers",
    "fastapi",
    "uvicorn",
    "awslambdaric",
    "httpx",
)

# Zen generations by (family, model) for the CPUs a cloud VM usually reports as "AMD EPYC".
AMD_MODELS = {
    (25, range(0x00, 0x10)): "Zen 3 (Milan)",
    (25, range(0x10, 0x20)): "Zen 4 (Genoa)",
    (25, range(0xA0, 0xB0)): "Zen 4c (Bergamo)",
    (23, range(0x30, 0x40)): "Zen 2 (Rome)",
    (26, range(0x00, 0x20)): "Zen 5 (Turin)",
}
# fp32 FLOPs per cycle per core: two FMA pipes x 8 lanes (256-bit) x 2 on Zen 2-4 (Zen 4 runs AVX-512
# on those 256-bit pipes), 16 lanes (512-bit) on Zen 5
FLOPS_PER_CYCLE = {
    "Zen 2 (Rome)": 32,
    "Zen 3 (Milan)": 32,
    "Zen 4 (Genoa)": 32,
    "Zen 4c (Bergamo)": 32,
    "Zen 5 (Turin)": 64,
}


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                key, value = (x.strip() for x in line.split(":", 1))
                info.setdefault(key, value)
    except OSError:
        pass
    return info


def package_versions() -> dict:
    """Installed versions of the packages the benchmark compares (absent ones left out)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def machine() -> dict:
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    family, model = int(cpu.get("cpu family", 0) or 0), int(cpu.get("model", 0) or 0)
    generation = None
    if cpu.get("vendor_id") == "AuthenticAMD":
        generation = next(
            (name for (fam, models), name in AMD_MODELS.items() if fam == family and model in models), None
        )
    try:
        mem_kb = int(
            next(
                line.split()[1]
                for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")
            )
        )
    except (OSError, StopIteration):
        mem_kb = 0
    versions = package_versions()
    try:
        l3 = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
    except OSError:
        l3 = None
    mhz = float(cpu.get("cpu MHz", 0) or 0) or None
    per_cycle = FLOPS_PER_CYCLE.get(generation or "")
    return {
        "cpu_model": cpu.get("model name", platform.processor() or "unknown"),
        "cpu_mhz_reported": mhz,
        "l3_cache": l3,
        "nominal_fp32_gflops_per_core": round(per_cycle * mhz / 1000, 1) if per_cycle and mhz else None,
        "cpu_vendor": cpu.get("vendor_id"),
        "cpu_family_model": f"family {family} model {model} stepping {cpu.get('stepping', '?')}",
        "cpu_generation": generation,
        "cpu_flags_of_note": sorted(
            flags & {"avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile"}
        ),
        "hypervisor": "hypervisor" in flags,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_kb / 1e6, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "env": {
            k: os.environ[k]
            for k in ("OPENBLAS_CORETYPE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
            if k in os.environ
        },
        "load_average_at_start": list(os.getloadavg()),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def best_seconds(run, repeats: int, sync=lambda: None) -> float:
    """The fastest of `repeats` timed calls after a warm-up call (allocations, kernel choice,
    cuDNN/cuBLAS heuristics); `sync` waits for a device to finish."""
    run()
    sync()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - started)
    return min(times)


def cpu_snapshot() -> dict:
    """Busy CPU seconds of the whole machine (/proc/stat) and of this process tree."""
    import resource

    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    hz = os.sysconf("SC_CLK_TCK")
    own = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    return {
        "busy_s": (user + nice + system + irq + softirq) / hz,
        "steal_s": steal / hz,
        "own_s": own,
        "wall": time.monotonic(),
    }


def other_load(start: dict, end: dict) -> dict:
    """How much of the machine other processes used while the benchmark ran (noise indicator)."""
    wall = end["wall"] - start["wall"]
    cpus = len(os.sched_getaffinity(0))
    other = max(0.0, (end["busy_s"] - start["busy_s"]) - (end["own_s"] - start["own_s"]))
    return {
        "other_cpu_s": round(other, 1),
        "other_share": round(other / (wall * cpus), 3) if wall else None,
        "steal_share": round((end["steal_s"] - start["steal_s"]) / (wall * cpus), 3) if wall else None,
        "load_average_at_end": list(os.getloadavg()),
    }


def model_flops(model_dir: Path) -> dict:
    """FLOPs per token of the BERT encoder (multiply-add = 2 FLOPs), from config.json.

    Per layer and token: Q, K, V, output projections 4 * 2h^2; feed-forward 2 * 2hi;
    attention scores QK^T and weights x V 2 * 2hL for sequence length L. Embedding lookups,
    layer norms, softmax and GELU are ignored (well under 1%)."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    h, i, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    linear = n * (8 * h * h + 4 * h * i)
    return {
        "layers": n,
        "hidden": h,
        "intermediate": i,
        "linear_flops_per_token": linear,
        "attention_flops_per_token_per_position": n * 4 * h,
        "flops_per_token_at_256": linear + n * 4 * h * 256,
        "linear_params": n * (4 * h * h + 2 * h * i),
    }


def flops_for_lengths(spec: dict, lengths: list[int]) -> float:
    """Useful FLOPs for texts of these token counts (each attends to its own length)."""
    return sum(
        spec["linear_flops_per_token"] * n + spec["attention_flops_per_token_per_position"] * n * n
        for n in lengths
    )


def gpu() -> dict:
    probe = (
        "import json, torch; a = torch.cuda.is_available(); "
        "print(json.dumps({'available': a, 'name': torch.cuda.get_device_name(0) if a else None}))"
    )
    try:
        out = json.loads(
            subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
            ).stdout
        )
    except Exception as error:  # torch missing or broken: no GPU path either way
        return {"available": False, "note": f"torch CUDA probe failed: {error}"}
    if not out["available"]:
        out["note"] = "no GPU on this machine (torch.cuda.is_available() is False)"
    return out


# Installed size of each deployment target's Python dependencies.
SIZE_TARGETS = {
    "lambda-onnx": {
        "label": "Lambda image deps (requirements-lambda.txt, --no-deps as Dockerfile.lambda installs it)",
        "args": ["--no-deps", "-r", "package/requirements-lambda.txt"],
    },
    "fastapi-onnx": {
        "label": "FastAPI image deps (requirements.txt)",
        "args": ["-r", "package/requirements.txt"],
    },
    "fastapi-torch": {
        "label": "FastAPI + torch backend (requirements.txt + requirements-torch.txt + torch)",
        "args": ["-r", "package/requirements.txt", "-r", "package/requirements-torch.txt", "torch==2.13.0"],
    },
    "seed-st": {
        "label": "seed stack: torch 2.13.0 CPU + sentence-transformers 6.2.0",
        "args": ["torch==2.13.0", "sentence-transformers==6.2.0"],
    },
    "fastembed": {"label": "fastembed 0.9.1", "args": ["fastembed==0.9.1"]},
}
STACK_SIZE_TARGET = {  # every stack in bench_worker.STACKS
    "onnx": "lambda-onnx",
    "int8": "lambda-onnx",  # same dependencies; the image bakes the int8 file instead
    "torch": "fastapi-torch",
    "st": "seed-st",
    "fastembed": "fastembed",
}


def _tree_bytes(root: Path) -> int:
    total = 0
    for path, _, files in os.walk(root):
        for name in files:
            p = Path(path) / name
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def installed_sizes(cache: Path, progress) -> dict:
    """`pip install --target` each target into cache/NAME once (reused while the inputs match)."""
    results = {}
    for name, target in SIZE_TARGETS.items():
        inputs = [a if not a.endswith(".txt") else a + ":" + (REPO / a).read_text() for a in target["args"]]
        # requirements.txt includes requirements-lambda.txt: hash both whenever either is named
        inputs += [(REPO / "package/requirements-lambda.txt").read_text(), sys.version.split()[0]]
        key = hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:16]
        dest = cache / name
        stamp = cache / f"{name}.json"
        if stamp.exists() and json.loads(stamp.read_text()).get("key") == key and dest.is_dir():
            results[name] = json.loads(stamp.read_text())
            progress(f"sizes: {name} cached ({results[name]['mb']} MB)")
            continue
        progress(
            f"sizes: pip install --target {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest} ..."
        )
        shutil.rmtree(dest, ignore_errors=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(dest),
            *target["args"],
        ]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            results[name] = {"label": target["label"], "error": proc.stderr.strip()[-800:]}
            progress(f"sizes: {name} FAILED: {proc.stderr.strip()[-200:]}")
            continue
        top = sorted(
            ((p.name, _tree_bytes(p) if p.is_dir() else p.stat().st_size) for p in dest.iterdir()),
            key=lambda x: -x[1],
        )[:6]
        record = {
            "key": key,
            "label": target["label"],
            "pip_args": target["args"],
            "mb": round(_tree_bytes(dest) / 1e6, 1),
            "largest": {n: round(b / 1e6, 1) for n, b in top},
        }
        stamp.write_text(json.dumps(record, indent=1))
        results[name] = record
        progress(f"sizes: {name} {record['mb']} MB")
    return results
