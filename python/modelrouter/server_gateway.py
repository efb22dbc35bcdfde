"""The OpenAI-compatible gateway: ``POST /v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings`` and ``GET /v1/models``, in front of the upstream deployments of
``modelrouter serve --upstreams FILE``.

Each call is routed by its agent: the ``X-Modelrouter-Agent`` header (the name of an agent of
the upstreams file), or an ``agent`` field in the body (a name, or an object as in POST route),
which is taken out before forwarding; else the file's ``default_agent``. ``model: "auto"``
lets the router choose; a deployment id pins the call. The body goes upstream as it came
(only ``model`` rewritten to the deployment's), through one pooled async HTTP client; a
stream passes through byte for byte and holds its slot until it ends or the client goes away.
(The client is aiohttp's: about a tenth of httpx's CPU per call, which decides how many calls a
process can forward.)
Outcomes (429 + Retry-After, 5xx, timeouts, context length) feed the router's health, and
retryable ones move to another deployment within the retry budget (as ``Router.acall``);
every attempt goes to the decision store. The upstreams file::

    {"deployments": {"llama3-70b": {"base_url": "http://10.0.0.5:8000/v1", "api_key": "...",
                                     "model": "meta-llama/Meta-Llama-3-70B-Instruct"}},
     "agents": {"coder": {"required": {"code": 0.8}, "min_context": 8192}},
     "default_agent": "coder", "retries": 2, "timeout_s": 60}
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from . import _calls, _usage
from .errors import CallFailedError, InvalidInputError, NoCapacityError, RouterError
from .server_auth import requires
from .server_fast import read_body
from .server_quotas import KeyQuotas, KeySpend, retry_after_header
from .server_schemas import AgentBody
from .server_state import ServiceState, ServiceUnavailableError

AGENT_HEADER = "x-modelrouter-agent"
_ENDPOINTS = ("chat/completions", "completions", "embeddings")
_DEPLOYMENT_KEYS = frozenset({"base_url", "api_key", "model", "timeout_s"})
# Hop-by-hop and length headers are the proxy's own; the rest of an upstream answer passes.
_DROP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "server",
        "date",
        "content-encoding",
    }
)


class UpstreamStatusError(Exception):
    """An upstream answered 4xx/5xx: ``status_code``, ``headers`` and ``body`` let
    :func:`modelrouter.outcomes.classify` read its kind and Retry-After."""

    def __init__(self, status_code: int, headers: Mapping[str, str], body: bytes) -> None:
        super().__init__(
            f"upstream answered {status_code}: {body[:500].decode('utf-8', 'replace')}"
        )
        self.status_code, self.headers, self.body = status_code, headers, body


class Upstreams:
    """The parsed upstreams file. API keys stay here: never in a response, log or repr."""

    def __init__(self, spec: Mapping[str, Any], known_models: set[str]) -> None:
        deployments = spec.get("deployments")
        if not isinstance(deployments, Mapping) or not deployments:
            raise InvalidInputError("upstreams: 'deployments' must map model ids", "deployments")
        self.deployments: dict[str, dict[str, Any]] = {}
        for model_id, d in deployments.items():
            if model_id not in known_models:
                raise InvalidInputError(
                    f"upstreams: {model_id!r} is not a fleet model", "deployments"
                )
            if not isinstance(d, Mapping) or not isinstance(d.get("base_url"), str):
                raise InvalidInputError(f"upstreams: {model_id!r} needs a base_url", "deployments")
            unknown = set(d) - _DEPLOYMENT_KEYS
            if unknown:
                raise InvalidInputError(
                    f"upstreams: {model_id!r} has unknown keys {sorted(unknown)}", "deployments"
                )
            self.deployments[model_id] = {
                "url": d["base_url"].rstrip("/"),
                "model": d.get("model", model_id),
                "headers": {"authorization": f"Bearer {d['api_key']}"} if d.get("api_key") else {},
                "timeout_s": _positive(
                    d.get("timeout_s", spec.get("timeout_s", 60.0)), "timeout_s"
                ),
            }
        agents = spec.get("agents") or {}
        if not isinstance(agents, Mapping) or not all(
            isinstance(a, Mapping) for a in agents.values()
        ):
            raise InvalidInputError("upstreams: 'agents' must map names to agent objects", "agents")
        try:
            self.agents = {
                name: AgentBody.model_validate({"id": name, **a}) for name, a in agents.items()
            }
        except ValidationError as exc:
            raise InvalidInputError(f"upstreams: a bad agent: {exc}", "agents") from None
        self.default_agent = spec.get("default_agent")
        if self.default_agent is not None and self.default_agent not in self.agents:
            raise InvalidInputError(
                "upstreams: default_agent is not one of agents", "default_agent"
            )
        retries = spec.get("retries", 2)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
            raise InvalidInputError("upstreams: retries must be an int in [0, 100]", "retries")
        self.retries = retries

    @classmethod
    def from_file(cls, path: str | Path, known_models: set[str]) -> Upstreams:
        try:
            spec = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(
                f"cannot read the upstreams file {path}: {exc}", "upstreams"
            ) from exc
        if not isinstance(spec, Mapping):
            raise InvalidInputError("upstreams: the file must hold a JSON object", "upstreams")
        return cls(spec, known_models)

    def __repr__(self) -> str:
        return f"Upstreams({sorted(self.deployments)})"


class Reply:
    """What the gateway answers: a body, or (``chunks``) a stream relayed as it comes."""

    __slots__ = ("status", "headers", "body", "chunks")

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes = b"",
        chunks: AsyncIterator[bytes] | None = None,
    ) -> None:
        self.status, self.headers, self.body, self.chunks = status, headers, body, chunks

    def response(self) -> Response:
        """As a Starlette response (the FastAPI routes; the fast path sends it itself)."""
        if self.chunks is not None:
            return StreamingResponse(self.chunks, status_code=self.status, headers=self.headers)
        return Response(self.body, status_code=self.status, headers=self.headers)


def _positive(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
        raise InvalidInputError(f"upstreams: {field} must be a number of seconds > 0", field)
    return float(value)


def _openai_error(
    status: int, message: str, code: str, headers: Mapping[str, str] | None = None
) -> Reply:
    body = {"error": {"message": message, "type": code, "param": None, "code": code}}
    return Reply(
        status,
        {"content-type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


class Gateway:
    """The gateway's logic over the upstreams file, with the pooled HTTP client (opened and
    closed with the app's lifespan)."""

    def __init__(self, state: ServiceState, upstreams: Upstreams) -> None:
        self.state, self.upstreams = state, upstreams
        self.client: aiohttp.ClientSession | None = None
        self.quotas: KeyQuotas | None = None  # per-key token spend (tpm=), with API keys

    def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=1024, limit_per_host=0)
        self.client = aiohttp.ClientSession(connector=connector)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    def agent_of(self, agent_header: str | None, body: dict[str, Any]) -> Any:
        upstreams = self.upstreams
        raw = body.pop("agent", None)
        if raw is None:
            raw = agent_header or upstreams.default_agent
        if raw is None:
            raise InvalidInputError(
                f"no agent: send the {AGENT_HEADER} header or an agent field", "agent"
            )
        if isinstance(raw, str):
            if raw not in upstreams.agents:
                raise InvalidInputError(f"unknown agent {raw!r}", "agent")
            spec = upstreams.agents[raw]
        else:
            spec = AgentBody.model_validate(raw)
        return self.state.agent_for(spec.id, spec.required, spec.preferred, spec.min_context)

    async def forward(
        self, endpoint: str, agent_header: str | None, raw: bytes, key_id: str | None = None
    ) -> Reply:
        state, upstreams = self.state, self.upstreams
        try:
            body = json.loads(raw)
        except ValueError:
            return _openai_error(400, "the body is not JSON", "invalid_request_error")
        if not isinstance(body, dict):
            return _openai_error(400, "the body must be a JSON object", "invalid_request_error")
        try:
            agent = self.agent_of(agent_header, body)
        except (InvalidInputError, ValidationError) as exc:
            return _openai_error(400, str(exc), "invalid_request_error")
        try:  # draining, or a store that cannot keep the attempts: refuse before calling
            state.check_can_decide(1 + upstreams.retries)
        except ServiceUnavailableError as exc:
            return _openai_error(503, str(exc), "unavailable", {"retry-after": "1"})
        model = body.get("model", "auto")
        pinned = None if model == "auto" else model
        if pinned is not None and pinned not in upstreams.deployments:
            return _openai_error(404, f"unknown model {model!r}", "model_not_found")
        stream = bool(body.get("stream"))
        size = _usage.estimate(body)
        client = self.client
        if client is None:
            return _openai_error(503, "the gateway is not running", "unavailable")
        spend = None
        if self.quotas is not None:
            try:  # the caller's own token quota first: a spent key costs the fleet nothing
                spend = self.quotas.spend(key_id, size[0] + size[1])
            except NoCapacityError as exc:
                retry = {"retry-after": retry_after_header(exc.retry_after_s)}
                return _openai_error(429, str(exc), "rate_limit_exceeded", retry)
            except InvalidInputError as exc:
                return _openai_error(400, str(exc), "invalid_request_error")
        try:
            return await self._call(endpoint, body, agent, pinned, stream, size, client, spend)
        except BaseException:
            if spend is not None:
                spend.release()
            raise

    async def _call(
        self,
        endpoint: str,
        body: dict[str, Any],
        agent: Any,
        pinned: str | None,
        stream: bool,
        size: tuple[int, int],
        client: aiohttp.ClientSession,
        spend: KeySpend | None,
    ) -> Reply:
        """The attempts (a Reply that ends the key's spend when the call or stream ends)."""
        state, upstreams = self.state, self.upstreams

        async def attempt(flight: Any) -> tuple[aiohttp.ClientResponse, bytes]:
            d = upstreams.deployments[flight.model_id]
            payload = json.dumps({**body, "model": d["model"]}).encode()
            timeout = aiohttp.ClientTimeout(
                total=None if stream else d["timeout_s"], sock_read=d["timeout_s"]
            )
            resp = await client.post(
                f"{d['url']}/{endpoint}",
                data=payload,
                headers={"content-type": "application/json", **d["headers"]},
                timeout=timeout,
            )
            if resp.status >= 400 or not stream:
                try:
                    data = await resp.read()
                finally:
                    resp.release()
                if resp.status >= 400:
                    raise UpstreamStatusError(resp.status, resp.headers, data)
                return resp, data
            return resp, b""

        try:
            held = await _calls.arun(
                state.router,
                agent,
                attempt,
                0 if pinned else upstreams.retries,
                None,
                None,
                state.store,
                size,
                pinned=pinned,
                hold=True,
            )
        except CallFailedError as exc:
            _end_spend(spend)
            last = exc.attempts[-1][2] if exc.attempts else None
            if isinstance(last, UpstreamStatusError):
                return Reply(last.status_code, _passed(last.headers), last.body)
            return _openai_error(502, f"every attempt failed: {exc}", "upstream_error")
        except NoCapacityError as exc:
            _end_spend(spend)
            retry = retry_after_header(exc.retry_after_s)
            return _openai_error(503, str(exc), "no_capacity", {"retry-after": retry})
        except RouterError as exc:
            _end_spend(spend)
            return _openai_error(400, str(exc), "invalid_request_error")
        resp, data = held.value
        headers = {**_passed(resp.headers), "x-modelrouter-model": held.flight.model_id}
        if not stream:
            usage = _usage.usage_of(data)
            _usage.report(held.flight, usage)
            _end_spend(spend, usage)
            held.end("ok")
            return Reply(resp.status, headers, data)
        return Reply(resp.status, headers, chunks=_relay(resp, held, spend))


