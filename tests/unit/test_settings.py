"""The settings tree: defaults, profiles, YAML with ${ENV:default}, environment, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.settings import SettingsError, available_profiles, expand_env, load_settings


def test_defaults_are_cpu_bundled_and_loopback() -> None:
    s = load_settings(env={})
    assert s.embedding.model == "bundled:multilingual-e5-small"
    assert s.llm.backend == "auto" and s.llm.model == "bundled:qwen2.5-coder-1.5b"
    assert s.server.host == "127.0.0.1" and s.server.auth is None
    assert s.llm.trust_remote_code is False
    assert s.home == Path("~/.kbqa").expanduser().resolve()


def test_priority_profile_then_file_then_env_then_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("llm:\n  model: ${MY_MODEL:/models/a.gguf}\n  temperature: 0.5\nretrieval:\n  top_k: 7\n")
    env = {"KBQA_RETRIEVAL__TOP_K": "9", "KBQA_HOME": str(tmp_path / "h")}
    s = load_settings(config_file=cfg, profile="small", env=env)
    assert s.llm.backend == "llamacpp"  # from the profile
    assert s.llm.model == "/models/a.gguf" and s.llm.temperature == 0.5  # file beats profile
    assert s.retrieval.top_k == 9  # env beats file
    assert s.home == (tmp_path / "h").resolve()
    s = load_settings(
        config_file=cfg, env={**env, "MY_MODEL": "/x.gguf"}, overrides={"retrieval": {"top_k": 2}}
    )
    assert s.llm.model == "/x.gguf" and s.retrieval.top_k == 2


def test_profile_variables_are_not_mistaken_for_overrides() -> None:
    s = load_settings(profile="card", env={"KBQA_CARD_LLM": "/models/chatglm-6b"})
    assert s.llm.model == "/models/chatglm-6b" and s.llm.trust_remote_code is True
    assert s.embedding.model == "GanymedeNil/text2vec-large-chinese"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": "nope"}, "unknown profile"),
        ({"config_file": "/does/not/exist.yaml"}, "not found"),
        ({"overrides": {"llm": {"backend": "gpt5"}}}, "invalid settings"),
        ({"overrides": {"splitter": {"chunk_size": 100, "overlap": 100}}}, "overlap"),
        ({"overrides": {"llm": {"bogus": 1}}}, "bogus"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env={}, **kwargs)


def test_bad_yaml_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("llm: [unclosed")
    with pytest.raises(SettingsError, match=r"bad\.yaml"):
        load_settings(config_file=cfg, env={})


def test_profiles_and_expand_env() -> None:
    assert {"card", "mock", "small"} <= set(available_profiles())
    assert expand_env(["${A}", "${B:b}", 3], {"A": "a"}) == ["a", "b", 3]


def test_the_llm_api_key_is_kept_out_of_dumps_and_reprs(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path, env={"KBQA_LLM__API_KEY": "sk-very-secret"})
    assert s.llm.api_key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(s)
    assert "sk-very-secret" not in s.model_dump_json()
