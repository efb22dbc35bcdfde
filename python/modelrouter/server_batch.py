"""POST auto-assign-all off the event loop, in small steps.

A batch body may be megabytes (up to the service's body limit). Decoding it with one
``json.loads`` or validating it with one pydantic call holds the GIL for the whole body, which
stalls the event loop running in another thread just as surely as doing the work on it. So the
worker thread decodes the JSON piecewise (the top-level object, each element of its lists, each
entry of those elements: short ``raw_decode`` calls), validates the agents and models in chunks,
then builds the core objects and solves (the core releases the GIL). No single step holds the
GIL for more than a few milliseconds, whatever the body size.

Only a summary of each batch is kept in memory (``summary``); the decision store, when there is
one, keeps the whole request and response.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ._core import Router
from .server_schemas import MAX_AGENTS, MAX_MODELS, AgentBody, AutoAssignRequest, ModelBody
from .types import agents_from_dicts, models_from_dicts

_WS = re.compile(r"[ \t\n\r]*").match
_DECODER = json.JSONDecoder()
_PIECEWISE_DEPTH = 3  # object > list > element > entry: deeper values decode in one call
_CHUNK = 256  # list elements validated per pydantic call


class BodyError(Exception):
    """The body is not a valid request: ``errors`` are pydantic-style dicts (loc, msg, type),
    ``loc`` relative to the body."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def decode_json(raw: bytes) -> Any:
    """``json.loads(raw)``, but objects and arrays down to ``_PIECEWISE_DEPTH`` are taken apart
    one member at a time, so no single call holds the GIL over a large body."""
    try:
        text = raw.decode("utf-8")
        value, end = _value(text, _skip(text, 0), 0)
        end = _skip(text, end)
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    except UnicodeDecodeError as e:
        raise BodyError([_json_error(f"body is not UTF-8: {e.reason}")]) from e
    except json.JSONDecodeError as e:
        raise BodyError([_json_error(f"{e.msg} at line {e.lineno} column {e.colno}")]) from e
    except RecursionError as e:
        raise BodyError([_json_error("nested too deeply")]) from e
    return value


def _skip(text: str, i: int) -> int:
    """The index of the first non-whitespace character at or after ``i``."""
    return _WS(text, i).end()  # type: ignore[union-attr]  # the pattern matches the empty string


def _json_error(message: str) -> dict[str, Any]:
    return {"loc": (), "msg": f"Invalid JSON: {message}", "type": "json_invalid"}


def _value(text: str, i: int, depth: int) -> tuple[Any, int]:
    opener = text[i : i + 1]
    if depth >= _PIECEWISE_DEPTH or opener not in ("{", "["):
        return _DECODER.raw_decode(text, i)
    close = "}" if opener == "{" else "]"
    out: Any = {} if opener == "{" else []
    i = _skip(text, i + 1)
    if text[i : i + 1] == close:
        return out, i + 1
    while True:
        if opener == "{":
            if text[i : i + 1] != '"':
                raise json.JSONDecodeError(
                    "Expecting property name enclosed in double quotes", text, i
                )
            key, i = _DECODER.raw_decode(text, i)
            i = _skip(text, i)
            if text[i : i + 1] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
            i = _skip(text, i + 1)
            out[key], i = _value(text, i, depth + 1)
        else:
            item, i = _value(text, i, depth + 1)
            out.append(item)
        i = _skip(text, i)
        sep = text[i : i + 1]
        if sep == close:
            return out, i + 1
        if sep != ",":
            raise json.JSONDecodeError(f"Expecting ',' delimiter or {close!r}", text, i)
        i = _skip(text, i + 1)


class _Lists(BaseModel):
    """The two lists of an AutoAssignRequest taken as they come (presence, type and length
    checked): their elements are validated separately, in chunks."""

    model_config = ConfigDict(extra="ignore")
    agents: list[Any] = Field(max_length=MAX_AGENTS)
    models: list[Any] = Field(min_length=1, max_length=MAX_MODELS)


