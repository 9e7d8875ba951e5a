"""The command line: parse, call the library, render, exit code.

May import: every layer.
"""

from tools.codex.factory.cli.commands import cli, main

__all__ = ["cli", "main"]
