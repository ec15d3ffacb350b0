"""`make bench-scale`'s AWS Batch part: plan and submit 10^8 passages, a worker's speed-up with its
vCPUs, and the projected hours and $ of the 10^8-passage job on each engine.

- Planning and submitting: the real `BatchRun` (planner, plan document, job role check, array job
  submission with --detach) in a fresh process against moto's Batch and IAM (real API calls on
  loopback); the listing (objects of 10^5 passages, 1,200 bytes each) and S3 are simulated in
  memory as in bench/scale.py, since moto can't hold 120 GB of objects. Client CPU and peak RSS
  are the process's own.
- The worker: the child's own code (`shard_job.run_job` on `LocalTarget`, int8) over 256-token
  passages, pinned with taskset to 1 vCPU, then 2 vCPUs as one process on 2 threads (one split at a
  time) and as 2 single-threaded processes (splits in parallel, what the child does).
- The projection: passages x the measured CPU time per passage (`make bench-bulk`) / the worker's
  per-vCPU efficiency measured here / the share of a child's billed time spent embedding.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER_PASSAGES = 256  # per 1-vCPU measurement: ~11 s at 43.6 ms per passage
WORKER_REPEATS = 3  # each configuration's best of 3, interleaved: other work on a shared machine only slows a run
CHILD_START_S = 60.0  # ASSUMED, unmeasured: a Fargate task's image pull (~370 MB) and start, billed
TARGET_VCPUS = 1000


def say(message: str) -> None:
    print(f"[bench-scale] {message}", flush=True)


# --- planning and submitting, in its own process --------------------------------------------------


def submit_run(passages: int, moto_url: str) -> dict:
    """Plan `passages` and submit them to moto's Batch (--detach); the client's own figures."""
    import boto3

    from scale import simulated_inputs, simulated_storage

    from embedding_client.corpus.batch_run import BatchRun
    from embedding_client.corpus.locations import Location
    from embedding_client.corpus.options import Options
    from embedding_client.corpus.shards import DatasetStore

    queue, definition = setup_moto(boto3, moto_url)
    storage = simulated_storage()
    type(storage).list_objects = lambda self, bucket, prefix, where: iter(
        [(uri[len("s3://" + bucket) + 1 :], len(data), "") for uri, data in self.objects.items()
         if uri.startswith(f"s3://{bucket}/{prefix}")])
    type(storage).check_writable = lambda self, location: None
    started, cpu = time.perf_counter(), time.process_time()
    inputs = simulated_inputs(passages)
    options = Options(input=inputs.uri, output="s3://sim-vectors/vectors/", target=f"batch://{queue}",
                      region="us-east-1", shard_size=10_000, embedding_type="int8", batch_job_definition=definition, detach=True)
    store = DatasetStore(Location(options.output), storage)
    run = BatchRun(options, storage, inputs, store, inputs.version(), started, open(os.devnull, "w"), [])
    run.stream_out = lambda: open(os.devnull, "w")
    run.execute()
    submission = run.records.jobs()[-1]
    plan = json.loads(storage.objects[submission["plan"]])
    return {
        "passages": passages,
        "splits": len(plan["splits"]),
        "children": submission["children"],
        "array_jobs": len(submission["arrays"]),
        "plan_bytes": len(storage.objects[submission["plan"]]),
        "plan_submit_cpu_s": time.process_time() - cpu,
        "client_cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),  # the whole process: imports included
        "wall_s": time.perf_counter() - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def setup_moto(boto3, url: str) -> tuple[str, str]:
    """A queue on a Fargate Spot environment and a job definition whose role may read and write S3."""
    import urllib.request

    def client(name):
        return boto3.client(name, endpoint_url=url, region_name="us-east-1")

    request = urllib.request.Request(f"{url}/moto-api/config", data=json.dumps({"batch": {"use_docker": False}}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
    iam, ec2, batch = client("iam"), client("ec2"), client("batch")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    tag = str(time.monotonic_ns())
    role = iam.create_role(RoleName=f"job-{tag}", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(RoleName=f"job-{tag}", PolicyName="s3", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": ["arn:aws:s3:::sim-corpus/*", "arn:aws:s3:::sim-vectors/*"]}]}))
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"g-{tag}", Description="bench", VpcId=vpc)["GroupId"]
    environment = batch.create_compute_environment(
        computeEnvironmentName=f"spot-{tag}", type="MANAGED", state="ENABLED", serviceRole=role,
        computeResources={"type": "FARGATE_SPOT", "maxvCpus": TARGET_VCPUS, "subnets": [subnet], "securityGroupIds": [group]},
    )["computeEnvironmentArn"]
    batch.create_job_queue(jobQueueName=f"q-{tag}", state="ENABLED", priority=1,
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}])
    batch.register_job_definition(
        jobDefinitionName=f"w-{tag}", type="container", platformCapabilities=["FARGATE"],
        containerProperties={"image": "worker", "command": ["embed-corpus-worker", "run", "Ref::plan"], "jobRoleArn": role,
                             "resourceRequirements": [{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "4096"}]})
    return f"q-{tag}", f"w-{tag}"


def submissions(passages: list[int]) -> list[dict]:
    """Each plan size in a fresh client process, against a fresh moto server."""
    from processes import start_moto, stop

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        for count in passages:
            with open(Path(scratch) / f"moto-{count}.log", "wb") as log:
                server, url = start_moto(log)
                try:
                    child = subprocess.run(
                        [sys.executable, __file__, "--submit", str(count), url], capture_output=True, text=True,
                        env={**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                             "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": url, "AWS_REGION": "us-east-1"},
                    )
                finally:
                    stop(server)
            if child.returncode != 0:
                raise RuntimeError(child.stderr[-3000:])
            run = json.loads(child.stdout.strip().splitlines()[-1])
            say(f"  batch: {count:,} passages planned and submitted: {run['client_cpu_s']:.1f} s client CPU, "
                f"{run['peak_rss_mb']:.0f} MB peak RSS, {run['children']:,} children in {run['array_jobs']} array job(s)")
            runs.append(run)
    return runs


# --- the worker's speed-up with its vCPUs ----------------------------------------------------------


def worker_split(path: str, first: int, last: int) -> dict:
    """Run the child's shard job code over lines [first, last) of `path` after a warm-up; its rate."""
    from embedding_client.corpus.locations import Location, Storage
    from embedding_client.corpus.shard_job import JobOptions, job_event, run_job
    from embedding_client.corpus.inputs import InputFile
    from embedding_client.corpus.splits import Split
    from embedding_client.corpus.target_local import LocalTarget
    from embedding_client.corpus.targets import EmbedOptions

    target = LocalTarget(EmbedOptions(None, "int8"))
    lines = Path(path).read_bytes().splitlines(keepends=True)
    start, end = sum(map(len, lines[:first])), sum(map(len, lines[:last]))
    options = JobOptions("jsonl", False, "text", "id", "stop", True, "int8", None, None, 0, False, 256, {})  # ids: line numbers
    file = InputFile(Location(path), Path(path).name, os.path.getsize(path), "")
    warm = sum(map(len, lines[:8]))
    out = tempfile.mkdtemp(prefix="bench-worker-")
    run_job(job_event(options, file, Split(0, 0, warm), Location(f"{out}/warm.parquet"), None)["shard_job"], target, Storage())
    began, cpu = time.perf_counter(), time.process_time()
    result = run_job(job_event(options, file, Split(0, start, end), Location(f"{out}/part.parquet"), None)["shard_job"],
                     target, Storage())
    return {"rows": result["rows"], "seconds": time.perf_counter() - began, "cpu_s": time.process_time() - cpu}


