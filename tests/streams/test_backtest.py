"""`warden replay --compare`: a policy change judged on history."""

from __future__ import annotations

import orjson

from streams import simulate
from streams.cli import main


def test_lowering_a_threshold_shows_who_would_gain_a_restriction(tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    with events.open("wb") as fh:
        simulate.write_events(simulate.generate(accounts=400, events=8000, seed=5, days=3), fh)
    old = tmp_path / "old.toml"
    old.write_text("")
    new = tmp_path / "new.toml"
    new.write_text("[friend_add_burst]\nshort_count = 8\nlong_count = 12\n")
    out = tmp_path / "report.json"
    assert main(["replay", "--compare", str(old), str(new), str(events), "--json", "--out", str(out)]) == 0
    report = orjson.loads(out.read_bytes())
    assert report["old_policy"] != report["new_policy"]
    assert report["gained"], "a much lower friend-add threshold must restrict more accounts"
    assert not report["lost"]
    counts = report["per_trigger"]["friend_add_burst"]
    assert counts["new"] > counts["old"]
    for account in report["gained"]:
        assert report["details"][account]["old"] is None
        assert "friend_add_burst" in report["details"][account]["new"]["triggers"]
    assert main(["replay", "--compare", str(old), str(old), str(events)]) == 0
    text = capsys.readouterr().out
    assert "gain 0, lose 0, change 0" in text


def test_an_invalid_policy_names_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[friend_add_burst]\nshrot_count = 3\n")
    events = tmp_path / "e.jsonl"
    events.write_text("")
    assert main(["replay", "--compare", str(bad), str(bad), str(events)]) == 2
    assert "shrot_count" in capsys.readouterr().err
