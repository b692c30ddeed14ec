"""streams.stages without Kafka: an in-memory bus between the stage runners.

The live runners must make the same decisions as `warden replay` (the
sequential engine) when internal messages are delivered before the next
input, and must be idempotent under redelivery.
"""

from __future__ import annotations

from collections import deque

import orjson
from prometheus_client import CollectorRegistry

from detectors.config import DEFAULT_POLICY
from detectors.engine import Engine
from detectors.events import decode
from streams.device_stage import encode_device_mark
from streams.metrics import Metrics
from streams.stages import (
    AccountStage,
    DeviceStage,
    Record,
    _Work,
    encode_tick,
    load_account,
    partition_of,
    status_settled,
)
from streams.topics import TopicNames

T0 = 1767225600000
PARTITIONS = 3
NAMES = TopicNames("", "warden")


class Bus:
    """Routes outputs back into the stages the way Kafka would, partition by key."""

    def __init__(self) -> None:
        self.accounts: dict[bytes, bytes] = {}
        self.clocks: dict[bytes, bytes] = {}
        self.devices: dict[bytes, bytes] = {}
        self.held: dict[bytes, bytes] = {}
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.account = AccountStage(policy=DEFAULT_POLICY, names=NAMES, partitions=PARTITIONS,
                                    accounts=self.accounts, clocks=self.clocks,
                                    metrics=self.metrics, wall_ms=lambda: T0)
        self.device = DeviceStage(policy=DEFAULT_POLICY, names=NAMES, devices=self.devices,
                                  partitions=PARTITIONS, held=self.held, wall_ms=lambda: T0)
        self.log: dict[str, list[bytes]] = {}
        self.offsets: dict[str, int] = {}
        self.decisions: list[dict] = []
        # every partition of both stages announces its frontier, as the worker's timer does
        self._deliver([self.record(o.topic, o.key, o.value, o.partition)
                       for o in [*self.account.marks(range(PARTITIONS)),
                                 *self.device.due_ticks(range(PARTITIONS))]])

    def record(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> Record:
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        if partition is None:
            partition = partition_of(key, PARTITIONS) if key else 0
        return Record(topic, partition, offset, key, value, T0)

    def commit(self, batch) -> list[Record]:
        for (name, key), (_, value) in batch.writes.items():
            store = {"accounts": self.accounts, "clocks": self.clocks, "devices": self.devices,
                     "device-held": self.held}[name]
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
        follow = []
        for out in batch.outputs:
            self.log.setdefault(out.topic, []).append(out.value)
            if out.topic == NAMES.decisions:
                self.decisions.append(orjson.loads(out.value))
            elif out.topic in (NAMES.account_inbox, NAMES.device_inbox):
                follow.append(self.record(out.topic, out.key, out.value, out.partition))
        return follow

    def feed_lagged(self, inputs, *, lag: int) -> None:
        """Internal messages reach their stage only after `lag` more inputs: a slow bus. It
        stays first in, first out (one log per topic-partition, as Kafka's)."""
        in_flight: deque = deque()  # [inputs fed when it was sent, record]
        for fed, (topic, value) in enumerate(inputs):
            event = decode(topic, orjson.dumps(value))
            key = event.reported_id if topic == "message-reports" else event.account_id
            for rec in self.commit(self.account.process(
                    [self.record(topic, key.encode(), orjson.dumps(value))])):
                in_flight.append((fed, rec))
            while in_flight and in_flight[0][0] <= fed - lag:
                rec = in_flight.popleft()[1]
                stage = self.device if rec.topic == NAMES.device_inbox else self.account
                for follow in self.commit(stage.process([rec])):
                    in_flight.append((fed, follow))
        self._deliver([rec for _, rec in in_flight])

    def _deliver(self, records) -> None:
        queue = deque(records)
        while queue:
            rec = queue.popleft()
            stage = self.device if rec.topic == NAMES.device_inbox else self.account
            queue.extend(self.commit(stage.process([rec])))

    def feed(self, topic: str, value: dict, *, key: str | None = None) -> None:
        """One input, then every internal message it causes, before the next input."""
        event = decode(topic, orjson.dumps(value))
        key = key if key is not None else event.reported_id if topic == "message-reports" else event.account_id
        queue = deque([self.record(topic, key.encode(), orjson.dumps(value))])
        while queue:
            rec = queue.popleft()
            stage = self.device if rec.topic == NAMES.device_inbox else self.account
            queue.extend(self.commit(stage.process([rec])))


def story_inputs():
    """Every trigger, feedback path and command, as (topic, value) inputs."""
    out = []
    for i in range(31):
        out.append(("friend-adds", {"event_id": f"fa{i}", "ts": T0 + i * 1000, "account_id": "mallory",
                                    "friend_id": f"f{i}", "device_id": "dev-m"}))
    for i in range(6):
        out.append(("room-creations", {"event_id": f"rc{i}", "ts": T0 + 40_000 + i, "account_id": "roomer",
                                       "room_id": f"r{i}", "room_type": "open"}))
    for i in range(12):
        out.append(("device-signals", {"event_id": f"ds{i}", "ts": T0 + 50_000 + i, "account_id": f"rep{i}",
                                       "device_id": f"dev-r{i}"}))
    for i in range(12):
        out.append(("message-reports", {"event_id": f"mr{i}", "ts": T0 + 60_000 + i, "reporter_id": f"rep{i}",
                                        "reported_id": "spammer", "target": "message", "reason": "spam"}))
    out.append(("device-signals", {"event_id": "dsp", "ts": T0 + 70_000, "account_id": "spammer",
                                   "device_id": "dev-s"}))
    out.append(("device-signals", {"event_id": "dst", "ts": T0 + 80_000, "account_id": "alt",
                                   "device_id": "dev-s"}))
    out.append(("device-signals", {"event_id": "dse", "ts": T0 + 90_000, "account_id": "emu",
                                   "device_id": "dev-e", "emulator": True, "virtual_number": True}))
    out.append(("moderation-commands", {"command_id": "c1", "ts": T0 + 100_000, "account_id": "spammer",
                                        "actor": "op", "action": "mark_false_positive"}))
    out.append(("moderation-commands", {"command_id": "c2", "ts": T0 + 110_000, "account_id": "nobody",
                                        "actor": "op", "action": "lift"}))
    return out


END = T0 + 20 * 86_400_000


def replay_decisions(inputs, until):
    engine = Engine()
    out = []
    for topic, value in inputs:
        out.extend(d.to_dict() for d in engine.process(decode(topic, orjson.dumps(value))).decisions)
    out.extend(d.to_dict() for d in engine.advance(until))
    return out


def per_account(decisions):
    by = {}
    for d in decisions:
        by.setdefault(d["account_id"], []).append(d)
    return by


def test_live_runners_decide_exactly_what_replay_decides_per_account():
    bus = Bus()
    inputs = story_inputs()
    for topic, value in inputs:
        bus.feed(topic, value)
    for partition in range(PARTITIONS):  # the clock of every partition reaches END
        bus._deliver([bus.record(NAMES.account_inbox, None, encode_tick(END), partition)])
    expected = per_account(replay_decisions(inputs, END))
    assert {"mallory", "roomer", "spammer", "alt", "emu"} <= set(expected)
    assert "lifted" in {d["type"] for d in expected["emu"]}
    assert per_account(bus.decisions) == expected


def test_redelivered_inputs_and_internal_messages_change_nothing():
    bus = Bus()
    for topic, value in story_inputs():
        bus.feed(topic, value)
    before = (dict(bus.accounts), len(bus.decisions))
    # Redeliver every input and every internal message ever sent.
    for topic, value in story_inputs():
        bus.feed(topic, value)
    for topic in (NAMES.account_inbox,):
        for raw in list(bus.log.get(topic, [])):
            if raw.startswith((b'["lift_due"', b'["dmark"')):
                continue
            from detectors.codec import decode_message
            msg = decode_message(raw)
            rec = bus.record(topic, msg.account_id.encode(), raw)
            bus.commit(bus.account.process([rec]))
    assert (dict(bus.accounts), len(bus.decisions)) == before


def test_malformed_and_wrongly_keyed_inputs_become_dead_letters_with_metrics():
    bus = Bus()
    records = [bus.record("friend-adds", b"a", b"{not json"),
               bus.record("friend-adds", b"wrong", orjson.dumps(
                   {"event_id": "e", "ts": T0, "account_id": "a", "friend_id": "b"})),
               bus.record("device-signals", None, b"\xff")]
    bus.commit(bus.account.process(records))
    letters = [orjson.loads(v) for v in bus.log[NAMES.dead_letters]]
    assert [d["error"] for d in letters] == ["invalid_json", "key_mismatch", "not_utf8"]
    assert letters[2]["value_encoding"] == "base64" and letters[2]["key"] is None
    assert letters[0]["offset"] == 0 and letters[0]["partition"] == records[0].partition
    value = bus.registry.get_sample_value("warden_invalid_events_total",
                                          {"topic": "friend-adds", "error": "key_mismatch"})
    assert value == 1.0


def test_the_clock_passing_lift_at_fires_the_lift_before_the_event():
    bus = Bus()
    bus.feed("device-signals", {"event_id": "e1", "ts": T0, "account_id": "emu", "device_id": "d",
                                "emulator": True})
    bus.feed("friend-adds", {"event_id": "e2", "ts": T0 + 15 * 86_400_000, "account_id": "zed",
                             "friend_id": "x"}, key="zed")
    # zed may live on another partition than emu: the lift fires when *emu's* partition clock passes.
    same = partition_of(b"emu", PARTITIONS) == partition_of(b"zed", PARTITIONS)
    types = [d["type"] for d in bus.decisions if d["account_id"] == "emu"]
    assert types == (["restricted", "lifted"] if same else ["restricted"])
    ticks = bus.account.idle_ticks([partition_of(b"emu", PARTITIONS)], grace_ms=0)
    assert ticks == [] or same


def test_idle_partitions_get_ticks_that_fire_due_lifts():
    now = {"ms": T0}
    bus = Bus()
    bus.account.wall_ms = lambda: now["ms"]
    bus.feed("device-signals", {"event_id": "e1", "ts": T0, "account_id": "emu", "device_id": "d",
                                "emulator": True})
    p = partition_of(b"emu", PARTITIONS)
    assert bus.account.idle_ticks([p], grace_ms=2000) == []
    now["ms"] = T0 + 14 * 86_400_000 + 5000
    [tick] = bus.account.idle_ticks([p], grace_ms=2000)
    assert tick.partition == p
    bus.commit(bus.account.process([bus.record(tick.topic, None, tick.value, tick.partition)]))
    assert [d["type"] for d in bus.decisions] == ["restricted", "lifted"]
    assert bus.decisions[-1]["at"] == T0 + 14 * 86_400_000


def test_a_slow_bus_keeps_each_account_in_replay_order():
    """Feedback lagging 5 inputs behind: inputs of an account awaiting a reply park behind it."""
    inputs = story_inputs()
    inputs.insert(31, ("moderation-commands", {"command_id": "early", "ts": T0 + 31_000,
                                              "account_id": "mallory", "actor": "op",
                                              "action": "appeal_filed"}))
    bus = Bus()
    bus.feed_lagged(inputs, lag=5)
    for partition in range(PARTITIONS):
        bus._deliver([bus.record(NAMES.account_inbox, None, encode_tick(END), partition)])
    got, want = per_account(bus.decisions), per_account(replay_decisions(inputs, END))
    # `alt` uses spammer's device after spammer's reports: the device stage holds that use
    # until spammer's replies are in (its `pend` notice), however slow the bus
    assert got == want
    assert [d["type"] for d in got["mallory"]][:2] == ["restricted", "appeal_received"]
    assert not any(load_account(raw).pending for raw in bus.accounts.values())  # nothing parked


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["friend-adds", "room-creations", "message-reports", "device-signals",
                        "moderation-commands"]),
       st.one_of(st.none(), st.binary(max_size=20)), st.binary(max_size=200))
