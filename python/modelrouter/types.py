"""Typed shapes of the JSON that describes a fleet and its agents, and loaders that turn it
into ``Model`` / ``Agent`` objects with errors naming the file and the field."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from ._core import Agent, Model
from .errors import InvalidInputError

try:  # Python >= 3.11
    from typing import NotRequired
except ImportError:  # pragma: no cover
    from typing_extensions import NotRequired

SCENARIO_DIR = Path(__file__).with_name("scenarios")


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package (``"heterogeneous"``, ...), sorted."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.json"))


def scenario_path(scenario: str | os.PathLike[str]) -> Path:
    """The file of a scenario: a path as given, or for a bare name (no suffix, not an existing
    file) the shipped scenario of that name. An unknown name raises ``InvalidInputError``
    (field ``scenario``) listing the shipped ones."""
    path = Path(scenario)
    if path.suffix or path.exists():
        return path
    shipped = SCENARIO_DIR / f"{path.name}.json"
    if path.name == str(scenario) and shipped.exists():
        return shipped
    raise InvalidInputError(
        f"unknown scenario {str(scenario)!r}: not a file, and not one of the shipped "
        f"scenarios ({', '.join(shipped_scenarios())}); give a JSON file's path or one of those",
        "scenario",
    )


class ModelSpec(TypedDict):
    id: str
    capabilities: NotRequired[dict[str, float]]
    context_window: NotRequired[int]
    max_concurrent: NotRequired[int]
    max_queue: NotRequired[int]
    target_utilization: NotRequired[float]
    cost_per_1k_tokens: NotRequired[float]
    rpm: NotRequired[int | None]
    tpm: NotRequired[int | None]
    max_tokens_in_flight: NotRequired[int | None]


class AgentSpec(TypedDict):
    id: str
    required: NotRequired[dict[str, float]]
    preferred: NotRequired[dict[str, float]]
    min_context: NotRequired[int]


_MODEL_KEYS = set(ModelSpec.__annotations__)
_AGENT_KEYS = set(AgentSpec.__annotations__)


def _build(kind: type, spec: Any, keys: set[str], where: str) -> Any:
    if not isinstance(spec, Mapping):
        raise InvalidInputError(f"{where}: expected an object, got {type(spec).__name__}", where)
    if "id" not in spec:
        raise InvalidInputError(f"{where}.id: missing required field", f"{where}.id")
    unknown = sorted(set(spec) - keys)
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown field(s) {unknown}; valid: {sorted(keys)}", f"{where}.{unknown[0]}"
        )
    args = {k: v for k, v in spec.items() if k != "id"}
    positional = ("capabilities",) if kind is Model else ("required", "preferred")
    try:
        return kind(spec["id"], *(args.pop(p, None) for p in positional), **args)
    except InvalidInputError as e:
        raise InvalidInputError(f"{where}.{e.field}: {e}", f"{where}.{e.field}") from e
    except TypeError as e:
        raise InvalidInputError(f"{where}: {e}", where) from e


def models_from_dicts(specs: Sequence[ModelSpec], where: str = "models") -> list[Model]:
    """``Model`` objects from plain dicts (JSON), errors naming ``where[i].field``."""
    return [_build(Model, s, _MODEL_KEYS, f"{where}[{i}]") for i, s in enumerate(specs)]


def agents_from_dicts(specs: Sequence[AgentSpec], where: str = "agents") -> list[Agent]:
    """``Agent`` objects from plain dicts (JSON), errors naming ``where[i].field``."""
    return [_build(Agent, s, _AGENT_KEYS, f"{where}[{i}]") for i, s in enumerate(specs)]


def load_fleet(path: str | Path) -> tuple[list[Agent], list[Model]]:
    """Agents and models from a JSON file with top-level ``agents`` and ``models`` lists.
    A bare name (``"seed_assign"``) refers to a scenario shipped with the package."""
    path = scenario_path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise InvalidInputError(f"{path}: no such scenario file", "path") from e
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"{path}: not valid JSON ({e})", "path") from e
    for key in ("agents", "models"):
        if not isinstance(data.get(key), list):
            raise InvalidInputError(f"{path}: field {key!r} must be a list", key)
    try:
        return agents_from_dicts(data["agents"]), models_from_dicts(data["models"])
    except InvalidInputError as e:
        raise InvalidInputError(f"{path}: {e}", e.field) from e


__all__ = [
    "AgentSpec",
    "ModelSpec",
    "agents_from_dicts",
    "load_fleet",
    "models_from_dicts",
    "scenario_path",
    "shipped_scenarios",
]
