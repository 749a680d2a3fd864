"""The import rules of the layout (docs/ARCHITECTURE.md), checked by reading every import.

* Nothing in the product (``kb/``, ``models/``, ``vector_store/``, ``loaders/``, ``ui/``, ``app.py``)
  imports the measurement tooling (``evaluation/``): the tooling imports the product, never the reverse.
* The library (``kb/``, ``models/``, ``vector_store/``, ``loaders/``) imports nothing from the web
  app (``ui/``, ``app.py``): the UI calls the library, never the reverse.
* The lower layers (``models/``, ``vector_store/``, ``loaders/``) import nothing from ``kb/``.

Imports are read with :mod:`ast`, so module-level ones, those inside functions and those under
``if TYPE_CHECKING:`` all count, as do ``importlib.import_module("...")`` / ``__import__("...")``
with a literal name. A violation names the file and the line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO

PRODUCT = ("kb", "models", "vector_store", "loaders", "ui", "app.py")
LIBRARY = ("kb", "models", "vector_store", "loaders")
LOWER_LAYERS = ("models", "vector_store", "loaders")


def _files(roots: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for root in roots:
        path = REPO / root
        out.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return out


def _package(path: Path) -> list[str]:
    """The dotted package a file belongs to, as parts (for resolving relative imports)."""
    return list(path.relative_to(REPO).parent.parts)


def imported_modules(source: str, package: list[str] | None = None) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import anywhere in ``source`` (functions and TYPE_CHECKING too)."""
    package = package or []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            yield node.lineno, name
            if not node.module:  # "from . import x" imports the submodules x
                for alias in node.names:
                    yield node.lineno, f"{name}.{alias.name}" if name else alias.name
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module"))
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def violations(roots: tuple[str, ...], forbidden: str) -> list[str]:
    """``file:line: imports module`` for every import of ``forbidden`` (or a submodule) under ``roots``."""
    found = []
    for path in _files(roots):
        for line, module in imported_modules(path.read_text(encoding="utf-8"), _package(path)):
            if module == forbidden or module.startswith(forbidden + "."):
                found.append(f"{path.relative_to(REPO)}:{line}: imports {module}")
    return found


def test_the_scanner_sees_every_kind_of_import() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import evaluation\n"
        "if TYPE_CHECKING:\n"
        "    from evaluation.metrics import mean\n"
        "def f():\n"
        "    import evaluation.bench as b\n"
        "    importlib.import_module('evaluation.cli')\n"
        "from .. import evaluation\n"
    )
    found = [(line, m) for line, m in imported_modules(source, ["kb", "sub"]) if m.startswith("evaluation")]
    assert [line for line, _ in found] == [2, 4, 6, 7]
    assert (8, "kb.evaluation") in set(imported_modules(source, ["kb", "sub"]))  # relative: resolved


def test_the_product_does_not_import_the_measurement_tooling() -> None:
    assert all(_files((root,)) for root in PRODUCT), "a product folder has no files"
    assert violations(PRODUCT, "evaluation") == []


@pytest.mark.parametrize("web_app", ["ui", "app"])
def test_the_library_does_not_import_the_web_app(web_app: str) -> None:
    assert _files(LIBRARY), "no library files found"
    assert violations(LIBRARY, web_app) == []


def test_the_lower_layers_do_not_import_kb() -> None:
    assert violations(LOWER_LAYERS, "kb") == []
