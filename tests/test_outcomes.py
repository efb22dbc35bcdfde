"""The outcome classifier (issue 13): real exceptions of httpx and openai, the stdlib's timeouts,
cancellations and HTTP errors, and hypothesis properties (every status maps to its documented
class, Retry-After round-trips, garbage never raises)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.message
import math
import socket
import subprocess
import sys
import time
import urllib.error
from email.utils import formatdate
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelrouter as mr
from modelrouter import outcomes

Outcome = outcomes.Outcome
OUTCOME_KINDS = outcomes.OUTCOME_KINDS
classify = outcomes.classify
classify_status = outcomes.classify_status
retry_after_from_headers = outcomes.retry_after_from_headers

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def kind(exc: BaseException | None) -> str:
    return classify(exc, now=NOW).kind


# --- the API ---------------------------------------------------------------------------------


def test_kinds_are_the_cores_in_its_order():
    assert OUTCOME_KINDS == tuple(mr.OUTCOMES)
    assert OUTCOME_KINDS[0] == "ok" and OUTCOME_KINDS[-1] == "failed"
    assert outcomes.default_classifier is classify
    assert outcomes.RETRYABLE_KINDS <= set(OUTCOME_KINDS)


def test_outcome_validation():
    assert Outcome("ok") == Outcome("ok", None)
    assert Outcome("rate_limited", 3).retry_after_s == 3.0
    assert isinstance(Outcome("rate_limited", 3).retry_after_s, float)
    with pytest.raises(ValueError, match="rate_limited"):  # the message lists the kinds
        Outcome("rate-limited")
    with pytest.raises(ValueError):
        Outcome(429)  # type: ignore[arg-type]
    for bad in (-1.0, -0.001, math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError):
            Outcome("rate_limited", bad)
    for bad_type in ("3", True, [1]):
        with pytest.raises(TypeError):
            Outcome("rate_limited", bad_type)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only for"):
        Outcome("client_error", 1.0)
    with pytest.raises(AttributeError):
        Outcome("ok").kind = "failed"  # type: ignore[misc]
    assert hash(Outcome("timeout", 1.0)) == hash(Outcome("timeout", 1))


def test_module_imports_no_http_client():
    code = (
        "import sys, modelrouter.outcomes as m\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in "
        "('httpx', 'httpx2', 'openai', 'aiohttp', 'requests')]\n"
        "assert not bad, bad\n"
        "assert m.classify(None).kind == 'ok'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- stdlib exceptions -----------------------------------------------------------------------


def test_none_is_ok():
    assert classify(None) == Outcome("ok")


@pytest.mark.parametrize(
    "exc",
    [TimeoutError(), asyncio.TimeoutError(), concurrent.futures.TimeoutError(), socket.timeout()],
    ids=repr,
)
def test_timeouts(exc):
    assert kind(exc) == "timeout"


@pytest.mark.parametrize(
    "exc",
    [
        asyncio.CancelledError(),
        concurrent.futures.CancelledError(),
        KeyboardInterrupt(),
        SystemExit(1),
        GeneratorExit(),
    ],
    ids=repr,
)
def test_cancellations(exc):
    assert kind(exc) == "cancelled"


@pytest.mark.parametrize(
    "exc", [ConnectionError(), ConnectionResetError(), ConnectionRefusedError(), BrokenPipeError()]
)
def test_connection_errors_are_server_errors(exc):
    assert kind(exc) == "server_error"


@pytest.mark.parametrize("exc", [ValueError("x"), RuntimeError(), KeyError("k"), OSError()])
def test_unrecognised_is_failed(exc):
    assert kind(exc) == "failed"


def test_explicit_cause_is_followed_but_not_context():
    try:
        try:
            raise TimeoutError
        except TimeoutError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as exc:
        assert kind(exc) == "timeout"
    try:
        try:
            raise TimeoutError
        except TimeoutError:
            raise RuntimeError("during handling") from None
    except RuntimeError as exc:
        assert kind(exc) == "failed"


def test_cause_cycle_terminates():
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a
    assert kind(a) == "failed"


def test_exception_groups():
    if sys.version_info >= (3, 11):
        group = BaseExceptionGroup  # noqa: F821
    else:  # the backport, which pytest itself requires before 3.11
        from exceptiongroup import BaseExceptionGroup as group
    assert kind(group("g", [TimeoutError(), asyncio.TimeoutError()])) == "timeout"
    assert kind(group("g", [asyncio.CancelledError()])) == "cancelled"
    assert kind(group("g", [TimeoutError(), ValueError()])) == "failed"
    nested = group("outer", [group("inner", [ConnectionResetError()]), ConnectionError()])
    assert kind(nested) == "server_error"


def test_urllib_http_error():
    headers = email.message.Message()
    headers["Retry-After"] = "12"
    exc = urllib.error.HTTPError("http://x", 429, "Too Many Requests", headers, None)
    assert classify(exc, now=NOW) == Outcome("rate_limited", 12.0)
    exc = urllib.error.HTTPError("http://x", 404, "Not Found", email.message.Message(), None)
    assert kind(exc) == "client_error"


class FakeAiohttpError(Exception):
    """The shape of ``aiohttp.ClientResponseError``: ``status``, ``message``, ``headers``."""

    def __init__(self, status: Any, message: str = "", headers: Any = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def test_aiohttp_shape():
    exc = FakeAiohttpError(429, "Too Many Requests", {"RETRY-AFTER-MS": "1500"})
    assert classify(exc, now=NOW) == Outcome("rate_limited", 1.5)
    assert kind(FakeAiohttpError(502)) == "server_error"
    assert kind(FakeAiohttpError(400, "prompt is too long: 9000 tokens")) == "context_length"
    assert kind(FakeAiohttpError(400, "invalid temperature")) == "client_error"
    assert kind(FakeAiohttpError("429")) == "failed"  # a status that is not an int is ignored


def test_provider_rate_limit_class_without_status():
    class RateLimitError(Exception):
        pass

    class ResourceExhausted(RateLimitError):
        pass

    assert kind(RateLimitError("slow down")) == "rate_limited"
    assert kind(ResourceExhausted()) == "rate_limited"


def test_context_length_code_without_status():
    exc = RuntimeError("stream error")
    exc.code = "context_length_exceeded"  # type: ignore[attr-defined]
    assert kind(exc) == "context_length"


# --- httpx -----------------------------------------------------------------------------------


def _httpx_status_error(httpx: Any, status: int, **kwargs: Any) -> Any:
    request = httpx.Request("POST", "https://llm.example/v1/chat/completions")
    response = httpx.Response(status, request=request, **kwargs)
    return httpx.HTTPStatusError(f"status {status}", request=request, response=response)


def test_httpx_status_errors():
    httpx = pytest.importorskip("httpx")
    exc = _httpx_status_error(httpx, 429, headers={"Retry-After": "30"})
    assert classify(exc, now=NOW) == Outcome("rate_limited", 30.0)
    assert kind(_httpx_status_error(httpx, 500)) == "server_error"
    assert kind(_httpx_status_error(httpx, 503)) == "server_error"
    assert kind(_httpx_status_error(httpx, 504)) == "timeout"
    assert kind(_httpx_status_error(httpx, 408)) == "timeout"
    assert kind(_httpx_status_error(httpx, 401)) == "client_error"
    assert kind(_httpx_status_error(httpx, 404)) == "client_error"
    assert kind(_httpx_status_error(httpx, 302)) == "failed"
    too_long = {"error": {"message": "This model's maximum context length is 8192 tokens"}}
    assert kind(_httpx_status_error(httpx, 400, json=too_long)) == "context_length"
    assert kind(_httpx_status_error(httpx, 413, text="Prompt is too long")) == "context_length"
    assert kind(_httpx_status_error(httpx, 413, text="payload too large")) == "client_error"
    # The marker counts on 400/413 only; any 4xx with openai's code counts.
    assert kind(_httpx_status_error(httpx, 422, text="context window")) == "client_error"
    code = {"error": {"code": "context_length_exceeded"}}
    assert kind(_httpx_status_error(httpx, 422, json=code)) == "context_length"
    dated = {"retry-after": formatdate(NOW + 90, usegmt=True)}
    assert classify(_httpx_status_error(httpx, 503, headers=dated), now=NOW) == Outcome(
        "server_error", 90.0
    )


def test_httpx_streamed_response_not_read():
    httpx = pytest.importorskip("httpx")
    request = httpx.Request("POST", "https://llm.example/v1/chat/completions")

    def chunks():
        yield b"context window exceeded"

    response = httpx.Response(400, request=request, content=chunks())
    exc = httpx.HTTPStatusError("400", request=request, response=response)
    assert kind(exc) == "client_error"  # the unread body is not read by the classifier


def test_httpx_transport_errors():
    httpx = pytest.importorskip("httpx")
    request = httpx.Request("GET", "https://llm.example/")
    for cls in (httpx.ReadTimeout, httpx.ConnectTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
        assert kind(cls("t", request=request)) == "timeout"
    assert kind(httpx.ConnectError("refused", request=request)) == "server_error"
    assert kind(httpx.ReadError("reset", request=request)) == "server_error"
    assert kind(httpx.RemoteProtocolError("closed", request=request)) == "server_error"
    assert kind(httpx.UnsupportedProtocol("ftp://", request=request)) == "failed"


# --- openai ----------------------------------------------------------------------------------


def _openai_http() -> tuple[Any, Any]:
    """openai and the HTTP client its exceptions are built on (httpx for openai 1.x and 2.x,
    httpx2 for 3.x)."""
    openai = pytest.importorskip("openai")
    exceptions = sys.modules.get("openai._exceptions")
    http = getattr(exceptions, "httpx2", None) or getattr(exceptions, "httpx", None)
    if http is None:
        http = pytest.importorskip("httpx")
    return openai, http


def _openai_response(http: Any, status: int, **kwargs: Any) -> Any:
    request = http.Request("POST", "https://api.openai.com/v1/chat/completions")
    return http.Response(status, request=request, **kwargs)


def test_openai_rate_limit():
    openai, http = _openai_http()
    body = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
    headers = {
        "retry-after": "20",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m30s",
    }
    response = _openai_response(http, 429, headers=headers, json={"error": body})
    exc = openai.RateLimitError("Error code: 429", response=response, body=body)
    assert classify(exc, now=NOW) == Outcome("rate_limited", 20.0)
    # retry-after-ms wins over retry-after; without both, openai's reset headers count.
    response = _openai_response(http, 429, headers={**headers, "retry-after-ms": "250"})
    exc = openai.RateLimitError("Error code: 429", response=response, body=body)
    assert classify(exc, now=NOW).retry_after_s == 0.25
    del headers["retry-after"]
    response = _openai_response(http, 429, headers=headers)
    exc = openai.RateLimitError("Error code: 429", response=response, body=body)
    assert classify(exc, now=NOW).retry_after_s == 90.0
    response = _openai_response(http, 429)
    exc = openai.RateLimitError("Error code: 429", response=response, body=None)
    assert classify(exc, now=NOW) == Outcome("rate_limited")


def test_openai_server_errors_timeouts_connections():
    openai, http = _openai_http()
    for status in (500, 502, 503, 529):
        exc = openai.InternalServerError(
            f"Error code: {status}", response=_openai_response(http, status), body=None
        )
        assert kind(exc) == "server_error", status
    exc = openai.InternalServerError("504", response=_openai_response(http, 504), body=None)
    assert kind(exc) == "timeout"
    request = http.Request("POST", "https://api.openai.com/v1/chat/completions")
    assert kind(openai.APITimeoutError(request=request)) == "timeout"
    assert kind(openai.APIConnectionError(request=request)) == "server_error"


def test_openai_bad_requests():
    openai, http = _openai_http()
    body = {
        "message": "This model's maximum context length is 128000 tokens. However, your "
        "messages resulted in 130000 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    response = _openai_response(http, 400, json={"error": body})
    exc = openai.BadRequestError("Error code: 400", response=response, body=body)
    assert classify(exc) == Outcome("context_length")
    # The message alone is enough (a compatible server without openai's code).
    body = {"message": body["message"], "type": "invalid_request_error", "code": None}
    exc = openai.BadRequestError("Error code: 400", response=response, body=body)
    assert kind(exc) == "context_length"
    body = {"message": "Invalid value for 'temperature'", "code": "invalid_value"}
    response = _openai_response(http, 400, json={"error": body})
    exc = openai.BadRequestError("Error code: 400", response=response, body=body)
    assert kind(exc) == "client_error"
    for cls, status in (
        (openai.AuthenticationError, 401),
        (openai.PermissionDeniedError, 403),
        (openai.NotFoundError, 404),
        (openai.UnprocessableEntityError, 422),
    ):
        exc = cls("nope", response=_openai_response(http, status), body=None)
        assert kind(exc) == "client_error", cls


def test_openai_response_validation_error_is_failed():
    openai, http = _openai_http()
    exc = openai.APIResponseValidationError(response=_openai_response(http, 200), body=None)
    assert kind(exc) == "failed"


# --- statuses, headers: properties -----------------------------------------------------------


def expected_kind(status: int) -> str:
    """The documented class of a status carried by an exception."""
    if not 400 <= status <= 599:
        return "failed"
    if status == 429:
        return "rate_limited"
    if status in (408, 504, 524):
        return "timeout"
    if status >= 500:
        return "server_error"
    return "client_error"


class StatusError(Exception):
    def __init__(self, status_code: Any = None, response: Any = None, **attrs: Any) -> None:
        super().__init__(attrs.pop("msg", "error"))
        self.status_code, self.response = status_code, response
        self.__dict__.update(attrs)


class Response:
    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)


statuses = st.one_of(st.integers(min_value=-1000, max_value=1000), st.integers())


@given(statuses)
def test_any_status_on_an_exception_maps_to_its_class(status):
    assert kind(StatusError(status)) == expected_kind(status)
    assert kind(StatusError(response=Response(status_code=status))) == expected_kind(status)
    assert kind(FakeAiohttpError(status)) == expected_kind(status)


@given(statuses)
def test_classify_status(status):
    expected = "ok" if 200 <= status <= 299 else expected_kind(status)
    assert classify_status(status).kind == expected


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["Retry-After", "retry-after"]))
def test_retry_after_seconds_round_trip(seconds, name):
    exc = StatusError(429, headers={name: str(seconds)})
    assert classify(exc, now=NOW) == Outcome("rate_limited", float(seconds))
    assert retry_after_from_headers([(name.encode(), str(seconds).encode())]) == float(seconds)


@given(st.decimals(min_value=0, max_value=10**6, places=3))
def test_retry_after_ms_round_trip(ms):
    got = retry_after_from_headers({"retry-after-ms": str(ms)})
    assert got == pytest.approx(float(ms) / 1000.0)


@given(st.integers(min_value=-(10**6), max_value=10**7), st.floats(min_value=0, max_value=1))
def test_retry_after_http_date(delay, fraction):
    now = NOW + fraction  # the date has a resolution of one second
    value = formatdate(NOW + delay, usegmt=True)
    got = retry_after_from_headers({"Retry-After": value}, now=now)
    assert got is not None and got >= 0
    assert got == pytest.approx(max(0.0, delay - fraction), abs=1.0)


def test_retry_after_http_date_counts_from_the_wall_clock():
    value = formatdate(time.time() + 60, usegmt=True)
    assert retry_after_from_headers({"retry-after": value}) == pytest.approx(60, abs=1.5)


@given(
    st.integers(0, 99),
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 999),
)
def test_openai_reset_durations(h, m, s, ms):
    text = (f"{h}h" if h else "") + (f"{m}m" if m else "") + f"{s}s" + (f"{ms}ms" if ms else "")
    got = retry_after_from_headers({"x-ratelimit-reset-tokens": text})
    assert got == pytest.approx(h * 3600 + m * 60 + s + ms / 1000)


def test_reset_headers_prefer_exhausted_limit():
    headers = {
        "x-ratelimit-reset-requests": "2s",
        "x-ratelimit-reset-tokens": "6m0s",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-remaining-tokens": "1500",
    }
    assert retry_after_from_headers(headers) == 2.0
    del headers["x-ratelimit-remaining-requests"]
    assert retry_after_from_headers(headers) == 360.0  # none known exhausted: the latest
    iso = {"x-ratelimit-reset-requests": "2026-01-01T00:00:30Z"}
    assert retry_after_from_headers(iso, now=NOW) == 30.0


@pytest.mark.parametrize(
    "value",
    ["", "soon", "-5", "inf", "nan", "1e400", "1_000", "Thu, 99 Foo 2026", "0x10", "\x00"],
)
def test_bad_retry_after_is_ignored(value):
    assert retry_after_from_headers({"retry-after": value}) is None
    assert retry_after_from_headers({"retry-after-ms": value}) is None
    assert classify(StatusError(429, headers={"retry-after": value})) == Outcome("rate_limited")


class Raising:
    """An object every attribute access, iteration or conversion of which raises."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # hypothesis' pretty-printer probes _repr_pretty_
            raise AttributeError(name)
        raise RuntimeError(f"no {name}")

    def __repr__(self) -> str:
        return "Raising()"

    def __iter__(self) -> Any:
        raise RuntimeError("no iteration")

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __bool__(self) -> bool:
        raise RuntimeError("no bool")