def worker_rates(passages_per_vcpu: int = WORKER_PASSAGES, repeats: int = WORKER_REPEATS) -> list[dict]:
    """Passages/s at 1 vCPU, and at 2 vCPUs as threads and as splits in parallel."""
    from corpus import passages

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as scratch:
        path = Path(scratch) / "passages.jsonl"
        texts = passages(2 * passages_per_vcpu, seed=7)
        path.write_bytes(b"".join(json.dumps({"text": text}).encode() + b"\n" for text in texts))
        configs = [("1 vCPU, 1 thread", "0", 1, 1, passages_per_vcpu),
                   ("2 vCPUs, one split on 2 threads", "0,1", 2, 1, 2 * passages_per_vcpu),
                   ("2 vCPUs, 2 splits in parallel, 1 thread each (the child)", "0,1", 1, 2, 2 * passages_per_vcpu)]
        best: dict[str, dict] = {}
        for _ in range(repeats):
            for label, cpus, threads, processes, count in configs:
                per = count // processes
                children = [subprocess.Popen(
                    ["taskset", "-c", cpus, sys.executable, __file__, "--worker-split", str(path), str(n * per), str((n + 1) * per)],
                    stdout=subprocess.PIPE, text=True,
                    env={**os.environ, "EMBEDDING_THREADS": str(threads), "EMBEDDING_PRECISION": "int8"}) for n in range(processes)]
                results = [json.loads(child.communicate()[0].strip().splitlines()[-1]) for child in children]
                rows_done = sum(r["rows"] for r in results)
                measured = {"passages_per_s": sum(r["rows"] / r["seconds"] for r in results),
                            # passages per second of CPU the processes got, times the vCPUs they may use: what
                            # dedicated vCPUs give when other tenants take a share of a shared machine's
                            "dedicated_passages_per_s": rows_done / sum(r["cpu_s"] for r in results) * len(cpus.split(","))}
                for key, value in measured.items():
                    best.setdefault(label, {})[key] = max(best.get(label, {}).get(key, 0.0), value)
                say(f"  worker: {label}: {measured['passages_per_s']:.1f} passages/s "
                    f"({measured['dedicated_passages_per_s']:.1f} on dedicated vCPUs, from CPU time)")
        for label, cpus, threads, processes, count in configs:
            rows.append({"config": label, "vcpus": len(cpus.split(",")), "threads": threads, "processes": processes,
                         "passages": count, **best[label], "repeats": repeats})
    base, dedicated = rows[0]["passages_per_s"], rows[0]["dedicated_passages_per_s"]
    for row in rows:
        row["speedup"] = row["passages_per_s"] / base
        row["dedicated_speedup"] = row["dedicated_passages_per_s"] / dedicated
    return rows


