"""State of one service process: the router of the configured fleet (whose core
PerformanceTracker and LoadTracker hold every latency, outcome and load figure), routing
counters, open reservations, the alert manager, a short in-memory history for the dashboard,
and the Prometheus text rendering of all of it. Touched only from the event loop's thread."""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import __version__
from ._core import (
    Agent,
    AlertManager,
    AlertRule,
    InFlight,
    LatencyHistogram,
    LoadTracker,
    ManualClock,
    Model,
    PerformanceTracker,
    Router,
    now,
)
from .errors import InvalidInputError, RouterError
from .store import DecisionStore

log = logging.getLogger("modelrouter.server")

# Upper bounds (ms) of the buckets of the exported latency histogram (read from the core's).
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
ROUTE_OUTCOMES = ("routed", "queued", "no_capacity", "infeasible")
HEALTH_STATES = ("healthy", "ejected", "cooling_down", "probing")


def default_alert_rules() -> list[AlertRule]:
    """Rules used when the caller gives none: slow, failing, overloaded, full or ejected
    (taken out by their health: ejected, cooling down, probing) models."""
    return [
        AlertRule("high_latency", 5000.0, severity="warning", for_s=10.0, min_samples=20),
        AlertRule("low_success_rate", 0.9, severity="error", for_s=10.0, min_samples=20),
        AlertRule("overload", 1.0, severity="critical"),
        AlertRule("over_target_utilization", 1.0, severity="warning", for_s=30.0),
        AlertRule("no_capacity", 0.0, severity="critical"),
        AlertRule("model_ejected", 0.0, severity="error"),
    ]


class ServiceUnavailableError(RouterError):
    """The service will not take a decision it could not keep: it is shutting down (after
    SIGTERM) or its decision store is not keeping up. Answered 503 with ``Retry-After``;
    nothing was reserved, released or recorded, so the client may simply retry (elsewhere)."""

    def __init__(self, message: str, retry_after_s: float = 1.0, closing: bool = False) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.closing = closing  # the connection should not be reused: this process is leaving


class Reservation:
    __slots__ = ("flight", "agent_id", "started")

    def __init__(self, flight: InFlight, agent_id: str, started: float) -> None:
        # `started` is on the router's clock, the one the flight measures its latency with.
        self.flight, self.agent_id, self.started = flight, agent_id, started


