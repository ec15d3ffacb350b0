#!/usr/bin/env bash
# Build local stand-ins for the two base images, which cannot be pulled here (Docker Hub and ECR
# Public are unreachable, Debian's apt mirror and PyPI are not):
#
#   localhost/standin-python:3.11-slim     for python:3.11-slim
#       Debian bookworm minbase (debootstrap) + python3, python3-venv, python3-pip,
#       ca-certificates; `python` -> python3; no EXTERNALLY-MANAGED marker (like the official
#       image, `pip install` outside a venv is allowed); the host's extra CA certificates
#       (/usr/local/share/ca-certificates) are trusted and PIP_CERT points at the system bundle,
#       so pip inside builds gets through this sandbox's TLS-intercepting egress.
#   localhost/standin-lambda-python:3.12   for public.ecr.aws/lambda/python:3.12
#       built from the first with scripts/standin/lambda.Containerfile: same contract (see
#       there), Python 3.11 instead of 3.12.
#
# Idempotent: an image that already exists is skipped (FORCE=1 rebuilds both); the debootstrap
# rootfs is cached as .tools/standin/bookworm-minbase-python.tar so a rebuild skips debootstrap.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/container_env.sh
source "$root/scripts/container_env.sh"

PY_IMAGE="$STANDIN_PYTHON_IMAGE"     # both defined in container_env.sh
LAMBDA_IMAGE="$STANDIN_LAMBDA_IMAGE"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache_dir="$root/.tools/standin"
rootfs_tar="$cache_dir/bookworm-minbase-python.tar"
FORCE="${FORCE:-0}"
net_args=()
[ -n "${PODMAN_NETWORK:-}" ] && net_args=(--network="$PODMAN_NETWORK")

log() { printf '[standin %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

work="$(mktemp -d /tmp/standin.XXXXXX)"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# --- 1. python:3.11-slim stand-in --------------------------------------------------------------
build_python() {
  mkdir -p "$cache_dir"
  if [ ! -s "$rootfs_tar" ]; then
    log "debootstrap bookworm minbase from $MIRROR (a few minutes)..."
    local t0=$SECONDS
    debootstrap --variant=minbase \
      --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$work/debootstrap" "$MIRROR"
    log "debootstrap done in $((SECONDS - t0))s; caching the rootfs as $rootfs_tar"
    tar -C "$work/debootstrap" --numeric-owner -cpf "$rootfs_tar.part" .
    mv "$rootfs_tar.part" "$rootfs_tar"
    rm -rf "$work/debootstrap"
  else
    log "using cached rootfs $rootfs_tar"
  fi

  local fs="$work/rootfs"
  mkdir -p "$fs"
  tar -C "$fs" --numeric-owner -xpf "$rootfs_tar"

  log "customising the rootfs (CA certificates, python symlink, slimming)"
  # Trust the same extra CAs as the host (TLS-intercepting egress in this sandbox).
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$fs/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$fs/usr/local/share/ca-certificates/"
  fi
  chroot "$fs" /usr/sbin/update-ca-certificates --fresh >/dev/null
  # Like the official image: python / pip on PATH, pip allowed outside a venv.
  ln -sf /usr/bin/python3 "$fs/usr/local/bin/python"
  [ -e "$fs/usr/bin/pip" ] || ln -sf pip3 "$fs/usr/bin/pip"
  rm -f "$fs"/usr/lib/python3*/EXTERNALLY-MANAGED
  # Slim like python:*-slim: no apt lists/caches, docs, man pages, locales.
  rm -rf "$fs"/var/lib/apt/lists/* "$fs"/var/cache/apt/*.bin "$fs"/var/cache/apt/archives/*.deb \
    "$fs"/usr/share/doc/* "$fs"/usr/share/man/* "$fs"/usr/share/info/* \
    "$fs"/var/log/*.log "$fs"/var/log/apt/* "$fs"/var/cache/debconf/*-old
  find "$fs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
  find "$fs" -xdev -name __pycache__ -type d -prune -exec rm -rf {} +
  # Empty /dev, /proc, /sys: the runtime provides them.
  rm -rf "${fs:?}"/dev/* "${fs:?}"/proc/* "${fs:?}"/sys/*

  log "importing $PY_IMAGE"
  tar -C "$fs" --numeric-owner -cpf - . | podman import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PYTHON_VERSION=3.11' \
    --change 'CMD ["python3"]' \
    --message "stand-in for python:3.11-slim (debootstrap bookworm minbase)" \
    - "$PY_IMAGE" >/dev/null
  rm -rf "$fs"
}

# --- 2. public.ecr.aws/lambda/python:3.12 stand-in --------------------------------------------
build_lambda() {
  local ctx="$work/lambda-context" arch rie
  case "$(uname -m)" in
    aarch64|arm64) arch=arm64 ;;
    *) arch=x86_64 ;;
  esac
  rie="$root/.tools/aws-lambda-rie-$arch"
  if [ ! -x "$rie" ]; then
    log "RIE binary missing; running scripts/fetch_rie.sh"
    "$root/scripts/fetch_rie.sh"
  fi
  mkdir -p "$ctx"
  cp "$root/scripts/standin/lambda.Containerfile" "$ctx/"
  install -m 0755 "$root/scripts/standin/lambda-entrypoint.sh" "$root/scripts/standin/bootstrap" "$ctx/"
  install -m 0755 "$rie" "$ctx/aws-lambda-rie"
  log "building $LAMBDA_IMAGE (RIE $arch, pip install awslambdaric)"
  podman build --layers "${net_args[@]}" \
    --build-arg "BASE_IMAGE=$PY_IMAGE" \
    -f "$ctx/lambda.Containerfile" -t "$LAMBDA_IMAGE" "$ctx"
}

t_all=$SECONDS
if [ "$FORCE" != 1 ] && podman image exists "$PY_IMAGE"; then
  log "$PY_IMAGE exists, skipping (FORCE=1 rebuilds)"
else
  t=$SECONDS
  build_python
  log "$PY_IMAGE ready in $((SECONDS - t))s"
fi
if [ "$FORCE" != 1 ] && podman image exists "$LAMBDA_IMAGE"; then
  log "$LAMBDA_IMAGE exists, skipping (FORCE=1 rebuilds)"
else
  t=$SECONDS
  build_lambda
  log "$LAMBDA_IMAGE ready in $((SECONDS - t))s"
fi
log "stand-in bases ready in $((SECONDS - t_all))s"
podman images --filter reference='localhost/standin-*' >&2
