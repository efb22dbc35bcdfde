"""The REST service as a real process (``modelrouter serve`` under uvicorn, on 127.0.0.1):
the event loop stays responsive while a large batch is parsed and solved, and SIGTERM under
overload never loses an acknowledged decision."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the server extra (uvicorn) is not installed")

PREFIX = "/api/v1/model-router"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


@contextlib.contextmanager
def serving(args: list[str], env: dict[str, str] | None = None) -> Iterator[tuple]:
    """Starts a server process on a free 127.0.0.1 port; yields (process, port) once /health
    answers; kills it on the way out if it is still running."""
    port = _free_port()
    proc = subprocess.Popen(
        [*args, "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _request(port, "GET", "/health", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_health_stays_responsive_while_a_large_batch_is_parsed_and_solved():
    """A ~30 MB valid auto-assign-all (the limit raised through the environment) used to be
    parsed and validated on the event loop: /health waited seconds behind it. Now the body is
    decoded and validated piecewise in a worker thread, so /health answers promptly."""
    caps = [f"capability-{k:03d}" for k in range(250)]
    agents = [
        {"id": f"agent-{i:05d}", "required": {c: 0.01 for c in caps[:60]},
         "preferred": {c: 1.0 for c in caps[60:]}, "min_context": 512}
        for i in range(5000)
    ]  # fmt: skip
    models = [{"id": f"m{j}", "capabilities": {c: 0.9 for c in caps}, "max_concurrent": 300}
              for j in range(20)]  # fmt: skip
    raw = json.dumps({"agents": agents, "models": models}).encode()
    assert 25e6 < len(raw) < 40e6
    env = {"MODELROUTER_MAX_BODY_BYTES": str(64 * 2**20)}
    cmd = [sys.executable, "-m", "modelrouter", "serve", "--no-store", "--log-level", "warning"]
    with serving(cmd, env) as (_, port):
        done: dict[str, object] = {}

        def big() -> None:
            start = time.monotonic()
            status, _, body = _request(port, "POST", f"{PREFIX}/auto-assign-all", raw, 120)
            done.update(status=status, body=body, seconds=time.monotonic() - start)

        worker = threading.Thread(target=big)
        worker.start()
        latencies = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while worker.is_alive():
            start = time.monotonic()
            conn.request("GET", "/health")
            assert conn.getresponse().read()
            latencies.append(time.monotonic() - start)
            time.sleep(0.02)
        worker.join()
        conn.close()
    assert done["status"] == 200, done["body"][:300]
    assert len(json.loads(done["body"])["assignments"]) == 5000
    # The check is meaningful only if /health was polled while the batch was being handled.
    assert len(latencies) >= 10 and done["seconds"] > 0.5
    # Measured on a 2-core VM: ~0.15 s worst with the fix, 1.5-1.7 s without it.
    assert max(latencies) < 1.0, sorted(latencies)[-5:]
