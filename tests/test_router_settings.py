"""Router construction: a Router takes its LoadTracker as `load=`; the old tracker keywords work
one more release and warn."""

from __future__ import annotations

import warnings

import pytest

import modelrouter as mr


def fleet() -> list[mr.Model]:
    return [mr.Model("a", {"code": 0.9}, max_concurrent=2), mr.Model("b", {"code": 0.5})]


def test_load_tracker_is_shared_and_needs_no_warning() -> None:
    tracker = mr.LoadTracker(stale_after_s=5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = mr.Router(fleet(), load=tracker)
        two = mr.Router(fleet(), load=tracker)
    held = one.request(mr.Agent("x", {"code": 0.5}))
    assert two.load(held.model_id).active_requests == 1
    assert two.load_tracker.stale_after_s == 5.0
    held.release()
    assert two.load(held.model_id).active_requests == 0


@pytest.mark.parametrize(
    ("keyword", "value", "check"),
    [
        ("clock", "manual", lambda r: r.load_tracker.now() == 42.0),
        ("stale_after_s", 7.0, lambda r: r.load_tracker.stale_after_s == 7.0),
        ("fail_mode", "closed", lambda r: r.load_tracker.backend is None),
        ("lease_ttl_s", 10.0, lambda r: r.load_tracker.backend is None),
        ("timeout_s", 0.2, lambda r: r.load_tracker.backend is None),
    ],
)
def test_old_tracker_keywords_still_work_and_warn(keyword, value, check) -> None:
    if value == "manual":
        value = mr.ManualClock(42.0)
    with pytest.warns(DeprecationWarning, match=rf"Router\({keyword}=\.\.\.\) is deprecated"):
        router = mr.Router(fleet(), **{keyword: value})
    assert check(router)


def test_old_tracker_keyword_and_getter_warn_and_alias_the_new_ones() -> None:
    tracker = mr.LoadTracker()
    with pytest.warns(DeprecationWarning, match="load= instead"):
        router = mr.Router(fleet(), tracker=tracker)
    with pytest.warns(DeprecationWarning, match="Router.load_tracker"):
        old = router.tracker
    tracker.update_load("a", 1)
    assert old.current_load("a").active_requests == 1  # type: ignore[union-attr]
    assert router.load_tracker.current_load("a").active_requests == 1  # type: ignore[union-attr]


def test_old_settings_are_still_validated_by_the_core() -> None:
    for keyword, value in [("stale_after_s", 0.0), ("timeout_s", -1.0), ("fail_mode", "maybe")]:
        with pytest.warns(DeprecationWarning), pytest.raises(mr.InvalidInputError) as info:
            mr.Router(fleet(), **{keyword: value})
        assert info.value.field == keyword


def test_the_tracker_is_given_once() -> None:
    with pytest.warns(DeprecationWarning), pytest.raises(mr.InvalidInputError) as info:
        mr.Router(fleet(), load=mr.LoadTracker(), clock=mr.ManualClock())
    assert info.value.field == "load"
    with pytest.raises(TypeError, match="unexpected keyword argument 'trackr'"):
        mr.Router(fleet(), trackr=mr.LoadTracker())
    with pytest.warns(DeprecationWarning), pytest.raises(mr.InvalidInputError) as info:
        mr.Router(fleet(), tracker="not a tracker")
    assert info.value.field == "tracker"


def test_capacity_manager_must_read_the_routers_tracker() -> None:
    cm = mr.CapacityManager([mr.ScalingRule(0.9)])
    with pytest.raises(mr.InvalidInputError) as info:
        mr.Router(fleet(), load=mr.LoadTracker(), capacity=cm)
    assert info.value.field == "capacity"
    router = mr.Router(fleet(), capacity=cm)  # the manager's tracker becomes the router's
    router.load_tracker.update_load("a", 2)
    assert cm.check("a") is not None
