"""Typed records: plan, manifest, bundle facts, findings, events, statuses.

May import: ``errors`` only.
"""