def test_arbitrary_bytes_on_any_input_topic_become_a_dead_letter_or_an_event(topic, key, value):
    bus = Bus()
    batch = bus.account.process([bus.record(topic, key, value)])
    letters = [o for o in batch.outputs if o.topic == NAMES.dead_letters]
    assert len(letters) <= 1
    if letters:
        letter = orjson.loads(letters[0].value)
        assert letter["topic"] == topic and letter["error"] and letter["detail"]
        value_back = letter["value"]
        assert value_back is not None or value is None


def test_sweep_forgets_idle_accounts_and_old_dedupe_ids_but_keeps_restricted_ones():
    bus = Bus()
    bus.feed("friend-adds", {"event_id": "e1", "ts": T0, "account_id": "quiet", "friend_id": "x"})
    bus.feed("device-signals", {"event_id": "e2", "ts": T0, "account_id": "emu", "device_id": "d",
                                "emulator": True})
    assert b"quiet" in bus.accounts and "e1" in load_account(bus.accounts[b"quiet"]).seen
    for partition in range(PARTITIONS):  # every clock moves 8 days on (lifts fire, windows age)
        bus.commit(bus.account.process([bus.record(NAMES.account_inbox, None,
                                                   encode_tick(T0 + 8 * 86_400_000), partition)]))
    for _ in range(3):
        bus.commit(bus.account.sweep(limit=1))
    assert b"quiet" not in bus.accounts      # nothing left that any horizon needs
    assert b"emu" in bus.accounts            # had decisions: seq must keep growing
    assert load_account(bus.accounts[b"emu"]).seen == {}  # dedupe ids past the horizon


