"""The command line: the Typer app, its shared options, one module per command, process plumbing.

Importing this package is cheap; the app itself is in :mod:`mha_cli.cli.app`.
"""
