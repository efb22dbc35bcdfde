"""``Router.call`` / ``Router.acall``: run ``fn(model_id)`` under admission, and on a retryable
outcome try again elsewhere.

Glue around the core: admission (with health: ejected and cooling models are passed over), the
outcome of each attempt (an exception is classified by :func:`modelrouter.outcomes.classify`
and reported to the router's health), and the retry budget (retries add at most 20 % of recent
calls plus a small floor, so an outage never multiplies the load). A retry never goes to the
model that just failed unless it is the only one; after a ``context_length`` error it goes to
a model with a larger context window; ``fallbacks`` (model ids in order, or a callable) choose
the models of the retries instead. With a ``store``, every attempt is recorded there as a
feedback row (latency, outcome kind) under one call id, attempt 0, 1, ... in order.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, Union

from .errors import CallFailedError, InvalidInputError
from .outcomes import Outcome, classify

if TYPE_CHECKING:
    from ._core import Agent, InFlight, Router
    from .store import DecisionStore

T = TypeVar("T")
# Outcomes worth another attempt, on another model.
RETRYABLE = frozenset({"rate_limited", "server_error", "timeout", "context_length", "failed"})
Fallbacks = Union[Sequence[str], Callable[[str, str], Union[str, None]], None]


def _check(retries: int, fallbacks: Any, timeout_s: Any, store: Any) -> float | None:
    if store is not None and not callable(getattr(store, "record_feedback", None)):
        raise InvalidInputError("store must be a DecisionStore (modelrouter.open_store)", "store")
    if retries < 0 or retries > 100:
        raise InvalidInputError(f"retries must be between 0 and 100, got {retries}", "retries")
    if fallbacks is not None and not callable(fallbacks):
        if isinstance(fallbacks, (str, bytes)) or not all(isinstance(m, str) for m in fallbacks):
            raise InvalidInputError(
                "fallbacks must be a list of model ids or a callable", "fallbacks"
            )
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise InvalidInputError(f"timeout_s must be a number, got {timeout_s!r}", "timeout_s")
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise InvalidInputError(f"timeout_s must be > 0, got {timeout_s}", "timeout_s")
    return time.monotonic() + float(timeout_s)


class _Attempts:
    """The state of one call's attempts: what failed where, and where to go next."""

    def __init__(
        self,
        router: Router,
        agent: Agent,
        fallbacks: Fallbacks,
        store: DecisionStore | None,
        pinned: str | None = None,
        size: tuple[int, int] = (0, 0),
    ) -> None:
        self.router, self.agent, self.fallbacks, self.store = router, agent, fallbacks, store
        self.pinned = pinned
        self.tokens, self.max_output_tokens = size
        self.tried: list[tuple[str, str, BaseException]] = []
        self.context_above: int | None = None
        self.call_id = uuid.uuid4().hex if store is not None else None
        self.started = 0.0

    def admit(self, attempt: int) -> InFlight:
        self.started = time.perf_counter()
        size = (self.tokens, self.max_output_tokens)
        if self.pinned is not None:
            return self.router._admit_on(self.agent, self.pinned, *size)
        if attempt == 0:
            return self.router.request(
                self.agent, tokens=self.tokens, max_output_tokens=self.max_output_tokens
            )
        last_model, last_kind, _ = self.tried[-1]
        if last_kind == "context_length":
            window = next(m.context_window for m in self.router.models if m.id == last_model)
            self.context_above = max(self.context_above or 0, window)
        fallback = self._fallback(attempt, last_model, last_kind)
        if fallback is not None:
            return self.router._admit_on(self.agent, fallback, *size)
        return self.router._admit_avoiding(self.agent, [last_model], self.context_above, *size)

    def _fallback(self, attempt: int, model: str, kind: str) -> str | None:
        if self.fallbacks is None:
            return None
        if callable(self.fallbacks):
            chosen = self.fallbacks(model, kind)
            if chosen is not None and not isinstance(chosen, str):
                raise InvalidInputError("fallbacks must return a model id or None", "fallbacks")
            return chosen
        listed = list(self.fallbacks)
        return listed[attempt - 1] if attempt - 1 < len(listed) else None

    def failed(self, flight: InFlight, exc: BaseException) -> Outcome:
        outcome = classify(exc)
        flight._fail_classified(outcome.kind, outcome.retry_after_s)  # type: ignore[attr-defined]
        self.record(flight, outcome.kind)
        self.tried.append((flight.model_id, outcome.kind, exc))
        return outcome

    def record(self, flight: InFlight, kind: str) -> None:
        """The attempt into the store, if the call has one."""
        if self.store is None:
            return
        latency_ms = (time.perf_counter() - self.started) * 1e3
        self.store.record_feedback(
            flight.model_id,
            latency_ms,
            kind == "ok",
            self.agent.id,
            outcome=kind,
            call_id=self.call_id,
            attempt=len(self.tried),
        )

    def succeeded(self, flight: InFlight, value: Any, hold: bool) -> Any:
        if hold:
            return Held(value, flight, self)
        self.record(flight, "ok")
        flight.release(True)
        return value

    def interrupted(self, flight: InFlight) -> None:
        """Cancelled or interrupted: the slot goes back, the error goes on."""
        flight.fail("cancelled")
        self.record(flight, "cancelled")
        flight.release(False)

    def after_failure(
        self, flight: InFlight, exc: Exception, attempt: int, retries: int, deadline: float | None
    ) -> None:
        """Ends a failed attempt; raises ``CallFailedError`` unless another may go."""
        outcome = self.failed(flight, exc)
        flight.release(False)
        why = _may_retry(self.router, outcome, attempt, retries, deadline)
        if why is not None:
            raise self.give_up(why) from exc

    def give_up(self, why: str) -> CallFailedError:
        summary = ", ".join(f"{m}: {k}" for m, k, _ in self.tried)
        message = f"{why} after {len(self.tried)} attempt(s) ({summary})"
        return CallFailedError(message, self.tried, self.call_id)


