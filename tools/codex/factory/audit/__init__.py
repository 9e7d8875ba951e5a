"""Audit: the pure fold of a run's events into its state, the disk and anchor checks, replay, the
event renderer, ``watch`` and the ``ledger`` views.

May import: ``errors``, ``records``, ``core``, ``infra``, ``ledger``, ``run``, ``loop``.
"""