_LISTS: dict[str, TypeAdapter[Any]] = {
    "agents": TypeAdapter(list[AgentBody]),
    "models": TypeAdapter(list[ModelBody]),
}


def validate(data: Any) -> AutoAssignRequest:
    """``AutoAssignRequest.model_validate(data)`` in steps of ``_CHUNK`` list elements; raises
    ``BodyError`` with every error found (loc relative to the body)."""
    errors: list[dict[str, Any]] = []
    if not isinstance(data, Mapping):
        try:
            return AutoAssignRequest.model_validate(data)
        except ValidationError as e:
            raise BodyError(_errors(e)) from e
    try:
        _Lists.model_validate(data)
    except ValidationError as e:
        errors += _errors(e)
    bad_lists = {e["loc"][0] for e in errors if e["loc"]}
    lists: dict[str, list[Any]] = {}
    for name, adapter in _LISTS.items():
        items = data.get(name)
        if name in bad_lists or not isinstance(items, list):
            continue
        out: list[Any] = []
        for start in range(0, len(items), _CHUNK):
            try:
                out += adapter.validate_python(items[start : start + _CHUNK])
            except ValidationError as e:
                errors += _errors(e, (name,), start)
        lists[name] = out
    # The other fields (strategy, ...; unknown keys are errors) with their validators and
    # defaults, the lists stubbed out.
    try:
        scalars = {k: v for k, v in data.items() if k not in _LISTS}
        head = AutoAssignRequest.model_validate({**scalars, "agents": [], "models": [{"id": "_"}]})
    except ValidationError as e:
        errors += [x for x in _errors(e) if x["loc"][:1] not in (("agents",), ("models",))]
        head = None
    if errors or head is None:
        raise BodyError(errors)
    return head.model_copy(update=lists)


def _errors(e: ValidationError, prefix: tuple[Any, ...] = (), offset: int = 0) -> list[dict]:
    out = []
    for err in e.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        if prefix and loc and isinstance(loc[0], int):
            loc = (loc[0] + offset, *loc[1:])
        out.append(
            {"loc": (*prefix, *loc), "msg": str(err.get("msg", "")), "type": err.get("type")}
        )
    return out


def solve(body: AutoAssignRequest) -> dict[str, Any]:
    """The assignment of the validated body: ``AssignmentResult.to_dict()``. Core validation
    errors (duplicate ids, ...) propagate as ``InvalidInputError`` naming the field."""
    models = models_from_dicts([m.model_dump() for m in body.models])
    agents = agents_from_dicts([a.model_dump() for a in body.agents])
    router = Router(
        models,
        strategy=body.strategy,
        load_balancing=body.enable_load_balancing,
        load_weight=body.load_weight,
    )
    return router.assign(agents).to_dict()


def request_dict(body: AutoAssignRequest) -> dict[str, Any]:
    """The validated request as plain JSON data (what the store records), built element by
    element."""
    return {
        "agents": [a.model_dump() for a in body.agents],
        "models": [m.model_dump() for m in body.models],
        "strategy": body.strategy,
        "enable_load_balancing": body.enable_load_balancing,
        "load_weight": body.load_weight,
    }


def summary(body: AutoAssignRequest, result: Mapping[str, Any], nbytes: int) -> dict[str, Any]:
    """What the service keeps in memory of one batch (GET assignments without a store): the
    request's options and sizes, the response's figures; never the agent or model lists."""
    return {
        "request": {
            "strategy": body.strategy,
            "enable_load_balancing": body.enable_load_balancing,
            "load_weight": body.load_weight,
            "n_agents": len(body.agents),
            "n_models": len(body.models),
            "body_bytes": nbytes,
        },
        "response": {
            "strategy_used": result.get("strategy_used"),
            "load_balancing_enabled": result.get("load_balancing_enabled"),
            "total_score": result.get("total_score"),
            "avg_utilization": result.get("avg_utilization"),
            "models_filtered": result.get("models_filtered"),
            "n_assigned": len(result.get("assignments", ())),
            "n_unassigned": len(result.get("unassigned", ())),
        },
    }
