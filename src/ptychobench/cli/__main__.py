"""``python -m ptychobench.cli``."""

from . import app

app()
