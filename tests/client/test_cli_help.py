"""`embed-corpus --help` as a user reads it: every example is a command they can paste."""

from __future__ import annotations

import shlex
import subprocess
import sys

from embedding_client.corpus.cli import parser


def help_examples() -> list[str]:
    """The examples section of the real --help output, continuation lines joined as a shell would."""
    out = subprocess.run([sys.executable, "-m", "embedding_client.corpus.cli", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    section = out.stdout.split("\nexamples:\n", 1)[1]
    commands, pending = [], ""
    for line in section.splitlines():
        if not line.strip():
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1]
            continue
        commands.append(text)
        pending = ""
    assert not pending, f"an example ends in a line continuation: {pending!r}"
    return commands


def test_every_example_is_one_pasteable_command_the_parser_accepts():
    commands = help_examples()
    assert len(commands) >= 8
    for command in commands:
        words = shlex.split(command, comments=True)
        assert words[0] == "embed-corpus", command
        # A collapsed line break shows as a run of spaces inside the command itself.
        assert "   " not in command.split(" #")[0].rstrip(), f"a line break collapsed into spaces: {command!r}"
        parser().parse_args(words[1:])  # exits (SystemExit) on a flag or value it does not accept
