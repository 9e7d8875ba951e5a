"""The convergence loop: the sealed holdout, scenario evaluation, the crank and its branch.

May import: ``errors``, ``records``, ``core``, ``infra``, ``ledger``, ``run``.
"""
