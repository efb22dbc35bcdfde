"""What happened in a model call, as one **outcome kind** (issue 13, failure-aware routing).

``classify(exc)`` maps the exception a model call raised (``None``: it returned) to an
:class:`Outcome`. ``with router.request(...)``, the openai SDK integration and the gateway take
any :data:`Classifier`, so a caller with its own client plugs its own in; :data:`default_classifier`
knows the openai, anthropic, httpx (and httpx2), aiohttp, requests and urllib exceptions **by
duck typing**: this module imports none of them; the list of kinds comes from the core.

The kinds, in :data:`OUTCOME_KINDS` order (a request ends with exactly one):

``ok``
    The call returned (``classify(None)``; ``classify_status`` of a 2xx).
``rate_limited``
    HTTP 429, or a provider's rate-limit error without a status (a class named
    ``RateLimitError``, ``RateLimitExceeded``, ``TooManyRequests`` or ``ResourceExhausted``).
    openai's ``insufficient_quota`` is a 429 too, and stays ``rate_limited``: the deployment
    refuses this caller's traffic, which is what routing away is for.
``server_error``
    HTTP 5xx (but 504/524), and connection errors: the builtin ``ConnectionError`` and classes
    named ``ConnectError``, ``ConnectionError``, ``APIConnectionError``, ``NetworkError``,
    ``RemoteProtocolError``, ``ClientConnectionError``, ``ServerDisconnectedError``.
``timeout``
    ``TimeoutError``, ``asyncio.TimeoutError``, any class named ``*Timeout``, ``*TimeoutError``
    or ``*TimeoutException`` (``httpx.TimeoutException``, ``openai.APITimeoutError``,
    ``requests.Timeout``...), and HTTP 408 (Request Timeout), 504 (Gateway Timeout) and 524
    (Cloudflare's origin timeout): the model did not answer in time.
``context_length``
    The prompt does not fit: HTTP 400 or 413 whose message, body or code says so (one of
    :data:`CONTEXT_LENGTH_MARKERS`), or an error whose ``code`` is ``context_length_exceeded``.
``client_error``
    Any other 4xx: the caller's fault, never counted against the model.
``cancelled``
    ``asyncio.CancelledError``, ``concurrent.futures.CancelledError``, ``KeyboardInterrupt``
    and every other ``BaseException`` that is not an ``Exception`` (``SystemExit``,
    ``GeneratorExit`` when a stream is closed early, trio's ``Cancelled``): control flow of
    the caller, not a failure of the model.
``failed``
    Anything else, including an exception carrying a 1xx/2xx/3xx status (a response came back
    but the client could not use it, e.g. openai's ``APIResponseValidationError``) or a status
    outside 100-599.

Precedence: cancellation, then an HTTP status (when the exception carries one it decides), then
timeout, connection and rate-limit classes, then the ``context_length_exceeded`` code. An
exception recognised by none of them is classified by its explicit ``__cause__`` (``raise
AppError(...) from openai.RateLimitError(...)``), else it is ``failed``. An exception group is
the kind all its members share (``failed`` when they differ).

``classify`` never raises on an ``Exception``-level problem of its input (attributes that raise,
a status that is not an int, headers that do not parse): it falls back to the status class or to
``failed``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Optional

from ._core import OUTCOMES as _CORE_OUTCOMES

__all__ = [
    "CONTEXT_LENGTH_MARKERS",
    "OUTCOME_KINDS",
    "RETRYABLE_KINDS",
    "Classifier",
    "Outcome",
    "classify",
    "classify_status",
    "default_classifier",
    "retry_after_from_headers",
]

# The outcome kinds, in the core's order: one list, held by the Rust core.
OUTCOME_KINDS: tuple[str, ...] = tuple(_CORE_OUTCOMES)

# The kinds after which the same model may succeed later: only these carry ``retry_after_s``.
RETRYABLE_KINDS: frozenset[str] = frozenset({"rate_limited", "server_error", "timeout"})

# Lower-case phrases of a 400/413 that mean "the prompt does not fit" (openai, anthropic, vLLM,
# Bedrock, Gemini wordings).
CONTEXT_LENGTH_MARKERS: tuple[str, ...] = (
    "context_length_exceeded",
    "context length",
    "context_length",
    "context window",
    "context_window",
    "too many tokens",
    "prompt is too long",
    "input is too long",
    "exceeds the maximum number of tokens",
)


@dataclass(frozen=True)
class Outcome:
    """How a model call ended: ``kind`` is one of :data:`OUTCOME_KINDS`; ``retry_after_s`` is
    the provider's hint (seconds from now, finite, >= 0) of when the same model may succeed,
    only on a kind of :data:`RETRYABLE_KINDS`."""

    kind: str
    retry_after_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in OUTCOME_KINDS:
            raise ValueError(
                f"unknown outcome kind {self.kind!r}; the kinds are {', '.join(OUTCOME_KINDS)}"
            )
        ra = self.retry_after_s
        if ra is None:
            return
        if isinstance(ra, bool) or not isinstance(ra, (int, float)):
            raise TypeError(f"retry_after_s must be a number of seconds or None, not {ra!r}")
        if not math.isfinite(ra) or ra < 0:
            raise ValueError(f"retry_after_s must be finite and >= 0, not {ra!r}")
        if self.kind not in RETRYABLE_KINDS:
            raise ValueError(
                f"retry_after_s is only for the kinds {', '.join(sorted(RETRYABLE_KINDS))}, "
                f"not {self.kind!r}"
            )
        object.__setattr__(self, "retry_after_s", float(ra))


# A classifier maps what a model call raised (None: it returned) to its outcome. It must not
# raise: the router calls it on the way out of a request, inside the caller's exception handling.
Classifier = Callable[[Optional[BaseException]], Outcome]

_OK = Outcome("ok")
_FAILED = Outcome("failed")
_CANCELLED = Outcome("cancelled")

_MAX_DEPTH = 8  # of __cause__ chains and nested exception groups
_MAX_TEXT = 65536  # characters of a message or body searched for context-length markers
_MAX_HEADERS = 512

_TIMEOUT_SUFFIXES = ("Timeout", "TimeoutError", "TimeoutException")
_CONNECTION_NAMES = frozenset(
    {
        "ConnectError",
        "ConnectionError",
        "APIConnectionError",
        "NetworkError",
        "RemoteProtocolError",
        "ClientConnectionError",
        "ServerDisconnectedError",
    }
)
_RATE_LIMIT_NAMES = frozenset(
    {"RateLimitError", "RateLimitExceeded", "TooManyRequests", "ResourceExhausted"}
)
_CANCELLED_TYPES: tuple[type[BaseException], ...] = (
    asyncio.CancelledError,
    concurrent.futures.CancelledError,
)
_TIMEOUT_TYPES: tuple[type[BaseException], ...] = (
    TimeoutError,
    asyncio.TimeoutError,
    concurrent.futures.TimeoutError,
)
_TIMEOUT_STATUSES = frozenset({408, 504, 524})


def classify(exc: BaseException | None, *, now: float | None = None) -> Outcome:
    """The outcome of a model call that raised ``exc`` (``None``: it returned). ``now`` (Unix
    seconds, default ``time.time()``) is the moment an HTTP-date ``Retry-After`` counts from."""
    if exc is None:
        return _OK
    try:
        return _classify(exc, now, 0)
    except Exception:
        return _FAILED


default_classifier: Classifier = classify


def classify_status(
    status: int, headers: Any = None, body: Any = None, *, now: float | None = None
) -> Outcome:
    """The outcome of an HTTP response with ``status`` (for the gateway, which sees responses
    rather than exceptions): 2xx is ``ok``; 1xx, 3xx and anything outside 100-599 ``failed``;
    4xx/5xx as :func:`classify` documents. ``headers`` (any mapping or pairs; names compared
    case-insensitively) give ``retry_after_s``; ``body`` (str, bytes, or a decoded JSON value)
    is searched for the context-length markers of a 400/413. Never raises."""
    try:
        if isinstance(status, bool) or not isinstance(status, int):
            return _FAILED
        if 200 <= status < 300:
            return _OK
        return _from_status(
            status, lambda: [headers], lambda: _code_of(body), lambda: _text_of(body), now
        )
    except Exception:
        return _FAILED


def retry_after_from_headers(headers: Any, *, now: float | None = None) -> float | None:
    """Seconds to wait that response headers ask for, or None: ``retry-after-ms``, else
    ``Retry-After`` (delay-seconds, or an HTTP-date counted from ``now``, clamped at 0), else
    openai's ``x-ratelimit-reset-*`` (Go durations such as ``1m30s`` or ``20ms``, seconds, or an
    ISO 8601 time; of the limits whose ``x-ratelimit-remaining-*`` is 0, else of all, the
    latest). A value that does not parse is skipped. Never raises."""
    try:
        return _retry_after(_header_dict(headers), now)
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------
# Internals. Every attribute of the exception is read through _attr, which swallows whatever the
# attribute access raises.


def _attr(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _int_status(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return int(value)


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries: ``status_code`` or ``status`` (aiohttp, urllib) on
    the exception, else on its ``response``."""
    for name in ("status_code", "status"):
        s = _int_status(_attr(exc, name))
        if s is not None:
            return s
    response = _attr(exc, "response")
    if response is not None:
        for name in ("status_code", "status"):
            s = _int_status(_attr(response, name))
            if s is not None:
                return s
    return None


