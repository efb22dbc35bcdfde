"""Admission for asyncio callers: ``Router.acquire`` returns an ``Acquisition``.

A request that finds the fleet full waits for capacity (yielding to the event loop between
tries, for about the ``retry_after_s`` the router estimates) up to ``timeout_s``, instead of
the caller spinning on ``NoCapacityError``; and a round trip to a shared backend (Redis) runs
on a worker thread, so a slow or stalled server never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import InvalidInputError, NoCapacityError

if TYPE_CHECKING:
    from ._core import Agent, InFlight, Router

# Shortest and longest pause between two tries while waiting for capacity.
MIN_PAUSE_S = 0.001
MAX_PAUSE_S = 1.0


class Acquisition:
    """``await router.acquire(agent, timeout_s=2.0)`` gives an admitted ``InFlight``;
    ``async with router.acquire(agent, timeout_s=2.0) as r:`` also gives it back on exit."""

    __slots__ = ("_router", "_agent", "_timeout_s", "_flight", "_tokens", "_max_output_tokens")

    def __init__(
        self,
        router: Router,
        agent: Agent,
        timeout_s: float | None,
        tokens: int = 0,
        max_output_tokens: int = 0,
    ) -> None:
        if timeout_s is not None and not (
            isinstance(timeout_s, (int, float))
            and not isinstance(timeout_s, bool)
            and math.isfinite(timeout_s)
            and timeout_s >= 0
        ):
            raise InvalidInputError(
                f"timeout_s must be a finite number >= 0 or None, got {timeout_s!r}", "timeout_s"
            )
        self._router, self._agent, self._timeout_s = router, agent, timeout_s
        self._tokens, self._max_output_tokens = tokens, max_output_tokens
        self._flight: InFlight | None = None

    def _offloaded(self) -> bool:
        # In-process admission takes well under a microsecond: a thread hop would cost more.
        return self._router.load_tracker.backend is not None

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._offloaded():
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        return fn(*args)

    async def admit(self) -> InFlight:
        loop = asyncio.get_running_loop()
        deadline = None if self._timeout_s is None else loop.time() + self._timeout_s
        waited = False
        while True:
            try:
                return await self._run(self._request)
            except NoCapacityError as e:
                remaining = 0.0 if deadline is None else deadline - loop.time()
                if remaining <= 0:
                    if waited:
                        raise NoCapacityError(
                            f"{e} (waited {self._timeout_s} s for capacity)", e.retry_after_s
                        ) from e
                    raise
                # Jitter spreads waiters that learned of the same full fleet at once.
                hint = min(max(e.retry_after_s, MIN_PAUSE_S), MAX_PAUSE_S)
                await asyncio.sleep(min(hint * random.uniform(0.5, 1.0), remaining))
                waited = True

    def _request(self) -> InFlight:
        return self._router.request(
            self._agent, tokens=self._tokens, max_output_tokens=self._max_output_tokens
        )

    def __await__(self) -> Generator[Any, None, InFlight]:
        return self.admit().__await__()

    async def __aenter__(self) -> InFlight:
        self._flight = await self.admit()
        return self._flight

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        flight, self._flight = self._flight, None
        if flight is not None:
            await self._run(flight.release, exc_type is None)
        return False