# --- the projection -----------------------------------------------------------------------------


def projection(passages: int, rates: list[dict], child_vcpus: float = 2, memory_mb: int = 4096) -> dict:
    """10^8 passages at TARGET_VCPUS on each engine: CPU time from `make bench-bulk`, divided by the
    worker's per-vCPU efficiency and by the embedding share of a child's billed time."""
    from embedding_client import prices
    from embedding_client.corpus import batch_cost
    from embedding_client.corpus.batch_run import CHILD_SECONDS

    child = next(row for row in rates if row["processes"] == 2)  # what embed-corpus-worker runs
    per_vcpu = min(1.0, child["dedicated_speedup"] / child["vcpus"])
    busy = CHILD_SECONDS / (CHILD_SECONDS + CHILD_START_S)
    as_run = batch_cost.quotes(passages, "int8", TARGET_VCPUS, child_vcpus, memory_mb)
    on_batch = batch_cost.quotes(passages / per_vcpu / busy, "int8", TARGET_VCPUS, child_vcpus, memory_mb)
    # Fargate's lines carry the child's efficiency; Lambda's and the GPU's are the CPU time as measured
    quotes = [batch if batch.engine.startswith("Fargate") else plain for plain, batch in zip(as_run, on_batch)]
    spot = next(q for q in quotes if q.engine.startswith("Fargate Spot"))
    return {
        "passages": passages,
        "vcpus": TARGET_VCPUS,
        "per_vcpu_efficiency": per_vcpu,
        "busy_share": busy,
        "quotes": [{"engine": q.engine, "hours": q.hours, "usd": q.usd, "note": q.note} for q in quotes],
        "target_met": spot.hours <= 1.5 and spot.usd <= 25,
        "assumptions": [
            f"CPU time: {batch_cost.CPU_MS_PER_PASSAGE['int8']} ms per 256-token int8 passage on one vCPU ({batch_cost.CPU_SOURCE}); "
            "a Fargate vCPU assumed as fast as that one",
            f"a child's vCPUs used at {per_vcpu:.0%} each (the 2-vCPU speed-up on dedicated vCPUs above / 2)",
            f"each child (~{CHILD_SECONDS // 60} minutes of parts) also bills ~{CHILD_START_S:.0f} s to pull the image and start "
            f"(ASSUMED, unmeasured): {busy:.0%} of its billed time embeds",
            f"Fargate {prices.FARGATE_AS_OF}; Fargate Spot {prices.FARGATE_SPOT_AS_OF}",
            f"GPU: {prices.GPU_INSTANCE['name']} at ${prices.GPU_INSTANCE['usd_per_hour']}/h, {prices.GPU_INSTANCE['as_of']} "
            "(hours on one instance, not on the vCPUs)",
            "Lambda: the CPU time above at 1,769 MB per concurrent worker, without the Lambda fleet's scheduling efficiency "
            "(the Lambda projection above includes it); S3 requests, storage and CloudWatch not included anywhere",
        ],
    }


if __name__ == "__main__":
    if sys.argv[1] == "--submit":
        print(json.dumps(submit_run(int(sys.argv[2]), sys.argv[3])))
    elif sys.argv[1] == "--worker-split":
        print(json.dumps(worker_split(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
