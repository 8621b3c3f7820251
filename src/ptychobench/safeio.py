"""One safe reader per kind of file a user hands the tool: YAML, JSON and images.

Each turns what a hostile or broken file does to the plain library call (a YAML alias
bomb expanded when settings are hashed, JSON nested deeper than Python's recursion limit,
a PNG header claiming 20000 x 20000 pixels, a folder where a file belongs, bytes that are
not UTF-8) into one error of the caller's kind that names the file and what is wrong.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import yaml

from .errors import PtychoBenchError

#: a config, export or split file larger than this is refused before it is read
MAX_TEXT_BYTES = 256 * 1024 * 1024
#: the most nodes a YAML document may expand to once its aliases are followed
MAX_YAML_NODES = 100_000
#: nesting deeper than this is not data this tool writes or reads
MAX_DEPTH = 100
#: images larger than this (pixels) are refused from their header, before decoding
MAX_IMAGE_PIXELS = 64 * 1024 * 1024


def read_text(path: Path | str, error: type[PtychoBenchError], what: str = "file") -> str:
    """A UTF-8 text file, or ``error`` naming the file (missing, a folder, too large, not UTF-8)."""
    p = Path(path)
    if p.is_dir():
        raise error(f"{p}: is a folder; expected a {what}")
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise error(f"{p}: no such {what}") from None
    if size > MAX_TEXT_BYTES:
        raise error(f"{p}: {size / 2**20:.0f} MiB; a {what} over {MAX_TEXT_BYTES // 2**20} MiB is refused")
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{p}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None


def _too_deep(obj: Any, limit: int = MAX_DEPTH) -> bool:
    stack = [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


def loads_json(text: str, where: str, error: type[PtychoBenchError]) -> Any:
    """``json.loads`` with malformed, too-deep and recursion-crashing input as ``error``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply (over {MAX_DEPTH} levels)") from None
    if _too_deep(data):
        raise error(f"{where}: JSON nested too deeply (over {MAX_DEPTH} levels)")
    return data


def read_json(path: Path | str, error: type[PtychoBenchError], what: str = "JSON file") -> Any:
    """A JSON file through :func:`read_text` and :func:`loads_json`."""
    return loads_json(read_text(path, error, what), str(path), error)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader; aliases are followed, their expansion is counted after."""


def _expanded_nodes(obj: Any) -> int:
    """How many nodes ``obj`` has once every shared (aliased) part is written out in full;
    a cycle counts as unbounded. Linear in the distinct objects (sizes are memoised)."""
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:
            return MAX_YAML_NODES + 1
        busy.add(key)
        children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_YAML_NODES:
                break
        busy.discard(key)
        sizes[key] = total
        return total

    return size(obj)


def loads_yaml(text: str, where: str, error: type[PtychoBenchError]) -> Any:
    """One YAML document, safely: no Python objects, nesting bounded, and aliases allowed
    only while the document they expand to stays under :data:`MAX_YAML_NODES` nodes (a
    651-byte alias bomb expanded to 5.6 GB when its settings were hashed)."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise error(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise error(f"{where}: YAML nested too deeply (over {MAX_DEPTH} levels)") from None
    try:
        nodes = _expanded_nodes(data)
    except RecursionError:
        raise error(f"{where}: YAML nested too deeply (over {MAX_DEPTH} levels)") from None
    if nodes > MAX_YAML_NODES:
        raise error(
            f"{where}: YAML expands to over {MAX_YAML_NODES} values once its aliases (*name) are followed; "
            "write the values out or use fewer aliases"
        )
    if _too_deep(data):
        raise error(f"{where}: YAML nested too deeply (over {MAX_DEPTH} levels)")
    return data


def read_yaml(path: Path | str, error: type[PtychoBenchError], what: str = "YAML file") -> Any:
    """A YAML file through :func:`read_text` and :func:`loads_yaml`."""
    return loads_yaml(read_text(path, error, what), str(path), error)


def check_image_header(
    path: Path | str, where: str, error: type[PtychoBenchError], what: str | None = None
) -> tuple[int, int]:
    """The image's (width, height) from its header, refusing one over
    :data:`MAX_IMAGE_PIXELS` (a decompression bomb) before a pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    what = what or f"image {path}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise error(f"{where}: {what} claims too many pixels (a decompression bomb?); refused: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise error(f"{where}: {what} is unreadable ({path}): {e}") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise error(
            f"{where}: {what} is {width} x {height} pixels; over {MAX_IMAGE_PIXELS // 2**20} Mpx is refused: {path}"
        )
    return width, height
