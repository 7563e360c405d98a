"""Subcommands of `affectline` that live in modules of their own.

Each module defines `add_parser(subparsers)` and `run(args) -> exit status`; `affectline.cli`
registers them in one table. `serve`, `db`, `classify` and `models` stay in `cli.py`.
"""
