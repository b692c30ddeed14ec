"""The device stage's batch runner: accounts on each device, and the device triggers."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

from detectors import codec, device
from detectors.config import Policy
from detectors.device import DeviceState
from detectors.messages import AccountOnDevice
from streams.records import Batch, Output, Record, partition_of
from streams.topics import TopicNames


class DeviceStage:
    """The device-keyed stage: accounts on a device, and the device triggers."""

    def __init__(self, *, policy: Policy, names: TopicNames,
                 devices: MutableMapping[bytes, bytes]) -> None:
        self.policy = policy
        self.devices = devices
        self.clocks: dict[int, int] = {}  # only ages out old entries; need not survive restarts
        self._cursor = 0
        self.account_inbox = names.account_inbox

    def process(self, records: Iterable[Record]) -> Batch:
        batch = Batch()
        states: dict[bytes, tuple[int, DeviceState]] = {}
        for rec in records:
            msg = codec.decode_message(rec.value or b"")
            assert isinstance(msg, AccountOnDevice), type(msg)
            key = msg.device_id.encode()
            if key in states:
                state = states[key][1]
            else:
                raw = self.devices.get(key)
                state = DeviceState() if raw is None else codec.decode_device(raw)
            now = max(self.clocks.get(rec.partition, 0), msg.ts)
            self.clocks[rec.partition] = now
            state, matches = device.handle(state, msg, now_ms=now, policy=self.policy)
            states[key] = (rec.partition, state)
            for match in matches:
                batch.outputs.append(Output(self.account_inbox, match.account_id.encode(),
                                            codec.encode_message(match)))
        for key, (partition, state) in states.items():
            value = None if device.is_empty(state) else codec.encode_device(state)
            batch.writes[("devices", key)] = (partition, value)
        return batch

    def sweep(self, *, partitions: int, limit: int = 5000) -> Batch:
        """Forget accounts on devices past the device horizon; drop empty devices."""
        batch = Batch()
        now = max(self.clocks.values(), default=0)
        if not now:
            return batch
        keys = list(self.devices.keys())
        start = self._cursor % max(len(keys), 1)
        for key in keys[start:start + limit]:
            raw = self.devices.get(key)
            if raw is None:
                continue
            state = codec.decode_device(raw)
            kept = device.expire(state, now_ms=now, policy=self.policy)
            if kept is not state:
                value = None if device.is_empty(kept) else codec.encode_device(kept)
                batch.writes[("devices", key)] = (partition_of(key, partitions), value)
        self._cursor = start + limit if start + limit < len(keys) else 0
        return batch
