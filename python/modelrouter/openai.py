"""Route your OpenAI SDK calls: ``OpenAI`` and ``AsyncOpenAI`` look like the SDK's clients but
send each call to the deployment a :class:`~modelrouter.Router` chooses.

::

    client = OpenAI(router=router, agent=agent, deployments={
        "llama3-70b": {"base_url": "http://10.0.0.5:8000/v1", "model": "meta-llama/..."},
        "gpt-4o-mini": {"api_key": "...", "model": "gpt-4o-mini"},
    })
    client.chat.completions.create(model="auto", messages=[...])

``model="auto"`` lets the router choose (a deployment id pins the call to it). Each call is
admitted (concurrency, queue, health), goes to the chosen deployment through the real ``openai``
client (its own retries off), and its outcome (429 + Retry-After, 5xx, timeouts, context
length) goes back to the router; retryable failures move to another deployment within the
router's retry budget (:meth:`Router.call`). A stream passes its chunks through unchanged and
holds the slot until it is read to the end, closed, or dropped; its time to first token is
``stream.time_to_first_token_s``. ``retries``, ``fallbacks``, ``timeout_s`` and ``store`` are
:meth:`Router.call`'s. Needs the ``openai`` package (``modelrouter[openai]``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import openai as _openai

from . import _calls, _usage
from .errors import InvalidInputError, UnknownModelError

if TYPE_CHECKING:
    from ._core import Agent, InFlight, Router
    from .store import DecisionStore

__all__ = ["AsyncOpenAI", "OpenAI", "RoutedAsyncStream", "RoutedStream"]

_DEPLOYMENT_KEYS = frozenset({"base_url", "api_key", "model", "organization", "default_headers"})


class _Deployment:
    """Where one router model's calls go; its key stays out of every repr."""

    def __init__(self, model_id: str, spec: Mapping[str, Any]) -> None:
        if not isinstance(spec, Mapping):
            raise InvalidInputError(f"deployments[{model_id!r}] must be a mapping", "deployments")
        unknown = set(spec) - _DEPLOYMENT_KEYS
        if unknown:
            raise InvalidInputError(
                f"deployments[{model_id!r}]: unknown keys {sorted(unknown)}; "
                f"expected {sorted(_DEPLOYMENT_KEYS)}",
                "deployments",
            )
        self.model_id = model_id
        self.model = spec.get("model", model_id)
        self.options = {
            k: spec[k]
            for k in ("base_url", "api_key", "organization", "default_headers")
            if k in spec
        }

    def __repr__(self) -> str:
        where = self.options.get("base_url", "api.openai.com")
        return f"<deployment {self.model_id!r}: {where} model={self.model!r}>"


