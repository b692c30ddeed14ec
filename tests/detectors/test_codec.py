"""detectors.codec: every state and message survives a round trip, and stays small."""

from collections import deque

from detectors import codec
from detectors.engine import Engine
from detectors.events import DeviceSignalled, FriendAdded, MessageReported, ModerationCommanded

T0 = 1767225600000


def busy_engine() -> tuple[Engine, list]:
    engine = Engine()
    sent: list = []

    class Spy(deque):
        def append(self, msg):
            sent.append(msg)
            super().append(msg)

        def extend(self, messages):
            for msg in messages:
                self.append(msg)

    engine._queue = Spy()
    events = [FriendAdded(f"f{i}", T0 + i, "mallory", f"x{i}", "dev-m") for i in range(35)]
    events += [DeviceSignalled(f"d{i}", T0 + 100 + i, f"rep{i}", f"dev{i % 3}") for i in range(12)]
    events += [MessageReported(f"r{i}", T0 + 200 + i, f"rep{i}", "mallory", "message", "spam",
                               room_id="room-1" if i < 4 else None) for i in range(12)]
    events += [ModerationCommanded("c1", T0 + 300, "mallory", "op", "appeal_filed"),
               DeviceSignalled("dz", T0 + 400, "mallory", "dev-m", emulator=True),
               DeviceSignalled("dy", T0 + 500, "newbie", "dev-m"),
               ModerationCommanded("c2", T0 + 600, "mallory", "op", "mark_false_positive")]
    for event in events:
        engine.process(event)
    return engine, sent


def test_account_and_device_states_round_trip():
    engine, _ = busy_engine()
    assert engine.accounts and engine.devices
    for state in engine.accounts.values():
        assert codec.decode_account(codec.encode_account(state)) == state
    for dstate in engine.devices.values():
        assert codec.decode_device(codec.encode_device(dstate)) == dstate


def test_every_internal_message_kind_round_trips():
    _, sent = busy_engine()
    kinds = {type(m).__name__ for m in sent}
    assert {"ReportFiled", "ReportWeighed", "ReportsJudged", "AccountOnDevice"} <= kinds
    for msg in sent:
        if type(msg) in codec.MESSAGE_TAGS:
            assert codec.decode_message(codec.encode_message(msg)) == msg


def test_an_idle_account_state_is_well_under_a_kibibyte():
    engine, _ = busy_engine()
    assert len(codec.encode_account(engine.accounts["rep1"])) < 256


def test_a_message_from_a_worker_before_a_field_was_added_decodes_with_its_default():
    from detectors.messages import AccountOnDevice
    use = AccountOnDevice("e1>dev", T0, "dev-1", "acct-1", True, False, 0, ("add_friend",), None,
                          "e1", (), 3)
    without_seq = codec.encode_message(use)[:-3] + b"]"
    assert codec.decode_message(without_seq) == AccountOnDevice(
        "e1>dev", T0, "dev-1", "acct-1", True, False, 0, ("add_friend",), None, "e1", (), 0)


def test_decoded_messages_hold_tuples_where_the_wire_has_lists():
    _, sent = busy_engine()
    for msg in sent:
        if type(msg) in codec.MESSAGE_TAGS:
            decoded = codec.decode_message(codec.encode_message(msg))
            for name in type(msg).__dataclass_fields__:
                assert type(getattr(decoded, name)) is not list, (msg, name)
