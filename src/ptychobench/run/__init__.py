"""The main job: a config (``config``), its grid of cells and shards (``grid``), and the
runner that executes them into the prediction store (``runner``)."""

from .config import Experiment, RunConfig, load_config, parse_config
from .grid import Cell, expand, parse_shard, shard_cells
from .runner import Runner

__all__ = [
    "Cell",
    "Experiment",
    "RunConfig",
    "Runner",
    "expand",
    "load_config",
    "parse_config",
    "parse_shard",
    "shard_cells",
]