def _names(exc: BaseException) -> list[str]:
    return [c.__name__ for c in type(exc).__mro__]


def _classify(exc: BaseException, now: float | None, depth: int) -> Outcome:
    names = _names(exc)
    members = _attr(exc, "exceptions")
    if "BaseExceptionGroup" in names and isinstance(members, tuple) and members:
        return _classify_group(members, now, depth)
    if isinstance(exc, _CANCELLED_TYPES) or not isinstance(exc, Exception):
        return _CANCELLED

    status = _status_of(exc)
    if status is not None:
        if status < 400:
            return _FAILED  # a 1xx/2xx/3xx response the client raised about
        return _from_status(
            status,
            lambda: _exc_headers(exc),
            lambda: _exc_code(exc),
            lambda: _exc_text(exc),
            now,
        )
    if (
        isinstance(exc, _TIMEOUT_TYPES)
        or "timeout" in names  # socket.timeout before Python 3.10
        or any(n.endswith(_TIMEOUT_SUFFIXES) for n in names)
    ):
        return Outcome("timeout")
    if isinstance(exc, ConnectionError) or _CONNECTION_NAMES.intersection(names):
        return Outcome("server_error")
    if _RATE_LIMIT_NAMES.intersection(names):
        return Outcome("rate_limited", _retry_after_of(_exc_headers(exc), now))
    if _exc_code(exc) == "context_length_exceeded":
        return Outcome("context_length")

    cause = _attr(exc, "__cause__")
    if isinstance(cause, BaseException) and cause is not exc and depth < _MAX_DEPTH:
        return _classify(cause, now, depth + 1)
    return _FAILED


