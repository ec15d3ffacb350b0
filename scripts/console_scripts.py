"""Write a launcher on PATH for each console script a pyproject.toml declares ([project.scripts]).

Dockerfile.lambda's batch stage copies the client package into the task root as a folder, not as
an installed distribution, so pip never writes its console scripts; this writes the same thing pip
would: an executable that imports the entry point and exits with its return value. The launcher
runs the interpreter directly (no shell in between), so the worker is PID 1 and receives SIGTERM.

    python scripts/console_scripts.py PYPROJECT BINDIR REQUIRED_NAME...

Exits non-zero, naming the script, when a REQUIRED_NAME is not declared.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: console_scripts.py PYPROJECT BINDIR [REQUIRED_NAME...]", file=sys.stderr)
        return 2
    pyproject, bindir, required = Path(argv[0]), Path(argv[1]), argv[2:]
    with pyproject.open("rb") as handle:
        scripts = tomllib.load(handle).get("project", {}).get("scripts", {})
    missing = [name for name in required if name not in scripts]
    if missing:
        print(f"error: {pyproject} declares no console script {', '.join(missing)}", file=sys.stderr)
        return 1
    bindir.mkdir(parents=True, exist_ok=True)
    for name, target in sorted(scripts.items()):
        module, _, function = target.partition(":")
        launcher = bindir / name
        launcher.write_text(
            f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n"
        )
        launcher.chmod(0o755)
        print(f"{launcher}: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
