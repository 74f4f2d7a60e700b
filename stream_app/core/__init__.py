"""The loyalty core: rules, ledger, tiers and the engine, as plain deterministic Python.

Nothing here does I/O or imports Faust, aiokafka, redis, Prometheus, or anything from `topics/`,
`tables/` or `agents/` (tests/unit/core/test_purity.py checks it); the clock is always an argument.
"""
