"""modelrouter: decides which LLM deployment serves which agent or request, by capability,
live load and measured performance. The core is Rust (``modelrouter._core``)."""

from __future__ import annotations

from . import _core
from ._core import *  # noqa: F403
from .errors import (
    BackendUnavailableError,
    InfeasibleError,
    InvalidInputError,
    NoCapacityError,
    RouterError,
    UnknownModelError,
)

__version__: str = _core.__version__

__all__ = [  # noqa: F405
    "BackendUnavailableError",
    "InfeasibleError",
    "InvalidInputError",
    "NoCapacityError",
    "RouterError",
    "UnknownModelError",
    "__version__",
]
