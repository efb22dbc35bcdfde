"""API keys and roles of the REST service (``modelrouter serve --api-keys FILE``).

Each key has an id (shown in logs, never secret) and one or more roles:

- ``route``: POST route (and, once it exists, the OpenAI-compatible gateway);
- ``report``: POST feedback;
- ``admin``: everything, including auto-assign-all, assignments, stats, alerts, history, the
  per-model health, ``/metrics`` (unless served public) and the dashboard.

Key file format (also the value of ``$MODELROUTER_API_KEYS``, entries separated by newlines
or ``;``; ``$MODELROUTER_API_KEYS_FILE`` names a file), one key per line, ``#`` starts a
comment::

    # id   roles         key (or sha256:<hex digest of the key>)
    ops    admin         sha256:a748c335b9f4d69c5ecc31bb27ca7f77c516dbb8f2aa3137ea38183e4ae51ff2
    svc-a  route,report  mr_3f9c0a1e2b7d4c5f8e6a9b0c1d2e3f40

An entry may end with per-key limits, ``rpm=N`` (requests per minute on every endpoint) and
``tpm=N`` (gateway tokens per minute): see ``modelrouter.server_quotas``.

A key given in clear must be at least 16 characters; ``sha256:`` keeps the key itself out of
the file (``modelrouter`` hashes what clients present the same way).

A request presents its key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; the
dashboard's login form exchanges it for an ``HttpOnly`` cookie, accepted on GET/HEAD only (so a
cross-site form cannot use it to post). A missing or unknown key is answered 401, a key
without the route's role 403; both bodies are fixed and say nothing about which part failed.

Comparison in constant time, by construction: the presented key is hashed to a fixed-length
SHA-256 digest and that digest is compared with *every* configured digest through
``hmac.compare_digest`` (no early exit, no dict lookup on secret material), so the time taken
depends on the number of configured keys only, never on how much of a key's prefix matches.

Routes declare their role with one line, ``openapi_extra=requires("route")`` (which also
documents it in the OpenAPI operation as ``x-role`` with its ``security`` requirement); a
route that declares none is admin-only. After authentication the key's id is in
``request.state.api_key_id`` (None when the service runs without keys) for per-key limits
and accounting.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Match

from .errors import InvalidInputError
from .server_quotas import retry_after_header

ROLES = ("route", "report", "admin")
KEYS_ENV = "MODELROUTER_API_KEYS"
KEYS_FILE_ENV = "MODELROUTER_API_KEYS_FILE"
COOKIE = "modelrouter_key"
COOKIE_MAX_AGE_S = 12 * 3600
MIN_KEY_CHARS = 16
MAX_KEY_CHARS = 4096
# What a route that declares no role requires: new endpoints are closed until opened.
DEFAULT_ROLE = "admin"
_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")
_DIGEST = re.compile(r"^sha256:([0-9a-fA-F]{64})$")

# Fixed answers: the same body whatever failed (no key, unknown key, malformed header).
UNAUTHORIZED = {"detail": "authentication required", "error": "Unauthorized"}
FORBIDDEN = {"detail": "forbidden", "error": "Forbidden"}
# The dashboard: only our own scripts, styles and API; no inline code, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def requires(role: str) -> dict[str, Any]:
    """``openapi_extra`` of a route that needs ``role`` (one of ``ROLES``)."""
    if role not in ROLES:
        raise InvalidInputError(f"role must be one of {', '.join(ROLES)}, got {role!r}", "role")
    return {"x-role": role, "security": [{"bearer": []}, {"api_key": []}]}


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer"},
    "api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def digest(key: str | bytes) -> bytes:
    """The fixed-length (32-byte) SHA-256 digest keys are compared by."""
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its id, roles and the SHA-256 digest of the key (never the key)."""

    id: str
    roles: frozenset[str]
    digest: bytes = field(repr=False)
    # Per-key limits (``server_quotas``): requests and gateway tokens per minute.
    rpm: int | None = None
    tpm: int | None = None

    def allows(self, role: str) -> bool:
        return "admin" in self.roles or role in self.roles


