"""Finding a record's image in a folder the user names (``import --images``,
``annotate import --images``), the one lookup both importers use.

Released records and Label Studio tasks name their image by a path whose prefix is
foreign (``/data/upload/3/...``), so only its tail can be matched. A file name alone is
not enough when two sub-folders hold the same name (``images/a/x.png``,
``images/b/x.png``): the lookup then takes the file whose path below the folder matches
the most trailing parts of the reference, and when that still leaves more than one it
fails and names them, never silently giving two samples one picture.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from .dataset import inside

#: Label Studio prefixes uploaded file names with 8 hex digits and a dash
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


@dataclass
class ImageIndex:
    """The files under ``root`` by name, and by name without an upload prefix."""

    root: Path
    by_name: dict[str, list[Path]] = field(default_factory=dict)
    by_stripped: dict[str, list[Path]] = field(default_factory=dict)

    @classmethod
    def of(cls, root: Path | str, error: type[DatasetError] = DatasetError) -> ImageIndex:
        root = Path(root)
        if not root.is_dir():
            raise error(f"{root}: the images folder does not exist")
        index = cls(root)
        real_root = root.resolve()
        for p in sorted(root.rglob("*")):
            if not p.is_file():
                continue
            if not inside(p.resolve(), real_root):
                raise error(f"{p}: a link to {p.resolve()}, outside the images folder {root}; copy the file in instead")
            index.by_name.setdefault(p.name, []).append(p)
            index.by_stripped.setdefault(UPLOAD_PREFIX.sub("", p.name), []).append(p)
        return index

    def find(self, refs: list[str], where: str, error: type[DatasetError] = DatasetError) -> Path | None:
        """The one file a reference (the first of ``refs`` that matches) points at; None
        when no name matches; ``error`` when several files fit equally well."""
        for ref in refs:
            parts = [x for x in ref.replace("\\", "/").split("/") if x]
            if not parts:
                continue
            candidates = self.by_name.get(parts[-1]) or self.by_stripped.get(UPLOAD_PREFIX.sub("", parts[-1]), [])
            if len(candidates) == 1:
                return candidates[0]
            if not candidates:
                continue
            best = _best_by_suffix(candidates, parts, self.root)
            if best is not None:
                return best
            shown = ", ".join(str(c.relative_to(self.root)) for c in candidates[:4])
            raise error(
                f"{where}: image {ref!r} matches several files under {self.root} ({shown}); "
                "give each image a unique name or keep the sub-folders in the reference"
            )
        return None


def _best_by_suffix(candidates: list[Path], parts: list[str], root: Path) -> Path | None:
    """The candidate sharing the most trailing path parts with the reference, if unique."""

    def shared(p: Path) -> int:
        mine = p.relative_to(root).parts
        n = 0
        while n < min(len(mine), len(parts)) and mine[-1 - n] == parts[-1 - n]:
            n += 1
        return n

    scores = sorted(((shared(c), c) for c in candidates), key=lambda x: -x[0])
    if scores[0][0] > 1 and (len(scores) == 1 or scores[1][0] < scores[0][0]):
        return scores[0][1]
    return None
