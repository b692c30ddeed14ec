"""detectors.config: defaults, overrides, errors that name the key, stable version."""

import pytest

from detectors.config import DEFAULT_POLICY, PolicyError, load_policy, policy_from_mapping


def test_defaults_match_the_spec():
    p = DEFAULT_POLICY
    assert (p.friend_add_burst.short_count, p.friend_add_burst.short_window_ms) == (30, 600_000)
    assert (p.friend_add_burst.long_count, p.friend_add_burst.long_window_ms) == (100, 86_400_000)
    assert (p.room_creation_burst.open_count, p.room_creation_burst.any_count) == (5, 20)
    assert p.report_flood.threshold == 5.0
    assert p.home_country == "KR"
    assert [p.quiet_ms(level) for level in (1, 2, 3, 4)] == [14 * 86_400_000, 28 * 86_400_000,
                                                             56 * 86_400_000, None]
    assert p.lifecycle.extend_step_ms == 3_600_000


def test_version_is_a_short_content_hash_stable_across_loads():
    assert len(DEFAULT_POLICY.version) == 8
    assert load_policy().version == DEFAULT_POLICY.version
    assert policy_from_mapping({"report_flood": {"threshold": 6.0}}).version != DEFAULT_POLICY.version


def test_a_file_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('home_country = "JP"\n[friend_add_burst]\nshort_count = 40\n')
    policy = load_policy(path)
    assert policy.home_country == "JP"
    assert policy.friend_add_burst.short_count == 40
    assert policy.friend_add_burst.long_count == 100


@pytest.mark.parametrize(("overrides", "message"), [
    ({"friend_add_burst": {"shrot_count": 3}}, "unknown policy key 'friend_add_burst.shrot_count'"),
    ({"friend_add_burst": {"short_count": -1}}, "'friend_add_burst.short_count' must be a positive"),
    ({"friend_add_burst": {"short_count": "30"}}, "'friend_add_burst.short_count' must be a positive"),
    ({"report_flood": {"scopes": ["fly"]}}, "'report_flood.scopes': 'fly' is not one of"),
    ({"home_country": "Korea"}, "'home_country' must be ISO 3166"),
    ({"lifecycle": 3}, "'lifecycle' must be a table"),
])
def test_invalid_policies_name_the_key(overrides, message):
    with pytest.raises(PolicyError, match=message.replace("(", r"\(")):
        policy_from_mapping(overrides)


def test_unreadable_or_invalid_toml_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[x\n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(bad)
