"""Audit: the fold of events into run state, disk checks, anchors, replay and watch.

May import: ``errors``, ``records``, ``core``, ``infra``, ``ledger``, ``run``.
"""
