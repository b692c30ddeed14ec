"""streams/device_stage.py: the event-time merge of the account partitions' requests.

Requests from account partitions at different event times wait, per device, until every
partition's frontier has passed them, and leave in event-time order; another account's
pending status holds uses of its devices only; nothing waits past `hop_wait_ms`; and a
restarted stage reloads what was waiting.
"""

from __future__ import annotations

import orjson

from detectors import codec
from detectors.config import DEFAULT_POLICY
from detectors.messages import AccountOnDevice
from streams.device_stage import UNKNOWN, DeviceStage, encode_mark, encode_pend, encode_reset
from streams.records import Record, partition_of
from streams.topics import TopicNames

T0 = 1767225600000
NAMES = TopicNames("", "warden")
PARTITIONS = 2


def accounts_on(partition: int, n: int) -> list[str]:
    return [a for a in (f"acct-{i}" for i in range(100))
            if partition_of(a.encode(), PARTITIONS) == partition][:n]


A0, B0 = accounts_on(0, 2)
(A1,) = accounts_on(1, 1)


class Device:
    """Device partition 0's stage, fed records as its inbox would deliver them (the devices
    used here, dev-a and dev-x, are on partition 0)."""

    def __init__(self, held: dict[bytes, bytes] | None = None, devices=None) -> None:
        self.wall = T0
        self.held = {} if held is None else held
        self.devices = {} if devices is None else devices
        self.stage = DeviceStage(policy=DEFAULT_POLICY, names=NAMES, devices=self.devices,
                                 partitions=PARTITIONS, held=self.held,
                                 wall_ms=lambda: self.wall, hop_wait_ms=10_000)
        self.offset = 0
        self.applied: list[tuple[str, int]] = []  # (account, ts) of each use answered

    def feed(self, *values: bytes) -> list:
        records = []
        for value in values:
            records.append(Record(NAMES.device_inbox, 0, self.offset, None, value))
            self.offset += 1
        return self.commit(self.stage.process(records))

    def commit(self, batch) -> list:
        for (name, key), (_, value) in batch.writes.items():
            store = self.held if name == "device-held" else self.devices
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
        answers = [codec.decode_message(o.value) for o in batch.outputs
                   if not o.value.startswith(b'["dmark"')]
        self.applied += [(m.account_id, m.ts) for m in answers
                         if type(m).__name__ == "DeviceChecked"]
        return answers


def use(account: str, ts: int, device: str = "dev-a") -> bytes:
    return codec.encode_message(AccountOnDevice(f"{account}-{ts}>used", ts, device, account, True,
                                                False, 0, (), None, f"{account}-{ts}", (), 0))


def mark(partition: int, frontier: int | None) -> bytes:
    return encode_mark(partition, frontier)


def test_requests_wait_for_every_partitions_frontier_and_leave_in_event_time_order():
    dev = Device()
    dev.feed(mark(0, T0 + 100), mark(1, T0))   # partition 1 is behind (a backlog)
    dev.feed(use(A0, T0 + 50))                 # partition 0 raced ahead
    assert dev.applied == []                   # partition 1 may still send something older
    dev.feed(use(A1, T0 + 20), mark(1, T0 + 60))
    assert dev.applied == [(A1, T0 + 20), (A0, T0 + 50)]


def test_a_caught_up_partition_holds_nothing_back():
    dev = Device()
    dev.feed(mark(0, None), mark(1, None), use(A0, T0))
    assert dev.applied == [(A0, T0)]


def test_an_account_that_may_still_change_status_holds_later_uses_of_its_devices_only():
    dev = Device()
    dev.feed(mark(0, None), mark(1, None),
             encode_pend(A1, "dev-a", T0 + 10))    # A1 awaits a reply for an input at T0 + 10
    dev.feed(use(A0, T0 + 5), use(A0, T0 + 30), use(B0, T0 + 40, device="dev-x"))
    assert dev.applied == [(A0, T0 + 5), (B0, T0 + 40)]
    dev.feed(encode_pend(A1, "dev-a", None))       # its reply is in (and any status change before)
    assert dev.applied[-1] == (A0, T0 + 30)


def test_an_accounts_own_pending_status_does_not_hold_its_own_uses():
    dev = Device()
    dev.feed(mark(0, None), mark(1, None), encode_pend(A0, "dev-a", T0), use(A0, T0 + 30))
    assert dev.applied == [(A0, T0 + 30)]