def test_a_hot_account_ignores_a_repeat_whose_id_was_sealed_and_forgets_it_past_the_horizon():
    """Dedupe ids are kept in sealed chunks past 128 (streams/records.py `SeenIds`): a repeat
    of the first of 200 inputs is still ignored, and after 8 days the sweep drops them."""
    bus = Bus()
    for i in range(200):
        bus.feed("friend-adds", {"event_id": f"h{i}", "ts": T0 + i * 60_000,
                                 "account_id": "hot", "friend_id": f"f{i % 7}"})
    record = load_account(bus.accounts[b"hot"])
    assert len(record.seen) == 200 and record.sealed
    # (each batch's largest account record written: here every batch wrote only "hot")
    assert bus.registry.get_sample_value("warden_account_record_bytes_count") == 200
    written = bus.registry.get_sample_value  # (cumulative buckets)
    assert written("warden_account_record_bytes_bucket", {"le": "1024.0"}) < 200
    assert written("warden_account_record_bytes_bucket", {"le": "16384.0"}) == 200
    bus.feed("friend-adds", {"event_id": "h0", "ts": T0, "account_id": "hot", "friend_id": "f0"})
    assert bus.registry.get_sample_value(
        "warden_duplicate_events_total", {"topic": "friend-adds"}) == 1
    for partition in range(PARTITIONS):
        bus.commit(bus.account.process([bus.record(NAMES.account_inbox, None,
                                                   encode_tick(T0 + 8 * 86_400_000), partition)]))
    for _ in range(3):
        bus.commit(bus.account.sweep(limit=1))
    assert b"hot" not in bus.accounts or load_account(bus.accounts[b"hot"]).seen == {}


