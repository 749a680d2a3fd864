"""The paths docs/ARCHITECTURE.md (and the README, docs/DEPENDENCIES.md) name exist, so the tables
and trees cannot rot after a move: ``kb/ingest.py``, ``kb/ingest`` (a module), ``kb/services.build_services``
(a name in a module), ``models/embeddings/`` (a folder), and in the tree blocks the files listed under
a folder line (``evaluation/`` then ``  cli.py, __main__.py ...``)."""

from __future__ import annotations

import re

import pytest

from tests.helpers import REPO

DOCS = ["docs/ARCHITECTURE.md", "README.md", "docs/DEPENDENCIES.md"]
ROOTS = ("kb", "models", "vector_store", "loaders", "ui", "evaluation", "tests", "scripts")
PATH = re.compile(rf"(?<![\w<>./-])((?:{'|'.join(ROOTS)})/[\w./-]*\w/?)")
"""A repository path in running text; ``<home>/models/...`` (the data home) is not one."""


def exists(token: str) -> bool:
    token = token.rstrip("/")
    if (REPO / token).exists() or (REPO / f"{token}.py").exists():
        return True
    folder, _, last = token.rpartition("/")  # kb/services.build_services: a name in kb/services.py
    return "." in last and (REPO / folder / f"{last.split('.')[0]}.py").exists()


def mentioned_paths(text: str) -> set[str]:
    found = set(PATH.findall(text))
    for block in re.findall(r"^```\n(.*?)^```", text, flags=re.S | re.M):
        folder = None
        for line in block.splitlines():
            top = re.fullmatch(r"(\w+/)", line.strip())
            if top and not line.startswith(" "):
                folder = top.group(1)
            elif not line.startswith(" "):
                folder = None
            if folder is None:
                continue
            first_column = re.match(r"  (\S.*?)(?:\s{2,}|$)", line)
            if first_column:
                for name in first_column.group(1).split(", "):
                    if re.fullmatch(r"[\w.]+\.py|\w+/", name):
                        found.add(folder + name)
    return found


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_the_doc_names_exists(doc: str) -> None:
    paths = mentioned_paths((REPO / doc).read_text(encoding="utf-8"))
    missing = sorted(p for p in paths if not exists(p))
    assert not missing, f"{doc} names paths that do not exist: {missing}"


def test_the_check_finds_the_tables_and_trees() -> None:
    paths = mentioned_paths((REPO / "docs/ARCHITECTURE.md").read_text(encoding="utf-8"))
    assert {
        "kb/services.py",
        "models/rerank.py",
        "models/embeddings/",
        "evaluation/cli.py",
        "ui/chat.py",
    } <= paths
    assert {"tests/unit/", "tests/helpers.py", "tests/contracts/test_reranker_contract.py"} <= paths
    assert not exists("models/embeddings.py") and not exists("models/llm_process")
    assert exists("kb/services.build_services") and exists("kb/ingest") and exists("models/embeddings/")
