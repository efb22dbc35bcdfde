"""The engine-independent half of a store: validation, the bounded queue and its batching writer
thread, flush/close, and the process-wide shutdown hooks (atexit, SIGTERM).

Callers only append to a ``deque`` (atomic under the GIL, no lock the signal handler could find
held), so a record is *acknowledged* once its ``record_*`` call returns. One writer thread drains
the deque in transactions of up to ``batch_size`` rows. It wakes every ``flush_interval_s``, or
as soon as ``batch_size`` rows are waiting (or a flush, close or full queue asks), and then
commits everything waiting: a full batch never waits for the interval, and a partial one waits
at most one interval. ``flush()`` puts a marker behind the caller's records and waits until
the writer has committed the batch that held it.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import numbers
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, TypeVar

from .._core import OUTCOMES as CORE_OUTCOMES
from ..errors import InvalidInputError
from ._schema import StoreError
from ._signals import _open_stores, install_signal_handlers

log = logging.getLogger("modelrouter.store")

_S = TypeVar("_S", bound="BaseStore")
OUTCOMES = ("routed", "no_capacity", "infeasible")
# How a finished request ended (feedback rows): the core's outcome kinds.
REQUEST_OUTCOMES = tuple(CORE_OUTCOMES)
TABLES = ("assignments", "routing_decisions", "feedback", "utilization")


class _Wake:
    """A wake-up call for the writer that a caller can give without taking a Python-level
    lock (a ``threading.Event`` holds its condition's lock inside ``set()``, where a signal
    handler could interrupt the main thread and leave the writer unable to wake). The writer
    holds ``_gate``; ``set()`` releases it in one C call, ``wait()`` takes it back, so a wake-up
    given while the writer is busy is kept for its next wait."""

    def __init__(self) -> None:
        self._gate = threading.Lock()
        self._gate.acquire()

    def set(self) -> None:
        try:
            self._gate.release()
        except RuntimeError:
            pass  # already set

    def is_set(self) -> bool:
        return not self._gate.locked()

    def wait(self, timeout: float) -> bool:
        return self._gate.acquire(timeout=min(timeout, threading.TIMEOUT_MAX))


class _Marker(threading.Event):
    """A flush request travelling through the queue behind the records it must wait for."""

    error: BaseException | None = None


def _ts(ts: Any) -> float:
    if ts is None:
        return time.time()
    return _real(ts, "ts")


def _real(value: Any, field: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{field} must be a number, got {value!r}", field)
    out = float(value)
    if not math.isfinite(out) or (minimum is not None and out < minimum):
        bound = "" if minimum is None else f" and >= {minimum:g}"
        raise InvalidInputError(f"{field} must be finite{bound}, got {value!r}", field)
    # PostgreSQL raises "underflow" on arithmetic that yields subnormals (avg, ts / bucket);
    # nothing measured here is meaningfully that small, so store it as zero on every engine.
    return 0.0 if abs(out) < 1e-300 else out


def _id(value: Any, field: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InvalidInputError(f"{field} must be a non-empty string, got {value!r}", field)
    return value


def _attempt(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
        raise InvalidInputError(f"attempt must be an int in [0, 10000], got {value!r}", "attempt")
    return value


def _flag(value: Any, field: str) -> bool:
    # numpy.bool_ is not a bool subclass but is what vectorised callers hand in.
    if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", None) == "b":
        return bool(value)
    raise InvalidInputError(f"{field} must be a bool, got {value!r}", field)


def _json(value: Any, field: str) -> str:
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{field} must be a mapping (a JSON object)", field)
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{field} is not JSON-serialisable: {exc}", field) from exc
    # PostgreSQL's jsonb rejects NUL; refuse it on every engine so both behave alike.
    if "\\u0000" in text:
        raise InvalidInputError(f"{field} contains a NUL character", field)
    return text


def _count(value: Any) -> int | None:
    return len(value) if isinstance(value, list) else None


class BaseStore:
    """Shared implementation; subclasses supply ``_write_batch``, ``_reset_writer``,
    ``_close_connections`` and the queries."""

    dialect = ""
    _durable = True  # False for in-memory databases: the SIGTERM drain skips them

    def __init__(
        self,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 0.05,
        max_queue: int = 10_000,
        put_timeout_s: float = 30.0,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError("batch_size must be an int >= 1", "batch_size")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise InvalidInputError("max_queue must be an int >= 1", "max_queue")
        self._interval = _real(flush_interval_s, "flush_interval_s", 0.0)
        self._put_timeout = _real(put_timeout_s, "put_timeout_s", 0.0)
        self._batch_size = batch_size
        self._max_queue = max_queue
        self._pending: deque[Any] = deque()
        self._busy = False  # the writer holds popped rows not yet committed
        self._put_lock = threading.Lock()  # orders "closed?" checks against close()
        self._wake = _Wake()
        self._closed = False
        self._stopping = False
        self._abandon = False
        self.written = 0
        self.dropped = 0
        self.last_error: BaseException | None = None

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="modelrouter-store", daemon=True)
        self._thread.start()
        _open_stores.add(self)

    # -- records -------------------------------------------------------------------------------

    def record_assignment(
        self, request: Mapping[str, Any], response: Mapping[str, Any], ts: float | None = None
    ) -> None:
        req, resp = _json(request, "request"), _json(response, "response")
        score = response.get("total_score")
        total = (
            float(score)
            if isinstance(score, (int, float)) and not isinstance(score, bool)
            else None
        )
        strategy = response.get("strategy_used")
        row = (
            _ts(ts),
            req,
            resp,
            strategy if isinstance(strategy, str) else None,
            _count(request.get("agents")),
            _count(response.get("assignments")),
            total,
        )
        self._put("assignments", row)

    def record_route(
        self,
        agent_id: str,
        model_id: str | None,
        policy: str,
        *,
        queued: bool = False,
        outcome: str = "routed",
        ts: float | None = None,
    ) -> None:
        if outcome not in OUTCOMES:
            raise InvalidInputError(
                f"outcome must be one of {OUTCOMES}, got {outcome!r}", "outcome"
            )
        row = (
            _ts(ts),
            _id(agent_id, "agent_id"),
            _id(model_id, "model_id", optional=outcome != "routed"),
            _id(policy, "policy"),
            _flag(queued, "queued"),
            outcome,
        )
        self._put("routing_decisions", row)

    def record_feedback(
        self,
        model_id: str,
        latency_ms: float,
        success: bool,
        agent_id: str | None = None,
        ts: float | None = None,
        *,
        outcome: str | None = None,
        call_id: str | None = None,
        attempt: int | None = None,
    ) -> None:
        ok = _flag(success, "success")
        if outcome is None:
            outcome = "ok" if ok else "failed"
        elif outcome not in REQUEST_OUTCOMES:
            raise InvalidInputError(
                f"outcome must be one of {REQUEST_OUTCOMES}, got {outcome!r}", "outcome"
            )
        row = (
            _ts(ts),
            _id(model_id, "model_id"),
            _id(agent_id, "agent_id", optional=True),
            _real(latency_ms, "latency_ms", 0.0),
            ok,
            outcome,
            _id(call_id, "call_id", optional=True),
            _attempt(attempt),
        )
        self._put("feedback", row)

    def record_utilization(self, samples: Mapping[str, float], ts: float | None = None) -> None:
        if not isinstance(samples, Mapping):
            raise InvalidInputError("samples must be a mapping model_id -> utilization", "samples")
        at = _ts(ts)
        rows = [
            (at, _id(m, "samples"), _real(u, f"samples[{m!r}]", 0.0)) for m, u in samples.items()
        ]
        for row in rows:
            self._put("utilization", row)

    def room(self) -> int:
        """How many more rows ``record_*`` takes right now without blocking (0 when the queue
        is full or the store closed). Lets a caller that must not block (an event loop) refuse
        work instead of waiting for the writer."""
        if self._closed:
            return 0
        return max(0, self._max_queue - len(self._pending))

    def _put(self, table: str, row: tuple[Any, ...]) -> None:
        if len(self._pending) >= self._max_queue:
            self._wait_for_room()
        with self._put_lock:
            if self._closed:
                raise StoreError("the decision store is closed")
            self._pending.append((table, row))
        if len(self._pending) >= self._batch_size and not self._wake.is_set():
            self._wake.set()  # a full batch is waiting: commit it now, not at the next interval

    def _wait_for_room(self) -> None:
        """Back-pressure: a full queue blocks the caller (never drops) until the writer catches
        up, or raises after ``put_timeout_s`` when the database has stopped accepting writes."""
        deadline = time.monotonic() + self._put_timeout
        self._wake.set()
        while len(self._pending) >= self._max_queue and not self._closed:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise StoreError(
                    f"decision store queue full for {self._put_timeout:g} s"
                    f" (last database error: {self.last_error!r})"
                )
            time.sleep(0.001)

    # -- flush / close -------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Blocks until every record handed in so far (by any thread) is committed."""
        with self._put_lock:
            if self._closed:
                return
            marker = _Marker()
            self._pending.append(marker)
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not marker.wait(0.1):
            if not self._thread.is_alive():
                raise StoreError("the decision store writer has stopped")
            if deadline is not None and time.monotonic() > deadline:
                raise StoreError(f"flush timed out after {timeout:g} s ({self.last_error!r})")
        if marker.error is not None:
            raise StoreError(f"records were lost: {marker.error!r}") from marker.error

    def close(self, timeout: float = 30.0) -> None:
        """Flushes, stops the writer and releases the connections; idempotent. If the database
        refuses writes for ``timeout`` seconds the remaining rows are given up (and counted in
        ``dropped``) rather than hanging shutdown."""
        with self._put_lock:
            if self._closed:
                return
            self._closed = True
        _open_stores.discard(self)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandon = True
            self._thread.join()
        self._close_connections()

    def _drain_for_signal(self, timeout: float) -> None:
        """Waits, taking no lock, until the writer has committed everything queued so far.
        ``_pending`` is read before ``_busy``: the writer raises ``_busy`` before popping, so
        both empty/false means nothing acknowledged is still in flight."""
        if not self._durable:
            return  # nothing would survive the process anyway
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._thread.is_alive():
            if not self._pending and not self._busy:
                return
            time.sleep(0.002)

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            if not self._pending:
                if self._stopping:
                    return
                self._wake.wait(self._interval)
                continue
            self._busy = True
            rows: dict[str, list[tuple[Any, ...]]] = {}
            markers: list[_Marker] = []
            n = 0
            try:
                while n < self._batch_size and self._pending:
                    item = self._pending.popleft()
                    if isinstance(item, _Marker):
                        markers.append(item)
                    else:
                        rows.setdefault(item[0], []).append(item[1])
                        n += 1
                error = self._commit(rows, n) if n else None
            finally:
                self._busy = False
            for marker in markers:
                marker.error = error
                marker.set()

    def _commit(self, rows: dict[str, list[tuple[Any, ...]]], n: int) -> BaseException | None:
        """Writes one batch, retrying transient failures with backoff until it lands (or the
        store is being abandoned at close). Rows the database rejects outright are written one
        by one so a single bad row costs only itself."""
        delay = 0.05
        while True:
            try:
                self._write_batch(rows)
                self.written += n
                return None
            except Exception as exc:  # noqa: BLE001 - any driver error; logged and retried
                self.last_error = exc
                self._reset_writer()
                if not self._is_transient(exc):
                    return self._write_rows_one_by_one(rows)
                if self._abandon:
                    self.dropped += n
                    log.error("decision store gave up on %d rows: %r", n, exc)
                    return exc
                log.warning("decision store write failed, retrying in %.2f s: %r", delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _write_rows_one_by_one(
        self, rows: dict[str, list[tuple[Any, ...]]]
    ) -> BaseException | None:
        error = None
        for table, table_rows in rows.items():
            for row in table_rows:
                try:
                    self._write_batch({table: [row]})
                    self.written += 1
                except Exception as exc:  # noqa: BLE001
                    self._reset_writer()
                    self.dropped += 1
                    error = self.last_error = exc
                    log.error(
                        "decision store dropped a %s row the database rejects: %r", table, exc
                    )
        return error

    # -- engine hooks --------------------------------------------------------------------------

    def _write_batch(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        raise NotImplementedError

    def _reset_writer(self) -> None:
        raise NotImplementedError

    def _is_transient(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def _close_connections(self) -> None:
        raise NotImplementedError

    def install_signal_handlers(self) -> None:
        """See :func:`modelrouter.store.install_signal_handlers`."""
        install_signal_handlers()


@atexit.register
def _close_all() -> None:
    for store in list(_open_stores):
        try:
            store.close()
        except Exception:  # noqa: BLE001 - shutdown must go on for the other stores
            log.exception("closing the decision store at exit failed")
