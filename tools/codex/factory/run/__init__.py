"""One run: context, config, the run handle, and the stages from preflight to clean.

May import: ``errors``, ``records``, ``core``, ``infra``, ``ledger``.
"""
