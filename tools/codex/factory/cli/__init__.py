"""The command line: parse, call the library, render, exit code.

May import: ``errors``, ``records``, ``core``, ``infra``, ``ledger``, ``run``, ``loop``, ``audit``,
``ops``, ``api``.
"""

from tools.codex.factory.cli.commands import cli, main

__all__ = ["cli", "main"]
