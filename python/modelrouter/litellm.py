"""modelrouter inside a LiteLLM Router: keep your ``model_list``, get modelrouter's admission,
policies and health.

::

    router = mr.Router([mr.Model(d["model_info"]["id"], ...) for d in model_list])
    strategy = ModelRouterStrategy(router, model_list, agent=default_agent)
    litellm_router = litellm.Router(model_list=model_list)
    strategy.install(litellm_router)   # the routing strategy + the success/failure callback
    await litellm_router.acompletion(model="gpt", messages=[...], metadata={"agent": "coder"})

Each LiteLLM deployment is the modelrouter model whose id is its ``model_info.id``. A pick
admits the request on the model the router chooses among the deployments of the requested
model group (or on the one named, for ``specific_deployment``); LiteLLM's success and failure
callbacks end it with its outcome (the exception classified as for ``Router.call``: 429 +
Retry-After, 5xx, timeouts, context length), which feeds latency and health back. The agent
comes from ``metadata["agent"]`` (an id of ``agents``) or the default. Picks whose call never
reports back are ended as cancelled after ``hold_limit_s``, so nothing is held forever.
"""

from __future__ import annotations

import collections
import datetime
import math
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from litellm.integrations.custom_logger import CustomLogger
from litellm.types.router import CustomRoutingStrategyBase

from . import _usage
from .errors import InvalidInputError, UnknownModelError
from .outcomes import classify

if TYPE_CHECKING:
    from ._core import Agent, InFlight, Router

__all__ = ["ModelRouterStrategy"]

# LiteLLM's exception class names (in a retry's metadata["previous_models"]) -> outcome kinds.
_KIND_OF_EXCEPTION = {
    "RateLimitError": "rate_limited",
    "InternalServerError": "server_error",
    "ServiceUnavailableError": "server_error",
    "BadGatewayError": "server_error",
    "APIError": "server_error",
    "APIConnectionError": "server_error",
    "Timeout": "timeout",
    "APITimeoutError": "timeout",
    "ContextWindowExceededError": "context_length",
    "BadRequestError": "client_error",
    "AuthenticationError": "client_error",
    "PermissionDeniedError": "client_error",
    "NotFoundError": "client_error",
    "UnprocessableEntityError": "client_error",
    "ContentPolicyViolationError": "client_error",
}


def _deployment_id(deployment: Mapping[str, Any]) -> str:
    info = deployment.get("model_info") or {}
    did = info.get("id") if isinstance(info, Mapping) else None
    if not isinstance(did, str) or not did:
        raise InvalidInputError("every deployment needs model_info.id (its model id)", "model_list")
    return did


def _id_in(record: Any) -> str | None:
    """The deployment id a LiteLLM record names, wherever its version puts it: ``deployment_id``,
    ``model_info.id``, or ``model_info.id`` of its ``metadata`` / ``litellm_metadata`` (where
    the router writes the picked deployment's model_info; a retry's breadcrumb copies it)."""
    if not isinstance(record, Mapping):
        return None
    did = record.get("deployment_id")
    if isinstance(did, str) and did:
        return did
    for holder in (record, record.get("metadata"), record.get("litellm_metadata")):
        info = holder.get("model_info") if isinstance(holder, Mapping) else None
        did = info.get("id") if isinstance(info, Mapping) else None
        if isinstance(did, str) and did:
            return did
    return None


class _Dispatcher(CustomLogger):  # type: ignore[misc]
    """The one LiteLLM logger of this module. LiteLLM keeps a single instance of a logger class
    (it deduplicates them by class and settings), so each call's end is handed from here to
    every live strategy; a strategy acts only on its own picks."""

    def __init__(self) -> None:
        super().__init__()
        self.strategies: weakref.WeakSet[ModelRouterStrategy] = weakref.WeakSet()

    def log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        ttft_ms = _time_to_first_token_ms(kwargs, start_time)
        for strategy in list(self.strategies):
            strategy._ended(kwargs, None, response_obj, ttft_ms)

    def log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        exc = kwargs.get("exception") or RuntimeError("LiteLLM call failed")
        for strategy in list(self.strategies):
            strategy._ended(kwargs, exc)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.log_success_event(kwargs, response_obj, start_time, end_time)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.log_failure_event(kwargs, response_obj, start_time, end_time)


