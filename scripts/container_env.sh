#!/usr/bin/env bash
# Rootful podman set-up for building and running the images on a machine without a Docker engine.
#
#   source scripts/container_env.sh     # installs what is missing, exports CONTAINERS_CONF
#   scripts/container_env.sh            # same, and prints the export line to paste into a shell
#
# Idempotent: apt-get runs only when podman, debootstrap or runc is missing; the config files are
# rewritten each time (cheap) so the ulimit caps always match the current machine.
#
# Why these settings:
#   runtime = "runc"          crun fails on this host's hybrid cgroup v1/v2 set-up.
#   cgroup_manager = cgroupfs no systemd (PID 1 is not systemd in CI sandboxes).
#   events_logger = "file"    no journald.
#   default_ulimits           podman's defaults (nofile 1048576, nproc 4194304) exceed the hard
#                             limits a container may be given here; cap at `ulimit -Hn` and
#                             min(`ulimit -Hu`, pid_max), computed now, never hard-coded.
# Networking: podman's default CNI bridge works here (builds reach PyPI, `-p 127.0.0.1:H:C`
# port mapping works), so it is left at the default; set PODMAN_NETWORK=host for the scripts
# where bridge networking is unavailable (no iptables / netns).

# Sourced or executed? (decides between `return` and `exit`, and whether to print exports)
_ce_sourced=0
(return 0 2>/dev/null) && _ce_sourced=1
_ce_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_ce_need=()
command -v podman >/dev/null 2>&1 || _ce_need+=(podman)
command -v debootstrap >/dev/null 2>&1 || _ce_need+=(debootstrap)
command -v runc >/dev/null 2>&1 || _ce_need+=(runc)
if [ "${#_ce_need[@]}" -gt 0 ]; then
  echo "container_env: installing ${_ce_need[*]} (apt)..." >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "container_env: need root for apt-get install and rootful podman" >&2
    if [ "$_ce_sourced" = 1 ]; then return 1; fi
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends podman debootstrap runc \
    uidmap iptables ca-certificates >&2
fi

_ce_dir="$_ce_root/.tools/containers"
mkdir -p "$_ce_dir"

_ce_nofile="$(ulimit -Hn)"
_ce_nproc="$(ulimit -Hu)"
_ce_pidmax="$(cat /proc/sys/kernel/pid_max)"
[ "$_ce_nofile" = unlimited ] && _ce_nofile=1048576
if [ "$_ce_nproc" = unlimited ] || [ "$_ce_nproc" -gt "$_ce_pidmax" ]; then
  _ce_nproc="$_ce_pidmax"
fi

cat >"$_ce_dir/containers.conf" <<CONF
# Written by scripts/container_env.sh; regenerated on every run.
[containers]
default_ulimits = [
  "nofile=${_ce_nofile}:${_ce_nofile}",
  "nproc=${_ce_nproc}:${_ce_nproc}",
]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF

cat >"$_ce_dir/storage.conf" <<CONF
# Written by scripts/container_env.sh: overlay on the host's ext4, rootful.
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF

export CONTAINERS_CONF="$_ce_dir/containers.conf"
export CONTAINERS_STORAGE_CONF="$_ce_dir/storage.conf"
# Local stand-ins for python:3.11-slim and public.ecr.aws/lambda/python:3.12 (one definition,
# shared by standin_bases.sh, which builds them, and images.sh, which builds on them).
export STANDIN_PYTHON_IMAGE="${STANDIN_PYTHON_IMAGE:-localhost/standin-python:3.11-slim}"
export STANDIN_LAMBDA_IMAGE="${STANDIN_LAMBDA_IMAGE:-localhost/standin-lambda-python:3.12}"
unset _ce_need _ce_dir _ce_nofile _ce_nproc _ce_pidmax

# Executed (not sourced): print what to export.
if [ "$_ce_sourced" = 0 ]; then
  echo "export CONTAINERS_CONF=$CONTAINERS_CONF"
  echo "export CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
fi
unset _ce_root _ce_sourced