def test_an_account_with_many_inputs_waiting_is_crowded_until_half_of_them_are_applied(
        monkeypatch):
    """`crowded_accounts` (the worker pauses the partition's inputs for it): inputs in flight
    to the device stage and parked behind them count."""
    import streams.stages as stages
    monkeypatch.setattr(stages, "ACCOUNT_PENDING_PAUSE", 4)
    bus = Bus()
    inputs = [bus.record("friend-adds", b"busy", orjson.dumps(
        {"event_id": f"b{i}", "ts": T0 + i, "account_id": "busy", "friend_id": f"f{i}",
         **({"device_id": "d"} if i % 3 else {})})) for i in range(1, 7)]
    follow = bus.commit(bus.account.process(inputs))  # replies not delivered yet
    partition = partition_of(b"busy", PARTITIONS)
    assert bus.account.crowded_accounts[partition] == {b"busy": 6}
    bus._deliver(follow)
    assert bus.account.crowded_accounts[partition] == {}


def test_a_lift_passed_while_replies_were_in_flight_fires_before_the_next_reply():
    """Two device uses in flight at once; the first restricts with a lift_at the clock has
    already passed (the second is 15 days later): replay lifts before applying the second."""
    day = 86_400_000
    inputs = [("device-signals", {"event_id": "v1", "ts": T0, "account_id": "vn",
                                  "device_id": "d1", "virtual_number": True}),
              ("device-signals", {"event_id": "v2", "ts": T0 + 15 * day, "account_id": "vn",
                                  "device_id": "d1", "virtual_number": True})]
    bus = Bus()
    bus.feed_lagged(inputs, lag=5)
    got = [(d["type"], d["at"]) for d in bus.decisions]
    want = [(d["type"], d["at"]) for d in replay_decisions(inputs, T0 + 15 * day)]
    assert got == want == [("restricted", T0), ("lifted", T0 + 14 * day), ("restricted", T0 + 15 * day)]


def test_a_reply_older_than_lift_at_is_applied_before_a_lift_the_clock_passed_meanwhile():
    """A virtual-number signal 48 s before lift_at goes to the device stage; meanwhile another
    account's event moves the partition clock past lift_at. When the answer comes back, replay
    order is: the signal extends the restriction, no lift. (Found by the live test: the lift
    fired first, then the signal restricted again at level 2.)"""
    hour = 3_600_000
    first = {"event_id": "v1", "ts": T0, "account_id": "vn", "device_id": "d1",
             "virtual_number": True}
    want = replay_decisions([("device-signals", first)], T0)
    lift_at = want[0]["lift_at"]
    partition = partition_of(b"vn", PARTITIONS)
    other = next(f"o{i}" for i in range(100) if partition_of(f"o{i}".encode(), PARTITIONS) == partition)
    late_signal = {"event_id": "v2", "ts": lift_at - 48_000, "account_id": "vn",
                   "device_id": "d2", "virtual_number": True}
    other_add = {"event_id": "f1", "ts": lift_at + hour, "account_id": other, "friend_id": "x"}
    inputs = [("device-signals", first), ("device-signals", late_signal),
              ("friend-adds", other_add)]
    want = [(d["type"], d["at"], d["level"]) for d in replay_decisions(inputs, lift_at + hour)]
    assert [t for t, _, _ in want] == ["restricted", "extended"]

    bus = Bus()
    bus.feed("device-signals", first)
    in_flight = bus.commit(bus.account.process(
        [bus.record("device-signals", b"vn", orjson.dumps(late_signal))]))
    bus.feed("friend-adds", other_add)
    bus._deliver(in_flight)
    assert [(d["type"], d["at"], d["level"]) for d in bus.decisions] == want


def test_after_a_crash_that_kept_the_clock_but_not_an_account_a_redelivered_input_goes_first():
    """The partition clock and the account records are separate changelog values: a crash can
    persist a clock past lift_at but not the record the older input changed. Redelivered, that
    input must still be applied before the lift, as before the crash (no seq with two meanings)."""
    hour = 3_600_000
    first = {"event_id": "v1", "ts": T0, "account_id": "vn", "device_id": "d1",
             "virtual_number": True}
    lift_at = replay_decisions([("device-signals", first)], T0)[0]["lift_at"]
    partition = partition_of(b"vn", PARTITIONS)
    other = next(f"o{i}" for i in range(100) if partition_of(f"o{i}".encode(), PARTITIONS) == partition)
    late_signal = {"event_id": "v2", "ts": lift_at - 48_000, "account_id": "vn",
                   "device_id": "d2", "virtual_number": True}
    other_add = {"event_id": "f1", "ts": lift_at + hour, "account_id": other, "friend_id": "x"}
    inputs = [("device-signals", first), ("device-signals", late_signal), ("friend-adds", other_add)]
    want = {d["decision_id"]: (d["type"], d["at"]) for d in replay_decisions(inputs, lift_at + hour)}

    bus = Bus()
    bus.feed("device-signals", first)
    before_crash = bus.accounts[b"vn"]
    bus.feed("device-signals", late_signal)
    bus.feed("friend-adds", other_add)
    bus.accounts[b"vn"] = before_crash          # lost with the crash; the clock was kept
    bus.account.forget_partitions(range(PARTITIONS))
    bus.feed("device-signals", late_signal)      # redelivered
    bus.feed("friend-adds", other_add)
    got: dict[str, tuple[str, int]] = {}
    for d in bus.decisions:
        assert got.setdefault(d["decision_id"], (d["type"], d["at"])) == (d["type"], d["at"]), d
    assert got == want