def _time_to_first_token_ms(kwargs: Any, start_time: Any) -> float | None:
    """LiteLLM's own time to the first chunk of a stream (``completion_start_time`` after the
    call's start); None for a call that was not streamed (LiteLLM then sets it to the end)."""
    if not isinstance(kwargs, Mapping):
        return None
    params = kwargs.get("optional_params") or {}
    if not (kwargs.get("stream") is True or params.get("stream") is True):
        return None
    first = kwargs.get("completion_start_time")
    if not isinstance(first, datetime.datetime) or not isinstance(start_time, datetime.datetime):
        return None
    try:
        ms = (first - start_time).total_seconds() * 1000.0
    except TypeError:  # one aware, one naive
        return None
    return ms if math.isfinite(ms) and ms >= 0 else None


_DISPATCHER: _Dispatcher | None = None
_DISPATCHER_LOCK = threading.Lock()


def _dispatcher() -> _Dispatcher:
    """Registers the dispatcher with LiteLLM once per process."""
    global _DISPATCHER
    with _DISPATCHER_LOCK:
        if _DISPATCHER is None:
            import litellm

            _DISPATCHER = _Dispatcher()
            # `litellm.callbacks` is sorted into LiteLLM's sync and async lists when its first
            # call is set up; after that a logger must go into those lists itself.
            manager = getattr(litellm, "logging_callback_manager", None)
            if manager is None:
                litellm.callbacks.append(_DISPATCHER)
            else:
                for add in (
                    manager.add_litellm_callback,
                    manager.add_litellm_success_callback,
                    manager.add_litellm_failure_callback,
                    manager.add_litellm_async_success_callback,
                    manager.add_litellm_async_failure_callback,
                ):
                    add(_DISPATCHER)
        return _DISPATCHER


class _Trace:
    """What one LiteLLM call (its ``litellm_trace_id``) has failed on, kept so that its retries
    avoid those deployments whichever way LiteLLM reported the failure."""

    __slots__ = ("at", "failed", "by_callback", "seen")

    def __init__(self, at: float) -> None:
        self.at = at
        self.failed: list[str] = []  # every deployment an attempt failed on, in order
        # Failures the callback ended that no breadcrumb has matched yet (per deployment).
        self.by_callback: collections.Counter[str] = collections.Counter()
        self.seen: set[int] = set()  # breadcrumbs (id of LiteLLM's dict) already handled


# Traces remembered at most (besides expiring after the hold limit).
_MAX_TRACES = 4096