class ServiceState:
    def __init__(
        self,
        models: Sequence[Model],
        *,
        strategy: str,
        policy: str,
        load_weight: float,
        store: DecisionStore | None,
        alert_rules: Sequence[AlertRule] | None,
        alert_cooldown_s: float,
        reservation_ttl_s: float,
        load_backend: str | None = None,
        history_len: int = 720,
        stats_window_s: float = 300.0,
        clock: ManualClock | None = None,
    ) -> None:
        # The router's own tracker, windowed: per-model and fleet-wide stats, the alerts and
        # the dashboard read the last `stats_window_s`; the Prometheus histogram and counters
        # read its since-start totals.
        self.router = Router(
            list(models),
            strategy=strategy,  # type: ignore[arg-type]
            load_weight=load_weight,
            policy=policy,  # type: ignore[arg-type]
            load=LoadTracker(backend=load_backend, clock=clock),
            performance=PerformanceTracker(window_s=stats_window_s, clock=clock),
        )
        self.policy = policy
        self.store = store
        rules = default_alert_rules() if alert_rules is None else list(alert_rules)
        self.alerts = AlertManager(
            rules,
            cooldown_s=alert_cooldown_s,
            performance=self.router.performance,
            load=self.router.load_tracker,
            health=self.router,
            clock=clock,
        )
        self.started = time.time()
        self.routes: Counter[str] = Counter()
        self.routed_to: Counter[str] = Counter()
        self.reservations: dict[str, Reservation] = {}
        self.reservation_ttl_s = reservation_ttl_s
        self._ids = itertools.count(1)
        self.recent_assignments: deque[dict[str, Any]] = deque(maxlen=100)
        self.history: deque[dict[str, Any]] = deque(maxlen=history_len)
        self.unexpected_errors = 0
        self._agents: dict[tuple[Any, ...], Agent] = {}
        # Set by SIGTERM/SIGINT (see server.py): from then on no decision is acknowledged.
        self.draining = False

    # -- admission of decisions -----------------------------------------------------------------
    def store_room(self) -> int | None:
        """Rows the store takes without blocking (``BaseStore.room()``), None when unknown."""
        room = getattr(self.store, "room", None)
        free = room() if callable(room) else None
        return free if isinstance(free, int) and not isinstance(free, bool) else None

    def check_can_decide(self, rows: int = 1) -> None:
        """Raises ``ServiceUnavailableError`` when a decision now could not be kept: after
        SIGTERM (the process is about to exit), or when the store's queue has no room for its
        ``rows`` (acknowledging it would mean blocking the event loop, or holding more
        acknowledged rows in memory than the store bounds). Called before anything is
        reserved, released or recorded. Thread-safe (reads only)."""
        if self.draining:
            raise ServiceUnavailableError(
                "the service is shutting down and takes no new decisions; retry on another"
                " instance",
                closing=True,
            )
        room = self.store_room()
        if room is not None and room < rows:
            raise ServiceUnavailableError(
                "the decision store is not keeping up (its queue is full); nothing was"
                " decided or recorded, retry shortly"
            )

    # -- requests -------------------------------------------------------------------------------
    def agent_for(
        self,
        agent_id: str,
        required: Mapping[str, float],
        preferred: Mapping[str, float],
        min_context: int,
    ) -> Agent:
        """The core ``Agent`` of a route body, cached: callers route the same agents over and
        over. Core validation errors name the field under ``agent.``."""
        key = (agent_id, tuple(required.items()), tuple(preferred.items()), min_context)
        agent = self._agents.get(key)
        if agent is None:
            try:
                agent = Agent(agent_id, required, preferred, min_context=min_context)
            except InvalidInputError as e:
                raise InvalidInputError(f"agent.{e.field}: {e}", f"agent.{e.field}") from e
            if len(self._agents) >= 4096:
                self._agents.clear()
            self._agents[key] = agent
        return agent

    def now(self) -> float:
        """Now on the router's clock (the core's monotonic default unless a clock was given)."""
        return self.router.load_tracker.now()

    def new_request_id(self) -> str:
        return f"{os.getpid():x}-{next(self._ids)}"

    def expire_reservations(self) -> int:
        """Releases (as failed, which the core records with the time held) reservations older
        than the TTL: a client that never sent its feedback must not hold a slot forever."""
        cutoff = self.now() - self.reservation_ttl_s
        stale = [k for k, r in self.reservations.items() if r.started < cutoff]
        for key in stale:
            self.reservations.pop(key).flight.release(False)
        return len(stale)

    # -- periodic sampling ----------------------------------------------------------------------
    def utilization(self) -> dict[str, float]:
        out = {}
        for m in self.router.models:
            load = self.router.load_tracker.current_load(m.id)
            out[m.id] = load.utilization if load is not None else 0.0
        return out

    def sample(self) -> dict[str, Any]:
        """One tick of the background task: expire reservations, evaluate the alerts, keep a
        history point and hand the utilization to the store."""
        self.expire_reservations()
        try:
            self.alerts.evaluate()
        except Exception:  # never let one bad evaluation stop the sampler
            log.exception("alert evaluation failed")
        util = self.utilization()
        overall = self.overall_stats()
        point = {
            "ts": time.time(),
            "routes": sum(self.routes.values()),
            "p50_ms": overall["p50_ms"],
            "p95_ms": overall["p95_ms"],
            "p99_ms": overall["p99_ms"],
            "utilization": util,
        }
        self.history.append(point)
        if self.store is not None:
            room = self.store_room()
            if room is None or room >= len(util):  # never block the event loop for a sample
                self.store.record_utilization(util, ts=point["ts"])
            else:
                # The store logs the queue filling up (once); a skipped sample is not news.
                log.debug("decision store queue full: utilization sample not recorded")
        return point

    # -- views ----------------------------------------------------------------------------------
    def overall_stats(self) -> dict[str, Any]:
        """Latency and success statistics of the whole fleet over the stats window."""
        return _clean(self.router.performance.fleet_stats().to_dict())

    def latency_histograms(
        self, bounds_ms: Sequence[float] = LATENCY_BUCKETS_MS
    ) -> dict[str, LatencyHistogram]:
        """Each model's since-start latency histogram (counts, outcomes, sum), by sorted id."""
        perf = self.router.performance
        return {m: perf.latency_histogram(m, bounds_ms) for m in perf.model_ids()}

    def health(self) -> list[dict[str, Any]]:
        """Each model's health (``Router.health()``) in fleet order, with ``model_id`` and its
        instants also in Unix time (``since_unix``, ``until_unix``)."""
        offset = time.time() - self.now()
        out = []
        for model_id, view in self.router.health().items():
            d: dict[str, Any] = {"model_id": model_id, **view}
            d["since_unix"] = view["since"] + offset
            until = view["until"]
            d["until_unix"] = None if until is None else until + offset
            out.append(d)
        return out

    def stats(self, histograms: Mapping[str, LatencyHistogram] | None = None) -> dict[str, Any]:
        if histograms is None:
            histograms = self.latency_histograms(())  # only the totals
        models: list[dict[str, Any]] = []
        health = {h["model_id"]: h for h in self.health()}
        for m in self.router.models:
            load = self.router.load_tracker.current_load(m.id)
            ttft, per_token = self.router.token_timing(m.id)
            models.append(
                {
                    "model_id": m.id,
                    "active": load.active_requests if load else 0,
                    "queued": load.queue_depth if load else 0,
                    "max_concurrent": m.max_concurrent,
                    "max_queue": m.max_queue,
                    "utilization": load.utilization if load else 0.0,
                    "target_utilization": m.target_utilization,
                    "is_overloaded": bool(load and load.is_overloaded),
                    "is_over_target": bool(load and load.is_over_target),
                    "routed": self.routed_to[m.id],
                    "rpm": m.rpm,
                    "tpm": m.tpm,
                    "max_tokens_in_flight": m.max_tokens_in_flight,
                    "tokens_in_flight": load.tokens_in_flight if load else 0,
                    "requests_in_window": load.requests_in_window if load else 0,
                    "tokens_in_window": load.tokens_in_window if load else 0,
                    "ttft_ms": None if math.isnan(ttft) else ttft,
                    "ms_per_output_token": None if math.isnan(per_token) else per_token,
                    "stats": _clean(self.router.performance.stats(m.id).to_dict()),
                    "health": {k: v for k, v in health[m.id].items() if k != "model_id"},
                }
            )
        routes = {k: self.routes[k] for k in ROUTE_OUTCOMES}
        routes["total"] = sum(routes.values())
        ok = sum(h.successes for h in histograms.values())
        bad = sum(h.failures for h in histograms.values())
        util = [x["utilization"] for x in models]
        return {
            "uptime_s": time.time() - self.started,
            "policy": self.policy,
            "routes": routes,
            "feedback": {"total": ok + bad, "success": ok, "failure": bad},
            "overall": self.overall_stats(),
            "avg_utilization": sum(util) / len(util) if util else 0.0,
            "active_alerts": len(self.alerts.active()),
            "reservations": len(self.reservations),
            "performance": {
                "agents_tracked": self.router.performance.agents_tracked,
                "max_agents": self.router.performance.max_agents,
                "evicted_agents": self.router.performance.evicted_agents,
                "memory_bytes": self.router.performance.memory_bytes(),
            },
            "models": models,
        }

    def metrics(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        out: list[str] = []
        histograms = self.latency_histograms()
        stats = self.stats(histograms)
        gauges = (
            ("active_requests", "active", "Requests holding a slot."),
            ("queued_requests", "queued", "Requests waiting in the model's queue."),
            ("utilization", "utilization", "Active requests over max_concurrent."),
            ("max_concurrent", "max_concurrent", "Configured concurrent slots."),
            ("tokens_in_flight", "tokens_in_flight", "Tokens held by requests in flight."),
            ("requests_in_window", "requests_in_window", "Requests admitted in the last 60 s."),
            ("tokens_in_window", "tokens_in_window", "Tokens admitted in the last 60 s (TPM)."),
        )
        for name, key, help_ in gauges:
            _family(out, f"modelrouter_{name}", "gauge", help_)
            for m in stats["models"]:
                out.append(_line(f"modelrouter_{name}", {"model": m["model_id"]}, m[key]))
        name = "modelrouter_quota_usage"
        _family(out, name, "gauge", "Share of a model's RPM, TPM or token capacity in use.")
        for m in stats["models"]:
            for limit, used in (
                ("rpm", "requests_in_window"),
                ("tpm", "tokens_in_window"),
                ("max_tokens_in_flight", "tokens_in_flight"),
            ):
                if m[limit]:
                    labels = {"model": m["model_id"], "limit": limit}
                    out.append(_line(name, labels, m[used] / m[limit]))
        _family(out, "modelrouter_routes_total", "counter", "Routing decisions by outcome.")
        for outcome in ROUTE_OUTCOMES:
            out.append(
                _line("modelrouter_routes_total", {"outcome": outcome}, stats["routes"][outcome])
            )
        _family(out, "modelrouter_routed_total", "counter", "Requests routed to each model.")
        for m in stats["models"]:
            out.append(_line("modelrouter_routed_total", {"model": m["model_id"]}, m["routed"]))
        _family(out, "modelrouter_feedback_total", "counter", "Finished requests by outcome.")
        # Models without any finished request are left out, as before the first feedback.
        seen = [(m, h) for m, h in histograms.items() if h.count]
        for model, h in seen:
            for success, n in (("false", h.failures), ("true", h.successes)):
                if n:
                    labels = {"model": model, "success": success}
                    out.append(_line("modelrouter_feedback_total", labels, n))
        name = "modelrouter_request_latency_ms"
        _family(out, name, "histogram", "Latency of finished requests in milliseconds.")
        for model, h in seen:
            for bound, n in zip(LATENCY_BUCKETS_MS, h.counts):
                out.append(_line(f"{name}_bucket", {"model": model, "le": str(bound)}, n))
            out.append(_line(f"{name}_bucket", {"model": model, "le": "+Inf"}, h.count))
            out.append(_line(f"{name}_sum", {"model": model}, h.sum_ms))
            out.append(_line(f"{name}_count", {"model": model}, h.count))
        name = "modelrouter_model_health"
        _family(out, name, "gauge", "1 for the model's current health state, else 0.")
        for m in stats["models"]:
            for health_state in HEALTH_STATES:
                current = int(m["health"]["state"] == health_state)
                out.append(_line(name, {"model": m["model_id"], "state": health_state}, current))
        name = "modelrouter_model_ejections_total"
        _family(out, name, "counter", "Times the model was ejected (outlier detection).")
        for m in stats["models"]:
            out.append(_line(name, {"model": m["model_id"]}, m["health"]["ejections"]))
        retries = self.router.retry_stats()
        name = "modelrouter_retries_total"
        _family(out, name, "counter", "Retries of router.call by outcome of the retry budget.")
        out.append(_line(name, {"budget": "granted"}, retries["granted"]))
        out.append(_line(name, {"budget": "refused"}, retries["refused"]))
        perf = stats["performance"]
        _family(out, "modelrouter_agents_tracked", "gauge", "Agent ids with statistics.")
        out.append(_line("modelrouter_agents_tracked", {}, perf["agents_tracked"]))
        name = "modelrouter_agents_evicted_total"
        _family(out, name, "counter", "Agent ids dropped to stay within max_agents.")
        out.append(_line(name, {}, perf["evicted_agents"]))
        active = self.alerts.active()
        _family(out, "modelrouter_alerts_firing", "gauge", "Firing alerts by severity.")
        by_severity = Counter(a.severity for a in active)
        for sev in ("info", "warning", "error", "critical"):
            out.append(_line("modelrouter_alerts_firing", {"severity": sev}, by_severity[sev]))
        _family(out, "modelrouter_alert", "gauge", "1 for each firing alert.")
        for a in active:
            labels = {"type": a.type, "severity": a.severity, "model": a.model_id or ""}
            out.append(_line("modelrouter_alert", labels, 1))
        _family(out, "modelrouter_build_info", "gauge", "Version of the service.")
        out.append(_line("modelrouter_build_info", {"version": __version__}, 1))
        return "\n".join(out) + "\n"


def _clean(d: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe copy: non-finite floats become None."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def alert_dicts(alerts: Iterable[Any], clock_now: float | None = None) -> list[dict[str, Any]]:
    """Alert dicts plus ``emitted_at_unix``/``started_at_unix`` (the core stamps alerts with
    its clock, whose now is ``clock_now``: by default the core's monotonic clock)."""
    offset = time.time() - (now() if clock_now is None else clock_now)
    out = []
    for a in alerts:
        d = _clean(a.to_dict())
        d["emitted_at_unix"] = a.emitted_at + offset
        d["started_at_unix"] = a.started_at + offset
        out.append(d)
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(out: list[str], name: str, kind: str, help_: str) -> None:
    out.append(f"# HELP {name} {help_}")
    out.append(f"# TYPE {name} {kind}")


def _line(name: str, labels: Mapping[str, str], value: float) -> str:
    body = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    if isinstance(value, bool):
        value = int(value)
    text = repr(float(value)) if isinstance(value, float) else str(value)
    if text in ("inf", "-inf", "nan"):
        text = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}[text]
    return f"{name}{{{body}}} {text}" if body else f"{name} {text}"
