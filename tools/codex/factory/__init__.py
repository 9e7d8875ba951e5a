"""Multi-Codex Factory: a deterministic, ledger-based integrator for parallel coding workers."""

__version__ = "0.1.0"
