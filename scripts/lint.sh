#!/usr/bin/env bash
# Static checks: hadolint (Dockerfiles), shellcheck (scripts), terraform fmt, checkov (terraform).
# checkov lives in its own venv under .tools/ (it pins many packages of its own).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
checkov_venv="$root/.tools/checkov-venv"

echo "==> hadolint + shellcheck"
bash scripts/images.sh lint

echo "==> terraform fmt -check"
if command -v terraform >/dev/null; then
  terraform fmt -check -recursive -diff terraform
else
  echo "error: terraform not found; install Terraform >= 1.5 to lint terraform/" >&2
  exit 1
fi

echo "==> checkov $CHECKOV_VERSION"
if ! "$checkov_venv/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
  echo "    installing checkov==$CHECKOV_VERSION into $checkov_venv (make setup does this too)"
  python3 -m venv "$checkov_venv"
  "$checkov_venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  touch "$checkov_venv/.installed"
fi
"$checkov_venv/bin/checkov" -d terraform --config-file terraform/.checkov.yaml
echo "lint: all clean"
