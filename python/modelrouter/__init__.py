"""modelrouter: decides which LLM deployment serves which agent or request, by capability,
live load and measured performance. The core is Rust (``modelrouter._core``)."""

from __future__ import annotations

from . import _core
from ._core import *  # noqa: F403
from .errors import (
    BackendUnavailableError,
    CallFailedError,
    InfeasibleError,
    InvalidInputError,
    NoCapacityError,
    RouterError,
    UnknownModelError,
)

__version__: str = _core.__version__

# The public API: everything the extension exports (its stub's ``__all__``, which a test keeps
# equal to this list), the error classes and the version.
__all__ = [  # noqa: F405
    # classes of the core
    "AdaptiveScorer",
    "Agent",
    "Alert",
    "AlertManager",
    "AlertRule",
    "Assignment",
    "AssignmentResult",
    "CapacityManager",
    "InFlight",
    "LatencyHistogram",
    "LoadBalancer",
    "LoadTracker",
    "ManualClock",
    "Model",
    "ModelLoad",
    "PerformanceTracker",
    "PolicyResult",
    "Quota",
    "QuotaSpend",
    "Router",
    "ScalingAction",
    "ScalingRule",
    "ScoreWeights",
    "SimulationReport",
    "Stats",
    # functions and registries of the core
    "assign_capacitated",
    "cost_matrix",
    "linear_sum_assignment",
    "now",
    "simulate",
    "MODEL_DEFAULTS",
    "POLICIES",
    "OUTCOMES",
    "STRATEGIES",
    # errors
    "BackendUnavailableError",
    "CallFailedError",
    "InfeasibleError",
    "InvalidInputError",
    "NoCapacityError",
    "RouterError",
    "UnknownModelError",
    "__version__",
]
