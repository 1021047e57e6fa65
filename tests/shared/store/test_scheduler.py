"""The scheduler's queries (shared.store.scheduler) on SQLite and PostgreSQL: schedule states,
operator requests and actions, the daemon's meta lease. The daemon that uses them is tested in
tests/shared/scheduler/ and tests/shared/test_cli_schedules.py."""

from __future__ import annotations

import uuid

from shared.store import (
    Store,
    add_operator_action,
    add_schedule_request,
    claim_meta_lease,
    delete_schedule_states,
    finish_schedule_request,
    get_schedule_request,
    list_operator_actions,
    load_schedule_states,
    pending_schedule_requests,
    release_meta_lease,
    renew_meta_lease,
    save_schedule_states,
    set_schedule_paused,
)


def _name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}"  # the PostgreSQL database is shared by the tests


def test_a_sync_keeps_the_paused_flag_and_a_removed_schedule_is_gone(store_url: str) -> None:
    store, schedule = Store(store_url), _name("brev")
    save_schedule_states(store, [(schedule, "decision_letters", "fp1")])
    set_schedule_paused(store, schedule, True, "anna@kansli")
    save_schedule_states(store, [(schedule, "decision_letters", "fp2")])
    state = load_schedule_states(store)[schedule]
    assert (state.robot, state.fingerprint, state.paused, state.paused_by) == (
        "decision_letters", "fp2", True, "anna@kansli")
    set_schedule_paused(store, schedule, False, "anna@kansli")
    assert not load_schedule_states(store)[schedule].paused
    assert load_schedule_states(store)[schedule].paused_by is None
    delete_schedule_states(store, [schedule])
    assert schedule not in load_schedule_states(store)


def test_requests_are_pending_until_finished_with_their_result(store_url: str) -> None:
    store, schedule = Store(store_url), _name("brev")
    first = add_schedule_request(store, schedule, "trigger", "anna@kansli")
    second = add_schedule_request(store, schedule, "pause", "bo@kansli")
    pending = [request.request_id for request in pending_schedule_requests(store)]
    assert pending.index(first) < pending.index(second)
    finish_schedule_request(store, first, "started run 1")
    done = get_schedule_request(store, first)
    assert done is not None and done.result == "started run 1" and done.handled_at is not None
    assert first not in [request.request_id for request in pending_schedule_requests(store)]
    assert get_schedule_request(store, 10**9) is None


def test_operator_actions_newest_first_with_their_details(store_url: str) -> None:
    store, schedule = Store(store_url), _name("brev")
    add_operator_action(store, "anna@kansli", "schedule.pause", schedule, {"skäl": "helgdag"})
    add_operator_action(store, "bo@kansli", "schedule.resume", schedule, {})
    actions = list_operator_actions(store, schedule)
    assert [(action.actor, action.action) for action in actions] == [
        ("bo@kansli", "schedule.resume"), ("anna@kansli", "schedule.pause")]
    assert actions[1].details == {"skäl": "helgdag"}
    assert len(list_operator_actions(store, schedule, limit=1)) == 1


def test_a_meta_lease_has_one_holder_until_released_or_judged_dead(store_url: str) -> None:
    store, lease = Store(store_url), _name("daemon")
    assert claim_meta_lease(store, lease, "host-a", lambda _value, _at: True) is None
    assert claim_meta_lease(store, lease, "host-b", lambda _value, _at: True) is not None
    assert renew_meta_lease(store, lease, "host-a") and not renew_meta_lease(store, lease, "host-b")
    assert claim_meta_lease(store, lease, "host-b", lambda value, _at: value != "host-a") is None
    assert not renew_meta_lease(store, lease, "host-a")  # host-b took it from a dead holder
    release_meta_lease(store, lease, "host-a")  # not the holder: nothing happens
    assert renew_meta_lease(store, lease, "host-b")
    release_meta_lease(store, lease, "host-b")
    assert claim_meta_lease(store, lease, "host-c", lambda _value, _at: True) is None
