#!/usr/bin/env bash
# Fetch the real AWS Lambda Runtime Interface Emulator (both architectures) into .tools/.
# The RIE ships inside the aws-sam-cli wheel on PyPI, which is reachable where Docker Hub and
# ECR Public are not; we take only the two binaries from it. Idempotent.
set -euo pipefail
SAM_VERSION="${SAM_VERSION:-1.170.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.tools"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3
if [ -x "$dest/aws-lambda-rie-x86_64" ] && [ -x "$dest/aws-lambda-rie-arm64" ]; then
  echo "RIE already in $dest"
  exit 0
fi
mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "Downloading aws-sam-cli==$SAM_VERSION wheel (for the Lambda Runtime Interface Emulator)..."
"$python" -m pip download --quiet --no-deps --disable-pip-version-check "aws-sam-cli==$SAM_VERSION" -d "$tmp"
for arch in x86_64 arm64; do
  "$python" - "$tmp" "$dest" "$arch" <<'PY'
import glob, sys, zipfile
tmp, dest, arch = sys.argv[1:]
wheel = glob.glob(f"{tmp}/aws_sam_cli-*.whl")[0]
with zipfile.ZipFile(wheel) as zf:
    data = zf.read(f"samcli/local/rapid/aws-lambda-rie-{arch}")
with open(f"{dest}/aws-lambda-rie-{arch}", "wb") as out:
    out.write(data)
PY
  chmod +x "$dest/aws-lambda-rie-$arch"
done
# Native-architecture name used by `make lambda-local` and the tests.
case "$(uname -m)" in
  aarch64|arm64) ln -sf aws-lambda-rie-arm64 "$dest/aws-lambda-rie" ;;
  *) ln -sf aws-lambda-rie-x86_64 "$dest/aws-lambda-rie" ;;
esac
echo "RIE ready: $dest/aws-lambda-rie-x86_64, $dest/aws-lambda-rie-arm64"