def _classify_group(members: tuple[Any, ...], now: float | None, depth: int) -> Outcome:
    if depth >= _MAX_DEPTH:
        return _FAILED
    outcomes = [
        _classify(m, now, depth + 1) if isinstance(m, BaseException) else _FAILED for m in members
    ]
    kinds = {o.kind for o in outcomes}
    if len(kinds) != 1:
        return _FAILED
    waits = [o.retry_after_s for o in outcomes if o.retry_after_s is not None]
    return Outcome(outcomes[0].kind, max(waits) if waits else None)


def _from_status(
    status: int,
    headers: Callable[[], list[Any]],
    code: Callable[[], str | None],
    text: Callable[[], str],
    now: float | None,
) -> Outcome:
    if not 100 <= status <= 599 or status < 400:
        return _FAILED
    if status == 429:
        return Outcome("rate_limited", _retry_after_of(headers(), now))
    if status in _TIMEOUT_STATUSES:
        return Outcome("timeout", _retry_after_of(headers(), now))
    if status >= 500:
        return Outcome("server_error", _retry_after_of(headers(), now))
    if code() == "context_length_exceeded":
        return Outcome("context_length")
    if status in (400, 413) and any(m in text() for m in CONTEXT_LENGTH_MARKERS):
        return Outcome("context_length")
    return Outcome("client_error")


# --- exceptions' headers, messages, codes ----------------------------------------------------


def _exc_headers(exc: BaseException) -> list[Any]:
    response = _attr(exc, "response")
    return [_attr(response, "headers") if response is not None else None, _attr(exc, "headers")]


def _retry_after_of(header_sources: Iterable[Any], now: float | None) -> float | None:
    for headers in header_sources:
        if headers is None:
            continue
        seconds = retry_after_from_headers(headers, now=now)
        if seconds is not None:
            return seconds
    return None


def _exc_code(exc: BaseException) -> str | None:
    attr = _attr(exc, "code")
    if isinstance(attr, str):
        return attr
    code = _code_of(_attr(exc, "body"))
    return code if code is not None else _code_of(_response_body(exc))


def _response_body(exc: BaseException) -> Any:
    """The body of the exception's ``response`` if it has been read (httpx raises
    ``ResponseNotRead`` for an unread stream; that reads as None)."""
    response = _attr(exc, "response")
    if response is None:
        return None
    content = _attr(response, "content")
    if isinstance(content, (bytes, bytearray)):
        return bytes(content[:_MAX_TEXT])
    return _attr(response, "text")


