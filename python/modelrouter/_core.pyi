# Type stubs of the compiled extension; checked against it with `python -m mypy.stubtest`.
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias, final, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "__version__",
    "Agent",
    "Assignment",
    "AssignmentResult",
    "Model",
    "Router",
    "ScoreWeights",
    "assign_capacitated",
    "cost_matrix",
    "linear_sum_assignment",
]
__version__: str

_StrategyName: TypeAlias = Literal["greedy", "balanced", "optimal"]

@final
class Model:
    def __new__(
        cls,
        id: str,
        capabilities: Mapping[str, float] | None = None,
        *,
        context_window: int = 8192,
        max_concurrent: int = 10,
        max_queue: int = 0,
        target_utilization: float = 0.8,
        cost_per_1k_tokens: float = 0.0,
    ) -> Model: ...
    @property
    def id(self) -> str: ...
    @property
    def capabilities(self) -> dict[str, float]: ...
    @property
    def context_window(self) -> int: ...
    @property
    def max_concurrent(self) -> int: ...
    @property
    def max_queue(self) -> int: ...
    @property
    def target_utilization(self) -> float: ...
    @property
    def cost_per_1k_tokens(self) -> float: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

@final
class Agent:
    def __new__(
        cls,
        id: str,
        required: Mapping[str, float] | None = None,
        preferred: Mapping[str, float] | None = None,
        *,
        min_context: int = 0,
    ) -> Agent: ...
    @property
    def id(self) -> str: ...
    @property
    def required(self) -> dict[str, float]: ...
    @property
    def preferred(self) -> dict[str, float]: ...
    @property
    def min_context(self) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

@final
class ScoreWeights:
    def __new__(
        cls,
        required: float = 0.6,
        preferred: float = 0.3,
        context: float = 0.1,
        cost: float = 0.0,
    ) -> ScoreWeights: ...
    @property
    def required(self) -> float: ...
    @property
    def preferred(self) -> float: ...
    @property
    def context(self) -> float: ...
    @property
    def cost(self) -> float: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

@overload
def cost_matrix(
    agents: Sequence[Agent],
    models: Sequence[Model],
    *,
    weights: ScoreWeights | None = None,
) -> npt.NDArray[np.float64]: ...
@overload
def cost_matrix(
    agents: npt.ArrayLike,
    models: npt.ArrayLike,
    *,
    weights: ScoreWeights | None = None,
    preferred: npt.ArrayLike | None = None,
    min_context: npt.ArrayLike | None = None,
    context_window: npt.ArrayLike | None = None,
    cost_per_1k_tokens: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float64]: ...
def linear_sum_assignment(
    cost_matrix: npt.ArrayLike, maximize: bool = False
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def assign_capacitated(
    cost: npt.ArrayLike,
    capacities: npt.ArrayLike,
    *,
    maximize: bool = False,
    allow_unassigned: bool = False,
) -> npt.NDArray[np.int64]: ...
@final
class Assignment:
    @property
    def agent_id(self) -> str: ...
    @property
    def model_id(self) -> str: ...
    @property
    def score(self) -> float: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

@final
class AssignmentResult:
    @property
    def assignments(self) -> list[Assignment]: ...
    @property
    def total_score(self) -> float: ...
    @property
    def strategy_used(self) -> _StrategyName: ...
    @property
    def load_balancing_enabled(self) -> bool: ...
    @property
    def models_filtered(self) -> int: ...
    @property
    def avg_utilization(self) -> float: ...
    @property
    def unassigned(self) -> list[str]: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __len__(self) -> int: ...

@final
class Router:
    def __new__(
        cls,
        models: Sequence[Model],
        strategy: _StrategyName = "optimal",
        load_balancing: bool = True,
        load_weight: float = 0.5,
        *,
        weights: ScoreWeights | None = None,
    ) -> Router: ...
    @property
    def models(self) -> list[Model]: ...
    @property
    def strategy(self) -> _StrategyName: ...
    @property
    def load_balancing(self) -> bool: ...
    @property
    def load_weight(self) -> float: ...
    def assign(self, agents: Sequence[Agent]) -> AssignmentResult: ...
