"""Key layout: hash tags keep an account's keys on one Cluster slot, for any account id."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from projections.keys import Keys, account_tag, glob_escape

KEYS = Keys("warden", "g1")
ODD_IDS = st.one_of(st.text(alphabet=st.sampled_from("{}~:a7d😀"), max_size=6), st.text())


@given(ODD_IDS)
def test_an_accounts_status_and_history_share_a_cluster_slot(account_id):
    acct, hist = KEYS.acct(account_id), KEYS.hist(account_id)
    assert key_slot(acct.encode()) == key_slot(hist.encode())
    # and the slot is decided by the account, not by the prefix or namespace
    assert key_slot(acct.encode()) == key_slot(Keys("other", "g9").acct(account_id).encode())


@given(ODD_IDS, ODD_IDS)
def test_distinct_accounts_get_distinct_keys(a, b):
    if a != b:
        assert KEYS.acct(a) != KEYS.acct(b)


@pytest.mark.parametrize(("account_id", "tag"), [
    ("acct-42", "acct-42"),
    ("a{b", "a{b"),               # a "{" inside the tag is harmless
    ("a:b", "a:b"),
    ("}x", "~7d78"),              # would give an empty tag: hashed whole, slots split
    ("a}b", "~617d62"),           # would end the tag early
    ("~7d", "~7e3764"),           # raw ids never start with "~", so no escaped id collides
    ("", "~"),
])
def test_tags_escape_only_ids_that_would_break_the_hash_tag(account_id, tag):
    assert account_tag(account_id) == tag
    assert KEYS.acct(account_id) == f"warden:g1:acct:{{{tag}}}"


@pytest.mark.parametrize("prefix", ["", "a{b", "c}"])
def test_prefixes_with_braces_are_refused(prefix):
    with pytest.raises(ValueError, match="prefix"):
        Keys(prefix, "g1")


@pytest.mark.parametrize("namespace", ["", "current", "generation", "g:1", "g*", "g{1}"])
def test_namespaces_are_plain_names(namespace):
    with pytest.raises(ValueError, match="namespace"):
        Keys("warden", namespace)


def test_scan_patterns_match_the_prefix_literally():
    assert glob_escape("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"
    assert Keys("p*", "g1").all_pattern == "p\\*:g1:*"