class _Base:
    def __init__(
        self,
        *,
        router: Router,
        deployments: Mapping[str, Mapping[str, Any]],
        agent: Agent | None = None,
        retries: int = 2,
        fallbacks: Sequence[str] | Callable[[str, str], str | None] | None = None,
        timeout_s: float | None = None,
        store: DecisionStore | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(deployments, Mapping) or not deployments:
            raise InvalidInputError("deployments must map model ids to endpoints", "deployments")
        known = {m.id for m in router.models}
        missing = sorted(known - set(deployments))
        if missing:
            raise InvalidInputError(
                f"no deployment for the router's models {missing}", "deployments"
            )
        extra = sorted(set(deployments) - known)
        if extra:
            raise InvalidInputError(f"deployments for unknown models {extra}", "deployments")
        self.router, self.agent, self.store = router, agent, store
        self.retries, self.fallbacks, self.timeout_s = retries, fallbacks, timeout_s
        self._deployments = {m: _Deployment(m, spec) for m, spec in deployments.items()}
        options = {"max_retries": 0, **(client_options or {})}
        self._clients = {
            m: self._make_client(**d.options, **options) for m, d in self._deployments.items()
        }
        self.chat = _Chat(self)
        self.completions = _Endpoint(self, "completions")
        self.embeddings = _Endpoint(self, "embeddings")

    def _make_client(self, **options: Any) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(deployments={list(self._deployments.values())!r})"

    def _plan(self, agent: Agent | None, model: str) -> tuple[Agent, str | None]:
        agent = agent if agent is not None else self.agent
        if agent is None:
            raise InvalidInputError(
                "agent is required (per call or as the client default)", "agent"
            )
        if model == "auto":
            return agent, None
        if model not in self._deployments:
            raise UnknownModelError(model)
        return agent, model

    def _target(self, flight: InFlight, endpoint: str) -> tuple[Any, str]:
        client = self._clients[flight.model_id]
        resource = client.chat.completions if endpoint == "chat" else getattr(client, endpoint)
        return resource, self._deployments[flight.model_id].model


class _Chat:
    def __init__(self, owner: _Base) -> None:
        self.completions = _Endpoint(owner, "chat")


class _Endpoint:
    """``create(...)`` of one endpoint (chat completions, completions, embeddings)."""

    def __init__(self, owner: _Base, endpoint: str) -> None:
        self._owner, self._endpoint = owner, endpoint

    def create(self, *, agent: Agent | None = None, model: str = "auto", **kwargs: Any) -> Any:
        owner = self._owner
        plan = owner._plan(agent, model)
        if isinstance(owner, AsyncOpenAI):
            return self._acreate(plan, kwargs)

        def attempt(flight: InFlight) -> Any:
            resource, name = owner._target(flight, self._endpoint)
            return resource.create(model=name, **kwargs)

        held = _calls.run(*self._loop_args(plan, attempt, kwargs), pinned=plan[1], hold=True)
        return self._answer(held, kwargs, RoutedStream)

    async def _acreate(self, plan: tuple[Agent, str | None], kwargs: dict[str, Any]) -> Any:
        owner = self._owner

        async def attempt(flight: InFlight) -> Any:
            resource, name = owner._target(flight, self._endpoint)
            return await resource.create(model=name, **kwargs)

        args = self._loop_args(plan, attempt, kwargs)
        held = await _calls.arun(*args, pinned=plan[1], hold=True)
        return self._answer(held, kwargs, RoutedAsyncStream)

    def _loop_args(self, plan: tuple[Agent, str | None], attempt: Any, kwargs: Any) -> tuple:
        """The attempt loop's arguments: a pinned call is not moved (no retries); the request
        is sized from its body for the token limits."""
        owner, (agent, pinned) = self._owner, plan
        retries = 0 if pinned else owner.retries
        size = _usage.estimate(kwargs)
        fallbacks = None if pinned else owner.fallbacks
        return (
            owner.router,
            agent,
            attempt,
            retries,
            fallbacks,
            owner.timeout_s,
            owner.store,
            size,
        )

    @staticmethod
    def _answer(held: _calls.Held, kwargs: Mapping[str, Any], stream_class: type) -> Any:
        """A stream holds its request until read; an answer ends it now, with its usage."""
        if kwargs.get("stream"):
            return stream_class(held)
        _usage.report(held.flight, _usage.usage_of(held.value))
        held.end("ok")
        return held.value


class _StreamEnd:
    """Ends a held stream's request exactly once, from whichever thread gets there first."""

    def __init__(self, held: _calls.Held) -> None:
        self._held = held
        self._lock = threading.Lock()
        self.ended = False
        self.started = time.perf_counter()
        self.time_to_first_token_s: float | None = None
        self.usage: Any = None

    def chunk(self, chunk: Any) -> None:
        if self.time_to_first_token_s is None:
            self.time_to_first_token_s = time.perf_counter() - self.started
            self._held.flight.first_token()  # the model learns its TTFT
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = usage

    def end(self, kind: str, exc: BaseException | None = None) -> None:
        with self._lock:
            if self.ended:
                return
            self.ended = True
        if kind == "ok" and self.usage is not None:
            _usage.report(self._held.flight, _usage.usage_of(self))
        self._held.end(kind, exc)


class RoutedStream:
    """The SDK's stream, chunk for chunk; the request ends when it is exhausted (ok), fails
    (classified), or is closed or dropped before the end (cancelled)."""

    def __init__(self, held: _calls.Held) -> None:
        self._stream = held.value
        self._it: Iterator[Any] = iter(self._stream)
        self._end = _StreamEnd(held)
        self.model_id: str = held.flight.model_id

    @property
    def time_to_first_token_s(self) -> float | None:
        return self._end.time_to_first_token_s

    @property
    def usage(self) -> Any:
        """The usage chunk's figures, once the stream sent one (``include_usage``)."""
        return self._end.usage

    def __iter__(self) -> RoutedStream:
        return self

    def __next__(self) -> Any:
        try:
            chunk = next(self._it)
        except StopIteration:
            self._end.end("ok")
            raise
        except Exception as exc:
            self._end.end("failed", exc)
            raise
        except BaseException:
            self.close()
            raise
        self._end.chunk(chunk)
        return chunk

    def close(self) -> None:
        if not self._end.ended:
            try:
                self._stream.close()
            finally:
                self._end.end("cancelled")

    def __enter__(self) -> RoutedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_end", None) or self._end.ended:
            return
        self._end.end("cancelled")


class RoutedAsyncStream:
    """:class:`RoutedStream` for ``AsyncOpenAI``."""

    def __init__(self, held: _calls.Held) -> None:
        self._stream = held.value
        self._it: AsyncIterator[Any] = self._stream.__aiter__()
        self._end = _StreamEnd(held)
        self.model_id: str = held.flight.model_id

    @property
    def time_to_first_token_s(self) -> float | None:
        return self._end.time_to_first_token_s

    @property
    def usage(self) -> Any:
        return self._end.usage

    def __aiter__(self) -> RoutedAsyncStream:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._it.__anext__()
        except StopAsyncIteration:
            self._end.end("ok")
            raise
        except Exception as exc:
            self._end.end("failed", exc)
            raise
        except BaseException:  # cancelled mid-stream
            self._end.end("cancelled")
            raise
        self._end.chunk(chunk)
        return chunk

    async def close(self) -> None:
        if not self._end.ended:
            try:
                await self._stream.close()
            finally:
                self._end.end("cancelled")

    async def __aenter__(self) -> RoutedAsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __del__(self) -> None:
        if not getattr(self, "_end", None) or self._end.ended:
            return
        self._end.end("cancelled")


class OpenAI(_Base):
    """The routed counterpart of ``openai.OpenAI``."""

    def _make_client(self, **options: Any) -> Any:
        return _openai.OpenAI(**options)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def __enter__(self) -> OpenAI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncOpenAI(_Base):
    """The routed counterpart of ``openai.AsyncOpenAI``: ``await client.chat.completions
    .create(...)``."""

    def _make_client(self, **options: Any) -> Any:
        return _openai.AsyncOpenAI(**options)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()

    async def __aenter__(self) -> AsyncOpenAI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
