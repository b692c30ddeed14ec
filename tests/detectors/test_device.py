"""detectors/device.py: what a device records of the accounts that use it.

Live, a use can reach the device stage carrying an account's status from before a decision
that an older input of the same account is still waiting for (streams/stages.py pipelines
uses), so the device keeps the newest status by the account's decision count, whatever order
uses and status changes come in.
"""

from __future__ import annotations

from detectors import codec
from detectors.config import DEFAULT_POLICY
from detectors.device import NOT_USED, DeviceState, handle, record
from detectors.messages import AccountOnDevice

T0 = 1767225600000


def use(account: str, ts: int, *, restricted: bool = False, level: int = 0, seq: int = 0,
        device: str = "d") -> AccountOnDevice:
    return AccountOnDevice(f"{account}-{ts}>used", ts, device, account, True, restricted, level,
                           ("add_friend",) if restricted else (), None, f"{account}-{ts}", (),
                           seq)


def status(account: str, ts: int, *, restricted: bool, level: int, seq: int,
           device: str = "d") -> AccountOnDevice:
    return AccountOnDevice(f"{account}:{seq}>status>{device}", ts, device, account, False,
                           restricted, level, ("add_friend",) if restricted else (), None,
                           f"{account}:{seq}", (), seq)


def apply(state: DeviceState, *messages: AccountOnDevice) -> tuple[DeviceState, list]:
    out: list = []
    for msg in messages:
        state, answers = handle(state, msg, now_ms=msg.ts, policy=DEFAULT_POLICY)
        out.extend(answers)
    return state, out


def test_a_use_carrying_an_older_status_does_not_undo_a_newer_one():
    state, _ = apply(DeviceState(), use("a", T0),
                     status("a", T0 + 10, restricted=True, level=2, seq=3),
                     use("a", T0 + 20, seq=2))  # sent before decision 3 was made
    (a,) = state.accounts
    assert (a.restricted, a.level, a.seq, a.last_used_at) == (True, 2, 3, T0 + 20)


def test_a_newer_status_replaces_an_older_one_in_either_message():
    state, _ = apply(DeviceState(), use("a", T0, restricted=True, level=2, seq=3),
                     use("a", T0 + 20, seq=4))  # lifted by decision 4
    assert not state.accounts[0].restricted


def test_a_restriction_heard_before_the_first_use_is_kept_but_is_not_a_user_yet():
    state, answers = apply(DeviceState(), status("a", T0, restricted=True, level=2, seq=1))
    (a,) = state.accounts
    assert (a.last_used_at, a.restricted) == (NOT_USED, True) and answers == []
    # another account's use before a's first use does not see a (replay would not)
    state, answers = apply(state, use("b", T0 + 5))
    assert [type(m).__name__ for m in answers] == ["DeviceChecked"]
    assert answers[0].signals == ()
    # a's use, still carrying the status from before its restriction, keeps the restriction
    state, _ = apply(state, use("a", T0 + 10, seq=0))
    mine = next(x for x in state.accounts if x.account_id == "a")
    assert (mine.last_used_at, mine.restricted, mine.seq) == (T0 + 10, True, 1)
    # now b's next use is ban evasion of a
    _, answers = apply(state, use("b", T0 + 20))
    assert [s.trigger for s in answers[0].signals] == ["ban_evasion"]


def test_a_status_of_an_unrestricted_account_the_device_never_saw_changes_nothing():
    before = DeviceState()
    after, _ = record(before, "a", T0, False, False, 0, (), None, policy=DEFAULT_POLICY, seq=2)
    assert after is before


def test_device_records_round_trip_with_the_status_count():
    state, _ = apply(DeviceState(), use("a", T0, restricted=True, level=2, seq=5))
    assert codec.decode_device(codec.encode_device(state)) == state
    # records written before the count existed read as count 0
    old = b'[["a",1767225600000,true,2,["add_friend"],null]]'
    assert codec.decode_device(old).accounts[0].seq == 0
