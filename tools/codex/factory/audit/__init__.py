"""Audit: the pure fold of a run's events into its state, the disk and anchor checks, replay, the
one-line event description, ``watch`` and the ``ledger`` commands (data; the CLI words them).

May import: ``errors``, ``records``, ``core``, ``infra``, ``ledger``, ``run``, ``loop``.
"""
