"""Key layout of the Redis read model (SPEC "Redis read model"), shared by writer, rebuild, client.

    {prefix}:current                    live namespace name, e.g. "g3" (readers follow it)
    {prefix}:generation                 INCR counter that names fresh namespaces
    {prefix}:{ns}:acct:{<tag>}          status hash of one account
    {prefix}:{ns}:hist:{<tag>}          capped decision history, newest first (JSON per entry)
    {prefix}:{ns}:active                zset account_id -> lift_at ms (+inf = indefinite)
    {prefix}:{ns}:active:since          zset account_id -> start of the restriction ("newest")

Redis Cluster hashes only the text between the first "{" and the first "}" after it. Prefix and
namespace may not contain braces, so that "{" is always ours; `<tag>` is the account id itself
unless the id contains "}" (which would end the tag early, or leave it empty and split the two
per-account keys across slots) or starts with "~": then it is "~" + hex(UTF-8 id). No raw tag
starts with "~", so the id -> tag mapping stays injective. The two active zsets are not
per-account and cannot share a slot with the per-account keys; see redis_view.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAMESPACE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RESERVED = frozenset({"current", "generation"})
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def account_tag(account_id: str) -> str:
    """An account's Cluster hash tag: the id, or its escaped form when a brace would break it."""
    if "}" in account_id or account_id.startswith("~") or not account_id:
        return "~" + account_id.encode("utf-8").hex()
    return account_id


def glob_escape(text: str) -> str:
    """Escape SCAN MATCH specials so a prefix is matched literally."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def check_prefix(prefix: str) -> str:
    if not prefix or "{" in prefix or "}" in prefix:
        raise ValueError(f"prefix must be non-empty and brace-free, got {prefix!r}")
    return prefix


def check_namespace(namespace: str) -> str:
    if not _NAMESPACE.fullmatch(namespace) or namespace in _RESERVED:
        raise ValueError(
            f"namespace must match [A-Za-z0-9_-]{{1,64}} and not be current/generation, "
            f"got {namespace!r}"
        )
    return namespace


def pointer_key(prefix: str) -> str:
    """Where the live namespace name is stored."""
    return f"{check_prefix(prefix)}:current"


def generation_key(prefix: str) -> str:
    return f"{check_prefix(prefix)}:generation"


@dataclass(frozen=True, slots=True)
class Keys:
    """Every key of one namespace; construct once per view, it validates its parts."""

    prefix: str
    namespace: str

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        check_namespace(self.namespace)

    @property
    def base(self) -> str:
        return f"{self.prefix}:{self.namespace}"

    def acct(self, account_id: str) -> str:
        return f"{self.base}:acct:{{{account_tag(account_id)}}}"

    def hist(self, account_id: str) -> str:
        return f"{self.base}:hist:{{{account_tag(account_id)}}}"

    @property
    def active(self) -> str:
        return f"{self.base}:active"

    @property
    def active_since(self) -> str:
        return f"{self.base}:active:since"

    @property
    def acct_pattern(self) -> str:
        """SCAN MATCH pattern of every status hash in this namespace."""
        return f"{glob_escape(self.base)}:acct:*"

    @property
    def all_pattern(self) -> str:
        """SCAN MATCH pattern of every key in this namespace."""
        return f"{glob_escape(self.base)}:*"
