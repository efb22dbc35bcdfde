"""Per-key limits of the REST service: an API key's entry may carry ``rpm=N`` (requests per
minute, every endpoint) and ``tpm=N`` (gateway tokens per minute, as providers count them), so
that no single client can exhaust the fleet or the upstream providers' quota::

    svc-a  route,report  mr_3f9c0a1e2b7d4c5f8e6a9b0c1d2e3f40  rpm=600 tpm=100000

Both are :class:`modelrouter.Quota` windows (exact sliding 60 s, the core's limiter). Over the
limit a request is answered 429 with ``Retry-After`` at once. Usage per key is exported by
``/metrics`` (requests, tokens, refusals by limit); key ids are configuration, so the label set
is bounded.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ._core import Quota, QuotaSpend

LIMIT_FIELDS = ("rpm", "tpm")


class KeyQuotas:
    """The quotas of the keys that have limits, and every key's usage counters."""

    def __init__(self, keys: Iterable[Any]) -> None:
        self._requests: dict[str, Quota] = {}
        self._tokens: dict[str, Quota] = {}
        for key in keys:
            if key.rpm is not None:
                self._requests[key.id] = Quota(rpm=key.rpm)
            if key.tpm is not None:
                self._tokens[key.id] = Quota(tpm=key.tpm)
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()
        self.refused: Counter[tuple[str, str]] = Counter()

    def admit_request(self, key_id: str) -> float | None:
        """Counts one request of the key; the seconds to wait when its RPM is spent."""
        quota = self._requests.get(key_id)
        if quota is not None:
            try:
                quota.admit().release()
            except Exception as exc:  # NoCapacityError
                with self._lock:
                    self.refused[(key_id, "rpm")] += 1
                return float(getattr(exc, "retry_after_s", 1.0))
        with self._lock:
            self.requests[key_id] += 1
        return None

    def spend(self, key_id: str | None, tokens: int) -> KeySpend | None:
        """Takes ``tokens`` of the key's TPM (None without a limit); raises
        ``NoCapacityError`` (with ``retry_after_s``) when spent, ``InvalidInputError`` when a
        request that large could never fit."""
        quota = self._tokens.get(key_id) if key_id is not None else None
        try:
            spend = quota.admit(tokens) if quota is not None else None
        except Exception:
            with self._lock:
                self.refused[(str(key_id), "tpm")] += 1
            raise
        return KeySpend(self, key_id, spend, tokens)

    def metrics(self) -> str:
        lines = []
        for name, help_text, counts in (
            ("modelrouter_key_requests_total", "Requests admitted per API key.", self.requests),
            ("modelrouter_key_tokens_total", "Gateway tokens used per API key.", self.tokens),
        ):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            lines += [f'{name}{{key="{k}"}} {v}' for k, v in sorted(counts.items())]
        name = "modelrouter_key_refused_total"
        lines += [
            f"# HELP {name} Requests refused (429) by a per-key limit.",
            f"# TYPE {name} counter",
        ]
        lines += [
            f'{name}{{key="{k}",limit="{limit}"}} {v}'
            for (k, limit), v in sorted(self.refused.items())
        ]
        return "\n".join(lines) + "\n"


class KeySpend:
    """One gateway call's tokens on its key: reconciled to the usage, then released."""

    def __init__(
        self, quotas: KeyQuotas, key_id: str | None, spend: QuotaSpend | None, tokens: int
    ) -> None:
        self._quotas, self._key_id, self._spend, self._used = quotas, key_id, spend, tokens
        self._released = False

    def set_usage(self, usage: tuple[int, int] | None) -> None:
        if usage is None:
            return
        self._used = usage[0] + usage[1]
        if self._spend is not None:
            self._spend.set_usage(*usage)

    def release(self) -> None:
        """Idempotent: the tokens used are counted once."""
        with self._quotas._lock:
            if self._released:
                return
            self._released = True
            if self._key_id is not None:
                self._quotas.tokens[self._key_id] += self._used
        if self._spend is not None:
            self._spend.release()


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
