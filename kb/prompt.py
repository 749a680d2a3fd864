"""Prompts in the user's language, and fitting them into the model's context window.

Pure functions (no model is called here); the token counter is passed in, so the budget is the
real model's (``llm.get_num_tokens``) in the app and ``len`` in the tests.

Grounded prompt (Chinese when the question contains a CJK character, else English), after
langchain-ChatGLM's template, as LangChain messages::

    System  你是一个严谨的知识库问答助手……资料里没有的内容，就回答“根据已知信息无法回答该问题”……
    Human   <earlier question>          } the last few turns, plain text only
    AI      <earlier answer>            }
    Human   已知信息：
            [1] 西游记.txt 「第一回　灵根育孕源流出　心性修持大道生」
            <passage text>
            ...
            根据上述已知信息，简洁和专业地回答用户的问题。如果无法从中得到答案，请说
            "根据已知信息无法回答该问题"，不允许在答案中添加编造成分，答案请使用中文。
            问题：<question>

The context comes first and the rules and question last, close to where the model starts
writing (small models follow the most recent instructions best).

History holds plain question/answer text: :func:`plain_text` strips any HTML (e.g. sources the web
UI rendered into an answer) before a turn is put back into a prompt.

:func:`fit_to_budget` makes the messages fit ``max_prompt_tokens``: it drops the lowest-ranked
passages (down to one), then the oldest history turns, then shortens the last passage (around its
best hit), and finally leaves it out; the question is never cut. If even the bare question does not
fit, :class:`PromptTooLongError` says so.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from kb.context import Passage, cut_passage, render_context
from kb.errors import PromptTooLongError

__all__ = [
    "MESSAGE_OVERHEAD_TOKENS",
    "NO_ANSWER",
    "NO_CONTEXT",
    "FittedPrompt",
    "Language",
    "PromptTooLongError",
    "Turn",
    "chat_messages",
    "clean_rewrite",
    "count_message_tokens",
    "fit_to_budget",
    "grounded_messages",
    "language_of",
    "plain_text",
    "rewrite_messages",
]

Language = Literal["zh", "en"]

NO_ANSWER: dict[Language, str] = {
    "zh": "根据已知信息无法回答该问题",
    "en": "I cannot answer this from the provided information.",
}
"""What the model is told to say when the passages do not contain the answer."""

NO_CONTEXT: dict[Language, str] = {
    "zh": "知识库中没有找到与问题相关的内容。",
    "en": "No content related to the question was found in the knowledge base.",
}
"""What the app says (without the model) when retrieval finds nothing."""

MESSAGE_OVERHEAD_TOKENS = 6
"""Tokens a chat template adds around each message (``<|im_start|>role\\n … <|im_end|>\\n``)."""

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")

_SYSTEM_GROUNDED: dict[Language, str] = {
    "zh": (
        "你是一个严谨的知识库问答助手，只依据用户给出的资料回答问题；资料里没有的内容，就回答"
        "“根据已知信息无法回答该问题”，绝不使用自己的知识补充。"
    ),
    "en": (
        "You are a careful assistant that answers questions only from the documents the user gives; "
        'when something is not in them, answer "I cannot answer this from the provided information." '
        "and never add your own knowledge."
    ),
}
"""The rule is stated here as well as next to the question: with it in both places the bundled
Qwen2.5-1.5B declines 「林黛玉最后嫁给了谁？」 over the first chapters of 红楼梦 instead of answering
from its own knowledge, and still answers 「甄士隐的女儿叫什么名字？」 (英莲)."""
_HUMAN_GROUNDED: dict[Language, str] = {
    "zh": (
        "已知信息：\n{context}\n\n"
        "根据上述已知信息，简洁和专业地回答用户的问题。如果无法从中得到答案，请说"
        "“{no_answer}”，不允许在答案中添加编造成分。可以用 [1] 这样的编号注明依据。"
        "答案请使用中文。\n\n问题：{question}"
    ),
    "en": (
        "Context:\n{context}\n\n"
        "Using only the context above, answer the user's question concisely and precisely. If the "
        'answer is not in the context, say "{no_answer}" Do not make anything up. You may cite '
        "passages by their number, like [1]. Answer in English.\n\nQuestion: {question}"
    ),
}
_SYSTEM_CHAT: dict[Language, str] = {
    "zh": "你是一个乐于助人的助手。请用中文简洁地回答。",
    "en": "You are a helpful assistant. Answer concisely in English.",
}

_REWRITE: dict[Language, str] = {
    "zh": (
        "把对话之后的“后续问题”改写成一个不看对话也能看懂的独立问题：把“他”“她”“它”“这”等指代"
        "换成对话里说的具体人名或事物，保持原意，不要回答问题，只输出改写后的问题；"
        "如果后续问题本身已经完整，就原样输出它。\n\n"
        "示例\n对话：\n问：诸葛亮是谁？\n答：诸葛亮是三国时蜀汉的丞相。\n"
        "后续问题：他的妻子是谁？\n独立问题：诸葛亮的妻子是谁？\n\n"
        "现在轮到你\n对话：\n{history}\n后续问题：{question}\n独立问题："
    ),
    "en": (
        "Rewrite the follow-up question after the conversation as a standalone question that can be "
        "understood without the conversation: replace pronouns such as he/she/it/this with the "
        "person or thing they refer to, keep the meaning, do not answer it, output only the "
        "rewritten question; if the follow-up question is already complete, output it unchanged.\n\n"
        "Example\nConversation:\nQ: Who is Mr. Darcy?\nA: A wealthy gentleman from Derbyshire.\n"
        "Follow-up question: Where does he live?\nStandalone question: Where does Mr. Darcy live?\n\n"
        "Your turn\nConversation:\n{history}\nFollow-up question: {question}\nStandalone question:"
    ),
}
_REWRITE_TURN: dict[Language, str] = {"zh": "问：{q}\n答：{a}", "en": "Q: {q}\nA: {a}"}
REWRITE_ANSWER_CHARS = 200
"""Earlier answers are shortened to this many characters in the rewrite prompt (speed)."""

_REWRITE_PREFIX = re.compile(
    r"^\s*(?:独立问题|改写后的问题|改写后|改写|问题|standalone question|rewritten question|question)\s*[:：]\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’「」『』《》`"


@dataclass(frozen=True)
class Turn:
    """One earlier exchange: the user's question and the app's answer, as plain text."""

    question: str
    answer: str


@dataclass(frozen=True)
class FittedPrompt:
    """Messages that fit the budget and what was kept to make them."""

    messages: list[BaseMessage]
    passages: list[Passage]
    history: list[Turn]
    tokens: int
    dropped_passages: int
    dropped_turns: int


def language_of(text: str) -> Language:
    """``"zh"`` when ``text`` contains a CJK character, else ``"en"``.

    >>> language_of("孙悟空是谁？"), language_of("Who is Elizabeth?"), language_of("Who is 孙悟空?")
    ('zh', 'en', 'zh')
    """
    return "zh" if _CJK.search(text) else "en"


_DETAILS = re.compile(r"<details\b.*?</details\s*>", re.IGNORECASE | re.DOTALL)
_BLOCK_TAG = re.compile(r"<\s*(?:br|/p|/div|/li|/h[1-6]|/tr)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<!--.*?-->", re.DOTALL)


def plain_text(text: str) -> str:
    """Text without HTML: ``<details>`` blocks (rendered sources) dropped, other tags stripped.

    >>> plain_text('孙悟空拜师。<details><summary>来源</summary><p>[1] 西游记</p></details>')
    '孙悟空拜师。'
    >>> plain_text("<b>a</b> &lt; b<br>c"), plain_text("1 < 2 and 3 > 2")
    ('a < b\\nc', '1 < 2 and 3 > 2')
    """
    if "<" not in text and "&" not in text:
        return text.strip()
    text = _DETAILS.sub("", text)
    text = _BLOCK_TAG.sub("\n", text)
    text = _TAG.sub("", text)
    return html.unescape(text).strip()


def _clean_turns(history: Sequence[Turn]) -> list[Turn]:
    return [Turn(plain_text(t.question), plain_text(t.answer)) for t in history]


def _history_messages(history: Sequence[Turn]) -> list[BaseMessage]:
    out: list[BaseMessage] = []
    for turn in history:
        out.extend((HumanMessage(turn.question), AIMessage(turn.answer)))
    return out


def grounded_messages(
    question: str, passages: Sequence[Passage], history: Sequence[Turn] = (), language: Language | None = None
) -> list[BaseMessage]:
    """System + history + the human message with numbered passages, rules and question."""
    lang = language or language_of(question)
    human = _HUMAN_GROUNDED[lang].format(
        context=render_context(passages), no_answer=NO_ANSWER[lang], question=question
    )
    return [
        SystemMessage(_SYSTEM_GROUNDED[lang]),
        *_history_messages(_clean_turns(history)),
        HumanMessage(human),
    ]


def chat_messages(
    question: str, history: Sequence[Turn] = (), language: Language | None = None
) -> list[BaseMessage]:
    """Plain chat without a knowledge base: system + history + question."""
    lang = language or language_of(question)
    return [
        SystemMessage(_SYSTEM_CHAT[lang]),
        *_history_messages(_clean_turns(history)),
        HumanMessage(question),
    ]


def count_message_tokens(messages: Sequence[BaseMessage], count_tokens: Callable[[str], int]) -> int:
    """Tokens of all message texts plus :data:`MESSAGE_OVERHEAD_TOKENS` per message."""
    return sum(count_tokens(str(m.content)) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def fit_to_budget(
    question: str,
    passages: Sequence[Passage],
    history: Sequence[Turn],
    count_tokens: Callable[[str], int],
    max_prompt_tokens: int,
    *,
    grounded: bool = True,
    language: Language | None = None,
) -> FittedPrompt:
    """The grounded (or, with ``grounded=False``, plain chat) prompt cut to ``max_prompt_tokens``.

    Order of sacrifice: lowest-ranked passages (down to one), oldest history turns, then the last
    passage is shortened and finally left out. The question is never cut; if it does not fit even
    alone, :class:`PromptTooLongError` is raised.
    """
    lang = language or language_of(question)
    kept = list(passages)
    turns = list(history)

    def build(ps: Sequence[Passage], ts: Sequence[Turn]) -> list[BaseMessage]:
        if grounded:
            return grounded_messages(question, ps, ts, lang)
        return chat_messages(question, ts, lang)

    def size(msgs: Sequence[BaseMessage]) -> int:
        return count_message_tokens(msgs, count_tokens)

    def done(msgs: list[BaseMessage], tokens: int) -> FittedPrompt:
        return FittedPrompt(
            messages=msgs,
            passages=kept,
            history=turns,
            tokens=tokens,
            dropped_passages=len(passages) - len(kept),
            dropped_turns=len(history) - len(turns),
        )

    while True:
        msgs = build(kept, turns)
        tokens = size(msgs)
        if tokens <= max_prompt_tokens:
            return done(msgs, tokens)
        if grounded and len(kept) > 1:
            kept.pop()
        elif turns:
            turns.pop(0)
        else:
            break
    if grounded and kept:
        top = kept[0]
        low, high = 0, len(top.text)  # find the longest cut that fits
        while low < high:
            mid = (low + high + 1) // 2
            if size(build([cut_passage(top, mid)], turns)) <= max_prompt_tokens:
                low = mid
            else:
                high = mid - 1
        kept = [cut_passage(top, low)] if low > 0 else []
        msgs = build(kept, turns)
        tokens = size(msgs)
        if tokens <= max_prompt_tokens:
            return done(msgs, tokens)
    raise PromptTooLongError(
        f"the question does not fit the model's context window: the prompt needs {tokens} tokens "
        f"without any passage or history, the budget is {max_prompt_tokens}; ask a shorter question "
        "or raise llm.n_ctx"
    )


def _history_block(history: Sequence[Turn], lang: Language) -> str:
    lines = []
    for turn in _clean_turns(history):
        answer = turn.answer
        if len(answer) > REWRITE_ANSWER_CHARS:
            answer = answer[:REWRITE_ANSWER_CHARS] + "…"
        lines.append(_REWRITE_TURN[lang].format(q=turn.question, a=answer))
    return "\n".join(lines)


def rewrite_messages(
    question: str, history: Sequence[Turn], language: Language | None = None
) -> list[BaseMessage]:
    """One human message asking to rewrite ``question`` as a standalone question (few-shot)."""
    lang = language or language_of(question)
    return [HumanMessage(_REWRITE[lang].format(history=_history_block(history, lang), question=question))]


def clean_rewrite(
    raw: str, question: str, *, earlier: Sequence[str] = (), max_chars: int | None = None
) -> str:
    """The model's rewrite without prefixes/quotes; ``question`` when it is empty or absurdly long.

    Of the first few non-empty lines, the first that does not merely repeat an ``earlier``
    question of the conversation is taken (small models sometimes echo the history first).
    "Absurdly long" means over ``max_chars`` (default: ``max(100, 4 * len(question))``).

    >>> clean_rewrite("独立问题：“孙悟空后来怎么样了？”\\n解释：……", "他后来怎么样了？")
    '孙悟空后来怎么样了？'
    >>> clean_rewrite("孙悟空是谁？\\n贾宝玉是谁？", "贾宝玉是谁？", earlier=["孙悟空是谁？"])
    '贾宝玉是谁？'
    >>> clean_rewrite("  ", "他呢？"), clean_rewrite("Standalone question: Where does Mr. Darcy live?", "x")
    ('他呢？', 'Where does Mr. Darcy live?')
    """
    limit = max_chars if max_chars is not None else max(100, 4 * len(question))
    candidates = []
    for line in raw.strip().splitlines()[:4]:
        for _ in range(3):  # "问题：「独立问题：…」" and the like
            line = _REWRITE_PREFIX.sub("", line.strip()).strip().strip(_QUOTES).strip()
        if line:
            candidates.append(line)
    seen = {q.strip() for q in earlier}
    line = next((c for c in candidates if c not in seen), candidates[0] if candidates else "")
    if not line or len(line) > limit:
        return question
    return line
