"""The import structure of the package: a house read from the ground floor up.

Rooms are the top-level modules and packages of ``singleshot`` (``boxes``, ``predict``, ...); an arrow is an import,
at module level or inside a function. The tests hold the structure the README describes: no import circle (between
rooms, or between files), at most :data:`MAX_FLOORS` floors, config machinery on the ground floor, ``predict`` and
``serve`` never using the engine, and no import inside a function unless it keeps an optional dependency optional
or defers a slow one, saying so in a comment.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "singleshot"
MAX_FLOORS = 11


@cache
def _modules() -> dict[str, Path]:
    """``singleshot.x.y`` -> file."""
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _resolve(target: str) -> str | None:
    """The module an import of ``target`` (a module, or a name inside one) loads."""
    while target and target not in _modules():
        target = target.rpartition(".")[0]
    return target or None


@cache
def _imports() -> tuple[tuple[str, str, int, bool], ...]:
    """Every singleshot-internal and external import: ``(importer, imported, line, inside a function)``."""
    found = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        nested = {id(n) for f in functions for n in ast.walk(f)}
        for node in ast.walk(tree):
            found += [(name, t, node.lineno, id(node) in nested) for t in _targets(node)]
    return tuple(found)


def _targets(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [f"{node.module}.{a.name}" for a in node.names]
    return []


def _edges(rooms: bool) -> set[tuple[str, str]]:
    edges = set()
    for importer, target, _, _ in _imports():
        imported = _resolve(target) if target.startswith("singleshot") else None
        if imported is None or imported == importer:
            continue
        a, b = (_room(importer), _room(imported)) if rooms else (importer, imported)
        if a and b and a != b:
            edges.add((a, b))
    return edges


def _room(module: str) -> str | None:
    """The top-level module or package of ``module`` (None for the package root, the public facade)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def floors(edges: set[tuple[str, str]]) -> dict[str, int]:
    """Each node's floor: 1 for a node importing no other, else one above the highest node it imports.

    Raises:
        ValueError: an import circle (the message lists it).
    """
    out: dict[str, int] = {}

    def floor(node: str, path: tuple[str, ...]) -> int:
        if node in path:
            raise ValueError("import circle: " + " -> ".join((*path[path.index(node) :], node)))
        if node not in out:
            out[node] = 1 + max((floor(b, (*path, node)) for a, b in edges if a == node), default=0)
        return out[node]

    for a, b in sorted(edges):
        floor(a, ())
        floor(b, ())
    return out


def test_floors_of_a_hand_made_graph() -> None:
    assert floors({("c", "b"), ("b", "a"), ("c", "a")}) == {"a": 1, "b": 2, "c": 3}
    with pytest.raises(ValueError, match="import circle: a -> b -> a"):
        floors({("a", "b"), ("b", "a")})


def test_no_import_circle_between_rooms_or_files() -> None:
    floors(_edges(rooms=False))  # raises on a circle between files, inside a package included
    floors(_edges(rooms=True))


def test_the_house_has_at_most_eleven_floors_with_config_on_the_ground() -> None:
    levels = floors(_edges(rooms=True))
    assert max(levels.values()) <= MAX_FLOORS, levels
    assert levels["config"] == 1 and levels["cli"] == max(levels.values())
    # every room but the command line sits below it: nothing imports cli
    assert not [a for a, b in _edges(rooms=True) if b == "cli"]


ONE_WAY = [  # (room, a room it must never import)
    *[("predict", r) for r in ("engine", "evaluation", "deploy", "serve")],
    *[(r, "engine") for r in ("evaluation", "export", "deploy", "serve")],
    *[("export", r) for r in ("predict", "evaluation")],  # files are written below what runs and checks them
    ("weights", "convert"),
    ("config", "predict"),
]


@pytest.mark.parametrize(("room", "never"), ONE_WAY)
def test_one_way_dependencies(room: str, never: str) -> None:
    assert (room, never) not in _edges(rooms=True)


def test_imports_inside_functions_are_only_of_optional_or_slow_dependencies_and_say_why() -> None:
    for importer, target, line, inside in _imports():
        if not inside:
            continue
        assert not target.startswith("singleshot"), f"{importer}:{line} imports {target} inside a function"
        lines = _modules()[importer].read_text().splitlines()
        context = " ".join(lines[max(0, line - 4) : line])
        assert "#" in context, f"{importer}:{line}: say why {target} is imported inside a function"


def test_the_readme_table_names_every_room_on_its_floor() -> None:
    readme = (SRC.parents[1] / "README.md").read_text()
    listed = {}
    for floor, names in re.findall(r"^\| (\d+) \| ((?:`singleshot\.\w+`(?:, )?)+) \|", readme, flags=re.MULTILINE):
        listed.update({name: int(floor) for name in re.findall(r"`singleshot\.(\w+)`", names)})
    assert listed == floors(_edges(rooms=True))
