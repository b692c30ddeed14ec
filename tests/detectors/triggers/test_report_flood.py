"""`report_flood._score` against a brute-force model of SPEC "Report weighting": reporters
sharing a device (directly or through others) are one group, which contributes its
highest weight (its earliest such report carries it)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from detectors import codec
from detectors.config import DEFAULT_POLICY
from detectors.messages import Deferred, DeviceChecked, ReportWeighed, evidence_of
from detectors.triggers import report_flood
from detectors.triggers.report_flood import CountedReport, _score

reports = st.lists(
    st.tuples(st.sampled_from([0.0, 0.25, 0.5, 2 / 3, 1.0]),
              st.lists(st.sampled_from(["d1", "d2", "d3", "d4", "d5", "d6"]), max_size=3)),
    max_size=8,
).map(lambda rows: tuple(
    CountedReport(i, f"r{i}", f"e{i}", weight, "spam", None, tuple(devices))
    for i, (weight, devices) in enumerate(rows)))


def groups(members):
    """Connected components of "shares a device", each in member order, by first member."""
    unseen, out = list(range(len(members))), []
    while unseen:
        group, frontier = [], [unseen.pop(0)]
        while frontier:
            i = frontier.pop()
            group.append(i)
            linked = [j for j in unseen if set(members[i].devices) & set(members[j].devices)]
            unseen = [j for j in unseen if j not in linked]
            frontier += linked
        out.append(sorted(group))
    return sorted(out)


@given(reports)
def test_score_is_the_sum_of_each_device_groups_highest_weight(members):
    representatives = []
    for group in groups(members):
        best = max(members[i].weight for i in group)
        representatives.append(next(members[i] for i in group if members[i].weight == best))
    assert _score(members) == (sum(r.weight for r in representatives), representatives)


def weighed(i, weight, reason, devices=()):
    return ReportWeighed(f"w{i}", 1_000 + i, f"e{i}", f"r{i}", "target", reason, None, weight,
                         weight, tuple(devices))


@given(st.lists(st.tuples(st.sampled_from([0.5, 2 / 3, 1.0]),
                          st.sampled_from(["spam", "harassment", "obscene"]),
                          st.lists(st.sampled_from(["d1", "d2", "d3"]), max_size=2)),
                max_size=14))
def test_deferred_evidence_is_built_the_same_and_agrees_with_the_signal(rows):
    state = report_flood.initial
    for i, (weight, reason, devices) in enumerate(rows):
        state, signals = report_flood.step(state, weighed(i, weight, reason, devices),
                                           now_ms=1_000 + i, policy=DEFAULT_POLICY)
        for signal in signals:
            assert type(signal.evidence) is Deferred  # built only when a decision cites it
            evidence = evidence_of(signal)
            assert evidence == evidence_of(signal) == signal.evidence.build(*signal.evidence.args)
            assert signal.taints == (evidence["taints"] if signal.fires else False)
            assert evidence["score"] >= DEFAULT_POLICY.report_flood.threshold - 1e-6 \
                or not signal.fires
            encoded = codec.encode_message(DeviceChecked("m", 1, "a", "d", "e", (signal,)))
            assert codec.decode_message(encoded).signals[0].evidence == evidence