class GatewayFastPath:
    """ASGI middleware answering POST /v1/{chat/completions,completions,embeddings} itself,
    without FastAPI's routing and dependency machinery (a third of the gateway's CPU per
    call); the FastAPI routes stay for the schema and anything this does not take."""

    def __init__(self, app: Any, *, gateway: Gateway) -> None:
        self.app, self.gateway = app, gateway
        self.paths = {f"/v1/{e}": e for e in _ENDPOINTS}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        endpoint = self.paths.get(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        agent_header = None
        for key, value in scope["headers"]:
            if key == b"x-modelrouter-agent":
                agent_header = value.decode("latin-1")
        raw = await read_body(receive)
        if raw is None:
            return
        key_id = scope.get("state", {}).get("api_key_id")
        reply = await self.gateway.forward(endpoint, agent_header, raw, key_id)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
        if reply.chunks is None:
            headers.append((b"content-length", str(len(reply.body)).encode()))
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            await send({"type": "http.response.body", "body": reply.body})
            return
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await _stream_until_disconnect(reply.chunks, receive, send)


async def _stream_until_disconnect(chunks: AsyncIterator[bytes], receive: Any, send: Any) -> None:
    """Relays ``chunks``; a client that goes away cancels the relay (which ends the request)."""

    async def pump() -> None:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    pumping, watching = asyncio.ensure_future(pump()), asyncio.ensure_future(watch())
    try:
        await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pumping, watching):
            task.cancel()
        await asyncio.gather(pumping, watching, return_exceptions=True)
        await chunks.aclose()  # type: ignore[attr-defined]
    if pumping.done() and not pumping.cancelled() and pumping.exception() is not None:
        raise pumping.exception()  # type: ignore[misc]


