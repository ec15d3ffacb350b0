"""The one place a request is retried, backed off, or split.

Throttling, overload, 5xx, timeouts and dropped connections are retried with exponential
backoff and full jitter (AWS's recommendation: many clients hitting one throttle spread out
instead of retrying in lockstep), honouring the server's Retry-After when it gives one. A
request the target found too big (a response over the limit, a call that ran out of time) is
split in halves. Anything else is permanent: the caller names the rows it held.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from embedding_client.corpus.errors import PermanentError, SplitRequest, TransientError
from embedding_client.corpus.targets import Embedded, merge

log = logging.getLogger("embed_corpus")


@dataclass
class RetryPolicy:
    attempts: int = 8  # tries per request, the first included
    base_s: float = 0.5
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)], never shorter than Retry-After."""
        backoff = self.rng.uniform(0, min(self.cap_s, self.base_s * 2**attempt))
        return max(backoff, min(retry_after or 0.0, self.cap_s))


@dataclass
class Counters:
    """Retries and splits across every worker thread, for progress and the report."""

    retries: int = 0
    splits: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, retries: int = 0, splits: int = 0) -> None:
        with self._lock:
            self.retries += retries
            self.splits += splits


def embed_with_retries(
    embed: Callable[[list[str]], Any],
    texts: list[str],
    policy: RetryPolicy,
    counters: Counters,
    sleep: Callable[[float], None] = time.sleep,
    merge: Callable[[list], Any] = merge,
) -> Embedded:
    """`embed(texts)` (vectors, or with `merge=merge_chunked` a target's chunks), or PermanentError
    with the last reason; halves of a split request are put back together with `merge`."""
    for attempt in range(policy.attempts):
        try:
            return embed(texts)
        except SplitRequest as error:
            if len(texts) == 1:
                raise PermanentError(f"{error.reason} (for a single text)") from None
            counters.add(splits=1)
            half = len(texts) // 2
            log.info("splitting a request of %d texts in two: %s", len(texts), error.reason)
            return merge(
                [
                    embed_with_retries(embed, part, policy, counters, sleep, merge)
                    for part in (texts[:half], texts[half:])
                ]
            )
        except TransientError as error:
            if attempt == policy.attempts - 1:
                raise PermanentError(f"{error.reason}; gave up after {policy.attempts} attempts") from None
            counters.add(retries=1)
            wait = policy.delay(attempt, error.retry_after)
            log.info(
                "retrying in %.1f s (attempt %d of %d): %s", wait, attempt + 2, policy.attempts, error.reason
            )
            sleep(wait)
    raise AssertionError("unreachable")