def test_a_partition_that_stopped_announcing_delays_requests_by_hop_wait_ms_only():
    dev = Device()
    dev.feed(mark(0, None), use(A0, T0))       # nothing ever heard from partition 1
    assert dev.applied == []
    dev.wall += 10_000
    [tick] = dev.stage.due_ticks([0])         # the worker's timer
    dev.feed(tick.value)
    assert dev.applied == [(A0, T0)] and dev.stage.timed_out == 1


def test_a_partition_whose_frontier_keeps_moving_is_waited_for_past_hop_wait_ms():
    """It is draining a backlog, not gone: in the two-worker test, one worker had finished
    its own partitions while the other's partition 2 was still a day of event time
    behind, and applying its requests after 10 s each broke replay's order."""
    dev = Device()
    dev.feed(mark(0, None), mark(1, T0))       # partition 1 is behind
    dev.feed(use(A0, T0 + 50))
    dev.wall += 6_000
    dev.feed(mark(1, T0 + 10))                 # ...and draining
    dev.wall += 6_000                          # 12 s since the request came in, 6 s since it moved
    dev.feed(*(t.value for t in dev.stage.due_ticks([0])))
    assert dev.applied == []
    dev.feed(use(A1, T0 + 40), mark(1, T0 + 60))
    assert dev.applied == [(A1, T0 + 40), (A0, T0 + 50)] and dev.stage.timed_out == 0


def test_a_partition_that_stops_moving_delays_requests_by_hop_wait_ms_after_its_last_move():
    dev = Device()
    dev.feed(mark(0, None), mark(1, T0))
    dev.feed(use(A0, T0 + 50))
    dev.wall += 6_000
    dev.feed(mark(1, T0 + 10))                 # its last move
    dev.wall += 9_999
    dev.feed(*(t.value for t in dev.stage.due_ticks([0])))
    assert dev.applied == []
    dev.wall += 1
    dev.feed(*(t.value for t in dev.stage.due_ticks([0])))
    assert dev.applied == [(A0, T0 + 50)] and dev.stage.timed_out == 1


def test_a_use_held_by_a_pending_status_waits_while_that_accounts_partition_moves():
    """A1's reply is on its way through a merge still draining: A0's later use of the device
    waits for A1's status past hop_wait_ms, as long as A1's partition keeps moving (in the
    two-worker test, uses let go after 10 s missed `ban_evasion` decisions)."""
    dev = Device()
    dev.feed(mark(0, None), mark(1, T0 + 100), encode_pend(A1, "dev-a", T0 + 10),
             use(A0, T0 + 30))
    for step in range(1, 4):                   # 18 s, partition 1 moving every 6 s
        dev.wall += 6_000
        dev.feed(mark(1, T0 + 100 + step), *(t.value for t in dev.stage.due_ticks([0])))
        assert dev.applied == []
    dev.feed(encode_pend(A1, "dev-a", None))
    assert dev.applied == [(A0, T0 + 30)] and dev.stage.timed_out == 0


def test_a_use_held_by_a_pending_status_goes_once_that_partition_stops_moving_or_at_the_cap():
    dev = Device()
    dev.feed(mark(0, None), mark(1, T0), encode_pend(A1, "dev-a", T0 + 10), use(A0, T0 + 30))
    dev.wall += 10_000                         # partition 1 has not moved since the use came
    dev.feed(*(t.value for t in dev.stage.due_ticks([0])))
    assert dev.applied == [(A0, T0 + 30)] and dev.stage.timed_out == 1
    dev.feed(use(B0, T0 + 40))                 # partition 1 moves for ever, A1 never settles
    for step in range(1, 11):
        dev.wall += 6_000
        dev.feed(mark(1, T0 + 100 + step), *(t.value for t in dev.stage.due_ticks([0])))
        assert dev.applied[-1:] == ([(A0, T0 + 30)] if step < 10 else [(B0, T0 + 40)])


def test_a_repeated_mark_is_not_a_move():
    dev = Device()
    dev.feed(mark(0, None), mark(1, T0))
    dev.feed(use(A0, T0 + 50))
    dev.wall += 10_000
    dev.feed(mark(1, T0))                      # the same frontier again (e.g. a timer's batch)
    assert dev.applied == [(A0, T0 + 50)] and dev.stage.timed_out == 1


