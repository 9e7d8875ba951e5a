"""Operator checks: doctor, self-test and the config view.

May import: ``errors``, ``records``, ``core``, ``infra``, ``ledger``, ``run``, ``loop``, ``audit``.
"""
