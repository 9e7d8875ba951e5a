"""The hash-chained ledger: line format and chain, the store, the run index, the run-bound recorder.

May import: ``errors``, ``records``, ``core``, ``infra``.
"""
