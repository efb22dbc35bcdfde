"""POST route, the hot path. ``route_decision`` is the endpoint's logic; ``FastRoute`` is an
ASGI middleware that answers small JSON bodies for that one path itself — the same pydantic
model validates the body (so the 422s are the same), the same function decides and the same
error mapping answers — without FastAPI's routing and dependency machinery, which costs more
than the decision. Anything else (other paths, other content types, chunked or large
bodies) goes on to FastAPI unchanged."""

from __future__ import annotations

from typing import Any, Callable

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from .errors import InfeasibleError, NoCapacityError
from .server_errors import error_response, validation_error
from .server_schemas import RouteRequest
from .server_state import Reservation, ServiceState

MAX_FAST_BODY = 64 * 1024


def route_decision(state: ServiceState, body: RouteRequest) -> JSONResponse:
    """Routes (and with ``reserve`` reserves) one request; RouterErrors propagate.

    Everything that can refuse the request runs before a slot is taken: the body's schema
    (which refuses what the store would), the core's agent checks, and whether the decision
    can be kept at all (``check_can_decide``: not after SIGTERM, not with the store's queue
    full). Should recording still fail, the reservation is undone before the error is
    answered, so a request the client never got an id for never holds a slot."""
    spec = body.agent
    agent = state.agent_for(spec.id, spec.required, spec.preferred, spec.min_context)
    state.check_can_decide()
    store = state.store
    request_id: str | None = None
    flight = None
    try:
        if body.reserve:
            flight = state.router.request(
                agent, tokens=body.tokens, max_output_tokens=body.max_output_tokens
            )
            model_id, queued = flight.model_id, flight.queued
        else:
            size = body.tokens + body.max_output_tokens
            model_id, queued = state.router.route(agent, tokens=size), False
    except (NoCapacityError, InfeasibleError) as e:
        outcome = "no_capacity" if isinstance(e, NoCapacityError) else "infeasible"
        state.routes[outcome] += 1
        if store is not None:
            store.record_route(spec.id, None, state.policy, outcome=outcome)
        raise
    if store is not None:
        try:
            store.record_route(spec.id, model_id, state.policy, queued=queued)
        except BaseException:
            if flight is not None:
                flight.release(False)  # never acknowledged: give the slot back at once
            raise
    if flight is not None:
        request_id = state.new_request_id()
        state.reservations[request_id] = Reservation(flight, spec.id, state.now())
    state.routes["queued" if queued else "routed"] += 1
    state.routed_to[model_id] += 1
    out = {
        "agent_id": spec.id,
        "model_id": model_id,
        "policy": state.policy,
        "queued": queued,
        "request_id": request_id,
    }
    return JSONResponse(out)


async def read_body(receive: Callable) -> bytes | None:
    """The whole request body from ASGI ``receive``; None when the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class FastRoute:
    def __init__(self, app: Any, *, state: ServiceState, path: str) -> None:
        self.app, self.state, self.path = app, state, path

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != self.path
            or scope["method"] != "POST"
            or not self._small_json(scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        raw = await read_body(receive)
        if raw is not None:
            await self.answer(raw)(scope, receive, send)

    def answer(self, raw: bytes) -> JSONResponse:
        try:
            body = RouteRequest.model_validate_json(raw)
        except ValidationError as e:
            return validation_error(e.errors(include_url=False), prefix=("body",))
        try:
            return route_decision(self.state, body)
        except Exception as e:
            return error_response(e, self.state, f"POST {self.path}")

    @staticmethod
    def _small_json(headers: list[tuple[bytes, bytes]]) -> bool:
        json_type = small = False
        for key, value in headers:
            if key == b"content-type":
                json_type = value.split(b";")[0].strip().lower() == b"application/json"
            elif key == b"content-length":
                small = value.isdigit() and int(value) <= MAX_FAST_BODY
        return json_type and small
