"""The machine's fp32 peak: the reference for "how close to the FLOP limit" in `make bench`.

References per thread count, the highest one taken:
- openblas: numpy's float32 square matmul, in a child process whose environment has
  OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed (for that measurement only), so OpenBLAS
  picks its kernel for this CPU; threadpoolctl reports which kernel ran ('architecture').
- openblas_avx2: the same with OPENBLAS_CORETYPE=Haswell for that child, on x86-64 when the
  kernel OpenBLAS picks is another one: a CPU that runs AVX-512 on 256-bit pipes (Zen 4) can
  be as fast or faster on the AVX2 kernel.
- onnxruntime: onnxruntime's own MatMul (MLAS, the kernels our model runs on), same matmul.
- nominal: fp32 FLOPs per cycle of the CPU generation (FMA width x pipes x 2) x the clock
  /proc/cpuinfo reports x threads; boost clocks can exceed it.
A measured throughput above the reference means the reference is wrong: `fraction` then
returns no fraction and says so (no fraction above 100% is ever printed).

    python bench/peak.py                     # measure and print JSON (1 and 2 threads)
"""

from __future__ import annotations

import json
import os
import platform
import sys

from bench_env import best_seconds
from processes import call_fresh

HIDDEN_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # pins that can hide the CPU's best kernel
SIZES = {True: (1024, 3), False: (2048, 8)}  # quick -> (n, repetitions)
AVX2_KERNEL = "Haswell"
NAMES = {
    "openblas": "numpy/OpenBLAS fp32 matmul, the kernel OpenBLAS picks",
    "openblas_avx2": "numpy/OpenBLAS fp32 matmul, AVX2 kernel",
    "onnxruntime": "onnxruntime fp32 MatMul",
    "nominal": "nominal: FMA width x reported clock",
}


def probe_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ours without the OpenBLAS kernel pins."""
    return {k: v for k, v in (os.environ if env is None else env).items() if k not in HIDDEN_ENV}


def _matmul_model(n: int) -> bytes:
    from onnx import TensorProto, helper

    io = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ABC"]
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "matmul", io[:2], io[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _onnxruntime(a, b, counts: list[int], reps: int) -> dict:
    import onnxruntime as ort

    out, model = {}, _matmul_model(a.shape[0])
    for t in counts:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = t, 1
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        out[str(t)] = 2 * a.shape[0] ** 3 / best_seconds(lambda: session.run(None, {"A": a, "B": b}), reps)
    return out


def probe(n: int, reps: int, counts: list[int], with_onnxruntime: bool = True) -> dict:
    """In the child: FLOP/s of the measured references per thread count, and what ran."""
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    rng = np.random.default_rng(0)
    a, b = (rng.random((n, n), dtype=np.float32) for _ in range(2))
    blas = [
        {k: i.get(k) for k in ("internal_api", "version", "architecture")}
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    openblas = {}
    for t in counts:
        with threadpool_limits(limits=t, user_api="blas"):
            openblas[str(t)] = 2 * n**3 / best_seconds(lambda: a @ b, reps)
    return {
        "n": n,
        "blas": blas,
        "env_seen": {k: os.environ.get(k) for k in HIDDEN_ENV},
        "openblas": openblas,
        "onnxruntime": _onnxruntime(a, b, counts, reps) if with_onnxruntime else {},
    }


def _child(n: int, reps: int, counts: list[int], coretype: str | None = None) -> dict:
    """probe() in a child without the OpenBLAS pins, or with this one kernel pinned (BLAS only)."""
    env = probe_env() | ({"OPENBLAS_CORETYPE": coretype} if coretype else {})
    return call_fresh(probe, n, reps, counts, not coretype, env=env)


def _avx2_reference(best: dict, n: int, reps: int, counts: list[int]) -> dict | None:
    """OpenBLAS's AVX2 kernel, where the one it picked is another (x86-64 only)."""
    kernel = best["blas"][0].get("architecture") if best["blas"] else None
    if platform.machine() not in ("x86_64", "AMD64") or kernel in (None, AVX2_KERNEL):
        return None
    data = _child(n, reps, counts, coretype=AVX2_KERNEL)
    ran = data["blas"][0].get("architecture") if data["blas"] else None
    return data if ran == AVX2_KERNEL else None


def _gflops(flops: dict) -> dict:
    return {t: round(v / 1e9, 1) for t, v in flops.items()}


def measure(quick: bool, counts: list[int], nominal_per_core: float | None, size: int | None = None) -> dict:
    """Every reference in GFLOP/s per thread count, and the highest as the machine's peak."""
    n, reps = SIZES[quick]
    data = _child(size or n, reps, counts)
    refs = {"openblas": _gflops(data["openblas"])}
    avx2 = _avx2_reference(data, size or n, reps, counts)
    if avx2:
        refs["openblas_avx2"] = _gflops(avx2["openblas"])
    refs["onnxruntime"] = _gflops(data["onnxruntime"])
    if nominal_per_core:
        refs["nominal"] = {str(t): round(nominal_per_core * t, 1) for t in counts}
    return choose(
        {
            "method": f"float32 {data['n']}x{data['n']} @ {data['n']}x{data['n']}, best of {reps}",
            "blas": data["blas"],
            "env_removed": {k: v for k, v in os.environ.items() if k in HIDDEN_ENV},
            "env_seen_by_probe": data["env_seen"],
            "references": refs,
        }
    )


def choose(peak: dict) -> dict:
    """The highest reference per thread count is the peak (measured ones are lower bounds)."""
    counts = sorted({t for ref in peak["references"].values() for t in ref}, key=int)
    best = {t: max(peak["references"], key=lambda r: peak["references"][r].get(t, 0)) for t in counts}
    return {**peak, "chosen": best, "gflops": {t: peak["references"][best[t]][t] for t in counts}}


def merge(first: dict, second: dict) -> dict:
    """Measured at the start and the end of a run: the higher of the two per reference (a busy
    neighbour only lowers a measurement)."""
    refs = {
        name: {t: max(v, second["references"].get(name, {}).get(t, 0)) for t, v in ref.items()}
        for name, ref in first["references"].items()
    }
    samples = [{"gflops": x["gflops"], "references": x["references"]} for x in (first, second)]
    method = first["method"] + "; measured at the start and the end of the run, the higher kept"
    return choose({**first, "method": method, "references": refs, "samples": samples})


def fraction(useful: float, reference: float | None) -> dict:
    """useful / reference, never above 1: above it, no fraction and a note that the reference
    is wrong (a reference is a ceiling; a measurement cannot beat a true one)."""
    if not reference:
        return {"fraction_of_peak": None}
    if useful > reference:
        return {
            "fraction_of_peak": None,
            "reference_wrong": f"{useful:.1f} GFLOP/s measured exceeds the {reference:.1f} GFLOP/s "
            "reference: the reference is wrong, not the measurement over 100%",
        }
    return {"fraction_of_peak": useful / reference}


def describe(peak: dict, threads: str) -> str:
    """'123.4 GFLOP/s (onnxruntime fp32 MatMul)' for one thread count."""
    return f"{peak['gflops'][threads]} GFLOP/s ({NAMES[peak['chosen'][threads]]})"


def main() -> int:
    from bench_env import machine

    print(json.dumps(measure(False, [1, 2], machine()["nominal_fp32_gflops_per_core"]), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
