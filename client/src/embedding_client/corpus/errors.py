"""What can go wrong, as values the CLI turns into one sentence and an exit status.

Targets raise the middle three; the retry layer decides what they mean for the run.
"""

from __future__ import annotations


class CorpusError(Exception):
    """The run cannot go on; the message is one sentence for the user (exit status 1)."""

    exit_status = 1


class InputError(CorpusError):
    """The input or the options are wrong: nothing was sent to the model (exit status 2)."""

    exit_status = 2


class AccessDenied(CorpusError):
    """AWS refused these credentials this object or function (a missing grant, an expired token)."""


class TransientError(Exception):
    """Worth retrying: throttled (429), overloaded, 5xx, timed out, connection dropped."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentError(Exception):
    """Retrying the same request would fail the same way (a 4xx, a wrong function name)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SplitRequest(Exception):
    """The target found the request too big (a response over its limit, a timeout): send halves."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
