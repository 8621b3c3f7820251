"""The package's shape: imports run down the layers of the flow, never back up, and no
module imports itself through others. A new module must be placed in a layer here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "src" / "ptychobench"

#: the flow, bottom to top; a module may import its own layer's package or lower layers
LAYERS: dict[str, int] = {
    "errors": 0,
    "paths": 1,
    "names": 1,
    "files": 1,
    "secrets": 0,
    "safeio": 1,
    "tasks": 2,
    "data": 3,
    "sim": 4,
    "models": 4,
    "strategies": 5,
    "eval": 6,
    "run": 7,
    "report": 8,
    "diagnose": 9,
    "annotate": 9,
    "loop": 9,
    "api": 10,
    "realdata": 10,
    "labelling": 10,
    "cli": 11,
    "__init__": 10,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every ptychobench module ``path`` imports, at module level or inside functions;
    imports under ``if TYPE_CHECKING:`` are annotations, not arrows, and are left out."""
    me = _module_name(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
        for n in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level > 1 else package
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.startswith("ptychobench"):
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:  # "from . import x" may name a submodule
                sub = [*target, alias.name]
                found.add(
                    ".".join(sub)
                    if (PKG.joinpath(*sub).with_suffix(".py").exists() or PKG.joinpath(*sub).is_dir())
                    else ".".join(target)
                )
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("ptychobench.")}
    return {f for f in found if f}


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}
GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _layer(module: str) -> int:
    top = module.split(".")[0]
    assert top in LAYERS, f"module {module} is in no layer: add it to LAYERS in tests/test_layout.py"
    return LAYERS[top]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_the_layers(module):
    me = _layer(module)
    for target in GRAPH[module]:
        if target.split(".")[0] == module.split(".")[0]:
            continue  # within its own package
        assert _layer(target) <= me, (
            f"{module} (layer {me}) imports {target} (layer {_layer(target)}): an arrow back up"
        )
        if _layer(target) == me:
            pytest.fail(f"{module} imports {target}, a sibling package of the same layer")


def test_no_import_circles():
    def resolve(t: str) -> str | None:
        while t and t not in MODULES:
            t = t.rsplit(".", 1)[0] if "." in t else ""
        return t or None

    edges = {m: {r for t in ts if (r := resolve(t)) and r != m} for m, ts in GRAPH.items()}
    # a package's __init__ re-exporting its modules is not a circle with them
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in edges.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t) :] + [t]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if not state.get(t):
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if not state.get(m):
            visit(m)


def test_the_layer_check_sees_an_arrow_back_up(tmp_path):
    """The check itself works: a data module importing the runner is caught."""
    bad = PKG / "data" / "_layout_probe.py"
    bad.write_text("from ..run.runner import Runner\n")
    try:
        assert "run.runner" in _imports(bad) and _layer("run.runner") > _layer("data._layout_probe")
    finally:
        bad.unlink()


def test_no_folder_shares_a_modules_name():
    """A data folder named like the module beside it (``realdata/`` beside ``realdata.py``)
    makes two things answer to one name: the import finds the module, a reader the folder."""
    clashes = [
        str(d.relative_to(PKG))
        for d in PKG.rglob("*")
        if d.is_dir() and d.name != "__pycache__" and d.with_suffix(".py").is_file()
    ]
    assert not clashes, f"folders named like a module beside them: {clashes}"