def messages(outputs):
    """Outputs but the merge's notices, which a restarted worker sends afresh."""
    return [o.value for o in outputs if not o.value.startswith((b'["mark"', b'["reset"', b'["pend"'))]


def test_a_crash_between_outputs_and_state_repeats_identical_decisions_and_loses_nothing():
    """kill -9 after a batch's outputs were delivered but before its state write: the
    restarted worker reprocesses the batch from the old record, producing the same outputs
    byte for byte (delivered twice), and ends in exactly the clean run's state."""
    inputs = story_inputs()
    clean = Bus()
    for topic, value in inputs:
        clean.feed(topic, value)

    crashy = Bus()
    stage = crashy.account
    first_attempt = stage.process
    crashes = 0

    def process_crashing_every_other_batch(records):
        nonlocal crashes
        lost = first_attempt(records)          # outputs go out, state write never lands
        if not lost.outputs or crashes % 2:
            crashes += 1
            return lost
        crashes += 1
        stage.forget_partitions(range(PARTITIONS))  # a restarted worker rebuilds its heaps
        redo = first_attempt(records)          # redelivered batch, old record
        assert messages(redo.outputs) == messages(lost.outputs)
        redo.outputs[:0] = lost.outputs        # both deliveries reach the topics
        return redo

    stage.process = process_crashing_every_other_batch  # type: ignore[method-assign]
    for topic, value in inputs:
        crashy.feed(topic, value)
    unique = {d["decision_id"]: d for d in crashy.decisions}
    assert len(crashy.decisions) > len(unique)        # duplicates happened ...
    for d in crashy.decisions:                         # ... and each equals the original
        assert d == unique[d["decision_id"]]
    assert sorted(unique) == sorted(d["decision_id"] for d in clean.decisions)
    assert crashy.accounts == clean.accounts


def test_a_backlogged_topic_holds_lifts_back_so_catching_up_decides_like_replay():
    """After downtime the worker reads device-signals days ahead of friend-adds. A lift must
    not fire before friend-adds have caught up: replay extends the restriction instead."""
    day = 86_400_000
    inputs = [("device-signals", {"event_id": "d1", "ts": T0, "account_id": "r", "device_id": "dr",
                                  "emulator": True})]
    inputs += [("friend-adds", {"event_id": f"f{i}", "ts": T0 + 10 * day + i, "account_id": "r",
                                "friend_id": f"x{i}"}) for i in range(30)]
    inputs += [("device-signals", {"event_id": "d2", "ts": T0 + 20 * day, "account_id": "r",
                                   "device_id": "dr"})]
    want = [(d["type"], d["at"], d["level"]) for d in replay_decisions(inputs, T0 + 20 * day)]

    def backlog_run(*, watermark: bool):
        bus = Bus()
        records = [(t, v, bus.record(t, v["account_id"].encode(), orjson.dumps(v))) for t, v in inputs]
        ends: dict[tuple[str, int], int] = {}
        for _, _, rec in records:
            ends[(rec.topic, rec.partition)] = max(ends.get((rec.topic, rec.partition), 0), rec.offset + 1)
        if watermark:
            bus.account.highwater = lambda topic, partition: ends.get((topic, partition), 0)
        # the backlog: every device signal first, then the friend adds
        for topic in ("device-signals", "friend-adds"):
            for t, _, rec in records:
                if t == topic:
                    bus._deliver([rec])
        return [(d["type"], d["at"], d["level"]) for d in bus.decisions]

    assert backlog_run(watermark=True)[:3] == want[:3]
    assert want[:2] == [("restricted", T0, 1), ("extended", T0 + 10 * day + 29, 1)]
    # without the watermark the lift fires early and the burst escalates to level 2
    assert backlog_run(watermark=False)[:3] != want[:3]


def test_a_dead_letter_for_a_huge_key_carries_a_short_key():
    """A ~1 MB input key must not make a dead letter Kafka refuses (found by the hostile-input
    fault test): the dead letter's own key becomes the SHA-256 of it."""
    bus = Bus()
    huge = b"k" * 990_000
    batch = bus.account.process([Record("friend-adds", 0, 0, huge, b"not json", T0)])
    (out,) = [o for o in batch.outputs if o.topic == NAMES.dead_letters]
    assert out.key is not None and out.key.startswith(b"sha256:") and len(out.key) < 100
    assert len(out.value) < 200_000


def test_a_partition_with_waiting_records_and_no_progress_is_reported_stalled():
    bus = Bus()
    wall = {"now": T0}
    bus.account.wall_ms = lambda: wall["now"]
    ends = {("friend-adds", 0): 5}
    bus.account.highwater = lambda topic, p: ends.get((topic, p))
    assert bus.account.stalled([0, 1], after_ms=10_000) == []   # first sight starts the clock
    wall["now"] += 10_001
    assert bus.account.stalled([0, 1], after_ms=10_000) == [("friend-adds", 0)]
    bus.account.topic_offset[("friend-adds", 0)] = 4              # caught up
    assert bus.account.stalled([0, 1], after_ms=10_000) == []