def test_waiting_requests_and_pending_statuses_survive_a_restart():
    dev = Device()
    dev.feed(mark(0, None), mark(1, T0), encode_pend(A1, "dev-a", T0 + 10), use(A0, T0 + 30))
    assert dev.applied == [] and dev.held
    again = Device(held=dev.held, devices=dev.devices)   # a new worker: marks not heard yet
    again.feed(mark(0, None), mark(1, None))
    assert again.applied == []                 # A1 may still change status: still waiting
    again.feed(encode_pend(A1, "dev-a", None))
    assert again.applied == [(A0, T0 + 30)] and not again.held


def test_the_device_stage_announces_its_own_frontier_to_every_account_partition():
    dev = Device()
    batch = dev.stage.process([Record(NAMES.device_inbox, 0, 0, None, mark(0, None)),
                               Record(NAMES.device_inbox, 0, 1, None, mark(1, T0)),
                               Record(NAMES.device_inbox, 0, 2, None, use(A0, T0 + 5))])
    dmarks = [(o.partition, orjson.loads(o.value)) for o in batch.outputs
              if o.value.startswith(b'["dmark"')]
    assert dmarks == [(0, ["dmark", 0, T0, 0]), (1, ["dmark", 0, T0, 0])]


def test_a_partition_announcing_afresh_first_makes_the_device_forget_what_it_said_before():
    """After a restart the account stage cannot clear a pending status it no longer knows it
    announced; its `reset` drops every notice of its accounts (and only theirs)."""
    dev = Device()
    dev.feed(mark(0, None), mark(1, None), encode_pend(A1, "dev-a", T0), encode_pend(A0, "dev-a", T0))
    dev.feed(encode_reset(1), use(B0, T0 + 30))
    assert dev.applied == []                       # A0 (partition 0) is still pending
    assert dev.stage.pending == {"dev-a": {A0: T0}}
    assert not any(A1.encode() in key for key in dev.held)
    dev.feed(encode_reset(0))
    assert dev.applied == [(B0, T0 + 30)]


def devices_on_partition_0(n: int) -> list[str]:
    return [d for d in (f"dev-{i}" for i in range(200))
            if partition_of(d.encode(), PARTITIONS) == 0][:n]


def test_a_batch_answers_only_devices_whose_head_may_leave_in_the_order_they_began_waiting():
    """The frontiers passed the heads of the second and third devices' queues, not the
    first's: those two answer, in the order their queues began; the first answers once its
    request has waited hop_wait_ms. The frontier is the earliest request still waiting."""
    d1, d2, d3 = devices_on_partition_0(3)
    dev = Device()
    dev.feed(mark(0, T0), mark(1, T0))
    dev.feed(use(A0, T0 + 30, d1), use(B0, T0 + 10, d2), use(A1, T0 + 20, d3))
    assert dev.applied == [] and dev.stage.waiting() == {0: 3}
    assert dev.stage.frontier(0) == T0
    dev.feed(mark(0, T0 + 25), mark(1, T0 + 25))
    assert dev.applied == [(B0, T0 + 10), (A1, T0 + 20)]
    assert dev.stage.waiting() == {0: 1} and dev.stage.frontier(0) == T0 + 25
    dev.wall += 10_000
    assert dev.stage.due_ticks([0])
    dev.feed(b'["tick"]')
    assert dev.applied[-1] == (A0, T0 + 30) and dev.stage.waiting() == {0: 0}
    assert dev.stage.frontier(0) == T0 + 25


def test_a_restarted_stage_ignores_marks_its_dead_predecessor_sent():
    """A mark promises "nothing older will come from this account partition" for the worker
    that sent it. After a rebalance the new owner of that partition re-reads it from its
    committed offset and may resend older requests: marks of an older consumer group
    generation (or with none, the format before generations) are not heard; the new
    generation's marks are."""
    dev = Device()
    dev.stage.generation = 2
    stale = [encode_mark(p, None, 1) for p in range(PARTITIONS)]
    dev.feed(*stale, b'["mark", 0, null]', use(A0, T0))
    assert dev.applied == [] and dev.stage.waiting() == {0: 1}
    assert dev.stage.low_mark(0) == UNKNOWN        # as if nothing had been heard at all
    dev.feed(*(encode_mark(p, None, 2) for p in range(PARTITIONS)))
    assert dev.applied == [(A0, T0)]
