"""Every trigger, by name: adding one is a module and a line here (STYLE "One trigger shape")."""

from __future__ import annotations

from types import ModuleType

from detectors.triggers import (
    ban_evasion,
    emulator,
    friend_add_burst,
    report_flood,
    room_creation_burst,
    tainted_device,
    virtual_number,
)

# Triggers that run on the account stage over the account's own events.
ACCOUNT_TRIGGERS: dict[str, ModuleType] = {
    "friend_add_burst": friend_add_burst,
    "room_creation_burst": room_creation_burst,
    "report_flood": report_flood,
    "emulator": emulator,
    "virtual_number": virtual_number,
}

# Triggers that run on the device stage over other accounts on the device.
DEVICE_TRIGGERS: tuple[ModuleType, ...] = (tainted_device, ban_evasion)

TRIGGERS: dict[str, ModuleType] = {
    **ACCOUNT_TRIGGERS,
    "tainted_device": tainted_device,
    "ban_evasion": ban_evasion,
}

# Account-stage dispatch: which triggers consume which event type.
BY_EVENT_TYPE: dict[type, tuple[ModuleType, ...]] = {}
for _trigger in ACCOUNT_TRIGGERS.values():
    BY_EVENT_TYPE[_trigger.consumes] = (*BY_EVENT_TYPE.get(_trigger.consumes, ()), _trigger)
