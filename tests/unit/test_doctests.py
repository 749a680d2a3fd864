"""Every worked example in a module docstring runs and gives what it shows.

Modules are found by their ``>>>`` lines, so a new example is checked without being listed here.
(The first run of this test found ``cmrc_segments`` (now in ``evaluation/``) showing an output that the
official CMRC 2018 segmentation does not give.)
"""

from __future__ import annotations

import doctest
import importlib

import pytest

from tests.helpers import REPO

PACKAGES = ("kb", "models", "vector_store", "loaders", "evaluation", "ui")


def _modules_with_examples() -> list[str]:
    files = [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))] + [REPO / "app.py"]
    found = []
    for path in files:
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(REPO).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


MODULES = _modules_with_examples()


def test_the_examples_are_found() -> None:
    assert {
        "kb.splitter",
        "kb.chapters",
        "evaluation.metrics",
        "vector_store.keyword",
        "models.embeddings.fake",
        "models.llm",
        "models.llm.process",
        "models.cpu",
        "ui.render",
    } <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result
