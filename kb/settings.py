"""One typed settings tree for the whole app, read once by the composition root.

Where values come from, lowest to highest priority:

1. the defaults below (CPU, bundled models, data home ``~/.kbqa``);
2. a profile shipped in ``kb/profiles/<name>.yaml`` (``--profile card`` / ``KBQA_PROFILE``);
3. a YAML settings file (``--config FILE`` / ``KBQA_CONFIG``), where ``${ENV_VAR:default}`` is
   expanded;
4. environment variables ``KBQA_<SECTION>__<FIELD>`` (e.g. ``KBQA_LLM__BACKEND=fake``);
5. explicit overrides passed by the CLI (``--home``) or tests.

Nothing here touches the disk or the network at import time; :func:`load_settings` only reads the
files it is told to read.

>>> s = load_settings(overrides={"llm": {"backend": "fake"}}, env={})
>>> s.llm.backend, s.splitter.chunk_size
('fake', 300)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from kb.errors import SettingsError as SettingsError  # defined with the other kb errors
from models.bundled import BUNDLED_E5 as BUNDLED_E5  # the names live in models.bundled, re-exported
from models.bundled import BUNDLED_QWEN_05B as BUNDLED_QWEN_05B
from models.bundled import BUNDLED_QWEN_15B as BUNDLED_QWEN_15B

PROFILES_DIR = Path(__file__).with_name("profiles")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EmbeddingSettings(_Section):
    model: str = Field(
        BUNDLED_E5,
        description="Embedding model for NEW knowledge bases: 'bundled:multilingual-e5-small', "
        "'hash' (deterministic fake, for tests), a Hugging Face hub name (needs the model in the "
        "local cache or network) or a local sentence-transformers folder. Existing knowledge "
        "bases always use the model recorded when they were created.",
    )
    batch_size: int = Field(32, ge=1, description="Texts per forward pass when embedding chunks.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to run the model.")
    threads: int | None = Field(
        None, ge=1, description="torch intra-op threads; None = number of physical cores."
    )
    precision: Literal["fp32", "bf16", "int8", "openvino-bf16", "openvino-int8"] = Field(
        "openvino-int8",
        description="Inference precision on CPU: openvino-int8 (OpenVINO with static int8 from NNCF, "
        "quantised once per model on a bundled calibration set and cached under models/openvino/; "
        "~3x fp32 and ~1.5x openvino-bf16 on an AVX-512 VNNI CPU, same hit@budget; falls back to "
        "openvino-bf16 without nncf), openvino-bf16 (OpenVINO's CPU plugin in bf16; ~2-3x fp32; falls "
        "back to int8 without openvino), int8 (torch dynamic, FFN outputs kept float; ~1.5x fp32), "
        "bf16 (torch autocast, ~1.25x) or fp32. CUDA runs the model as loaded. See docs/EMBEDDINGS.md.",
    )


class SplitterSettings(_Section):
    chunk_size: int = Field(300, ge=20, description="Maximum characters per chunk.")
    overlap: int = Field(60, ge=0, description="Characters of whole sentences repeated between chunks.")
    embed_overlap: bool = Field(
        False,
        description="Embed each chunk's whole text, overlap included. Default (false): a chunk's "
        "vector is made from the text the previous chunk does not hold, so every character is "
        "embedded once, while keyword search and the prompt use whole chunks. Measured: ~1.2x faster "
        "indexing at overlap 60, same or better hit@budget (docs/BENCHMARKS.md).",
    )

    @field_validator("overlap")
    @classmethod
    def _overlap_below_size(cls, v: int, info: Any) -> int:
        size = info.data.get("chunk_size", 300)
        if v >= size:
            raise ValueError(f"overlap ({v}) must be smaller than chunk_size ({size})")
        return v


class RetrievalSettings(_Section):
    mode: Literal["dense", "keyword", "hybrid"] = Field(
        "hybrid", description="Dense (FAISS), keyword (BM25 over jieba tokens) or both fused (RRF)."
    )
    top_k: int = Field(5, ge=1, le=100, description="Chunks returned per question.")
    score_threshold: float = Field(
        0.0, description="Drop dense hits whose cosine similarity is below this (0 = keep all)."
    )
    window_chars: int = Field(
        0,
        ge=0,
        description="Extend each hit with neighbouring chunks of the same file up to this many characters.",
    )
    context_chars: int = Field(
        3000, ge=200, description="Character budget of the retrieved context put into the prompt."
    )
    fusion: Literal["rrf", "weighted"] = Field(
        "weighted",
        description="How hybrid mode fuses dense and keyword lists: reciprocal ranks, or a weighted sum "
        "of normalised scores (measured best on CMRC 2018, docs/BENCHMARKS.md).",
    )
    dense_weight: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Weight of the dense score in weighted fusion; BM25 gets the rest (0.3 since issue #14: "
        "measured on the novel dev set's tune split and CMRC, docs/BENCHMARKS.md).",
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant.")
    candidates: int = Field(
        60,
        ge=1,
        description="Candidates taken from each retriever before fusion (and re-scored by scene support; "
        "60 since issue #14, 30 before: docs/BENCHMARKS.md, 'Fifth session').",
    )
    reranker: str | None = Field(
        None, description="Optional cross-encoder (hub name or local path) to rerank candidates."
    )
    # --- issue #14: script folding, aliases, query expansion (docs/RETRIEVAL.md, measured in BENCHMARKS.md)
    keyword_script: Literal["simplified", "traditional", "off"] = Field(
        "simplified",
        description="Script the keyword index and the question are folded to (OpenCC) before BM25, so "
        "traditional and simplified text match; 'off' = width folding only (the index before #14). "
        "Changing it rebuilds the keyword index in memory; the next write persists it.",
    )
    aliases: bool = Field(
        True,
        description="Expand the question's keyword side with the aliases mined from the knowledge "
        "base's documents (齐天大圣 -> 孙悟空); see kb/aliases.py.",
    )
    alias_weight: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="BM25 weight of an alias term added to a question (its own words: 1).",
    )
    expansion: Literal["none", "prf"] = Field(
        "none",
        description="Keyword query expansion: 'prf' adds the best terms of the first keyword hits "
        "(pseudo-relevance feedback, one more BM25 gather per question).",
    )
    prf_docs: int = Field(3, ge=1, description="prf: how many first keyword hits feed the expansion.")
    prf_terms: int = Field(8, ge=1, description="prf: how many terms are added.")
    prf_weight: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="prf: BM25 weight of the best added term (the others scaled by tf-idf).",
    )
    dense_query_script: Literal["as-is", "kb"] = Field(
        "kb",
        description="'kb' converts the question to the knowledge base's script (OpenCC) before embedding "
        "it; 'as-is' embeds it unchanged (e5 is multilingual). Measured in docs/BENCHMARKS.md.",
    )
    scene_weight: float = Field(
        0.2,
        ge=0.0,
        description="Lift each candidate by this share of the best other candidate within scene_radius "
        "chunks of the same document (a scene several candidates point to; 0 = off). Chosen on the "
        "development sets (docs/RETRIEVAL.md, 'Scene support').",
    )
    scene_radius: int = Field(
        5, ge=1, description="How many chunks on either side count as the same scene for scene_weight."
    )
    answer_type_weight: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="When the question asks for a number of a predictable kind (多重, 多大岁数, 第几名, "
        "多少卷, 哪一天: kb/answer_types.py), lift the hybrid candidates whose text holds one by this much "
        "(0 = off). Chosen on the development sets (docs/RETRIEVAL.md, 'Answer types').",
    )
    number_match_weight: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="When the question names numbers itself (「1992年4月，…担任什么职务」), lift the hybrid "
        "candidates by this much times the share of them they say the same way (0 = off). Chosen on the "
        "development sets (docs/RETRIEVAL.md, 'Answer types').",
    )


class LLMSettings(_Section):
    backend: Literal["auto", "llamacpp", "transformers", "openai", "fake"] = Field(
        "auto",
        description="'auto' = llamacpp with the bundled GGUF on CPU, or transformers with the card's "
        "ChatGLM when a CUDA GPU is present and the model is available locally.",
    )
    model: str = Field(
        BUNDLED_QWEN_15B,
        description="llamacpp: 'bundled:qwen2.5-coder-1.5b', 'bundled:qwen2.5-coder-0.5b' or a .gguf "
        "path; transformers: hub name or local folder (e.g. THUDM/chatglm-6b); openai: model name.",
    )
    temperature: float = Field(0.1, ge=0.0, le=2.0, description="Sampling temperature.")
    max_tokens: int = Field(512, ge=1, description="Maximum new tokens per answer.")
    n_ctx: int = Field(4096, ge=256, description="Context window in tokens (prompt + answer).")
    threads: int | None = Field(None, ge=1, description="CPU threads; None = physical cores.")
    trust_remote_code: bool = Field(
        False, description="Allow the model folder's own Python code (needed by ChatGLM). Off by default."
    )
    quantization: Literal["none", "8bit", "4bit"] = Field(
        "none", description="transformers only: bitsandbytes quantization (needs a CUDA GPU)."
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="transformers only: weights dtype; auto = fp16 on GPU, fp32 on CPU."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="transformers only.")
    base_url: str = Field("http://127.0.0.1:8000/v1", description="openai only: server URL.")
    api_key: SecretStr = Field(
        SecretStr("not-needed"), description="openai only: API key (shown as ********** in dumps and logs)."
    )
    fake_reply: str | None = Field(
        None, description="fake only: scripted reply; None = quote the first context sentence."
    )
    fake_replies: list[str] | None = Field(
        None,
        description="fake only: scripted replies, one per model call in order (the last repeats); "
        "overrides fake_reply (tests of agent mode script a tool-using model with it).",
    )
    fake_token_delay_ms: float = Field(
        0.0,
        ge=0.0,
        description="fake only: pause after each streamed character, to mimic a real model's pace "
        "(used to test Stop and a killed model process).",
    )
    process: Literal["auto", "worker", "in-process"] = Field(
        "auto",
        description="Where the LLM runs. 'worker': in a supervised child process (a native crash, OOM "
        "kill or kill -9 of the model ends that answer with an error; the app keeps serving and the "
        "worker restarts on the next question). 'in-process': inside the app (no isolation). 'auto' = "
        "worker for llamacpp and transformers, in-process for fake and openai (already a server).",
    )
    extra_buffers: Literal["auto", "on", "off"] = Field(
        "auto",
        description="llamacpp only: llama.cpp's extra CPU buffer types (AMX and weight repacking). "
        "'auto' = off on CPUs that report AMX (llama.cpp's AMX path crashes there), on elsewhere; "
        "'kb models' says which was chosen and why. See docs/MODELS.md.",
    )
    load_timeout_s: float = Field(
        900.0,
        gt=0.0,
        description="worker only: longest wait for the model process to load its weights (the first "
        "start also joins a bundled GGUF from its pip parts) before the load is reported as failed.",
    )
    stall_timeout_s: float = Field(
        600.0,
        gt=0.0,
        description="worker only: a model process that is alive but sends nothing for this long while a "
        "request waits on it (a hung native call, a deadlock, a stopped process) is killed; the answer "
        "ends with a clear error and the next question starts a new process. Generous on purpose: "
        "reading a long prompt on a slow CPU sends nothing until the first token.",
    )


class ChatSettings(_Section):
    history_turns: int = Field(3, ge=0, description="Previous turns kept for multi-turn chat.")
    rewrite_followups: bool = Field(
        True, description="Rewrite a follow-up question into a standalone one before retrieving."
    )


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="Address the web app binds to (loopback by default).")
    port: int = Field(7860, ge=0, le=65535, description="Web app port.")
    auth: str | None = Field(None, description="Optional 'user:password' login for the web app.")
    max_upload_mb: int = Field(200, ge=1, description="Largest accepted upload, per file.")


class VectorStoreSettings(_Section):
    backend: Literal["faiss", "milvus"] = Field(
        "faiss",
        description="Where knowledge bases live: 'faiss' (a folder per knowledge base under <home>/kb) "
        "or 'milvus' (a Milvus server, or Milvus Lite in a local .db folder). `python -m kb migrate` "
        "moves a knowledge base between them. See docs/USER_GUIDE.md.",
    )
    uri: str | None = Field(
        None,
        description="milvus only: a server URI (http://host:19530, https://...) or a Milvus Lite path "
        "ending in .db; None = <home>/milvus.db (Milvus Lite: one process at a time).",
    )
    token: SecretStr | None = Field(
        None, description="milvus only: 'user:password' or an API key of the Milvus server (a secret)."
    )
    collection_prefix: str = Field(
        "kbqa_",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="milvus only: prefix of this app's collection names (several apps can share a server).",
    )
    consistency_level: Literal["Strong", "Bounded", "Session", "Eventually"] = Field(
        "Strong",
        description="milvus only: consistency level of every request. Strong: a search sees the "
        "version a writer (the CLI, another app host) has just published; weaker levels only delay "
        "it (a load checks it got every chunk of the version, and retries).",
    )
    index_type: Literal["FLAT", "HNSW", "AUTOINDEX"] = Field(
        "FLAT",
        description="milvus only: dense index of new knowledge bases. FLAT is exact (the same ranking "
        "as FAISS); HNSW/AUTOINDEX are approximate and for millions of chunks (docs/BENCHMARKS.md).",
    )
    timeout_s: float = Field(
        10.0, gt=0.0, description="milvus only: longest wait for a connection or one request, in seconds."
    )


class SummarySettings(_Section):
    """Map-reduce summaries of chapters and whole books (kb.summaries)."""

    map_max_tokens: int = Field(
        300, ge=16, description="Longest partial summary of one packed part of a chapter (tokens)."
    )
    reduce_max_tokens: int = Field(
        500, ge=16, description="Longest summary of a chapter, a group of chapters or a book (tokens)."
    )
    max_collapse_rounds: int = Field(
        2,
        ge=0,
        description="Rounds of merging partial summaries that do not fit one prompt before they are cut "
        "to fit; a round that does not shrink its input is cut at once, so a summary always ends.",
    )
    group_chapters: int = Field(
        10, ge=2, description="Whole book: chapters per group summary (chapter -> group -> book)."
    )
    mode: Literal["full", "representative"] = Field(
        "full",
        description="How a chapter is read: 'full' (all its text, map-reduce) or 'representative' "
        "(the chapter cut into representative_chunks spans, from each the chunk nearest the "
        "chapter's centroid by the stored vectors: one model call, faster, coarser; docs/BENCHMARKS.md).",
    )
    representative_chunks: int = Field(
        6, ge=1, description="'representative' mode: chunks per chapter given to the model."
    )
    temperature: float = Field(0.2, ge=0.0, le=2.0, description="Sampling temperature of summaries.")
    repeat_penalty: float = Field(
        1.0,
        ge=1.0,
        le=2.0,
        description="llama.cpp's repeat penalty for summary calls: a token among the last repeat_last_n "
        "tokens of the answer gets its score divided by this; 1.0 = off. Measured: it ends a looping "
        "summary but shortens summaries and drops names, hence off (docs/BENCHMARKS.md, summaries). "
        "Other backends ignore it; cached summaries are not re-made when it changes.",
    )
    repeat_last_n: int = Field(
        64,
        ge=0,
        le=4096,
        description="How many of the answer's last tokens the repeat penalty looks at (llama.cpp's "
        "penalty window; 64 is its default).",
    )


class AgentSettings(_Section):
    """Agent mode (``kb/agent/``): a tool-using loop over the knowledge base."""

    mode: Literal["react", "rewoo"] = Field(
        "react",
        description="react: think, call one tool, read its result, repeat; rewoo: plan every tool call "
        "first, run them, then answer (two model calls).",
    )
    max_steps: int = Field(
        4, ge=1, le=12, description="Model calls per question; the last one must answer (no tools offered)."
    )
    time_limit_s: float = Field(
        120.0, gt=0, description="Overall time limit of one agent run; when it is reached it answers."
    )
    step_max_tokens: int = Field(
        160, ge=16, description="Token limit of a tool-calling step (the final answer uses llm.max_tokens)."
    )
    observation_chars: int = Field(
        900, ge=100, description="A tool result longer than this is cut before the model sees it."
    )
    search_top_k: int = Field(3, ge=1, le=10, description="Passages kb_search returns per call.")
    page_chars: int = Field(600, ge=100, description="Characters of a chapter read_chapter returns per page.")
    python_tool: bool = Field(
        False,
        description="Offer the python tool (code run in a limited child process; see USER_GUIDE: it has "
        "no filesystem isolation).",
    )
    python_cpu_s: int = Field(5, ge=1, description="python tool: CPU seconds per run (RLIMIT_CPU).")
    python_memory_mb: int = Field(256, ge=32, description="python tool: address-space limit (RLIMIT_AS).")
    python_wall_s: float = Field(10.0, gt=0, description="python tool: wall-clock limit per run.")


class Settings(_Section):
    home: Path = Field(
        Path("~/.kbqa"),
        validate_default=True,
        description="Data home: knowledge bases, converted models and caches live here.",
    )
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    splitter: SplitterSettings = Field(default_factory=SplitterSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    vector_store: VectorStoreSettings = Field(default_factory=VectorStoreSettings)
    summary: SummarySettings = Field(default_factory=SummarySettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)

    @field_validator("home")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return Path(os.path.expanduser(str(v))).resolve()

    @property
    def kb_dir(self) -> Path:
        """Folder holding one sub-folder per knowledge base."""
        return self.home / "kb"

    @property
    def models_dir(self) -> Path:
        """Folder holding converted / assembled bundled models."""
        return self.home / "models"

    @property
    def logs_dir(self) -> Path:
        """Folder holding logs (the model process's log)."""
        return self.home / "logs"

    @property
    def milvus_uri(self) -> str:
        """The Milvus URI in use: ``vector_store.uri``, else Milvus Lite at ``<home>/milvus.db``."""
        return self.vector_store.uri or str(self.home / "milvus.db")

    @property
    def cache_dir(self) -> Path:
        """Folder holding caches (embedding cache)."""
        return self.home / "cache"


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def expand_env(value: Any, env: Mapping[str, str]) -> Any:
    """Expand ``${VAR:default}`` in every string of a parsed YAML tree.

    >>> expand_env({"a": "${X:1}", "b": ["${Y}"]}, {"Y": "y"})
    {'a': '1', 'b': ['y']}
    """
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: env.get(m.group(1), m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: expand_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    return value


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, val in extra.items():
        if isinstance(val, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], val)
        else:
            out[key] = val
    return out


def _read_yaml(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} must contain a mapping at the top level")
    return expand_env(data, env)


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """``KBQA_LLM__BACKEND=fake`` -> ``{"llm": {"backend": "fake"}}``; ``KBQA_HOME`` -> home."""
    out: dict[str, Any] = {}
    for key, val in env.items():
        if key == "KBQA_HOME":
            out["home"] = val
            continue
        # Only KBQA_<SECTION>__<FIELD> are overrides; other KBQA_* variables (KBQA_PROFILE,
        # KBQA_CONFIG, or ones a profile reads through ${...}) are not settings fields.
        if not key.startswith("KBQA_") or "__" not in key:
            continue
        parts = key[len("KBQA_") :].lower().split("__")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = val
    return out


def available_profiles() -> list[str]:
    """Names of the profiles shipped in ``kb/profiles``."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_settings(
    *,
    home: str | Path | None = None,
    config_file: str | Path | None = None,
    profile: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings tree from defaults, profile, YAML file, environment and overrides."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    profile = profile or env.get("KBQA_PROFILE")
    if profile:
        path = PROFILES_DIR / f"{profile}.yaml"
        if not path.is_file():
            raise SettingsError(f"unknown profile {profile!r}; available: {', '.join(available_profiles())}")
        data = _deep_merge(data, _read_yaml(path, env))
    config_file = config_file or env.get("KBQA_CONFIG")
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise SettingsError(f"settings file not found: {path}")
        data = _deep_merge(data, _read_yaml(path, env))
    data = _deep_merge(data, _env_overrides(env))
    if overrides:
        data = _deep_merge(data, overrides)
    if home is not None:
        data["home"] = str(home)
    try:
        return Settings.model_validate(data)
    except ValueError as exc:
        raise SettingsError(f"invalid settings: {exc}") from exc
