"""Pydantic bodies of the REST service: they give the OpenAPI document its schemas and make a
bad body a 422 naming the field. Bounds mirror the Rust core's checks, so a body that passes
here is accepted by ``Model``/``Agent`` (the core still re-checks and maps its own errors)."""

# pydantic evaluates these annotations at runtime, where `X | None` needs Python 3.10.
# ruff: noqa: UP045
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from ._core import MODEL_DEFAULTS, OUTCOMES, POLICIES, STRATEGIES

# Control characters (C0 with NUL, DEL, C1), line/paragraph separators and lone surrogates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _no_control(value: str) -> str:
    # The decision store refuses NUL (PostgreSQL text and jsonb cannot hold it) and cannot
    # encode a lone surrogate; a newline or escape in an id would forge log lines and metric
    # labels. Refused here, before anything is reserved or solved, the 422 naming the path.
    m = _UNSAFE.search(value)
    if m is not None:
        if m.group() == "\x00":
            raise ValueError("must not contain a NUL character (\\u0000)")
        raise ValueError(
            f"must not contain control characters, line separators or lone surrogates"
            f" (found \\u{ord(m.group()):04x})"
        )
    return value


Id = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_no_control)]
CapName = Annotated[
    str, StringConstraints(min_length=1, max_length=128), AfterValidator(_no_control)
]
Level = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
RequiredLevel = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]
Weight = Annotated[float, Field(ge=0.0, le=1e6, allow_inf_nan=False)]
Tokens = Annotated[int, Field(ge=0, le=2**40)]
# The names come from the core registry (the OpenAPI enums list them in registry order).
if TYPE_CHECKING:
    Strategy = str
    Policy = str
    OutcomeKind = str
else:
    Strategy = Literal[tuple(STRATEGIES)]
    Policy = Literal[tuple(POLICIES)]
    OutcomeKind = Literal[tuple(OUTCOMES)]
HealthState = Literal["healthy", "ejected", "cooling_down", "probing"]

_STRICT = ConfigDict(extra="forbid")


class ModelBody(BaseModel):
    """One deployment: capability levels in [0, 1], context window and capacity."""

    model_config = _STRICT
    id: Id
    capabilities: dict[CapName, Level] = Field(default_factory=dict, max_length=256)
    # Defaults from the core (`modelrouter._core.MODEL_DEFAULTS`), as for `Model(...)`.
    context_window: int = Field(MODEL_DEFAULTS["context_window"], ge=1, le=2**40)
    max_concurrent: int = Field(MODEL_DEFAULTS["max_concurrent"], ge=1, le=1_000_000)
    max_queue: int = Field(MODEL_DEFAULTS["max_queue"], ge=0, le=1_000_000)
    target_utilization: float = Field(
        MODEL_DEFAULTS["target_utilization"], gt=0.0, le=1.0, allow_inf_nan=False
    )
    cost_per_1k_tokens: float = Field(
        MODEL_DEFAULTS["cost_per_1k_tokens"], ge=0.0, le=1e9, allow_inf_nan=False
    )
    # Token-aware limits (None = unlimited): requests and tokens per sliding minute, and
    # tokens held at once.
    rpm: int | None = Field(MODEL_DEFAULTS["rpm"], ge=1, le=2**53)
    tpm: int | None = Field(MODEL_DEFAULTS["tpm"], ge=1, le=2**53)
    max_tokens_in_flight: int | None = Field(MODEL_DEFAULTS["max_tokens_in_flight"], ge=1, le=2**53)


class AgentBody(BaseModel):
    """One agent: required minimum levels in (0, 1], weighted preferences, context need."""

    model_config = _STRICT
    id: Id
    required: dict[CapName, RequiredLevel] = Field(default_factory=dict, max_length=256)
    preferred: dict[CapName, Weight] = Field(default_factory=dict, max_length=256)
    min_context: Tokens = 0


MAX_AGENTS = 10_000
MAX_MODELS = 500


class AutoAssignRequest(BaseModel):
    model_config = _STRICT
    agents: list[AgentBody] = Field(max_length=MAX_AGENTS)
    models: list[ModelBody] = Field(min_length=1, max_length=MAX_MODELS)
    strategy: Strategy = "optimal"
    enable_load_balancing: bool = True
    load_weight: float = Field(0.5, ge=0.0, le=1.0, allow_inf_nan=False)


class AssignmentOut(BaseModel):
    agent_id: str
    model_id: str
    score: float


class AutoAssignResponse(BaseModel):
    """``AssignmentResult.to_dict()``."""

    assignments: list[AssignmentOut]
    total_score: float
    strategy_used: Strategy
    load_balancing_enabled: bool
    models_filtered: int
    avg_utilization: float
    unassigned: list[str]


class StoredAssignment(BaseModel):
    ts: float
    request: dict[str, Any]
    response: dict[str, Any]


class AssignmentsResponse(BaseModel):
    assignments: list[StoredAssignment]


class RouteRequest(BaseModel):
    """Routes one request of ``agent`` to a model of the configured fleet. With ``reserve`` the
    request also takes a slot (or a queue place) until POST feedback names its ``request_id``."""

    model_config = _STRICT
    agent: AgentBody
    reserve: bool = False
    # The request's size: prompt tokens and the most it may generate. Routing passes over
    # models whose RPM, TPM or tokens in flight cannot take it; a reservation holds them.
    tokens: int = Field(0, ge=0, le=2**53, strict=True)
    max_output_tokens: int = Field(0, ge=0, le=2**53, strict=True)


