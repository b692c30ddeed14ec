"""Redis read model of `account-decisions` (SPEC "Redis read model").

view.py        the contract (ReadModel), the pure fold, InMemoryView, the state digest
keys.py        key layout and Cluster hash tags
apply.lua      applies one decision atomically and idempotently
redis_view.py  RedisView: pipelined script calls plus the active-restriction zsets
rebuild.py     namespaces, the live pointer, rebuild-verify-switch
client.py      WardenClient / SyncWardenClient for downstream services
"""
