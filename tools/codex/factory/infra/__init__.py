"""Infrastructure: the clock, processes, git, the guarded writer, canonical JSON, schemas, locks.

May import: ``errors``, ``records``, ``core``.
"""
