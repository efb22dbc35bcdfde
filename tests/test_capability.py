"""Capability scoring: objects and dense arrays against an independent numpy oracle."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelrouter as mr
from modelrouter.testing.reference import numpy_cost_matrix

LEVEL = st.floats(0.0, 1.0, allow_nan=False)
CAP_NAMES = st.sampled_from(["code", "reasoning", "chat", "vision", "math"])


@st.composite
def fleets(draw):
    models = [
        mr.Model(
            f"m{j}",
            draw(st.dictionaries(CAP_NAMES, LEVEL, max_size=5)),
            context_window=draw(st.integers(1, 200_000)),
            cost_per_1k_tokens=draw(st.floats(0.0, 10.0)),
        )
        for j in range(draw(st.integers(0, 6)))
    ]
    agents = [
        mr.Agent(
            f"a{i}",
            draw(st.dictionaries(CAP_NAMES, st.floats(0.01, 1.0), max_size=3)),
            draw(st.dictionaries(CAP_NAMES, st.floats(0.0, 5.0), max_size=3)),
            min_context=draw(st.integers(0, 200_000)),
        )
        for i in range(draw(st.integers(0, 6)))
    ]
    return agents, models


def dense_from_objects(agents, models):
    names = sorted(
        {n for a in agents for n in (*a.required, *a.preferred)}
        | {n for m in models for n in m.capabilities}
    )

    def mat(rows, attr):
        return np.array(
            [[getattr(r, attr).get(n, 0.0) for n in names] for r in rows], dtype=float
        ).reshape(len(rows), len(names))

    return dict(
        required=mat(agents, "required"),
        capabilities=mat(models, "capabilities"),
        preferred=mat(agents, "preferred"),
        min_context=np.array([a.min_context for a in agents], dtype=float),
        context_window=np.array([m.context_window for m in models], dtype=float),
        cost_per_1k=np.array([m.cost_per_1k_tokens for m in models], dtype=float),
    )


@given(fleets(), st.tuples(*[st.floats(0.0, 2.0)] * 4))
def test_objects_match_numpy_oracle(fleet, weights):
    agents, models = fleet
    got = mr.cost_matrix(agents, models, weights=mr.ScoreWeights(*weights))
    assert got.shape == (len(agents), len(models)) and got.dtype == np.float64
    if agents and models:
        want = numpy_cost_matrix(**dense_from_objects(agents, models), weights=weights)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@given(
    st.integers(0, 8).flatmap(
        lambda k: st.tuples(
            hnp.arrays(np.float64, st.tuples(st.integers(0, 7), st.just(k)), elements=LEVEL),
            hnp.arrays(np.float64, st.tuples(st.integers(0, 7), st.just(k)), elements=LEVEL),
        )
    )
)
def test_dense_matches_numpy_oracle(arrays):
    required, capabilities = arrays
    got = mr.cost_matrix(required, capabilities)
    want = numpy_cost_matrix(required, capabilities)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_dense_with_all_extras_matches_oracle():
    rng = np.random.default_rng(7)
    n, m, k = 50, 20, 8
    req = np.where(rng.random((n, k)) < 0.3, rng.random((n, k)) * 0.6, 0.0)
    caps = rng.random((m, k))
    pref = rng.random((n, k))
    ctx = rng.integers(0, 50_000, n).astype(float)
    window = rng.integers(1_000, 100_000, m).astype(float)
    price = rng.random(m)
    w = (0.5, 0.2, 0.2, 0.4)
    got = mr.cost_matrix(
        req,
        caps,
        preferred=pref,
        min_context=ctx,
        context_window=window,
        cost_per_1k_tokens=price,
        weights=mr.ScoreWeights(*w),
    )
    want = numpy_cost_matrix(req, caps, pref, ctx, window, price, w)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.isinf(got).any() and np.isfinite(got).any()


def test_documented_example():
    m = mr.Model("llama3-70b", {"code": 0.9, "reasoning": 0.85}, context_window=8192)
    a = mr.Agent("coder", required={"code": 0.7}, preferred={"reasoning": 0.5}, min_context=4096)
    score = 0.6 * 0.9 + 0.3 * 0.85 + 0.1 * (1 - 4096 / 8192)
    assert mr.cost_matrix([a], [m])[0, 0] == pytest.approx(1 - score)
    too_small = mr.Agent("big", min_context=10_000)
    weak = mr.Agent("w", required={"code": 0.95})
    assert np.isinf(mr.cost_matrix([too_small, weak], [m])).all()


def test_profiles_are_frozen_and_comparable():
    m = mr.Model("m", {"b": 0.5, "a": 0.25}, max_concurrent=3)
    assert m == mr.Model("m", {"a": 0.25, "b": 0.5}, max_concurrent=3)
    assert m != mr.Model("m", {"a": 0.25, "b": 0.5}, max_concurrent=4)
    assert m.capabilities == {"a": 0.25, "b": 0.5}
    with pytest.raises(AttributeError):
        m.max_concurrent = 5  # type: ignore[misc]
    assert m.to_dict()["max_concurrent"] == 3
    a = mr.Agent("x", {"code": 0.5}, {"chat": 1.0}, min_context=10)
    assert a.to_dict() == {
        "id": "x",
        "required": {"code": 0.5},
        "preferred": {"chat": 1.0},
        "min_context": 10,
    }
    assert "Agent(" in repr(a) and "Model(" in repr(m)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(capabilities={"code": 1.5}), 'capabilities["code"]'),
        (dict(capabilities={"code": math.nan}), 'capabilities["code"]'),
        (dict(capabilities={"code": -0.1}), 'capabilities["code"]'),
        (dict(context_window=0), "context_window"),
        (dict(context_window=-5), "context_window"),
        (dict(max_concurrent=0), "max_concurrent"),
        (dict(max_queue=-1), "max_queue"),
        (dict(target_utilization=0.0), "target_utilization"),
        (dict(target_utilization=1.01), "target_utilization"),
        (dict(cost_per_1k_tokens=-1.0), "cost_per_1k_tokens"),
        (dict(cost_per_1k_tokens=math.inf), "cost_per_1k_tokens"),
    ],
)
def test_bad_model_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match="must be") as info:
        mr.Model("m", **kwargs)
    assert isinstance(info.value, mr.RouterError)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize(
    "args, kwargs, field",
    [
        (("",), {}, "id"),
        (("a", {"code": 0.0}), {}, 'required["code"]'),
        (("a", {"code": 2.0}), {}, 'required["code"]'),
        (("a", None, {"code": -1.0}), {}, 'preferred["code"]'),
        (("a", None, {"code": math.inf}), {}, 'preferred["code"]'),
        (("a",), {"min_context": -1}, "min_context"),
    ],
)
def test_bad_agent_names_the_field(args, kwargs, field):
    with pytest.raises(ValueError) as info:
        mr.Agent(*args, **kwargs)
    assert info.value.field == field


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError):
        mr.Model("m", {"code": "high"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        mr.Agent(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda: mr.cost_matrix(np.ones((2, 3)), np.ones((2, 4))), "models"),
        (lambda: mr.cost_matrix(np.ones(3), np.ones((2, 3))), "agents"),
        (lambda: mr.cost_matrix(np.full((2, 3), np.nan), np.ones((2, 3))), "required"),
        (lambda: mr.cost_matrix(np.ones((2, 3)), np.full((2, 3), 1.5)), "capabilities"),
        (
            lambda: mr.cost_matrix(np.ones((2, 3)), np.ones((2, 3)), preferred=np.ones((3, 3))),
            "preferred",
        ),
        (
            lambda: mr.cost_matrix(np.ones((2, 3)), np.ones((2, 3)), min_context=[1.0]),
            "min_context",
        ),
        (
            lambda: mr.cost_matrix(np.ones((2, 1)), np.ones((2, 1)), context_window=[0.0, 1.0]),
            "context_window",
        ),
        (
            lambda: mr.cost_matrix([mr.Agent("a")], [mr.Model("m")], min_context=[1.0]),
            "min_context",
        ),
        (lambda: mr.cost_matrix([mr.Agent("a")], [mr.Model("m"), mr.Model("m")]), "models"),
        (lambda: mr.cost_matrix([["x"]], np.ones((1, 1))), "agents"),
    ],
)
def test_bad_cost_matrix_input_names_the_field(call, field):
    with pytest.raises(ValueError) as info:
        call()
    assert info.value.field == field


def test_bad_weights():
    with pytest.raises(ValueError) as info:
        mr.ScoreWeights(required=-1)
    assert info.value.field == "weights.required"


def test_dense_accepts_other_dtypes_and_layouts():
    rng = np.random.default_rng(1)
    req = (rng.random((6, 4)) < 0.3).astype(np.float32) * 0.5
    caps = np.asfortranarray(rng.random((5, 4)))
    want = numpy_cost_matrix(req.astype(float), np.ascontiguousarray(caps))
    np.testing.assert_allclose(mr.cost_matrix(req, caps), want, rtol=1e-6)
    np.testing.assert_allclose(mr.cost_matrix(req.tolist(), caps[:, ::1]), want, rtol=1e-6)
    big = rng.random((10, 8))
    np.testing.assert_allclose(
        mr.cost_matrix(np.zeros((3, 4)), big[::2, ::2]),
        numpy_cost_matrix(np.zeros((3, 4)), big[::2, ::2]),
    )


def test_empty_inputs_give_empty_matrices():
    assert mr.cost_matrix([], [mr.Model("m")]).shape == (0, 1)
    assert mr.cost_matrix([mr.Agent("a")], []).shape == (1, 0)
    assert mr.cost_matrix(np.zeros((0, 3)), np.ones((4, 3))).shape == (0, 4)
