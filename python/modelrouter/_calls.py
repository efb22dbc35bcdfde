"""``Router.call`` / ``Router.acall``: run ``fn(model_id)`` under admission, and on a retryable
outcome try again elsewhere.

Glue around the core: admission (with health: ejected and cooling models are passed over), the
outcome of each attempt (an exception is classified by :func:`modelrouter.outcomes.classify`
and reported to the router's health), and the retry budget (retries add at most 20 % of recent
calls plus a small floor, so an outage never multiplies the load). A retry never goes to the
model that just failed unless it is the only one; after a ``context_length`` error it goes to
a model with a larger context window; ``fallbacks`` (model ids in order, or a callable) choose
the models of the retries instead.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, Union

from .errors import CallFailedError, InvalidInputError
from .outcomes import Outcome, classify

if TYPE_CHECKING:
    from ._core import Agent, InFlight, Router

T = TypeVar("T")
# Outcomes worth another attempt, on another model.
RETRYABLE = frozenset({"rate_limited", "server_error", "timeout", "context_length", "failed"})
Fallbacks = Union[Sequence[str], Callable[[str, str], Union[str, None]], None]


def _check(retries: int, fallbacks: Any, timeout_s: Any) -> float | None:
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

    def __init__(self, router: Router, agent: Agent, fallbacks: Fallbacks) -> None:
        self.router, self.agent, self.fallbacks = router, agent, fallbacks
        self.tried: list[tuple[str, str, BaseException]] = []
        self.context_above: int | None = None

    def admit(self, attempt: int) -> InFlight:
        if attempt == 0:
            return self.router.request(self.agent)
        last_model, last_kind, _ = self.tried[-1]
        if last_kind == "context_length":
            window = next(m.context_window for m in self.router.models if m.id == last_model)
            self.context_above = max(self.context_above or 0, window)
        fallback = self._fallback(attempt, last_model, last_kind)
        if fallback is not None:
            return self.router._admit_on(self.agent, fallback)
        return self.router._admit_avoiding(self.agent, [last_model], self.context_above)

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
        retry = outcome.retry_after_s if outcome.kind == "rate_limited" else None
        flight.fail(outcome.kind, retry)  # type: ignore[arg-type]
        self.tried.append((flight.model_id, outcome.kind, exc))
        return outcome

    def give_up(self, why: str) -> CallFailedError:
        summary = ", ".join(f"{m}: {k}" for m, k, _ in self.tried)
        return CallFailedError(f"{why} after {len(self.tried)} attempt(s) ({summary})", self.tried)


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


def call(
    router: Router,
    agent: Agent,
    fn: Callable[[str], T],
    retries: int = 2,
    fallbacks: Fallbacks = None,
    timeout_s: float | None = None,
) -> T:
    """``router.call(agent, fn, retries=2, fallbacks=None, timeout_s=None)``: fn's value, or
    ``CallFailedError`` carrying every attempt (model id, outcome kind, exception)."""
    deadline = _check(retries, fallbacks, timeout_s)
    state = _Attempts(router, agent, fallbacks)
    router._deposit()
    for attempt in range(retries + 1):
        flight = state.admit(attempt)
        with flight:
            try:
                return fn(flight.model_id)
            except Exception as exc:
                outcome = state.failed(flight, exc)
        why = _may_retry(router, outcome, attempt, retries, deadline)
        if why is not None:
            raise state.give_up(why) from state.tried[-1][2]
    raise state.give_up("no retries left")


async def acall(
    router: Router,
    agent: Agent,
    fn: Callable[[str], Awaitable[T]],
    retries: int = 2,
    fallbacks: Fallbacks = None,
    timeout_s: float | None = None,
) -> T:
    """``await router.acall(...)``: :func:`call` for a coroutine function; admissions through
    a shared backend run on a worker thread, so the event loop never waits on Redis."""
    deadline = _check(retries, fallbacks, timeout_s)
    state = _Attempts(router, agent, fallbacks)
    offload = router.load_tracker.backend is not None
    loop = asyncio.get_running_loop()
    router._deposit()
    for attempt in range(retries + 1):
        if offload:
            flight = await loop.run_in_executor(None, state.admit, attempt)
        else:
            flight = state.admit(attempt)
        try:
            value = await fn(flight.model_id)
        except Exception as exc:
            outcome = state.failed(flight, exc)
            flight.release(False)
        except BaseException:  # cancelled: the slot goes back, the error goes on
            flight.fail("cancelled")
            flight.release(False)
            raise
        else:
            flight.release(True)
            return value
        why = _may_retry(router, outcome, attempt, retries, deadline)
        if why is not None:
            raise state.give_up(why) from state.tried[-1][2]
    raise state.give_up("no retries left")
