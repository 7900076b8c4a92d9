"""The rooms and the direction of their imports (README, "How a query flows"): every import in the
project's packages, module level or inside a function, goes to its own room or to one the table
allows, so no two rooms import each other; and every package imports under its folder's name."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# room -> the rooms it may import besides itself (plugin/ is data: the Java processor's sources)
ALLOWED = {
    "reranker": set(),
    "training": {"reranker"},
    "engine": {"reranker", "plugin"},
    "apps": {"engine", "reranker"},
    "lref": {"apps", "engine", "reranker", "training"},
    "plugin": set(),
}


def imported_rooms(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            rooms |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            rooms.add(node.module.split(".")[0])
    return rooms & set(ALLOWED)


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_a_room_imports_only_the_rooms_below_it(room):
    files = sorted((ROOT / room).rglob("*.py"))
    assert files
    wrong = {f"{path.relative_to(ROOT)} imports {other}"
             for path in files for other in imported_rooms(path) - ALLOWED[room] - {room}}
    assert not wrong, sorted(wrong)


def test_the_rooms_import_as_their_folders_are_named():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    renamed = tool.get("package-dir", {})
    # the two data-only folders: models/ (the shipped judges), opensearch/ (the JSON we install)
    assert renamed == {"lref_models": "models", "lref_opensearch": "opensearch"}, renamed
    assert not (ROOT / "opensearch" / "__init__.py").exists()  # never shadows opensearch-protobufs' package
    assert [p.name for p in (ROOT / "opensearch").rglob("*.py")] == []
    for package in tool["packages"]:
        if package not in renamed:
            assert (ROOT / package.replace(".", "/")).is_dir(), package
    assert {"lref", "reranker", "training", "engine", "apps", "plugin"} <= set(tool["packages"])
