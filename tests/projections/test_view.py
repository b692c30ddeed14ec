"""The read-model contract, run against InMemoryView and RedisView alike (STYLE "Projections")."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from decision_log import DecisionLog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.redis_view import RedisView
from projections.view import (
    DECISION_TYPES,
    FEATURES,
    ActiveEntry,
    InMemoryView,
    InvalidDecision,
    fold,
)

DAY = 86_400_000
T0 = 1_767_225_600_000


async def snapshot(view, account_id):
    return await view.status(account_id), await view.history(account_id), await view.digest()


async def test_applying_the_same_decision_twice_is_a_no_op(make_view, log):
    view = await make_view()
    d = log("acct-1", "restricted", at=T0, scopes=["add_friend"], triggers=["friend_add_burst"],
            lift_at=T0 + 14 * DAY)
    assert await view.apply([d]) == ["applied"]
    before = await snapshot(view, "acct-1")
    assert await view.apply([d]) == ["skipped"]
    assert await view.apply([d, d]) == ["skipped", "skipped"]
    assert await snapshot(view, "acct-1") == before


async def test_a_lower_seq_arriving_late_is_skipped(make_view, log):
    view = await make_view()
    d1 = log("acct-1", "restricted", at=T0, scopes=["add_friend"], lift_at=T0 + DAY)
    d2 = log("acct-1", "lifted", at=T0 + DAY, reason="auto_quiet")
    assert await view.apply([d2, d1]) == ["applied", "skipped"]
    status = await view.status("acct-1")
    assert (status.seq, status.status) == (2, "clear")
    assert [h["seq"] for h in await view.history("acct-1")] == [2]


async def test_restricted_then_extended_then_lifted(make_view, log):
    view = await make_view()
    restricted = log("acct-1", "restricted", at=T0, scopes=["add_friend"],
                     triggers=["friend_add_burst"], lift_at=T0 + 14 * DAY)
    extended = log("acct-1", "extended", at=T0 + DAY,
                   scopes=["add_friend", "join_open_chat", "create_room"],
                   triggers=["emulator"], lift_at=T0 + 15 * DAY)
    lifted = log("acct-1", "lifted", at=T0 + 15 * DAY, reason="auto_quiet", triggers=[])

    await view.apply([restricted])
    s = await view.status("acct-1")
    assert (s.status, s.scopes, s.lift_at_ms, s.since_ms) == (
        "restricted", ("add_friend",), T0 + 14 * DAY, T0)
    assert await view.active() == [ActiveEntry("acct-1", T0 + 14 * DAY, T0)]

    await view.apply([extended])
    s = await view.status("acct-1")
    assert s.scopes == ("add_friend", "create_room", "join_open_chat")
    assert s.triggers == ("emulator", "friend_add_burst")  # the restriction's triggers so far
    assert (s.type, s.seq, s.at_ms, s.since_ms) == ("extended", 2, T0 + DAY, T0)
    assert await view.active() == [ActiveEntry("acct-1", T0 + 15 * DAY, T0)]

    await view.apply([lifted])
    s = await view.status("acct-1")
    assert (s.status, s.scopes, s.triggers, s.lift_at_ms, s.reason, s.since_ms) == (
        "clear", (), (), None, "auto_quiet", None)
    assert await view.active() == []
    assert await view.count_active() == 0
    assert [h["type"] for h in await view.history("acct-1")] == ["lifted", "extended", "restricted"]


async def test_history_is_newest_first_and_capped(make_view, log):
    view = await make_view(history_cap=3)
    decisions = [log("acct-1", "restricted", at=T0, scopes=["report"], lift_at=None)]
    decisions += [log("acct-1", "extended", at=T0 + i, scopes=["report"]) for i in range(1, 5)]
    await view.apply(decisions)
    history = await view.history("acct-1")
    assert history == [decisions[4], decisions[3], decisions[2]]
    assert await view.history("acct-1", limit=1) == [decisions[4]]
    assert await view.history("acct-1", limit=0) == []


async def test_active_set_orders_by_soonest_lift_and_drops_lifted_accounts(make_view, log):
    view = await make_view()
    await view.apply([
        log("late", "restricted", at=T0, scopes=["add_friend"], lift_at=T0 + 30 * DAY),
        log("soon", "restricted", at=T0 + 1, scopes=["add_friend"], lift_at=T0 + 3 * DAY),
        log("mid", "restricted", at=T0 + 2, scopes=["report"], lift_at=T0 + 9 * DAY),
    ])
    assert [e.account_id for e in await view.active()] == ["soon", "mid", "late"]
    assert [e.account_id for e in await view.active(limit=1, offset=1)] == ["mid"]
    await view.apply([log("mid", "lifted", at=T0 + 9 * DAY, reason="auto_quiet")])
    assert [e.account_id for e in await view.active()] == ["soon", "late"]
    assert await view.count_active() == 2


async def test_indefinite_restriction_is_active_and_listed_after_timed_ones(make_view, log):
    view = await make_view()
    await view.apply([
        log("forever", "restricted", at=T0, scopes=["report"], triggers=["reporter_penalty"],
            lift_at=None, level=4),
        log("timed", "restricted", at=T0 + 5, scopes=["add_friend"], lift_at=T0 + DAY),
    ])
    assert await view.active() == [ActiveEntry("timed", T0 + DAY, T0 + 5),
                                   ActiveEntry("forever", None, T0)]
    assert (await view.status("forever")).lift_at_ms is None


async def test_newest_order_lists_the_latest_restriction_start_first(make_view, log):
    view = await make_view()
    await view.apply([
        log("first", "restricted", at=T0, scopes=["add_friend"], lift_at=T0 + DAY),
        log("second", "restricted", at=T0 + 10, scopes=["add_friend"], lift_at=None),
        # extending does not make a restriction newer: it started at T0
        log("first", "extended", at=T0 + 20, scopes=["add_friend"], lift_at=T0 + 2 * DAY),
    ])
    assert await view.active(order="newest") == [ActiveEntry("second", None, T0 + 10),
                                                 ActiveEntry("first", T0 + 2 * DAY, T0)]
    with pytest.raises(ValueError, match="order"):
        await view.active(order="oldest")


async def test_an_appeal_is_pending_until_denied(make_view, log):
    view = await make_view()
    await view.apply([
        log("acct-1", "restricted", at=T0, scopes=["join_open_chat"], triggers=["emulator"]),
        log("acct-1", "appeal_received", at=T0 + 1, scopes=["join_open_chat"]),
        log("acct-1", "appeal_rejected", at=T0 + 2, scopes=["join_open_chat"],
            reason="duplicate"),
    ])
    s = await view.status("acct-1")
    assert (s.appeal_pending, s.reason, s.triggers) == (True, "duplicate", ("emulator",))
    await view.apply([log("acct-1", "appeal_denied", at=T0 + 3, scopes=["join_open_chat"])])
    s = await view.status("acct-1")
    assert (s.appeal_pending, s.status) == (False, "restricted")


async def test_a_cooldown_rejection_records_when_an_appeal_becomes_possible(make_view, log):
    view = await make_view()
    await view.apply([
        log("acct-1", "restricted", at=T0, scopes=["report"], level=4),
        log("acct-1", "appeal_rejected", at=T0 + 1, scopes=["report"], reason="cooldown",
            appeal_allowed_at=T0 + 90 * DAY, level=4),
    ])
    s = await view.status("acct-1")
    assert (s.appeal_allowed_at_ms, s.appeal_pending, s.level) == (T0 + 90 * DAY, False, 4)


async def test_a_penalized_reporter_without_restriction_stays_clear(make_view, log):
    view = await make_view()
    await view.apply([log("rep", "reporter_penalized", at=T0, triggers=["reporter_penalty"],
                          level=None)])
    s = await view.status("rep")
    assert (s.status, s.triggers, s.level) == ("clear", (), None)
    assert await view.active() == []


async def test_an_unknown_account_has_no_status_and_no_history(make_view):
    view = await make_view()
    assert await view.status("nobody") is None
    assert await view.history("nobody") == []
    assert await view.apply([]) == []


async def test_an_invalid_decision_rejects_the_whole_batch_before_writing(make_view, log):
    view = await make_view()
    good = log("acct-1", "restricted", at=T0, scopes=["add_friend"])
    bad = {**log("acct-2", "restricted", at=T0, scopes=["add_friend"]), "type": "banned"}
    empty = await view.digest()
    with pytest.raises(InvalidDecision, match="type must be one of"):
        await view.apply([good, bad])
    assert await view.status("acct-1") is None
    assert await view.digest() == empty


@pytest.mark.integration
async def test_both_views_have_the_same_digest_after_the_same_decisions(
    redis_client, cleanup_prefix, log
):
    memory = InMemoryView()
    view = RedisView(redis_client, cleanup_prefix, "g1")
    decisions = [
        log("a", "restricted", at=T0, scopes=["add_friend"], triggers=["friend_add_burst"],
            lift_at=T0 + DAY),
        log("b{x}", "restricted", at=T0, scopes=["report"], lift_at=None, level=4),
        log("a", "extended", at=T0 + 5, scopes=["add_friend", "create_room"],
            triggers=["room_creation_burst"], lift_at=T0 + 2 * DAY),
        log("}c:é", "restricted", at=T0 + 7, scopes=["join_open_chat"], triggers=["emulator"]),
        log("}c:é", "appeal_received", at=T0 + 8, scopes=["join_open_chat"]),
        log("a", "lifted", at=T0 + 2 * DAY, reason="auto_quiet"),
    ]
    await memory.apply(decisions)
    await view.apply(decisions)
    assert await view.digest() == await memory.digest()
    for account in ("a", "b{x}", "}c:é"):
        assert await view.status(account) == await memory.status(account)
    # and the digest notices a difference
    await view.apply([log("a", "restricted", at=T0 + 3 * DAY, scopes=["report"])])
    assert await view.digest() != await memory.digest()


def test_fold_starts_a_restriction_only_from_clear(log):
    first = fold(None, log("x", "restricted", at=T0, scopes=["report"], triggers=["emulator"]))
    again = fold(first, log("x", "restricted", at=T0 + 9, scopes=["report"],
                            triggers=["report_flood"]))
    assert (again.since_ms, again.triggers) == (T0, ("emulator", "report_flood"))
    assert dataclasses.replace(again, seq=1, at_ms=T0, triggers=("emulator",)) == first


def test_fold_rejects_an_unknown_decision_type(log):
    with pytest.raises(TypeError, match="unknown decision type"):
        fold(None, {**log("x", "restricted", at=T0), "type": "banned"})


# --- replay idempotence (hypothesis) -------------------------------------------------------

ACCOUNT_IDS = st.one_of(
    st.text(alphabet=st.sampled_from("ab{}:~é😀 "), min_size=1, max_size=4), st.text(max_size=6),
)
SCOPE_SETS = st.lists(st.sampled_from(FEATURES), unique=True, max_size=3)
TRIGGER_SETS = st.lists(st.sampled_from(["friend_add_burst", "emulator", "report_flood",
                                         "ban_evasion", "reporter_penalty"]),
                        unique=True, max_size=2)
STEPS = st.tuples(
    st.sampled_from(DECISION_TYPES), SCOPE_SETS, TRIGGER_SETS,
    st.one_of(st.none(), st.integers(0, 400 * DAY)), st.sampled_from([None, "manual", "cooldown"]),
    st.one_of(st.none(), st.integers(1, 4)),
    st.dictionaries(st.text(max_size=3), st.one_of(st.floats(allow_nan=False), st.text()),
                    max_size=2),
)


def build_log(accounts: list[str], steps: list[tuple], order: list[int]) -> list[dict]:
    """Decisions with seq 1.. per account, interleaved in `order` (indexes into accounts)."""
    builder = DecisionLog()
    out = []
    for at, (index, step) in enumerate(zip(order, steps, strict=False)):
        kind, scopes, triggers, lift_at, reason, level, evidence = step
        scopes = [] if kind == "lifted" else scopes
        out.append(builder(accounts[index], kind, at=T0 + at, scopes=scopes, triggers=triggers,
                           lift_at=lift_at, reason=reason, level=level, evidence=evidence,
                           **({"appeal_allowed_at": T0} if reason == "cooldown" else {})))
    return out


@st.composite
def redeliveries(draw, n: int) -> list[int]:
    """Positions in a log of n: runs that restart anywhere already delivered (a consumer that
    crashed before committing), plus stray duplicates of delivered positions."""
    delivered, reached = [], 0
    for _ in range(draw(st.integers(1, 4))):
        if reached == n:
            break
        start = draw(st.integers(0, reached))
        end = draw(st.integers(start + 1, n))
        delivered += range(start, end)
        reached = max(reached, end)
    delivered += range(reached, n)
    for _ in range(draw(st.integers(0, 3))):
        if delivered:
            at = draw(st.integers(0, len(delivered)))
            earlier = delivered[: at] or [0]
            delivered.insert(at, draw(st.sampled_from(earlier)))
    return delivered


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_any_redelivery_pattern_gives_the_digest_of_applying_each_once(make_view, data):
    accounts = data.draw(st.lists(ACCOUNT_IDS, min_size=1, max_size=3, unique=True))
    steps = data.draw(st.lists(STEPS, min_size=1, max_size=12))
    order = data.draw(st.lists(st.integers(0, len(accounts) - 1), min_size=len(steps),
                               max_size=len(steps)))
    decisions = build_log(accounts, steps, order)
    positions = data.draw(redeliveries(len(decisions)))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(len(positions) - 1, 1)), max_size=4)))

    once = InMemoryView(history_cap=4)
    await once.apply(decisions)
    view = await make_view(history_cap=4)
    for lo, hi in itertools.pairwise([0, *cuts, len(positions)]):
        await view.apply([decisions[p] for p in positions[lo:hi]])
    assert await view.digest() == await once.digest()
    for account in accounts:
        assert await view.status(account) == await once.status(account)
