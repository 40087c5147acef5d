"""``python -m runstore``: the command line."""

from .cli import run

run()