class HostileError(Exception):
    def __getattribute__(self, name: str) -> Any:
        if name.startswith("__") and name != "__dict__":
            return object.__getattribute__(self, name)
        raise RuntimeError(f"no {name}")

    def __str__(self) -> str:
        raise RuntimeError("no str")


garbage = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=30)
    | st.just(Raising())
    | st.sampled_from(["429", "retry-after", "Retry-After", "x-ratelimit-reset-a", "1m", "0"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(
            st.sampled_from(
                [
                    "retry-after",
                    "Retry-After",
                    "retry-after-ms",
                    "x-ratelimit-reset-tokens",
                    "x-ratelimit-remaining-tokens",
                    "code",
                    "error",
                    "message",
                ]
            )
            | st.text(max_size=10),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@given(
    status=garbage | statuses,
    response_status=garbage | statuses,
    headers=garbage,
    response_headers=garbage,
    body=garbage,
    code=garbage,
    message=garbage,
    text=garbage,
    content=garbage,
)
def test_garbage_never_raises(
    status, response_status, headers, response_headers, body, code, message, text, content
):
    response = Response(
        status_code=response_status, headers=response_headers, text=text, content=content
    )
    exc = StatusError(status, response, headers=headers, body=body, code=code, message=message)
    outcome = classify(exc)
    assert isinstance(outcome, Outcome) and outcome.kind in OUTCOME_KINDS
    for h in (headers, response_headers):
        got = retry_after_from_headers(h)
        assert got is None or (math.isfinite(got) and got >= 0)
    assert classify_status(status, headers, body).kind in OUTCOME_KINDS


def test_hostile_objects_never_raise():
    assert kind(HostileError()) == "failed"
    assert kind(StatusError(Raising(), Raising(), headers=Raising(), body=Raising())) == "failed"
    assert kind(StatusError(429, Raising(), headers=Raising())) == "rate_limited"
    assert kind(StatusError(400, Raising(), body=Raising(), msg="context window")) == (
        "context_length"
    )
    assert retry_after_from_headers(Raising()) is None
    assert classify_status(Raising(), Raising(), Raising()).kind == "failed"  # type: ignore[arg-type]
