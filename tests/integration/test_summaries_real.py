"""The real path of a summary ends: the bundled Qwen2.5-1.5B (llama.cpp, in its model process)
summarises a short story section from 呐喊 (阿Q正传, 第二章, cut to 1,000 characters) through
map, reduce and the cache, with a window small enough to need two map calls; the summary names
the main character. Slow: model load plus three short calls (~30 s on a quiet 2-core machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.mapreduce import Progress
from kb.services import build_services
from kb.settings import load_settings
from kb.summaries import SummaryDone
from loaders.registry import load_document
from tests.helpers import NOVELS

STORY_CHARS = 1000


def story(tmp_path: Path) -> Path:
    path = NOVELS / "nahan.utf8.txt"
    if not path.exists():
        pytest.skip(f"novel not available: {path}")
    text = load_document(path).text
    start = text.index("第二章\u3000优胜记略")
    out = tmp_path / "阿Q正传.txt"
    out.write_text(text[start : start + STORY_CHARS], encoding="utf-8")
    return out


def test_real_model_summarises_a_short_story_and_names_its_hero(
    tmp_path: Path, bundled_gguf_15b: Path
) -> None:
    overrides = {
        "embedding": {"model": "hash"},  # the LLM is what is under test here
        "llm": {"backend": "llamacpp", "model": str(bundled_gguf_15b), "n_ctx": 768},
        "summary": {"map_max_tokens": 64, "reduce_max_tokens": 96},
    }
    services = build_services(load_settings(home=tmp_path / "home", env={}, overrides=overrides))
    try:
        services.ingestor.add("nahan", [story(tmp_path)])
        events = list(services.summaries.stream_chapter("nahan", None, "优胜记略"))
        maps = [e for e in events if isinstance(e, Progress) and e.stage == "map"]
        done = events[-1]
        assert isinstance(done, SummaryDone)
        result = done.result
        assert len(maps) >= 2, "the window was meant to need more than one map call"
        assert result.llm_calls == len(maps) + 1 and not result.cached and not result.stopped
        assert "阿Q" in result.summary or "阿Ｑ" in result.summary, result.summary
        again = services.summaries.summarize_chapter("nahan", None, "2")
        assert again.cached and again.llm_calls == 0 and again.summary == result.summary
    finally:
        services.close()