class ApiKeys:
    """The configured keys. ``authenticate`` takes time independent of the presented key."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self.keys: tuple[ApiKey, ...] = tuple(keys)
        ids = [k.id for k in self.keys]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise InvalidInputError(f"api key ids must be unique, repeated: {sorted(dup)}", "id")
        if len({k.digest for k in self.keys}) != len(self.keys):
            raise InvalidInputError("two api key entries hold the same key", "key")

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k.id}:{'+'.join(sorted(k.roles))}" for k in self.keys)
        return f"ApiKeys({shown})"

    def authenticate(self, presented: str | bytes | None) -> ApiKey | None:
        """The key whose digest equals the presented key's, else None. Every configured
        digest is compared (``hmac.compare_digest``, fixed 32-byte operands) and the loop
        never exits early, so timing depends only on ``len(self)``."""
        if presented is None or len(presented) > MAX_KEY_CHARS:
            presented = b""  # still hashed and compared, so the time is the same
        d = digest(presented)
        found = None
        for key in self.keys:
            if hmac.compare_digest(d, key.digest):
                found = key
        return found


def parse_api_keys(text: str, source: str = "api keys") -> ApiKeys:
    """Entries ``<id> <role>[,<role>...] <key or sha256:hex>`` (see the module docstring);
    errors name ``source`` and the line, never the key."""
    out = []
    for n, raw in enumerate(re.split(r"[\n;]", text), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}, entry {n}"
        parts = line.split()
        if not 3 <= len(parts) <= 5:
            raise InvalidInputError(
                f"{where}: expected '<id> <role>[,<role>...] <key> [rpm=N] [tpm=N]', got"
                f" {len(parts)} fields",
                "api_keys",
            )
        key_id, roles_text, secret = parts[:3]
        limits = _limits(parts[3:], where)
        if not _ID.match(key_id):
            raise InvalidInputError(
                f"{where}: the id must be 1-64 characters of A-Z a-z 0-9 . _ : @ -", "api_keys"
            )
        roles = frozenset(r for r in roles_text.split(",") if r)
        bad = sorted(roles - set(ROLES))
        if not roles or bad:
            raise InvalidInputError(
                f"{where} ({key_id}): roles must be among {', '.join(ROLES)}, got {bad or '[]'}",
                "api_keys",
            )
        m = _DIGEST.match(secret)
        if m:
            d = bytes.fromhex(m.group(1))
        elif len(secret) < MIN_KEY_CHARS or len(secret) > MAX_KEY_CHARS:
            raise InvalidInputError(
                f"{where} ({key_id}): a key must be {MIN_KEY_CHARS} to {MAX_KEY_CHARS}"
                " characters (or sha256:<64 hex digits>)",
                "api_keys",
            )
        else:
            d = digest(secret)
        out.append(ApiKey(key_id, roles, d, **limits))
    if not out:
        raise InvalidInputError(f"{source} holds no key", "api_keys")
    return ApiKeys(out)


def _limits(fields: list[str], where: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in fields:
        name, _, value = f.partition("=")
        if name not in ("rpm", "tpm") or name in out or not value.isdigit() or int(value) < 1:
            raise InvalidInputError(
                f"{where}: after the key only rpm=N and tpm=N (N >= 1) may follow, got {f!r}",
                "api_keys",
            )
        out[name] = int(value)
    return out


def load_api_keys(path: str | os.PathLike[str]) -> ApiKeys:
    """Reads a key file (see the module docstring)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidInputError(f"cannot read the api key file {str(path)!r}: {e.strerror}",
                                "api_keys") from None  # fmt: skip
    return parse_api_keys(text, str(path))


