"""``flask`` commands: accounts, keys, and the long-running processes."""
from __future__ import annotations

import click
from flask import Flask


def init_app(app: Flask) -> None:
    pass