def test_cross_key_requests_in_flight_are_counted_until_answered():
    """The count WARDEN_MAX_IN_FLIGHT pauses input partitions on (streams/app.py)."""
    bus = Bus()
    value = {"event_id": "fa1", "ts": T0, "account_id": "mallory", "friend_id": "f1",
             "device_id": "dev-m"}
    rec = bus.record("friend-adds", b"mallory", orjson.dumps(value))
    follow = bus.commit(bus.account.process([rec]))
    assert bus.account.in_flight == {rec.partition: 1}   # a device check was sent
    bus._deliver(follow)                                  # ...and answered
    assert bus.account.in_flight == {rec.partition: 0}


def test_an_account_awaiting_a_reply_stays_decoded_while_the_table_holds_what_was_written():
    """Its reply's batch loads the account again: the record written is taken as it was,
    unless the table has changed since (e.g. by the sweep), and a batch takes it out."""
    bus = Bus()
    value = {"event_id": "fa1", "ts": T0, "account_id": "mallory", "friend_id": "f1",
             "device_id": "dev-m"}
    rec = bus.record("friend-adds", b"mallory", orjson.dumps(value))
    follow = bus.commit(bus.account.process([rec]))
    written, record = bus.account.decoded_kept[b"mallory"]
    assert bus.accounts[b"mallory"] == written and record.pending.flight
    assert _Work(bus.account).record(b"mallory") is record
    assert b"mallory" not in bus.account.decoded_kept  # (taken out while in use)

    bus.account.decoded_kept[b"mallory"] = (written, record)
    bus.accounts[b"mallory"] = written.replace(b'"fa1"', b'"fa0"')  # changed since
    again = _Work(bus.account).record(b"mallory")
    assert again is not record and "fa0" in again.seen
    bus.accounts[b"mallory"] = written
    bus._deliver(follow)  # answered: nothing awaits, nothing is kept
    assert bus.account.decoded_kept == {}
    assert [d["type"] for d in bus.decisions] == []


def test_every_input_is_settled_once_when_its_replies_are_in():
    """warden_inputs_settled_total: what bench/perf.py divides by time for a capped run."""
    bus = Bus()
    inputs = story_inputs()
    for topic, value in inputs:
        bus.feed(topic, value)
    bus.feed(*inputs[0])  # a redelivery: ignored as a duplicate, settled again
    settled = bus.registry.get_sample_value("warden_inputs_settled_total")
    assert settled == len(inputs) + 1


def test_an_evadable_accounts_lift_waits_for_the_device_stages_frontier():
    """`ban_evasion` extends the evaded account by a notice from the device stage at the
    evader's use time. A lift due on the partition's clock must not go first while such a
    notice can still come: it waits (the account's later inputs behind it) until the device
    stage's frontier (`dmark`) has passed it, then fires where replay fires it."""
    day = 86_400_000
    bus = Bus()
    for i, ts in enumerate((T0, T0 + 15 * day)):  # restricted twice: level 2
        bus.feed("device-signals", {"event_id": f"e{i}", "ts": ts, "account_id": "evaded",
                                    "device_id": "d", "emulator": True})
    restricted = bus.decisions[-1]
    assert (restricted["type"], restricted["level"]) == ("restricted", 2)
    lift_at = restricted["lift_at"]
    partition = partition_of(b"evaded", PARTITIONS)
    bus.account.device_marks = {partition: {q: T0 for q in range(PARTITIONS)}}  # it is behind
    later = {"event_id": "f1", "ts": lift_at + 3_600_000, "account_id": "evaded",
             "friend_id": "x"}
    bus.commit(bus.account.process([bus.record("friend-adds", b"evaded", orjson.dumps(later))]))
    assert bus.decisions[-1] == restricted            # no lift yet
    assert load_account(bus.accounts[b"evaded"]).pending.parked   # the input waits behind it
    dmarks = [bus.record(NAMES.account_inbox, None, encode_device_mark(q, lift_at), partition)
              for q in range(PARTITIONS)]              # every device partition passed lift_at
    bus.commit(bus.account.process(dmarks))
    assert [d["type"] for d in bus.decisions[-1:]] == ["lifted"]
    assert bus.decisions[-1]["at"] == lift_at
    assert not load_account(bus.accounts[b"evaded"]).pending   # the input was applied after it


def evaded_lift_gated_on_the_device_frontier(bus: Bus) -> tuple[int, int]:
    """Account "evaded" restricted at `ban_evasion`'s level, the device stage's frontier
    heard behind its lift, and an input after the lift waiting behind it: (lift_at, the
    account's partition)."""
    day = 86_400_000
    for i, ts in enumerate((T0, T0 + 15 * day)):  # restricted twice: level 2
        bus.feed("device-signals", {"event_id": f"e{i}", "ts": ts, "account_id": "evaded",
                                    "device_id": "d", "emulator": True})
    lift_at = bus.decisions[-1]["lift_at"]
    partition = partition_of(b"evaded", PARTITIONS)
    bus.account.device_marks = {partition: {q: T0 for q in range(PARTITIONS)}}
    later = {"event_id": "f1", "ts": lift_at + 3_600_000, "account_id": "evaded",
             "friend_id": "x"}
    bus.commit(bus.account.process([bus.record("friend-adds", b"evaded", orjson.dumps(later))]))
    return lift_at, partition


