"""State of one service process: the router of the configured fleet, counters, the latency
histogram, open reservations, the alert manager, a short in-memory history for the dashboard,
and the Prometheus text rendering of all of it. Touched only from the event loop's thread."""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import os
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import __version__
from ._core import (
    Agent,
    AlertManager,
    AlertRule,
    InFlight,
    LoadTracker,
    Model,
    PerformanceTracker,
    Router,
)
from .errors import InvalidInputError
from .store import DecisionStore

log = logging.getLogger("modelrouter.server")

# Upper bounds (ms) of the latency histogram's buckets.
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
ROUTE_OUTCOMES = ("routed", "queued", "no_capacity", "infeasible")


def default_alert_rules() -> list[AlertRule]:
    """Rules used when the caller gives none: slow, failing, overloaded or full models."""
    return [
        AlertRule("high_latency", 5000.0, severity="warning", for_s=10.0, min_samples=20),
        AlertRule("low_success_rate", 0.9, severity="error", for_s=10.0, min_samples=20),
        AlertRule("overload", 1.0, severity="critical"),
        AlertRule("over_target_utilization", 1.0, severity="warning", for_s=30.0),
        AlertRule("no_capacity", 0.0, severity="critical"),
    ]


class Reservation:
    __slots__ = ("flight", "agent_id", "started")

    def __init__(self, flight: InFlight, agent_id: str) -> None:
        self.flight, self.agent_id, self.started = flight, agent_id, time.monotonic()


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
        overall_window_s: float = 300.0,
    ) -> None:
        self.router = Router(
            list(models),
            strategy=strategy,  # type: ignore[arg-type]
            load_weight=load_weight,
            policy=policy,  # type: ignore[arg-type]
            backend=load_backend,
        )
        self.policy = policy
        self.store = store
        rules = default_alert_rules() if alert_rules is None else list(alert_rules)
        self.alerts = AlertManager(
            rules,
            cooldown_s=alert_cooldown_s,
            performance=self.router.performance,
            load=self.router.tracker,
        )
        # Fleet-wide latency and success over a sliding window: what the dashboard cards show.
        self.overall = PerformanceTracker(window_s=overall_window_s)
        self.started = time.time()
        self.routes: Counter[str] = Counter()
        self.routed_to: Counter[str] = Counter()
        self.feedback: Counter[tuple[str, bool]] = Counter()
        self.buckets: dict[str, list[int]] = {}
        self.latency_sum: defaultdict[str, float] = defaultdict(float)
        self.reservations: dict[str, Reservation] = {}
        self.reservation_ttl_s = reservation_ttl_s
        self._ids = itertools.count(1)
        self.recent_assignments: deque[dict[str, Any]] = deque(maxlen=100)
        self.history: deque[dict[str, Any]] = deque(maxlen=history_len)
        self.unexpected_errors = 0
        self._agents: dict[tuple[Any, ...], Agent] = {}

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

    def new_request_id(self) -> str:
        return f"{os.getpid():x}-{next(self._ids)}"

    def observe_latency(self, model_id: str, latency_ms: float, success: bool) -> None:
        counts = self.buckets.get(model_id)
        if counts is None:
            counts = self.buckets[model_id] = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        counts[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1
        self.latency_sum[model_id] += latency_ms
        self.feedback[(model_id, success)] += 1
        self.overall.record("all", latency_ms, success)

    def expire_reservations(self) -> int:
        """Releases (as failed) reservations older than the TTL: a client that never sent its
        feedback must not hold a slot forever."""
        cutoff = time.monotonic() - self.reservation_ttl_s
        stale = [k for k, r in self.reservations.items() if r.started < cutoff]
        for key in stale:
            res = self.reservations.pop(key)
            res.flight.release(False)
            self.observe_latency(res.flight.model_id, self.reservation_ttl_s * 1000.0, False)
        return len(stale)

    # -- periodic sampling ----------------------------------------------------------------------
    def utilization(self) -> dict[str, float]:
        out = {}
        for m in self.router.models:
            load = self.router.tracker.current_load(m.id)
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
            self.store.record_utilization(util, ts=point["ts"])
        return point

    # -- views ----------------------------------------------------------------------------------
    def overall_stats(self) -> dict[str, Any]:
        """Latency and success statistics over every model's feedback."""
        if self.feedback:
            return _clean(self.overall.stats("all").to_dict())
        keys = ("count", "successes", "failures")
        empty = ("success_rate", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "ewma_ms")
        return {**dict.fromkeys(keys, 0), **dict.fromkeys(empty)}

    def stats(self) -> dict[str, Any]:
        models: list[dict[str, Any]] = []
        for m in self.router.models:
            load = self.router.tracker.current_load(m.id)
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
                    "stats": _clean(self.router.performance.stats(m.id).to_dict()),
                }
            )
        routes = {k: self.routes[k] for k in ROUTE_OUTCOMES}
        routes["total"] = sum(routes.values())
        ok = sum(n for (_, s), n in self.feedback.items() if s)
        bad = sum(n for (_, s), n in self.feedback.items() if not s)
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
            "models": models,
        }

    def metrics(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        out: list[str] = []
        stats = self.stats()
        gauges = (
            ("active_requests", "active", "Requests holding a slot."),
            ("queued_requests", "queued", "Requests waiting in the model's queue."),
            ("utilization", "utilization", "Active requests over max_concurrent."),
            ("max_concurrent", "max_concurrent", "Configured concurrent slots."),
        )
        for name, key, help_ in gauges:
            _family(out, f"modelrouter_{name}", "gauge", help_)
            for m in stats["models"]:
                out.append(_line(f"modelrouter_{name}", {"model": m["model_id"]}, m[key]))
        _family(out, "modelrouter_routes_total", "counter", "Routing decisions by outcome.")
        for outcome in ROUTE_OUTCOMES:
            out.append(
                _line("modelrouter_routes_total", {"outcome": outcome}, stats["routes"][outcome])
            )
        _family(out, "modelrouter_routed_total", "counter", "Requests routed to each model.")
        for m in stats["models"]:
            out.append(_line("modelrouter_routed_total", {"model": m["model_id"]}, m["routed"]))
        _family(out, "modelrouter_feedback_total", "counter", "Finished requests by outcome.")
        for (model, success), n in sorted(self.feedback.items()):
            labels = {"model": model, "success": "true" if success else "false"}
            out.append(_line("modelrouter_feedback_total", labels, n))
        name = "modelrouter_request_latency_ms"
        _family(out, name, "histogram", "Latency of finished requests in milliseconds.")
        for model, counts in sorted(self.buckets.items()):
            cumulative = 0
            for bound, n in zip(itertools.chain(LATENCY_BUCKETS_MS, ["+Inf"]), counts):
                cumulative += n
                out.append(_line(f"{name}_bucket", {"model": model, "le": str(bound)}, cumulative))
            out.append(_line(f"{name}_sum", {"model": model}, self.latency_sum[model]))
            out.append(_line(f"{name}_count", {"model": model}, cumulative))
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


_PROBE = LoadTracker()
_PROBE.set_capacity("clock", 1)


def core_clock_now() -> float:
    """Now on the core's default clock (monotonic seconds since its first use). The extension
    exposes no accessor, so a private LoadTracker is touched and its timestamp read."""
    _PROBE.set_load("clock", active_requests=0)
    load = _PROBE.current_load("clock")
    return load.last_updated if load is not None else 0.0


def alert_dicts(alerts: Iterable[Any]) -> list[dict[str, Any]]:
    """Alert dicts plus ``emitted_at_unix``/``started_at_unix`` (the core stamps alerts with
    its monotonic clock)."""
    offset = time.time() - core_clock_now()
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