def _code_of(body: Any) -> str | None:
    """``code`` of a decoded error body: ``{"code": ...}`` or ``{"error": {"code": ...}}``."""
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body[:_MAX_TEXT])
        except Exception:
            return None
    if not isinstance(body, dict):
        return None
    code = body.get("code")
    if isinstance(code, str):
        return code
    inner = body.get("error")
    if isinstance(inner, dict) and isinstance(inner.get("code"), str):
        return str(inner["code"])
    return None


def _exc_text(exc: BaseException) -> str:
    """Lower-cased text of the exception: its message, ``message``, ``body`` and the body of its
    ``response`` (only if already read), each cut to ``_MAX_TEXT``."""
    parts: list[str] = []
    try:
        parts.append(str(exc)[:_MAX_TEXT])
    except Exception:
        pass
    for value in (_attr(exc, "message"), _attr(exc, "body")):
        parts.append(_text_of(value))
    parts.append(_text_of(_response_body(exc)))
    return " ".join(p for p in parts if p)


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:_MAX_TEXT]).decode("utf-8", "replace").lower()
    if isinstance(value, str):
        return value[:_MAX_TEXT].lower()
    try:
        return json.dumps(value, default=str)[:_MAX_TEXT].lower()
    except Exception:
        return ""


# --- Retry-After and friends -----------------------------------------------------------------

_SECONDS = re.compile(r"\s*(\d+(?:\.\d+)?)\s*")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|μs|ns|h|m|s)")
_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|us|µs|μs|ns|h|m|s))+")
_UNIT_S = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ns": 1e-9,
}


def _header_dict(headers: Any) -> dict[str, str]:
    """Lower-cased names to values of a mapping (httpx/aiohttp headers, a dict, an
    ``email.message.Message``) or an iterable of pairs; the first value of a name wins."""
    if headers is None:
        return {}
    items = headers.items() if hasattr(headers, "items") else headers
    out: dict[str, str] = {}
    for i, pair in enumerate(items):
        if i >= _MAX_HEADERS:
            break
        try:
            name, value = pair
        except Exception:
            continue
        name, value = _str(name), _str(value)
        if name is not None and value is not None:
            out.setdefault(name.strip().lower(), value.strip())
    return out


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    return None


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) and x >= 0 else None


def _retry_after(h: Mapping[str, str], now: float | None) -> float | None:
    ms = h.get("retry-after-ms")
    if ms is not None:
        m = _SECONDS.fullmatch(ms)
        if m:
            seconds = _finite(float(m.group(1)) / 1000.0)
            if seconds is not None:
                return seconds
    ra = h.get("retry-after")
    if ra is not None:
        seconds = _parse_retry_after(ra, now)
        if seconds is not None:
            return seconds
    return _ratelimit_reset(h, now)


def _parse_retry_after(value: str, now: float | None) -> float | None:
    m = _SECONDS.fullmatch(value)
    if m:
        return _finite(float(m.group(1)))
    try:
        when = parsedate_to_datetime(value)
    except Exception:
        return None
    if when is None:
        return None
    return _until(when, now)


def _until(when: datetime, now: float | None) -> float | None:
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = time.time() if now is None else now
    return _finite(max(0.0, when.timestamp() - current))


def _ratelimit_reset(h: Mapping[str, str], now: float | None) -> float | None:
    prefix = "x-ratelimit-reset-"
    resets: dict[str, float] = {}
    for name, value in h.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            seconds = _parse_reset(value, now)
            if seconds is not None:
                resets[name[len(prefix) :]] = seconds
    if not resets:
        return None
    exhausted = [
        s for limit, s in resets.items() if _is_zero(h.get(f"x-ratelimit-remaining-{limit}"))
    ]
    return max(exhausted or resets.values())


def _is_zero(value: str | None) -> bool:
    if value is None:
        return False
    m = _SECONDS.fullmatch(value)
    return m is not None and float(m.group(1)) == 0.0


def _parse_reset(value: str, now: float | None) -> float | None:
    v = value.strip()
    m = _SECONDS.fullmatch(v)
    if m:
        return _finite(float(m.group(1)))
    if _DURATION.fullmatch(v):
        total = sum(float(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(v))
        return _finite(total)
    try:
        when = datetime.fromisoformat(v[:-1] + "+00:00" if v.endswith(("Z", "z")) else v)
    except Exception:
        return None
    return _until(when, now)