class ModelRouterStrategy(CustomRoutingStrategyBase):  # type: ignore[misc]
    """A LiteLLM custom routing strategy; ``install`` also has LiteLLM's callbacks end its
    requests."""

    def __init__(
        self,
        router: Router,
        model_list: Sequence[Mapping[str, Any]],
        *,
        agent: Agent | None = None,
        agents: Mapping[str, Agent] | None = None,
        hold_limit_s: float = 600.0,
    ) -> None:
        self.router, self.agent, self.agents = router, agent, dict(agents or {})
        self._deployments = {_deployment_id(d): d for d in model_list}
        known = {m.id for m in router.models}
        missing = sorted(set(self._deployments) - known)
        if missing:
            raise InvalidInputError(
                f"deployments that are not router models: {missing}", "model_list"
            )
        self._groups: dict[str, list[str]] = collections.defaultdict(list)
        for did, d in self._deployments.items():
            self._groups[str(d.get("model_name"))].append(did)
        self._hold_limit_s = float(hold_limit_s)
        # (trace id, deployment id) -> requests admitted and not yet reported, oldest first.
        self._open: collections.OrderedDict[tuple[str | None, str], list[tuple[float, InFlight]]]
        self._open = collections.OrderedDict()
        # trace id -> the deployments that call has failed on (most recent trace last).
        self._traces: collections.OrderedDict[str, _Trace] = collections.OrderedDict()
        self._lock = threading.Lock()

    def install(self, litellm_router: Any) -> None:
        """Makes this the router's routing strategy and adds it to LiteLLM's callbacks."""

        register = getattr(litellm_router, "register_plugin", None)
        if register is None:  # LiteLLM before register_plugin
            register = litellm_router.set_custom_routing_strategy
        register(self)
        _dispatcher().strategies.add(self)

    # -- picks ------------------------------------------------------------------------------

    def _agent(self, request_kwargs: Mapping[str, Any] | None) -> Agent:
        metadata = (request_kwargs or {}).get("metadata") or {}
        name = metadata.get("agent") if isinstance(metadata, Mapping) else None
        if name is not None:
            if name not in self.agents:
                raise InvalidInputError(f"unknown agent {name!r} in metadata", "agent")
            return self.agents[name]
        if self.agent is None:
            raise InvalidInputError("no agent: pass metadata={'agent': id} or a default", "agent")
        return self.agent

    def _admit(
        self,
        model: str,
        specific: bool | None,
        request_kwargs: Mapping[str, Any] | None,
        messages: Any = None,
        input: Any = None,
    ) -> Mapping[str, Any]:
        agent = self._agent(request_kwargs)
        size = _usage.estimate({**(request_kwargs or {}), "messages": messages, "input": input})
        trace = (request_kwargs or {}).get("litellm_trace_id")
        failed_before = self._end_previous(trace, request_kwargs)
        if specific or model in self._deployments and model not in self._groups:
            if model not in self._deployments:
                raise UnknownModelError(model)
            flight = self.router._admit_on(agent, model, *size)  # type: ignore[attr-defined]
        else:
            group = self._groups.get(model)
            if not group:
                raise UnknownModelError(model)
            others = [m for m in self._deployments if m not in group]
            if not set(group) <= set(failed_before):  # a retry: never where it just failed
                others += failed_before
            flight = self.router._admit_avoiding(agent, others, None, *size)  # type: ignore[attr-defined]
        now = time.monotonic()
        with self._lock:
            self._open.setdefault((trace, flight.model_id), []).append((now, flight))
            stale = self._expire(now)
        for f in stale:
            f.fail("cancelled")
            f.release(False)
        return self._deployments[flight.model_id]

    def _end_previous(self, trace: Any, request_kwargs: Mapping[str, Any] | None) -> list[str]:
        """A retry's pick: returns the deployments this call (its trace id) already failed on,
        for the retry to avoid, and ends the attempts that failed and are still open.

        LiteLLM lists each failed attempt in the retry's ``metadata["previous_models"]``, but
        what a breadcrumb holds depends on the version: 1.110 names ``deployment_id``; 1.53 to
        1.83 copy the attempt's kwargs and metadata instead (the deployment is only their
        ``metadata.model_info.id``) into one router-wide list that also holds other calls'
        attempts, hence the trace check. Every version tested (1.53.1, 1.55.0, 1.83.0, 1.110.2)
        awaits its async failure callbacks before it retries, so the callback has usually
        ended the attempt and recorded it under the trace already (``_ended``), and the
        breadcrumb only confirms it; an attempt whose callback has not run yet is ended here,
        with the outcome its exception class names (the late callback then finds nothing left
        to end)."""
        if trace is None:
            return []
        kwargs = request_kwargs or {}
        previous: list[Mapping[str, Any]] = []
        retrying = False
        for name in ("litellm_metadata", "metadata"):
            metadata = kwargs.get(name)
            if not isinstance(metadata, Mapping):
                continue
            crumbs = metadata.get("previous_models")
            if isinstance(crumbs, (list, tuple)):
                previous += [
                    c
                    for c in crumbs
                    if isinstance(c, Mapping) and c.get("litellm_trace_id", trace) == trace
                ]
            attempted = metadata.get("attempted_retries")
            retrying = retrying or (isinstance(attempted, int) and attempted > 0)
        if not previous and not retrying:
            return []
        to_end: list[tuple[InFlight, str]] = []
        with self._lock:
            record = self._traces.get(trace)
            if record is None:
                record = self._traces[trace] = _Trace(time.monotonic())
            for attempt in previous:
                if id(attempt) in record.seen:
                    continue
                record.seen.add(id(attempt))
                did = _id_in(attempt)
                if did is None:
                    continue
                if record.by_callback[did] > 0:  # the callback ended (and recorded) it already
                    record.by_callback[did] -= 1
                    continue
                record.failed.append(did)
                held = self._open.get((trace, did))
                if held:
                    kind = _KIND_OF_EXCEPTION.get(str(attempt.get("exception_type")), "failed")
                    to_end.append((held.pop(0)[1], kind))
                    if not held:
                        del self._open[(trace, did)]
            failed = list(dict.fromkeys(record.failed))
        for flight, kind in to_end:
            flight.fail(kind)
            flight.release(False)
        return failed

    def _expire(self, now: float) -> list[InFlight]:
        """Takes out picks older than the hold limit, and forgets traces not heard of for as
        long (under the lock)."""
        while self._traces:
            trace, record = next(iter(self._traces.items()))
            if now - record.at < self._hold_limit_s and len(self._traces) <= _MAX_TRACES:
                break
            del self._traces[trace]
        stale: list[InFlight] = []
        while self._open:
            key, held = next(iter(self._open.items()))
            if now - held[0][0] < self._hold_limit_s:
                break
            stale.append(held.pop(0)[1])
            if not held:
                del self._open[key]
        return stale

    async def async_get_available_deployment(
        self,
        model: str,
        messages: Any = None,
        input: Any = None,
        specific_deployment: bool | None = False,
        request_kwargs: Any = None,
    ) -> Any:
        return self._admit(model, specific_deployment, request_kwargs, messages, input)

    def get_available_deployment(
        self,
        model: str,
        messages: Any = None,
        input: Any = None,
        specific_deployment: bool | None = False,
        request_kwargs: Any = None,
    ) -> Any:
        return self._admit(model, specific_deployment, request_kwargs, messages, input)

    # -- callbacks --------------------------------------------------------------------------

    def _take(self, kwargs: Mapping[str, Any]) -> tuple[str | None, InFlight | None]:
        """The open pick a callback's call reports on, and its trace id."""
        params = kwargs.get("litellm_params") or {}
        did = _id_in(params) or _id_in(kwargs)
        trace = kwargs.get("litellm_trace_id") or params.get("litellm_trace_id")
        with self._lock:
            key = (trace, did)
            if trace is None:  # no trace id: the oldest open pick of that deployment
                key = next((k for k in self._open if k[1] == did), key)
            held = self._open.get(key)
            if not held:
                return trace, None
            _, flight = held.pop(0)
            if not held:
                del self._open[key]
        return trace, flight

    def _ended(
        self,
        kwargs: Mapping[str, Any],
        exc: BaseException | None,
        response: Any = None,
        ttft_ms: float | None = None,
    ) -> None:
        trace, flight = self._take(kwargs)
        if flight is None:
            return
        if exc is None:
            if trace is not None:
                with self._lock:  # the call is over: nothing left to avoid for it
                    self._traces.pop(trace, None)
            if ttft_ms is not None:  # a stream: the model learns its time to first token
                flight.first_token(ttft_ms)
            _usage.report(flight, _usage.usage_of(response))
            flight.release(True)
            return
        outcome = classify(exc)
        flight._fail_classified(outcome.kind, outcome.retry_after_s)  # type: ignore[attr-defined]
        flight.release(False)
        if trace is not None:
            with self._lock:  # the retry, picked after this, avoids the deployment
                record = self._traces.pop(trace, None) or _Trace(0.0)
                record.at = time.monotonic()
                record.by_callback[flight.model_id] += 1
                record.failed.append(flight.model_id)
                self._traces[trace] = record

    def open_requests(self) -> int:
        """Picks admitted and not yet reported back."""
        with self._lock:
            return sum(len(v) for v in self._open.values())