def _may_retry(
    router: Router, outcome: Outcome, attempt: int, retries: int, deadline: float | None
) -> str | None:
    """None when another attempt may go, else why not."""
    if outcome.kind not in RETRYABLE:
        return f"{outcome.kind} is not retried"
    if attempt >= retries:
        return "no retries left"
    if deadline is not None and time.monotonic() >= deadline:
        return "timeout_s is up"
    if not router._try_retry():
        return "the retry budget is spent"
    return None


class Held:
    """A successful attempt whose request stays open (a stream being read): ``end(kind)``
    records it in the store and gives the slot back, exactly once."""

    def __init__(self, value: Any, flight: InFlight, state: _Attempts) -> None:
        self.value, self.flight, self._state = value, flight, state

    def end(self, kind: str = "ok", exc: BaseException | None = None) -> None:
        if kind != "ok":
            if exc is not None:
                self._state.failed(self.flight, exc)
            else:
                self.flight.fail(kind)  # type: ignore[arg-type]
                self._state.record(self.flight, kind)
        else:
            self._state.record(self.flight, "ok")
        self.flight.release(kind == "ok")


def run(
    router: Router,
    agent: Agent,
    fn: Callable[[InFlight], T],
    retries: int = 2,
    fallbacks: Fallbacks = None,
    timeout_s: float | None = None,
    store: DecisionStore | None = None,
    size: tuple[int, int] = (0, 0),
    *,
    pinned: str | None = None,
    hold: bool = False,
) -> Any:
    """The attempt loop: ``fn(flight)`` per attempt. Returns fn's value, or with ``hold`` a
    :class:`Held` whose request the caller ends. ``pinned`` admits only on that model; ``size``
    is (prompt tokens, max output tokens), admitted against the token limits."""
    deadline = _check(retries, fallbacks, timeout_s, store)
    state = _Attempts(router, agent, fallbacks, store, pinned, size)
    router._deposit()
    for attempt in range(retries + 1):
        flight = state.admit(attempt)
        try:
            value = fn(flight)
        except Exception as exc:
            state.after_failure(flight, exc, attempt, retries, deadline)
            continue
        except BaseException:
            state.interrupted(flight)
            raise
        return state.succeeded(flight, value, hold)
    raise state.give_up("no retries left")


async def arun(
    router: Router,
    agent: Agent,
    fn: Callable[[InFlight], Awaitable[T]],
    retries: int = 2,
    fallbacks: Fallbacks = None,
    timeout_s: float | None = None,
    store: DecisionStore | None = None,
    size: tuple[int, int] = (0, 0),
    *,
    pinned: str | None = None,
    hold: bool = False,
) -> Any:
    """:func:`run` for a coroutine function; admissions through a shared backend run on a
    worker thread, so the event loop never waits on Redis."""
    deadline = _check(retries, fallbacks, timeout_s, store)
    state = _Attempts(router, agent, fallbacks, store, pinned, size)
    offload = router.load_tracker.backend is not None
    loop = asyncio.get_running_loop()
    router._deposit()
    for attempt in range(retries + 1):
        if offload:
            flight = await loop.run_in_executor(None, state.admit, attempt)
        else:
            flight = state.admit(attempt)
        try:
            value = await fn(flight)
        except Exception as exc:
            state.after_failure(flight, exc, attempt, retries, deadline)
            continue
        except BaseException:
            state.interrupted(flight)
            raise
        return state.succeeded(flight, value, hold)
    raise state.give_up("no retries left")


def call(
    router: Router,
    agent: Agent,
    fn: Callable[[str], T],
    retries: int = 2,
    fallbacks: Fallbacks = None,
    timeout_s: float | None = None,
    store: DecisionStore | None = None,
    size: tuple[int, int] = (0, 0),
) -> T:
    """``router.call(agent, fn, retries=2, fallbacks=None, timeout_s=None, store=None,
    tokens=0, max_output_tokens=0)``: fn's value, or ``CallFailedError`` carrying every attempt
    (model id, outcome kind, exception)."""
    value = run(router, agent, lambda f: fn(f.model_id), retries, fallbacks, timeout_s, store, size)
    return value  # type: ignore[no-any-return]


async def acall(
    router: Router,
    agent: Agent,
    fn: Callable[[str], Awaitable[T]],
    retries: int = 2,
    fallbacks: Fallbacks = None,
    timeout_s: float | None = None,
    store: DecisionStore | None = None,
    size: tuple[int, int] = (0, 0),
) -> T:
    """``await router.acall(...)``: :func:`call` for a coroutine function."""
    return await arun(  # type: ignore[no-any-return]
        router, agent, lambda f: fn(f.model_id), retries, fallbacks, timeout_s, store, size
    )
