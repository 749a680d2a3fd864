"""Shared test helpers (shared test data, novel excerpts, tiny models built offline), imported by test modules.

Test modules import helpers from here, never from each other or from the measurement package.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
"""The test material beside a checkout (``../shared/data``: novels, CMRC 2018)."""
NOVELS = SHARED_DATA / "novels"

MIXED = [  # texts that stress a tokenizer and an encoder: empty, one character, mixed scripts, emoji
    "",
    "孙",
    "贾宝玉衔的玉是从哪里来的？",
    "iPhone 15 Pro 的价格是 7999 元，比去年贵了 5%。",
    "Ｈｅｌｌｏ，世界！ emoji 😀 and rare characters 𠮷 囫囵吞枣",
    "The Story of the Stone, also known as Dream of the Red Chamber, is one of the Four Great Classical Novels.",
]


def novel_slices(name: str, lengths: list[int], start: int, gap: int) -> list[str]:
    """Slices of the given lengths from the shared novel ``name`` (UTF-8), ``gap`` characters apart
    from ``start`` on; skips the test when the shared data is absent."""
    novel = NOVELS / name
    if not novel.is_file():
        pytest.skip(f"test data file {novel} is absent")
    text = novel.read_text(encoding="utf-8")
    out, pos = [], start
    for n in lengths:
        out.append(text[pos : pos + n])
        pos += n + gap
    return out


def excerpt(src: Path, dest: Path, chars: int, encoding: str) -> Path:
    """The first ``chars`` characters of a real novel, written in its original encoding."""
    raw = src.read_bytes()
    text = raw.decode(encoding)[:chars]
    dest.write_bytes(text.encode(encoding))
    return dest


def mock_home_with_book(tmp_path: Path, text: str, kb: str = "k") -> Path:
    """A data home (``tmp_path/home``, profile ``mock``) whose knowledge base ``kb`` holds ``text``
    as ``book.txt``, added through the CLI as a user would."""
    from kb.cli import main

    src = tmp_path / "src"
    src.mkdir()
    (src / "book.txt").write_text(text, encoding="utf-8")
    assert main(["--home", str(tmp_path / "home"), "--profile", "mock", "add", "--kb", kb, str(src)]) == 0
    return tmp_path / "home"


def cli_process(home: Path, *argv: str) -> subprocess.Popen:
    """``python -m kb --home HOME --profile mock ARGV`` as a child process (stdout/stderr piped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
    return subprocess.Popen(
        [sys.executable, "-m", "kb", "--home", str(home), "--profile", "mock", *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


T = TypeVar("T")


def process_ended(process: subprocess.Popen[Any] | int | None) -> str | None:
    """How ``process`` (a child we started, or any pid) ended — ``"exit status N"`` or ``"pid N is
    gone"`` — or ``None`` while it runs (a zombie counts as ended)."""
    if process is None:
        return None
    if isinstance(process, subprocess.Popen):
        code = process.poll()
        return None if code is None else f"exit status {code}"
    import psutil

    try:
        if psutil.Process(process).status() != psutil.STATUS_ZOMBIE:
            return None
    except psutil.NoSuchProcess:
        pass
    return f"pid {process} is gone"


def wait_for(
    condition: Callable[[], T],
    process: subprocess.Popen[Any] | int | None,
    *,
    timeout: float,
    what: str,
    output: Callable[[], str] | None = None,
    interval: float = 0.05,
) -> T:
    """Until ``condition()`` is truthy (returned), checking between tries that ``process`` runs.

    Fails at once, with how it ended and the end of ``output()``, if ``process`` ended first (the
    condition gets one last look, for output that came with the exit), and after ``timeout``
    seconds otherwise. ``process`` is a child (``Popen``), any pid, or None when nothing is waited
    on (e.g. a process expected to die). No test waits on a dead process.
    """
    deadline = time.monotonic() + timeout

    def tail() -> str:
        return f":\n{output()[-3000:]}" if output is not None else ""

    while True:
        value = condition()
        if value:
            return value
        ended = process_ended(process)
        if ended is not None:
            value = condition()
            if value:
                return value
            raise AssertionError(f"the process ended ({ended}) before {what}{tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s{tail()}")
        time.sleep(interval)


def http_status(url: str, timeout: float = 5.0) -> int | None:
    """The HTTP status of a GET of ``url`` (error statuses too), or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


class PipeReader:
    """Everything a child's pipe (``proc.stdout``/``stderr``) has written so far, read without blocking."""

    def __init__(self, pipe: IO[bytes] | None) -> None:
        assert pipe is not None, "the pipe was not opened (stdout/stderr=subprocess.PIPE)"
        self._pipe = pipe
        os.set_blocking(pipe.fileno(), False)
        self._data = b""

    def text(self) -> str:
        """What has been written so far (reads what is waiting in the pipe first)."""
        while True:
            chunk = self._pipe.read(65536)
            if not chunk:  # None: nothing waiting; b"": the writer closed it
                break
            self._data += chunk
        return self._data.decode("utf-8", errors="replace")


def stream_until(proc: subprocess.Popen[bytes], text: str, timeout: float = 120.0) -> str:
    """Read ``proc``'s stdout until ``text`` appears and return what was read; fails at once if it
    exits first."""
    reader = PipeReader(proc.stdout)
    wait_for(lambda: text in reader.text(), proc, timeout=timeout, what=repr(text), output=reader.text)
    return reader.text()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MilvusLiteServer:
    """Milvus Lite's own gRPC server (``python -m milvus_lite server``) as a child process on a free
    port, with its own data folder: the app reaches it at ``http://127.0.0.1:PORT`` through the same
    code path as a Milvus standalone or distributed server (a network URI, timeouts, several client
    processes). ``kill()`` SIGKILLs it; ``start()`` again reopens the same folder on the same port.
    Its output goes to ``<data_dir>.log`` (shown when it fails to start)."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.log = self.data_dir.with_name(self.data_dir.name + ".log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def start(self, timeout: float = 120.0) -> MilvusLiteServer:
        """Start the server and wait (checking that it runs) until its port accepts connections."""
        assert self.process is None or self.process.poll() is not None, "already running"
        pytest.importorskip("milvus_lite")
        argv = ["server", "--data-dir", str(self.data_dir), "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "milvus_lite", *argv],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(
            self._accepts,
            self.process,
            timeout=timeout,
            what=f"Milvus Lite server on port {self.port}",
            output=lambda: self.log.read_text(encoding="utf-8", errors="replace"),
        )
        return self

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no flush) and reap it."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=60)

    def stop(self) -> None:
        """End the server if it runs (SIGINT: its own clean shutdown; SIGKILL after 30 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_model(folder: Path) -> Path:
    """A 2-layer, hidden-32 Qwen2 with random weights and a byte-level BPE trained on a few lines.

    The output head only scores tokens that decode to Chinese characters, so greedy decoding emits
    CJK text, which the streamer flushes token by token.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    corpus = [
        "北京是中国的首都。",
        "长江是中国第一长河，黄河是第二长河。",
        "知识库问答系统根据已知信息回答用户的问题。",
        "user assistant system",
        "你好，世界！今天天气很好。",
    ] * 3
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=TINY_CHAT_TEMPLATE,
    )
    vocab_size = bpe.get_vocab_size()
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=bpe.token_to_id("<|im_end|>"),
        pad_token_id=bpe.token_to_id("<|endoftext|>"),
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for token_id in range(vocab_size):
            if not re.fullmatch(r"[\u4e00-\u9fff]+", bpe.decode([token_id])):
                model.lm_head.weight[token_id].zero_()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_cross_encoder(folder: Path, corpus: Sequence[str] = ()) -> Path:
    """A real (random-weight) one-layer BERT cross-encoder folder, built offline: a WordPiece vocab
    trained on ``corpus`` (plus this file and a few novel phrases), a hidden-32 config, one label."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    texts = [
        *corpus,
        Path(__file__).read_text("utf-8"),
        "甄士隐梦幻识通灵贾雨村风尘怀闺秀林黛玉抛父进京都孙悟空大闹天宫",
    ]
    wordpiece = BertWordPieceTokenizer(lowercase=True, handle_chinese_chars=True)
    wordpiece.train_from_iterator(
        texts,
        vocab_size=2000,
        min_frequency=1,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    )
    wordpiece.save_model(str(folder))
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
        initializer_range=0.5,  # random but well-spread scores
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder
