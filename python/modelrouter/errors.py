"""Exception hierarchy. Every error raised by modelrouter is a ``RouterError`` and, where it
fits, also the builtin a caller would catch (``ValueError`` for bad input, ``KeyError`` for an
unknown id), so code written against scipy or plain dicts keeps working."""

from __future__ import annotations


class RouterError(Exception):
    """Base class of every modelrouter error."""


class InvalidInputError(RouterError, ValueError):
    """A bad argument; ``field`` names it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InfeasibleError(RouterError, ValueError):
    """No assignment satisfies the constraints."""


class UnknownModelError(RouterError, KeyError):
    """A model id the router or tracker does not know."""

    def __str__(self) -> str:
        return f"unknown model id {self.args[0]!r}" if self.args else "unknown model id"


class NoCapacityError(RouterError):
    """Every model able to serve the request is full and so is its queue.
    ``retry_after_s`` estimates when a slot frees up."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CallFailedError(RouterError):
    """``Router.call`` gave up; ``attempts`` lists every try as (model id, outcome kind,
    exception), oldest first; ``call_id`` names the call's rows in the store it was given
    (None without one)."""

    def __init__(
        self,
        message: str,
        attempts: list[tuple[str, str, BaseException]],
        call_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.call_id = call_id


class BackendUnavailableError(RouterError, ConnectionError):
    """The shared load backend (Redis) cannot be reached and the tracker fails closed."""


__all__ = [
    "BackendUnavailableError",
    "CallFailedError",
    "InfeasibleError",
    "InvalidInputError",
    "NoCapacityError",
    "RouterError",
    "UnknownModelError",
]
