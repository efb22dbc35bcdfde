"""OpenAI-compatible fake upstreams on 127.0.0.1, for tests and benchmarks.

One server process holds several deployments, each under its own base URL
(``http://127.0.0.1:PORT/u/NAME/v1``) and with its own behaviour, which a test can change while
it runs: answer after ``latency_ms`` ± ``jitter_ms``; ``"error"`` (500), ``"rate_limit"`` (429
with ``Retry-After: retry_after_s``), ``"context_length"`` (400, the openai error code) or
``"hang"`` (never answers). Chat completions, completions (both streamed as server-sent events
when asked, ``stream_chunks`` chunks ``chunk_delay_ms`` apart), embeddings and the model list
are served; usage counts are fixed per deployment. Every request's arrival time
(``time.time()``) is kept per deployment, so a test can count what a sick deployment was sent
and in what bursts.

It runs in its own process (the caller's event loop and GIL stay the caller's) and speaks
just enough HTTP/1.1 with keep-alive for the openai/httpx and aiohttp clients::

    with FakeUpstreams({"a": {}, "b": {"mode": "error"}}) as up:
        client = openai.OpenAI(base_url=up.base_url("a"), api_key="x")
        up.set("b", mode="ok")
        up.arrivals("b")  # -> [t0, t1, ...]
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

DEFAULTS: dict[str, Any] = {
    "mode": "ok",
    "latency_ms": 50.0,
    "jitter_ms": 10.0,
    "retry_after_s": 1.0,
    "prompt_tokens": 20,
    "completion_tokens": 10,
    "stream_chunks": 5,
    "chunk_delay_ms": 0.0,
}
MODES = ("ok", "error", "rate_limit", "context_length", "hang")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}


def _check(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"deployment {name!r}: unknown settings {sorted(unknown)}")
    if settings.get("mode", "ok") not in MODES:
        raise ValueError(f"deployment {name!r}: mode must be one of {MODES}")
    return {**DEFAULTS, **settings}


class _Server:
    """The server side (runs in the child process)."""

    def __init__(self, deployments: Mapping[str, Mapping[str, Any]], seed: int) -> None:
        self.deployments = {n: _check(n, s) for n, s in deployments.items()}
        self.arrivals: dict[str, list[float]] = {n: [] for n in self.deployments}
        self.rng = random.Random(seed)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
                }
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                if not await self.respond(method, path, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def respond(self, method: str, path: str, body: bytes, w: asyncio.StreamWriter) -> bool:
        if path == "/_control" and method == "POST":
            changes = json.loads(body)
            for name, settings in changes.items():
                merged = {**self.deployments.get(name, DEFAULTS), **settings}
                self.deployments[name] = _check(name, merged)
                self.arrivals.setdefault(name, [])
            return await self.send(w, 200, {"ok": True})
        if path == "/_arrivals":
            return await self.send(w, 200, self.arrivals)
        if path == "/_reset" and method == "POST":
            for times in self.arrivals.values():
                times.clear()
            return await self.send(w, 200, {"ok": True})
        parts = path.split("?")[0].split("/")  # "", "u", name, "v1", endpoint...
        if len(parts) < 5 or parts[1] != "u" or parts[2] not in self.deployments:
            return await self.send(w, 404, {"error": {"message": f"no route {path}"}})
        name, endpoint = parts[2], "/".join(parts[4:])
        self.arrivals[name].append(time.time())
        d = self.deployments[name]
        if endpoint == "models":
            return await self.send(w, 200, {"object": "list", "data": [_model(name)]})
        if d["mode"] == "hang":
            await asyncio.sleep(3600)
            return False
        delay = max(0.0, self.rng.gauss(d["latency_ms"], d["jitter_ms"])) / 1e3
        await asyncio.sleep(delay)
        if d["mode"] == "error":
            return await self.send(w, 500, _error("upstream failed", "server_error"))
        if d["mode"] == "rate_limit":
            retry = {"retry-after": f"{d['retry_after_s']:g}"}
            return await self.send(w, 429, _error("rate limited", "rate_limit_exceeded"), retry)
        if d["mode"] == "context_length":
            msg = "This model's maximum context length is 4096 tokens."
            return await self.send(w, 400, _error(msg, "context_length_exceeded"))
        request = json.loads(body) if body else {}
        if request.get("stream"):
            return await self.stream(w, name, endpoint, d)
        return await self.send(w, 200, _answer(name, endpoint, d, request))

    async def send(
        self, w: asyncio.StreamWriter, status: int, payload: Any, extra: Mapping[str, str] = {}
    ) -> bool:
        data = json.dumps(payload).encode()
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            "content-type: application/json",
            f"content-length: {len(data)}",
        ]
        head += [f"{k}: {v}" for k, v in extra.items()]
        w.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await w.drain()
        return True

    async def stream(self, w: asyncio.StreamWriter, name: str, endpoint: str, d: dict) -> bool:
        head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked"
        w.write((head + "\r\n\r\n").encode())
        chat = endpoint == "chat/completions"
        for i in range(d["stream_chunks"]):
            if i and d["chunk_delay_ms"]:
                await asyncio.sleep(d["chunk_delay_ms"] / 1e3)
            done = i == d["stream_chunks"] - 1  # the last piece says why the answer ended
            piece = {"index": 0, "finish_reason": "stop" if done else None}
            piece.update({"delta": {"content": f"t{i} "}} if chat else {"text": f"t{i} "})
            event = {
                "id": "x",
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": 0,
                "model": name,
                "choices": [piece],
            }
            self.chunk(w, b"data: " + json.dumps(event).encode() + b"\n\n")
            await w.drain()
        last = {
            "id": "x",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": name,
            "choices": [],
            "usage": _usage(d),
        }
        self.chunk(w, b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n")
        w.write(b"0\r\n\r\n")
        await w.drain()
        return True

    @staticmethod
    def chunk(w: asyncio.StreamWriter, data: bytes) -> None:
        w.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "fake"}


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "param": None, "code": code}}


def _usage(d: Mapping[str, Any]) -> dict[str, int]:
    p, c = d["prompt_tokens"], d["completion_tokens"]
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _answer(name: str, endpoint: str, d: Mapping[str, Any], request: Mapping) -> dict[str, Any]:
    if endpoint == "embeddings":
        inputs = request.get("input", "")
        n = len(inputs) if isinstance(inputs, list) else 1
        data = [{"object": "embedding", "index": i, "embedding": [0.0, 1.0]} for i in range(n)]
        usage = {"prompt_tokens": d["prompt_tokens"], "total_tokens": d["prompt_tokens"]}
        return {"object": "list", "data": data, "model": name, "usage": usage}
    if endpoint == "completions":
        choice = {"index": 0, "text": "ok", "finish_reason": "stop", "logprobs": None}
        return {
            "id": "x",
            "object": "text_completion",
            "created": 0,
            "model": name,
            "choices": [choice],
            "usage": _usage(d),
        }
    message = {"role": "assistant", "content": f"answer from {name}"}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": name,
        "choices": [choice],
        "usage": _usage(d),
    }


async def _serve(config: dict[str, Any]) -> None:
    server = _Server(config["deployments"], config.get("seed", 0))
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0, backlog=1024)
    port = srv.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with srv:
        await srv.serve_forever()


class FakeUpstreams:
    """Starts the server process; ``base_url(name)`` for clients, ``set`` to change a
    deployment's behaviour, ``arrivals`` / ``reset`` for what it was sent."""

    def __init__(self, deployments: Mapping[str, Mapping[str, Any]], seed: int = 0) -> None:
        for name, settings in deployments.items():
            _check(name, settings)
        self._config = {"deployments": {n: dict(s) for n, s in deployments.items()}, "seed": seed}
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> FakeUpstreams:
        code = "import sys, json; from modelrouter.testing.fake_upstream import main; main()"
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(self._config))
        self._proc.stdin.close()
        line = self._proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError("the fake upstream server did not start")
        self.port = int(line)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, name: str) -> str:
        return f"{self.origin}/u/{name}/v1"

    def _call(self, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        with urllib.request.urlopen(f"{self.origin}{path}", data=data, timeout=10) as r:
            return json.loads(r.read())

    def set(self, name: str, **settings: Any) -> None:
        self._call("/_control", {name: settings})

    def arrivals(self, name: str | None = None) -> Any:
        every = self._call("/_arrivals")
        return every if name is None else every[name]

    def reset(self) -> None:
        self._call("/_reset", {})


def main() -> None:
    asyncio.run(_serve(json.loads(sys.stdin.read())))