def test_a_device_frontier_read_on_another_partition_does_not_open_a_lifts_gate():
    """Each account partition has its own copy of every `dmark`, behind the notices sent to
    it before. A mark another partition already read says nothing of a `ban_evasion`
    notice still on its way to this one: the lift waits for this partition's own marks."""
    bus = Bus()
    lift_at, partition = evaded_lift_gated_on_the_device_frontier(bus)
    other = (partition + 1) % PARTITIONS
    passed = [bus.record(NAMES.account_inbox, None, encode_device_mark(q, lift_at), other)
              for q in range(PARTITIONS)]  # the other partition hears the frontier pass lift_at
    bus.commit(bus.account.process(passed))
    assert bus.decisions[-1]["type"] == "restricted"  # still no lift: not heard here yet
    assert bus.account.device_frontier(other) == lift_at
    assert bus.account.device_frontier(partition) == T0


def test_a_device_frontier_from_an_older_generation_does_not_open_a_lifts_gate():
    """A `dmark` binds the device stage that sent it. One sent before the last rebalance
    (an older consumer group generation) says nothing of the `ban_evasion` notices the
    device partition's new owner may send again from its committed offset: the lift waits
    for a mark of the current generation."""
    bus = Bus()
    bus.account.generation = 3
    lift_at, partition = evaded_lift_gated_on_the_device_frontier(bus)
    stale = [bus.record(NAMES.account_inbox, None, encode_device_mark(q, None, 2), partition)
             for q in range(PARTITIONS)]
    bus.commit(bus.account.process(stale))
    assert bus.decisions[-1]["type"] == "restricted"  # the dead owner's promise: no lift
    current = [bus.record(NAMES.account_inbox, None, encode_device_mark(q, None, 3), partition)
               for q in range(PARTITIONS)]
    bus.commit(bus.account.process(current))
    assert bus.decisions[-1]["type"] == "lifted" and bus.decisions[-1]["at"] == lift_at


def test_a_lifts_gate_waits_past_gate_wait_ms_while_a_device_frontier_keeps_moving():
    """A device partition whose frontier moves is draining requests a backlog held, and may
    still send the `ban_evasion` notice that extends the account: the lift waits for it until
    it stops moving for `gate_wait_ms`, not only `gate_wait_ms` from when the lift came due."""
    bus = Bus()
    wall = [T0]
    bus.account.wall_ms = lambda: wall[0]
    lift_at, partition = evaded_lift_gated_on_the_device_frontier(bus)
    bus.account.device_marks = {}  # (heard as marks, so their moves count)
    behind = [bus.record(NAMES.account_inbox, None, encode_device_mark(q, T0), partition)
              for q in range(PARTITIONS)]
    bus.commit(bus.account.process(behind))
    for step in range(1, 4):  # 6 s apart, each device partition a little further
        wall[0] += 6_000
        moved = [bus.record(NAMES.account_inbox, None, encode_device_mark(q, T0 + step), partition)
                 for q in range(PARTITIONS)]
        bus.commit(bus.account.process(moved))
        assert bus.decisions[-1]["type"] == "restricted"  # 18 s since it came due: no lift
    wall[0] += 10_000  # none moved for gate_wait_ms
    bus.commit(bus.account.process([bus.record(NAMES.account_inbox, None, b'["tick", 0]',
                                               partition)]))
    assert bus.decisions[-1]["type"] == "lifted" and bus.decisions[-1]["at"] == lift_at


def _pends(batch) -> list[list]:
    return [orjson.loads(o.value) for o in batch.outputs if o.value.startswith(b'["pend"')]


def test_a_never_restricted_accounts_device_uses_tell_its_devices_nothing():
    """Its inputs awaiting replies can restrict it at level 1 at most, which no device trigger
    reads: other accounts' uses of its devices need not wait for them (no `pend` notice)."""
    bus = Bus()
    use = {"event_id": "u1", "ts": T0, "account_id": "alice", "device_id": "d1",
           "friend_id": "bob"}
    batch = bus.account.process([bus.record("friend-adds", b"alice", orjson.dumps(use))])
    assert load_account(batch.writes[("accounts", b"alice")][1]).pending.flight  # it waits
    assert _pends(batch) == []


def test_an_account_restricted_before_tells_its_devices_of_inputs_decoded_kept():
    """A second restriction would be level 2, which `ban_evasion` reads: its devices hold
    other accounts' later uses until its replies are in."""
    day = 86_400_000
    bus = Bus()
    bus.feed("device-signals", {"event_id": "e0", "ts": T0, "account_id": "emu",
                                "device_id": "d", "emulator": True})
    bus._deliver([bus.record(NAMES.account_inbox, None, encode_tick(T0 + 15 * day),
                             partition_of(b"emu", PARTITIONS))])
    assert [d["type"] for d in bus.decisions] == ["restricted", "lifted"]
    use = {"event_id": "e1", "ts": T0 + 16 * day, "account_id": "emu", "device_id": "d"}
    batch = bus.account.process([bus.record("device-signals", b"emu", orjson.dumps(use))])
    assert _pends(batch) == [["pend", "emu", "d", T0 + 16 * day]]


