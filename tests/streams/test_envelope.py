"""streams/envelope.py: a batch's inbox messages travel as one record per partition.

The receiving stage sees the same messages in the same order per partition as if each
had been its own record; other topics are untouched; records stay under Kafka's limit.
"""

from __future__ import annotations

from streams.envelope import MARK, pack, unpack
from streams.records import Output, Record, partition_of

INBOX = "warden-device-inbox"


def received(outputs: list[Output], partitions: int = 4) -> dict[tuple[str, int], list[bytes]]:
    """What each partition's consumer reads, message by message, after unpacking."""
    out: dict[tuple[str, int], list[bytes]] = {}
    for offset, o in enumerate(outputs):
        partition = o.partition if o.partition is not None else partition_of(o.key or b"",
                                                                            partitions)
        for rec in unpack([Record(o.topic, partition, offset, o.key, o.value, 5)]):
            out.setdefault((rec.topic, rec.partition), []).append(rec.value or b"")
    return out


def test_a_batchs_inbox_messages_reach_each_partition_in_order_in_one_record():
    keys = [b"dev-%d" % i for i in range(40)]
    outputs = [Output(INBOX, k, b'["req",%d]' % i) for i, k in enumerate(keys)]
    outputs += [Output(INBOX, None, b'["mark",0,%d]' % q, q) for q in range(4)]
    packed = pack(outputs, topics=[INBOX], partitions=4)
    assert len(packed) == 4  # one record per partition
    assert all(o.value.startswith(MARK) and o.key is None for o in packed)
    assert received(packed) == received(outputs)


def test_other_topics_are_sent_as_they_are():
    decision = Output("account-decisions", b"acct-1", b'{"kind":"restricted"}')
    inbox = [Output(INBOX, b"dev-1", b'["a"]'), Output(INBOX, b"dev-1", b'["b"]')]
    packed = pack([inbox[0], decision, inbox[1]], topics=[INBOX], partitions=4)
    assert decision in packed
    assert received(packed) == received([*inbox, decision])


def test_a_lone_message_is_its_own_record():
    packed = pack([Output(INBOX, None, b'["tick"]', 2)], topics=[INBOX], partitions=4)
    assert packed == [Output(INBOX, None, b'["tick"]', 2)]
    assert unpack([Record(INBOX, 2, 7, None, b'["tick"]', None)]) == [
        Record(INBOX, 2, 7, None, b'["tick"]', None)]


def test_unpacked_messages_carry_the_records_topic_partition_offset_and_timestamp():
    value = MARK + b'["a"]\n["b"]'
    assert unpack([Record(INBOX, 3, 42, None, value, 1234)]) == [
        Record(INBOX, 3, 42, None, b'["a"]', 1234), Record(INBOX, 3, 42, None, b'["b"]', 1234)]


def test_records_stay_under_the_size_limit_and_keep_order():
    outputs = [Output(INBOX, None, b'["m",%d,"%s"]' % (i, b"x" * 100), 1) for i in range(50)]
    packed = pack(outputs, topics=[INBOX], partitions=4, max_bytes=1000)
    assert len(packed) > 5
    assert all(len(o.value) <= 1000 for o in packed)
    assert received(packed) == received(outputs)


def test_a_value_with_a_newline_goes_alone_without_overtaking_earlier_messages():
    outputs = [Output(INBOX, None, b'["a"]', 0), Output(INBOX, None, b'"x\ny"', 0),
               Output(INBOX, None, b'["b"]', 0)]
    packed = pack(outputs, topics=[INBOX], partitions=4)
    assert received(packed)[(INBOX, 0)] == [b'["a"]', b'"x\ny"', b'["b"]']
