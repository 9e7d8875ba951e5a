"""Operator checks: doctor, self-test and the config view.

May import: every layer below ``cli``.
"""
