"""Pure rules and decisions: verdicts, overlaps, merge order, patch parsing (and how git would
report it), binary patch checks, globs, ID, path and name rules.

May import: ``errors``, ``records``. No I/O, no clock, no git.
"""