def _record_with(flight, *, parked=(), restricted=False, past_starts=()):
    from detectors.account import EMPTY
    from detectors.policy import Restriction
    from streams.records import AccountRecord, Pending

    life = EMPTY.lifecycle
    if restricted:
        life = life.__class__(1, Restriction(T0, 1, ("add_friend",), ("friend_add_burst",),
                                             T0 + 1, T0), (), None)
    if past_starts:
        life = life.__class__(1, None, tuple(past_starts), None)
    state = EMPTY.__class__(life, EMPTY.windows, EMPTY.reporter, EMPTY.devices)
    return AccountRecord(state, {}, Pending([list(s) for s in flight], list(parked)))


def test_what_keeps_an_accounts_pending_inputs_relevant_to_its_devices():
    day = 86_400_000
    use = ["u1", None, T0, "u"]
    assert status_settled(_record_with([use]), DEFAULT_POLICY)
    assert status_settled(_record_with([use, ["u2", None, T0 + day, "u"]]), DEFAULT_POLICY)
    # a report can bring report_flood, which taints; a slot without a kind (an older worker's)
    assert not status_settled(_record_with([use, ["r1", None, T0, None]]), DEFAULT_POLICY)
    assert not status_settled(_record_with([["u0", None, T0]]), DEFAULT_POLICY)
    # restricted now, or before: a restriction after a lift would be level 2
    assert not status_settled(_record_with([use], restricted=True), DEFAULT_POLICY)
    assert not status_settled(_record_with([use], past_starts=[T0 - day]), DEFAULT_POLICY)
    # a command parked behind them could lift, restrict or overturn
    assert not status_settled(_record_with([use], parked=[["lift", "m", T0, "x"]]),
                              DEFAULT_POLICY)
    # a quiet period apart: restricted by the first and lifted before the second
    quiet = DEFAULT_POLICY.lifecycle.quiet_base_ms
    assert not status_settled(_record_with([use, ["u2", None, T0 + quiet, "u"]]), DEFAULT_POLICY)


def test_a_batch_asks_the_consumer_for_each_highwater_once_and_the_next_batch_asks_again():
    """The lift clock and the frontier read every input topic's highwater at every lift check:
    within a batch the first answer stands (it is only as fresh as the last fetch anyway)."""
    bus = Bus()
    asked: list[tuple[str, int]] = []

    def highwater(topic: str, partition: int) -> int:
        asked.append((topic, partition))
        return 0

    bus.account.highwater = highwater
    events = [{"event_id": f"f{i}", "ts": T0 + i, "account_id": "acct-1", "friend_id": f"x{i}"}
              for i in range(40)]  # a burst: restricted, then every add checks for a due lift
    records = [bus.record("friend-adds", b"acct-1", orjson.dumps(e)) for e in events]
    bus.account.process(records)
    assert asked and len(asked) == len(set(asked))
    first = len(asked)
    bus.account.process([bus.record("friend-adds", b"acct-1", orjson.dumps(
        {**events[0], "event_id": "later", "ts": T0 + 100}))])
    assert len(asked) > first  # a new batch reads them afresh
    assert bus.account.stalled([0], after_ms=0) == [] and len(asked) > first + 1  # so do timers


def test_a_sweep_leaves_the_records_of_partitions_this_worker_no_longer_owns():
    """Faust's memory store keeps the keys a worker wrote itself after their partition moved
    to another worker: sweeping them would write stale copies into the new owner's
    changelog, to be read as the newest at its next recovery."""
    bus = Bus()
    accounts = [f"acct-{i}" for i in range(12)]
    for i, account in enumerate(accounts):
        bus.feed("friend-adds", {"event_id": f"e{i}", "ts": T0, "account_id": account,
                                 "friend_id": "x", "device_id": f"dev-{i}"})
    for partition in range(PARTITIONS):  # every clock moves 8 days on: all can be swept
        bus.commit(bus.account.process([bus.record(NAMES.account_inbox, None,
                                                   encode_tick(T0 + 8 * 86_400_000), partition)]))
    bus.device.clocks = {p: T0 + 400 * 86_400_000 for p in range(PARTITIONS)}  # past the horizon
    owned = [0]
    swept = bus.account.sweep(assigned=owned, limit=100)
    assert swept.writes and {p for p, _ in swept.writes.values()} == {0}
    assert bus.account.sweep(limit=100).writes.keys() > swept.writes.keys()  # (all, unowned)
    devices = bus.device.sweep(partitions=PARTITIONS, assigned=owned, limit=100)
    assert devices.writes and {p for p, _ in devices.writes.values()} == {0}
    assert len(bus.device.sweep(partitions=PARTITIONS, limit=100).writes) > len(devices.writes)
