"""Decisions in plain words, for people: the demo summary and `warden account show`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def when(ms: int | None) -> str:
    if ms is None:
        return "never (indefinite)"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(ms: int) -> str:
    minutes = ms // 60000
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)} d"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"


def evidence_line(trigger: str, ev: dict[str, Any]) -> str:
    """One trigger's evidence, e.g. '35 distinct friends within 10 min (threshold 30)'."""
    if trigger == "friend_add_burst":
        return f"{ev['count']} distinct friends within {duration(ev['window_ms'])} (threshold {ev['threshold']})"
    if trigger == "room_creation_burst":
        kind = "open rooms" if ev.get("room_type") == "open" else "rooms"
        return f"{ev['count']} {kind} within {duration(ev['window_ms'])} (threshold {ev['threshold']})"
    if trigger == "report_flood":
        reasons = ", ".join(f"{k} {v:g}" for k, v in ev.get("weighted_reasons", {}).items())
        return (f"weighted report score {ev['score']:g} within {duration(ev['window_ms'])} "
                f"(threshold {ev['threshold']:g}) from {ev['reporter_groups']} reporter groups; {reasons}")
    if trigger == "emulator":
        return f"signed in from a PC emulator (device {ev.get('device_id')})"
    if trigger == "virtual_number":
        if ev.get("virtual_number"):
            return "virtual phone number"
        return (f"phone number from {ev.get('phone_country')} (home {ev.get('home_country')}) "
                f"the carrier could not verify")
    if trigger == "tainted_device":
        others = ", ".join(ev.get("other_accounts", [])[:3])
        return f"device {ev.get('device_id')} was used by flooded spammer(s) {others}"
    if trigger == "ban_evasion":
        if "evaded_by" in ev:
            return f"{ev['evaded_by']} used this account's device {ev.get('device_id')} (evasion)"
        others = ", ".join(ev.get("other_accounts", [])[:3])
        return f"uses device {ev.get('device_id')} of restricted account(s) {others}"
    if trigger == "reporter_penalty":
        return (f"strike {ev.get('strike')}: {ev.get('overturned_in_horizon')} overturned reports "
                f"in 90 days")
    if trigger == "auto_quiet":
        return f"nothing unusual since {when(ev.get('last_signal_at'))}"
    return ", ".join(f"{k}={v}" for k, v in ev.items() if k != "sample_event_ids")


def describe(d: dict[str, Any]) -> str:
    """A decision as one line plus indented evidence lines."""
    head = f"#{d['seq']} {when(d['at'])}  {d['type']}"
    if d["type"] in ("restricted", "extended"):
        head += f"  level {d['level']}  scopes {','.join(d['scopes'])}  lifts {when(d['lift_at'])}"
    if d.get("reason"):
        head += f"  ({d['reason']})"
    if d.get("actor"):
        head += f"  by {d['actor']}"
    if d.get("appeal_allowed_at"):
        head += f"  appeal possible from {when(d['appeal_allowed_at'])}"
    lines = [head]
    for trigger, ev in (d.get("evidence") or {}).items():
        if isinstance(ev, dict):
            lines.append(f"    {trigger}: {evidence_line(trigger, ev)}")
    return "\n".join(lines)