def add_gateway(app: FastAPI, gateway: Gateway) -> None:
    """The FastAPI routes (schema, and the path the fast path does not take)."""
    for endpoint in _ENDPOINTS:

        async def handler(request: Request, endpoint: str = endpoint) -> Response:
            raw = await request.body()
            agent_header = request.headers.get(AGENT_HEADER)
            key_id = getattr(request.state, "api_key_id", None)
            reply = await gateway.forward(endpoint, agent_header, raw, key_id)
            return reply.response()

        app.add_api_route(
            f"/v1/{endpoint}",
            handler,
            methods=["POST"],
            tags=["gateway"],
            name=f"gateway {endpoint}",
            openapi_extra=requires("route"),
        )

    @app.get("/v1/models", tags=["gateway"], openapi_extra=requires("route"))
    async def models() -> dict[str, Any]:
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "modelrouter"}
            for m in ["auto", *gateway.upstreams.deployments]
        ]
        return {"object": "list", "data": data}


def _passed(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in _DROP}


def _end_spend(spend: KeySpend | None, usage: tuple[int, int] | None = None) -> None:
    if spend is not None:
        spend.set_usage(usage)
        spend.release()


async def _relay(
    resp: aiohttp.ClientResponse, held: _calls.Held, spend: KeySpend | None
) -> AsyncIterator[bytes]:
    """The upstream stream as it comes; the request ends with it (ok), with its error
    (classified), or as cancelled when the client goes away first."""
    kind, error, usage = "cancelled", None, None
    tail = b""  # the last bytes: where a usage chunk comes, if asked for
    first = True
    try:
        async for chunk in resp.content.iter_any():
            if first:  # the model learns its time to first token
                first = False
                held.flight.first_token()
            tail = (tail + chunk)[-8192:]
            yield chunk
        kind = "ok"
        usage = _usage.usage_in_stream_tail(tail)
        _usage.report(held.flight, usage)
    except Exception as exc:
        kind, error = "failed", exc
        raise
    finally:
        resp.close()
        _end_spend(spend, usage)
        held.end(kind, error)
