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


__all__ = ["RouterError", "InvalidInputError", "InfeasibleError", "UnknownModelError"]
