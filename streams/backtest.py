"""`warden replay --compare OLD.toml NEW.toml INPUT`: a policy change, evaluated on history.

Both policies run over the same input in one pass; the report lists the
accounts that would gain, lose or change restrictions under the new policy,
and restrictions per trigger under each, so a threshold change is judged on
real traffic before it goes live.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from detectors.config import Policy
from detectors.decisions import Decision
from detectors.engine import Engine
from streams.replay import parse_line
from detectors.events import Rejected


@dataclass
class Outcome:
    """What one policy did to one account over the input."""

    restricted: int = 0                      # automatic restrictions (not manual)
    triggers: set[str] = field(default_factory=set)
    max_level: int = 0

    def key(self) -> tuple[int, tuple[str, ...], int]:
        return self.restricted, tuple(sorted(self.triggers)), self.max_level


def _fold(outcomes: dict[str, Outcome], decisions: list[Decision]) -> None:
    for d in decisions:
        if d.type not in ("restricted", "extended") or d.reason == "manual":
            continue
        o = outcomes.setdefault(d.account_id, Outcome())
        if d.type == "restricted":
            o.restricted += 1
            o.max_level = max(o.max_level, d.level)
        o.triggers.update(t for t in d.triggers if t != "reporter_penalty")


def compare(lines: Any, old: Policy, new: Policy, *, until_ms: int | None = None) -> dict[str, Any]:
    engines = (Engine(old), Engine(new))
    outcomes: tuple[dict[str, Outcome], dict[str, Outcome]] = ({}, {})
    events = rejected = 0
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        _, parsed = parse_line(line)
        if isinstance(parsed, Rejected):
            rejected += 1
            continue
        events += 1
        for engine, out in zip(engines, outcomes, strict=True):
            _fold(out, engine.process(parsed).decisions)
    if until_ms is not None:
        for engine, out in zip(engines, outcomes, strict=True):
            _fold(out, engine.advance(until_ms))
    before, after = outcomes
    gained = sorted(set(after) - set(before))
    lost = sorted(set(before) - set(after))
    changed = sorted(a for a in set(before) & set(after) if before[a].key() != after[a].key())
    per_trigger: dict[str, dict[str, int]] = {}
    for name, side in (("old", before), ("new", after)):
        counts: Counter[str] = Counter(t for o in side.values() for t in o.triggers)
        for trigger, n in counts.items():
            per_trigger.setdefault(trigger, {"old": 0, "new": 0})[name] = n
    return {
        "old_policy": old.version, "new_policy": new.version, "events": events,
        "rejected_lines": rejected,
        "restricted_accounts": {"old": len(before), "new": len(after)},
        "gained": gained, "lost": lost, "changed": changed,
        "per_trigger": dict(sorted(per_trigger.items())),
        "details": {a: {"old": _view(before.get(a)), "new": _view(after.get(a))}
                    for a in [*gained, *lost, *changed]},
    }


def _view(o: Outcome | None) -> dict[str, Any] | None:
    if o is None:
        return None
    return {"restrictions": o.restricted, "triggers": sorted(o.triggers), "max_level": o.max_level}


def render(report: dict[str, Any], *, limit: int = 20) -> str:
    r = report
    out = [
        f"Back-test over {r['events']:,} events: policy {r['old_policy']} -> {r['new_policy']}",
        f"Accounts restricted: {r['restricted_accounts']['old']} -> {r['restricted_accounts']['new']}"
        f"  (gain {len(r['gained'])}, lose {len(r['lost'])}, change {len(r['changed'])})",
        "",
        f"{'trigger':<22}{'old':>8}{'new':>8}{'delta':>8}",
    ]
    for trigger, c in r["per_trigger"].items():
        out.append(f"{trigger:<22}{c['old']:>8}{c['new']:>8}{c['new'] - c['old']:>+8}")
    for title, accounts in (("Would gain a restriction", r["gained"]),
                            ("Would lose their restriction", r["lost"]),
                            ("Would be restricted differently", r["changed"])):
        if not accounts:
            continue
        out += ["", f"{title} ({len(accounts)}):"]
        for account in accounts[:limit]:
            d = r["details"][account]
            out.append(f"  {account:<24} old {_short(d['old'])}  ->  new {_short(d['new'])}")
        if len(accounts) > limit:
            out.append(f"  ... {len(accounts) - limit} more (--json for all)")
    return "\n".join(out)


def _short(view: dict[str, Any] | None) -> str:
    if view is None:
        return "not restricted"
    return f"{view['restrictions']}x {','.join(view['triggers'])} (max level {view['max_level']})"


def run(args: Any, source: IO[bytes], old: Policy, new: Policy) -> int:
    report = compare(iter(source), old, new, until_ms=args.until)
    out = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")  # noqa: SIM115
    try:
        if args.json:
            out.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        else:
            out.write(render(report).encode() + b"\n")
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    return 0