class RouteResponse(BaseModel):
    agent_id: str
    model_id: str
    policy: Policy
    queued: bool = False
    request_id: Optional[str] = None


class FeedbackRequest(BaseModel):
    """A finished request. ``request_id`` (from a reserving route) frees its slot and the
    service measures the latency itself; otherwise ``latency_ms`` is required. ``outcome``
    (one of ``modelrouter.OUTCOMES``) says how it ended: a released reservation reports it to
    the model's health (``rate_limited`` with the provider's ``retry_after_s`` cools the model
    down); without it the outcome is ``ok`` or ``failed`` after ``success``, which an
    ``outcome`` implies (``success`` is true exactly for ``ok``). Feedback without
    ``request_id`` goes through ``Router.record``, which takes only ``success`` for now: any
    failure kind counts against the model there; the store keeps the kind either way."""

    model_config = _STRICT
    model_id: Id
    latency_ms: Optional[float] = Field(None, ge=0.0, le=1e9, allow_inf_nan=False)
    outcome: Optional[OutcomeKind] = None
    retry_after_s: Optional[float] = Field(None, ge=0.0, le=1e9, allow_inf_nan=False)
    success: bool = True
    agent_id: Optional[Id] = None
    request_id: Optional[Id] = None
    # Actual usage, as the provider counts it: reconciles a reservation's TPM window and
    # tokens in flight (with request_id only).
    prompt_tokens: Optional[int] = Field(None, ge=0, le=2**53, strict=True)
    completion_tokens: Optional[int] = Field(None, ge=0, le=2**53, strict=True)
    # Time to the answer's first token as the caller measured it (a stream), in ms from the
    # request's start: teaches the model its TTFT and per-token time (with request_id only).
    ttft_ms: Optional[float] = Field(None, ge=0.0, le=1e9, allow_inf_nan=False, strict=True)

    @field_validator("retry_after_s")
    @classmethod
    def _only_when_rate_limited(cls, value: Optional[float], info: ValidationInfo) -> Any:
        if value is not None and info.data.get("outcome") != "rate_limited":
            raise ValueError('only goes with outcome "rate_limited"')
        return value

    @field_validator("success")
    @classmethod
    def _agrees_with_outcome(cls, value: bool, info: ValidationInfo) -> Any:
        outcome = info.data.get("outcome")
        if outcome is not None and value != (outcome == "ok"):
            raise ValueError(f"contradicts outcome {outcome!r} (true exactly for 'ok')")
        return value

    def outcome_kind(self) -> str:
        """The outcome reported and recorded: the given one, else ``ok``/``failed``."""
        if self.outcome is not None:
            return str(self.outcome)
        return "ok" if self.success else "failed"


class FeedbackResponse(BaseModel):
    model_id: str
    latency_ms: float
    success: bool
    outcome: OutcomeKind
    released: bool


class ErrorResponse(BaseModel):
    detail: Any
    error: str
    field: Optional[str] = None
    retry_after_s: Optional[float] = None


class ModelHealth(BaseModel):
    """A model's health (outlier ejection, cooldowns: ``Router.health()``). ``since`` and
    ``until`` are on the router's clock; ``*_unix`` are the same instants in Unix time."""

    state: HealthState
    since: float
    until: Optional[float] = None
    reason: Optional[str] = None
    ejections: int
    consecutive_errors: int
    since_unix: float
    until_unix: Optional[float] = None


class ModelHealthOut(ModelHealth):
    model_id: str


class ModelsHealthResponse(BaseModel):
    """Every model of the configured fleet (in fleet order) and how many are not healthy."""

    models: list[ModelHealthOut]
    unhealthy: int


class ModelState(BaseModel):
    model_id: str
    active: int
    queued: int
    max_concurrent: int
    max_queue: int
    utilization: float
    target_utilization: float
    is_overloaded: bool
    is_over_target: bool
    routed: int
    stats: dict[str, Any]
    health: Optional[ModelHealth] = None
    rpm: Optional[int] = None
    tpm: Optional[int] = None
    max_tokens_in_flight: Optional[int] = None
    tokens_in_flight: int = 0
    requests_in_window: int = 0
    tokens_in_window: int = 0
    # What the model has learned (Router.token_timing); None until known.
    ttft_ms: Optional[float] = None
    ms_per_output_token: Optional[float] = None


class PerformanceMemory(BaseModel):
    """The PerformanceTracker's bound on distinct agent ids, and what it costs now."""

    agents_tracked: int
    max_agents: int
    evicted_agents: int
    memory_bytes: int


class StatsResponse(BaseModel):
    uptime_s: float
    policy: Policy
    routes: dict[str, int]
    feedback: dict[str, int]
    overall: dict[str, Any]
    avg_utilization: float
    active_alerts: int
    reservations: int
    performance: PerformanceMemory
    models: list[ModelState]


class AlertsResponse(BaseModel):
    active: list[dict[str, Any]]
    history: list[dict[str, Any]]


class HistoryResponse(BaseModel):
    samples: list[dict[str, Any]]


class HealthResponse(BaseModel):
    status: Literal["ok"]
    version: str
    models: int
    store: bool
