"""Entry point for ``python -m tools.codex.factory``."""

from tools.codex.factory.cli.commands import main

if __name__ == "__main__":
    main()