def api_keys_from_env(env: Mapping[str, str] | None = None) -> ApiKeys | None:
    """``$MODELROUTER_API_KEYS_FILE`` (a key file) or ``$MODELROUTER_API_KEYS`` (entries
    inline), else None (no keys: the service is open, which ``serve`` allows on loopback)."""
    env = os.environ if env is None else env
    path = env.get(KEYS_FILE_ENV, "").strip()
    inline = env.get(KEYS_ENV, "").strip()
    if path and inline:
        raise InvalidInputError(f"set {KEYS_ENV} or {KEYS_FILE_ENV}, not both", "api_keys")
    if path:
        return load_api_keys(path)
    return parse_api_keys(inline, f"${KEYS_ENV}") if inline else None


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8, ``::1`` (and a Unix socket path)."""
    host = host.strip().strip("[]")
    if host == "localhost" or host.startswith(("/", "unix:")):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- the middleware ------------------------------------------------------------------------------


def route_role(route: Any) -> str | None:
    """The role a route of the table declared (``requires``), else None."""
    extra = getattr(route, "openapi_extra", None) or {}
    role = extra.get("x-role")
    return role if role in ROLES else None


def _header_key(headers: Sequence[tuple[bytes, bytes]]) -> tuple[bytes | None, bytes | None]:
    """(the key of Authorization/X-API-Key, the raw Cookie header)."""
    key = cookie = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer":
                key = token.strip()
        elif name == b"x-api-key":
            key = value.strip()
        elif name == b"cookie":
            cookie = value
    return key, cookie


def _cookie_key(cookie: bytes) -> bytes | None:
    for part in cookie.split(b";"):
        name, _, value = part.strip().partition(b"=")
        if name == COOKIE.encode():
            try:
                return bytes.fromhex(value.decode("ascii"))
            except ValueError:
                return b""
    return None


class ApiKeyAuth:
    """ASGI middleware, outermost: answers 401/403 before any of the body is read. ``public``
    paths pass without a key; ``/login`` is the dashboard's key-for-cookie exchange."""

    def __init__(
        self,
        app: Any,
        *,
        keys: ApiKeys,
        routes: Callable[[], Sequence[Any]],
        public: Iterable[str] = ("/health",),
        login_page: Callable[[bool], Response] | None = None,
        refused: Counter[str] | None = None,
        quotas: Any = None,
    ) -> None:
        self.app, self.keys, self._routes = app, keys, routes
        self.quotas = quotas  # server_quotas.KeyQuotas: per-key RPM
        # Requests refused, by status ("401", "403"): exported by /metrics (``refused_metrics``).
        self.refused = Counter() if refused is None else refused
        self.public = frozenset(public) | {"/login"}
        self.login_page = login_page
        self._roles: dict[tuple[str, str], str] | None = None

    def roles(self) -> dict[tuple[str, str], str]:
        """(method, path) → role of every parameter-free route (the table is complete by the
        first request: FastAPI builds the middleware stack then). By method too, so that two
        routes on one path never lend each other their role."""
        if self._roles is None:
            self._roles = {
                (method, r.path): route_role(r) or DEFAULT_ROLE
                for r in self._routes()
                if hasattr(r, "path") and "{" not in r.path and hasattr(r, "endpoint")
                for method in getattr(r, "methods", None) or ()
            }
        return self._roles

    def role_for(self, scope: dict[str, Any]) -> str:
        role = self.roles().get((scope["method"], scope["path"]))
        if role is not None:
            return role
        for r in self._routes():  # paths with parameters, mounts
            if hasattr(r, "matches") and r.matches(scope)[0] == Match.FULL:
                return route_role(r) or DEFAULT_ROLE
        return DEFAULT_ROLE  # unknown paths and methods: a 404/405 for admins only

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":  # none today; any later one needs its key too
            await self.websocket(scope, receive, send)
            return
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in self.public:
            if path == "/login":
                await self.login(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        presented, cookie = _header_key(scope["headers"])
        if presented is None and cookie is not None and scope["method"] in ("GET", "HEAD"):
            presented = _cookie_key(cookie)
        key = self.keys.authenticate(presented)
        if key is None:
            self.refused["401"] += 1
            if path == "/" and scope["method"] == "GET":
                response: Response = RedirectResponse("/login", status_code=303)
            else:
                response = JSONResponse(UNAUTHORIZED, 401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        if not key.allows(self.role_for(scope)):
            self.refused["403"] += 1
            await JSONResponse(FORBIDDEN, 403)(scope, receive, send)
            return
        if self.quotas is not None:
            wait = self.quotas.admit_request(key.id)
            if wait is not None:
                retry = retry_after_header(wait)
                body = {"detail": "this key's request rate limit (rpm) is reached"}
                await JSONResponse(body, 429, headers={"Retry-After": retry})(scope, receive, send)
                return
        state = scope.setdefault("state", {})
        state["api_key_id"] = key.id
        state["api_key_roles"] = key.roles
        await self.app(scope, receive, send)

    async def websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A WebSocket handshake with a key that has the route's role goes on; any other is
        closed with 1008 (policy violation) before the app sees it."""
        presented, _ = _header_key(scope["headers"])
        key = self.keys.authenticate(presented)
        if key is None or not key.allows(self.role_for({**scope, "method": "GET"})):
            self.refused["401" if key is None else "403"] += 1
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        scope.setdefault("state", {}).update(api_key_id=key.id, api_key_roles=key.roles)
        await self.app(scope, receive, send)

    async def login(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """GET: the form. POST (``key=...``, form-encoded): an admin key is set as the
        ``HttpOnly``, ``SameSite=Strict`` cookie and the browser sent to the dashboard."""
        if scope["method"] != "POST":
            failed = b"failed" in scope.get("query_string", b"")
            page = self.login_page(failed) if self.login_page else HTMLResponse("", 404)
            await page(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if len(body) > 2 * MAX_KEY_CHARS:
                break
            if not message.get("more_body", False):
                break
        fields = parse_qs(body[: 2 * MAX_KEY_CHARS].decode("utf-8", "replace"))
        key = self.keys.authenticate((fields.get("key") or [""])[0])
        if key is None or not key.allows("admin"):
            response: Response = RedirectResponse("/login?failed=1", status_code=303)
        else:
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(
                COOKIE,
                (fields.get("key") or [""])[0].encode().hex(),  # cookie-safe whatever the key
                max_age=COOKIE_MAX_AGE_S,
                httponly=True,
                samesite="strict",
                secure=scope.get("scheme") == "https",
                path="/",
            )
        await response(scope, receive, send)


def refused_metrics(refused: Mapping[str, int]) -> str:
    """``modelrouter_auth_refused_total{status}`` in the Prometheus text format: a rising 401
    count is someone guessing keys (or a client whose key was revoked)."""
    name = "modelrouter_auth_refused_total"
    lines = [
        f"# HELP {name} Requests refused for a missing or unknown key (401) or a missing role"
        " (403).",
        f"# TYPE {name} counter",
    ]
    lines += [f'{name}{{status="{status}"}} {refused.get(status, 0)}' for status in ("401", "403")]
    return "\n".join(lines) + "\n"


def request_key_id(request: Any) -> str | None:
    """The authenticated key's id of a request (None when the service runs without keys)."""
    return getattr(request.state, "api_key_id", None)
