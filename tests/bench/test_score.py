"""bench/score.py: precision and recall from a tiny hand-made decision log and label file."""

from __future__ import annotations

import sys
from typing import Any

import orjson
import pytest
from bench_loader import load_bench

score_mod = load_bench("score")


def _decision(account: str, seq: int, type_: str, triggers: list[str], reason: str | None = None,
              ) -> dict[str, Any]:
    return {"decision_id": f"{account}:{seq}", "account_id": account, "seq": seq, "type": type_,
            "at": 1767225600000 + seq, "scopes": [], "triggers": triggers, "level": 1,
            "lift_at": None, "reason": reason, "actor": None, "evidence": {},
            "policy_version": "test"}


def _label(account: str, label: str, triggers: list[str], should: bool) -> dict[str, Any]:
    return {"account_id": account, "label": label, "expected_triggers": triggers,
            "should_restrict": should}


LABELS = [
    _label("a1", "friend_spammer", ["friend_add_burst"], True),   # detected
    _label("a2", "friend_spammer", ["friend_add_burst"], True),   # restricted, wrong trigger
    _label("a3", "spammer", ["report_flood"], True),              # missed
    _label("a4", "repeat_offender", ["friend_add_burst", "room_creation_burst"], True),
    _label("n1", "normal", [], False),                            # false positive
    _label("n2", "normal", [], False),                            # manual only: not a detection
    _label("b1", "brigade_target", [], False),                    # false positive, brigade
    _label("b2", "brigade_target", [], False),
]
DECISIONS = [
    _decision("a1", 1, "restricted", ["friend_add_burst"]),
    _decision("a2", 1, "restricted", ["emulator"]),
    _decision("a4", 1, "restricted", ["friend_add_burst"]),
    _decision("a4", 2, "lifted", [], "manual"),
    _decision("a4", 3, "restricted", ["emulator"]),
    _decision("a4", 4, "extended", ["room_creation_burst"]),     # extended counts for triggers
    _decision("a3", 1, "appeal_rejected", [], "not_restricted"),
    _decision("n1", 1, "restricted", ["virtual_number"]),
    _decision("n2", 1, "restricted", [], "manual"),
    _decision("n2", 2, "extended", ["report_flood"], "manual"),
    _decision("b1", 1, "restricted", ["report_flood"]),
    _decision("x9", 1, "restricted", ["emulator"]),              # not in the labels
]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    decisions, labels = tmp_path / "decisions.jsonl", tmp_path / "labels.jsonl"
    decisions.write_bytes(b"\n".join(orjson.dumps(d) for d in DECISIONS) + b"\n\n")
    labels.write_bytes(b"\n".join(orjson.dumps(row) for row in LABELS) + b"\n")
    return decisions, labels


def test_precision_recall_and_brigade_precision_are_exact(files) -> None:
    result = score_mod.score(*files)
    assert result["restricted"] == 6  # a1 a2 a4 n1 b1 x9; n2 only manually
    assert result["true_positives"] == 3
    assert result["precision"] == pytest.approx(3 / 6)
    assert result["recall"] == pytest.approx(3 / 4)
    assert result["missed"] == 1
    assert result["brigade_target_precision"] == pytest.approx(1 / 2)


def test_per_trigger_recall_needs_the_expected_trigger(files) -> None:
    per = score_mod.score(*files)["per_trigger"]
    assert per["friend_add_burst"] == {"expected": 3, "detected": 2, "recall": pytest.approx(2 / 3)}
    assert per["room_creation_burst"] == {"expected": 1, "detected": 1, "recall": 1.0}
    assert per["report_flood"] == {"expected": 1, "detected": 0, "recall": 0.0}
    assert set(per) == {"friend_add_burst", "room_creation_burst", "report_flood"}


def test_false_positives_are_listed_by_label(files) -> None:
    fps = score_mod.score(*files)["false_positives"]
    assert fps == {"(unlabelled)": {"count": 1, "sample": ["x9"]},
                   "brigade_target": {"count": 1, "sample": ["b1"]},
                   "normal": {"count": 1, "sample": ["n1"]}}


def test_empty_inputs_give_null_ratios(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    result = score_mod.score(empty, empty)
    assert result["precision"] is None and result["recall"] is None
    assert result["brigade_target_precision"] is None and result["per_trigger"] == {}


def test_cli_prints_a_table_or_json(files, capsys) -> None:
    assert score_mod.main([str(files[0]), str(files[1])]) == 0
    table = capsys.readouterr().out
    assert "friend_add_burst" in table and "precision 0.500" in table
    assert "brigade-target precision 0.500" in table and "normal" in table
    assert score_mod.main([str(files[0]), str(files[1]), "--json"]) == 0
    parsed = orjson.loads(capsys.readouterr().out)
    assert parsed["recall"] == pytest.approx(0.75)
