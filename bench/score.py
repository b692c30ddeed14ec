"""Score `warden replay` decisions against `warden simulate` ground-truth labels.

    python bench/score.py DECISIONS.jsonl LABELS.jsonl [--json]

An account counts as restricted when it has a `restricted` decision whose
reason is not `manual` (operator restrictions issued by the simulator's own
moderation commands are not detections). A trigger counts as detected for an
account when it appears in any non-manual `restricted` or `extended`
decision of that account. Ratios with an empty denominator are null.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

FP_SAMPLE = 10


def _lines(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as fh:
        for raw in fh:
            raw = raw.strip()
            if raw:
                obj = orjson.loads(raw)
                if isinstance(obj, dict):
                    yield obj


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def detections(decisions_path: str | Path) -> tuple[set[str], dict[str, set[str]]]:
    """(restricted accounts, triggers seen per account) from a decision log."""
    restricted: set[str] = set()
    triggers: dict[str, set[str]] = defaultdict(set)
    for d in _lines(decisions_path):
        kind, account = d.get("type"), d.get("account_id")
        if kind not in ("restricted", "extended") or d.get("reason") == "manual" \
                or not isinstance(account, str):
            continue
        if kind == "restricted":
            restricted.add(account)
        triggers[account].update(d.get("triggers") or ())
    return restricted, triggers


def score(decisions_path: str | Path, labels_path: str | Path) -> dict[str, Any]:
    """Per-trigger recall, overall precision/recall, brigade safety, false positives."""
    restricted, fired = detections(decisions_path)
    labels = {row["account_id"]: row for row in _lines(labels_path)}
    should = {a for a, row in labels.items() if row.get("should_restrict")}
    per_trigger: dict[str, dict[str, Any]] = {}
    expected: dict[str, list[str]] = defaultdict(list)
    for account, row in labels.items():
        for trigger in row.get("expected_triggers") or ():
            expected[trigger].append(account)
    for trigger in sorted(expected):
        accounts = expected[trigger]
        hit = sum(1 for a in accounts if a in restricted and trigger in fired.get(a, ()))
        per_trigger[trigger] = {"expected": len(accounts), "detected": hit,
                                "recall": _ratio(hit, len(accounts))}
    true_pos = restricted & should
    false_pos = sorted(restricted - should)
    fp_by_label: dict[str, list[str]] = defaultdict(list)
    for account in false_pos:
        label = labels[account]["label"] if account in labels else "(unlabelled)"
        fp_by_label[label].append(account)
    targets = [a for a, row in labels.items() if row.get("label") == "brigade_target"]
    per_label: dict[str, dict[str, int]] = {}
    for label, n in sorted(Counter(str(row.get("label")) for row in labels.values()).items()):
        hit = sum(1 for a, row in labels.items() if row.get("label") == label and a in restricted)
        per_label[label] = {"accounts": n, "restricted": hit}
    return {
        "accounts": len(labels),
        "restricted": len(restricted),
        "should_restrict": len(should),
        "true_positives": len(true_pos),
        "precision": _ratio(len(true_pos), len(restricted)),
        "recall": _ratio(len(true_pos), len(should)),
        "brigade_target_precision": _ratio(sum(1 for a in targets if a not in restricted),
                                           len(targets)),
        "per_trigger": per_trigger,
        "per_label": per_label,
        "false_positives": {label: {"count": len(accs), "sample": accs[:FP_SAMPLE]}
                            for label, accs in sorted(fp_by_label.items())},
        "missed": len(should - restricted),
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render(result: dict[str, Any]) -> str:
    rows = [f"{'trigger':<22}{'expected':>10}{'detected':>10}{'recall':>8}"]
    for trigger, r in result["per_trigger"].items():
        rows.append(f"{trigger:<22}{r['expected']:>10}{r['detected']:>10}{_fmt(r['recall']):>8}")
    rows += ["", f"{'label':<22}{'accounts':>10}{'restricted':>12}"]
    for label, r in result["per_label"].items():
        rows.append(f"{label:<22}{r['accounts']:>10}{r['restricted']:>12}")
    rows += [
        "",
        f"precision {_fmt(result['precision'])}  ({result['true_positives']} of "
        f"{result['restricted']} restricted accounts should be)",
        f"recall    {_fmt(result['recall'])}  ({result['true_positives']} of "
        f"{result['should_restrict']} accounts that should be; {result['missed']} missed)",
        f"brigade-target precision {_fmt(result['brigade_target_precision'])}"
        "  (share of brigade targets left unrestricted; must be 1.000)",
    ]
    if result["false_positives"]:
        rows.append("false positives by label:")
        for label, fp in result["false_positives"].items():
            rows.append(f"  {label:<20}{fp['count']:>6}  e.g. {', '.join(fp['sample'][:5])}")
    else:
        rows.append("false positives: none")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("decisions", help="decisions JSONL (`warden replay` output)")
    parser.add_argument("labels", help="labels JSONL (`warden simulate --labels`)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = score(args.decisions, args.labels)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
