"""Many internal messages in one Kafka record: the per-record cost is the framework's.

The cross-key hops (account stage -> device inbox -> account inbox) carry several
internal messages per input event: requests, replies, pending notices, frontier
marks. Each Kafka record costs the same fixed work in Faust's consumer path and in
the producer whatever it holds (issue #5: a no-op Faust agent tops out near 10,000
records/s), so a batch's messages to one inbox partition go out as one record:

    b"#many\\n" + b"\\n".join(values)

Each value is a JSON document from `detectors.codec` or the stages' control
messages, which never contain a raw newline (JSON escapes it); a value that does is
sent alone. The receiving agent splits the record back into the messages, in order,
each with the record's topic, partition, offset and timestamp: a batch of messages is
applied, acknowledged and re-read after a crash as a whole, exactly like the one
record it is. Order within a partition is kept; no order across partitions existed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from streams.records import Output, Record, partition_of

MARK = b"#many\n"
MAX_BYTES = 512 * 1024  # well under Kafka's 1 MB default record limit


def pack(outputs: Sequence[Output], *, topics: Iterable[str], partitions: int,
         max_bytes: int = MAX_BYTES) -> list[Output]:
    """`outputs` with those to `topics` combined into one record per partition (several
    when they exceed `max_bytes`), placed where the partition's first message was."""
    internal = set(topics)
    slots: list[Output | tuple[tuple[str, int], list[bytes]]] = []
    groups: dict[tuple[str, int], list[bytes]] = {}
    for o in outputs:
        if o.topic not in internal:
            slots.append(o)
            continue
        partition = o.partition if o.partition is not None else partition_of(o.key or b"",
                                                                            partitions)
        where = (o.topic, partition)
        if b"\n" in o.value:  # cannot be enveloped: alone, and after what went before it
            slots.append(Output(o.topic, o.key, o.value, partition))
            groups.pop(where, None)
            continue
        group = groups.get(where)
        if group is None:
            group = groups[where] = []
            slots.append((where, group))
        group.append(o.value)
    out: list[Output] = []
    for slot in slots:
        if isinstance(slot, Output):
            out.append(slot)
        else:
            (topic, partition), values = slot
            out.extend(Output(topic, None, value, partition)
                       for value in _chunks(values, max_bytes))
    return out


def _chunks(values: list[bytes], max_bytes: int) -> list[bytes]:
    """The values as enveloped records of at most `max_bytes` (a lone value as itself)."""
    chunks: list[list[bytes]] = [[]]
    size = len(MARK)
    for value in values:
        if chunks[-1] and size + len(value) + 1 > max_bytes:
            chunks.append([])
            size = len(MARK)
        chunks[-1].append(value)
        size += len(value) + 1
    return [chunk[0] if len(chunk) == 1 else MARK + b"\n".join(chunk) for chunk in chunks]


def unpack(records: Iterable[Record]) -> list[Record]:
    """Every message of `records`, enveloped ones split out in order."""
    out: list[Record] = []
    for rec in records:
        value = rec.value
        if value is None or not value.startswith(MARK):
            out.append(rec)
            continue
        for part in value[len(MARK):].split(b"\n"):
            out.append(Record(rec.topic, rec.partition, rec.offset, None, part, rec.timestamp_ms))
    return out
