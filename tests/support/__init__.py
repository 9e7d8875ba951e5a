"""Test support: scratch repositories, the CLI in-process, bundles and agents. Not shipped."""
