"""``modelrouter serve --ssl-certfile/--ssl-keyfile --api-keys`` as a real process: HTTPS with a
certificate the test generates (its CA trusted by the client), keys enforced over it, plain
HTTP refused; and a non-loopback bind without keys refused before anything listens."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the server extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

from modelrouter.testing.certs import OPENSSL, make_certs  # noqa: E402

PREFIX = "/api/v1/model-router"
ADMIN = "tls-admin-key-0123456789"
ROUTE = "tls-route-key-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_serve_https_with_keys() -> None:
    d = make_certs(Path(tempfile.mkdtemp(prefix="mr-serve-tls-")))
    (d / "keys").write_text(f"ops admin {ADMIN}\napp route {ROUTE}\n")
    port = _free_port()
    cmd = [sys.executable, "-m", "modelrouter", "serve", "--no-store", "--port", str(port),
           "--ssl-certfile", str(d / "server.pem"), "--ssl-keyfile", str(d / "server.key"),
           "--api-keys", str(d / "keys"), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(d / "ca.pem"))
    try:
        with httpx.Client(base_url=base, verify=trusted, timeout=10) as c:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
                try:
                    if c.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the HTTPS server did not start"
                time.sleep(0.1)
            assert c.get(f"{PREFIX}/stats").status_code == 401
            assert c.get(f"{PREFIX}/stats", headers={"X-API-Key": ROUTE}).status_code == 403
            assert c.get(f"{PREFIX}/stats", headers={"X-API-Key": ADMIN}).status_code == 200
            r = c.post(f"{PREFIX}/route", json={"agent": {"id": "a", "required": {"code": 0.5}}},
                       headers={"Authorization": f"Bearer {ROUTE}"})  # fmt: skip
            assert r.status_code == 200, r.text
            # Over HTTPS the login cookie is marked Secure.
            r = c.post("/login", data={"key": ADMIN}, follow_redirects=False)
            assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
        # A client that does not trust the CA refuses the server; plain HTTP gets no answer.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(
                f"{base}/health", verify=ssl.create_default_context(cafile=str(d / "other.pem"))
            )
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        proc.terminate()
        proc.wait(20)


def test_serve_refuses_a_public_bind_without_keys_as_a_process() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELROUTER_API_KEYS")}
    cmd = [sys.executable, "-m", "modelrouter", "serve", "--no-store", "--host", "0.0.0.0",
           "--port", str(_free_port())]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 without API keys" in done.stderr


def test_ssl_options_go_together() -> None:
    cmd = [sys.executable, "-m", "modelrouter", "serve", "--no-store", "--ssl-certfile", "x.pem"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "go together" in done.stderr
