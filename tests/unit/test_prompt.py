"""kb.prompt: grounded prompts in the user's language, history as plain text, token budgeting."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from kb.context import Passage
from kb.prompt import (
    MESSAGE_OVERHEAD_TOKENS,
    NO_ANSWER,
    PromptTooLongError,
    Turn,
    chat_messages,
    clean_rewrite,
    count_message_tokens,
    fit_to_budget,
    grounded_messages,
    language_of,
    plain_text,
    rewrite_messages,
)


def passage(text: str, source: str = "西游记.txt", chapter: str | None = None, score: float = 0.5) -> Passage:
    return Passage(text, source, chapter, score, (f"{source}#0",), 0, len(text), source, f"{source}#0")


ZH_PASSAGES = [
    passage(
        "猴王拜菩提祖师为师，祖师为他取名孙悟空。",
        chapter="第一回\u3000灵根育孕源流出\u3000心性修持大道生",
        score=0.9,
    ),
    passage("甄士隐梦幻识通灵。", source="红楼梦.txt", chapter="第一回  甄士隐梦幻识通灵", score=0.7),
    passage("那猴在山中，却会行走跳跃，食草木，饮涧泉。", score=0.5),
]
EN_PASSAGES = [
    passage(
        "Mr. Darcy lives at Pemberley in Derbyshire.", source="pride.txt", chapter="Chapter 43", score=0.9
    ),
    passage("Mr. Bingley took Netherfield Park.", source="pride.txt", chapter="Chapter 1", score=0.6),
]


@pytest.mark.parametrize(
    ("text", "lang"),
    [("孙悟空是谁？", "zh"), ("Who is Darcy?", "en"), ("Who is 孙悟空?", "zh"), ("", "en"), ("123?", "en")],
)
def test_language_of(text: str, lang: str) -> None:
    assert language_of(text) == lang


def test_chinese_grounded_prompt() -> None:
    msgs = grounded_messages("孙悟空的师父是谁？", ZH_PASSAGES)
    assert [type(m) for m in msgs] == [SystemMessage, HumanMessage]
    human = str(msgs[-1].content)
    assert human.startswith(
        "已知信息：\n[1] 西游记.txt 「第一回\u3000灵根育孕源流出\u3000心性修持大道生」\n猴王拜菩提祖师"
    )
    assert "[2] 红楼梦.txt 「第一回  甄士隐梦幻识通灵」\n甄士隐梦幻识通灵。" in human
    assert "[3] 西游记.txt\n那猴在山中" in human  # no chapter, no brackets
    assert "“根据已知信息无法回答该问题”" in human and NO_ANSWER["zh"] == "根据已知信息无法回答该问题"
    assert "不允许在答案中添加编造成分" in human and "答案请使用中文" in human
    assert human.endswith("问题：孙悟空的师父是谁？")
    assert "根据已知信息无法回答该问题" in str(msgs[0].content)  # the rule is in the system message too


def test_english_grounded_prompt() -> None:
    msgs = grounded_messages("Where does Mr. Darcy live?", EN_PASSAGES)
    human = str(msgs[-1].content)
    assert human.startswith("Context:\n[1] pride.txt 「Chapter 43」\nMr. Darcy lives at Pemberley")
    assert '"I cannot answer this from the provided information."' in human
    assert "Answer in English" in human and "已知信息" not in human
    assert human.endswith("Question: Where does Mr. Darcy live?")
    assert NO_ANSWER["en"] in str(msgs[0].content)


def test_history_is_plain_human_ai_pairs() -> None:
    history = [
        Turn("孙悟空是谁？", "他是石猴。<details><summary>来源</summary><p>[1] <b>西游记</b></p></details>"),
        Turn("<i>他</i>住在哪里？", "花果山&nbsp;水帘洞<br>。"),
    ]
    msgs = grounded_messages("他后来怎么样了？", ZH_PASSAGES[:1], history)
    assert [type(m) for m in msgs] == [
        SystemMessage,
        HumanMessage,
        AIMessage,
        HumanMessage,
        AIMessage,
        HumanMessage,
    ]
    assert [m.content for m in msgs[1:5]] == [
        "孙悟空是谁？",
        "他是石猴。",
        "他住在哪里？",
        "花果山\xa0水帘洞\n。",
    ]
    assert all("<" not in str(m.content) for m in msgs)
    chat = chat_messages("你好", history)
    assert [type(m) for m in chat] == [
        SystemMessage,
        HumanMessage,
        AIMessage,
        HumanMessage,
        AIMessage,
        HumanMessage,
    ]
    assert chat[-1].content == "你好" and "中文" in str(chat[0].content)


@pytest.mark.parametrize(
    ("html", "plain"),
    [
        ("没有标签的答案", "没有标签的答案"),
        ("答案。<details open><summary>来源</summary>[1] a.txt</details>", "答案。"),
        ("<p>第一段</p><p>第二段</p>", "第一段\n第二段"),
        ("a &lt; b &amp; c", "a < b & c"),
        ("x < y, y > z", "x < y, y > z"),
        ("<!-- note -->text", "text"),
    ],
)
def test_plain_text(html: str, plain: str) -> None:
    assert plain_text(html) == plain


def _human(fitted_messages: list) -> str:
    return str(fitted_messages[-1].content)


@pytest.mark.parametrize(
    ("question", "passages"),
    [("孙悟空的师父是谁？", ZH_PASSAGES), ("Where does Mr. Darcy live?", EN_PASSAGES)],
)
def test_budget_drops_lowest_passages_first_then_history(question: str, passages: list[Passage]) -> None:
    history = [Turn("第一个问题？", "第一个回答。"), Turn("第二个问题？", "第二个回答。")]
    full = count_message_tokens(grounded_messages(question, passages, history), len)
    fitted = fit_to_budget(question, passages, history, len, full)
    assert fitted.passages == passages and fitted.history == history and fitted.tokens == full
    assert (fitted.dropped_passages, fitted.dropped_turns) == (0, 0)

    # one token short: the lowest-ranked passage goes, history stays
    fitted = fit_to_budget(question, passages, history, len, full - 1)
    assert fitted.passages == passages[:-1] and fitted.history == history
    assert fitted.tokens <= full - 1 and _human(fitted.messages).endswith(question)

    # only the best passage fits with all history; then the oldest turn goes
    one = count_message_tokens(grounded_messages(question, passages[:1], history), len)
    fitted = fit_to_budget(question, passages, history, len, one)
    assert fitted.passages == passages[:1] and fitted.history == history
    fitted = fit_to_budget(question, passages, history, len, one - 1)
    assert fitted.passages == passages[:1] and fitted.history == history[1:]
    assert fitted.dropped_turns == 1 and fitted.dropped_passages == len(passages) - 1


@pytest.mark.parametrize(
    ("question", "passages"),
    [("孙悟空的师父是谁？", ZH_PASSAGES), ("Where does Mr. Darcy live?", EN_PASSAGES)],
)
def test_budget_too_small_cuts_passages_never_the_question(question: str, passages: list[Passage]) -> None:
    bare = count_message_tokens(grounded_messages(question, []), len)
    top = count_message_tokens(grounded_messages(question, passages[:1]), len)
    # room for part of the best passage: it is shortened
    fitted = fit_to_budget(question, passages, [Turn("旧问题", "旧回答")], len, top - 5)
    assert len(fitted.passages) == 1 and fitted.history == []
    assert 0 < len(fitted.passages[0].text) < len(passages[0].text)
    assert passages[0].text.startswith(fitted.passages[0].text)
    assert fitted.tokens <= top - 5 and len(fitted.passages[0].text) == len(passages[0].text) - 5
    # room for the question only: no passage, the whole question
    fitted = fit_to_budget(question, passages, [], len, bare + 5)
    assert fitted.passages == [] and _human(fitted.messages).endswith(question)
    assert fitted.dropped_passages == len(passages)
    # not even the question fits: a typed error, never a cut question
    with pytest.raises(PromptTooLongError, match="does not fit"):
        fit_to_budget(question, passages, [], len, bare - 1)


def test_budget_uses_the_given_counter() -> None:
    def by_words(text: str) -> int:
        return len(text.split())

    msgs = grounded_messages("Where does Mr. Darcy live?", EN_PASSAGES)
    assert count_message_tokens(msgs, by_words) == sum(
        len(str(m.content).split()) + MESSAGE_OVERHEAD_TOKENS for m in msgs
    )
    fitted = fit_to_budget("Where does Mr. Darcy live?", EN_PASSAGES, [], by_words, 10_000)
    assert fitted.tokens == count_message_tokens(msgs, by_words)


def test_chat_budget_drops_oldest_history() -> None:
    history = [Turn(f"问题{i}", "回答" * 20) for i in range(5)]
    full = count_message_tokens(chat_messages("新问题", history), len)
    fitted = fit_to_budget("新问题", [], history, len, full - 1, grounded=False)
    assert fitted.history == history[1:] and _human(fitted.messages) == "新问题"


def test_rewrite_prompt() -> None:
    history = [Turn("孙悟空是谁？", "孙悟空是花果山的石猴。" * 40)]
    (msg,) = rewrite_messages("他后来怎么样了？", history)
    text = str(msg.content)
    assert "问：孙悟空是谁？\n答：孙悟空是花果山的石猴。" in text
    assert text.endswith("后续问题：他后来怎么样了？\n独立问题：")
    assert len(text) < 600  # long answers are shortened
    (en,) = rewrite_messages("Where does he live?", [Turn("Who is Darcy?", "A gentleman.")])
    assert "Q: Who is Darcy?\nA: A gentleman." in str(en.content)
    assert str(en.content).endswith("Follow-up question: Where does he live?\nStandalone question:")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("孙悟空后来怎么样了？", "孙悟空后来怎么样了？"),
        ("独立问题：孙悟空后来怎么样了？", "孙悟空后来怎么样了？"),
        ("“孙悟空后来怎么样了？”", "孙悟空后来怎么样了？"),
        ("\n\n改写后的问题：「孙悟空后来怎么样了？」\n说明：把他换成了孙悟空。", "孙悟空后来怎么样了？"),
        ('Standalone question: "Where does Mr. Darcy live?"', "Where does Mr. Darcy live?"),
        ("", "他后来怎么样了？"),
        ("  \n ", "他后来怎么样了？"),
        ("独立问题：", "他后来怎么样了？"),
        ("孙" * 101, "他后来怎么样了？"),  # absurdly long: keep the original
        ("独立问题：\n孙悟空后来怎么样了？", "孙悟空后来怎么样了？"),
    ],
)
def test_clean_rewrite(raw: str, expected: str) -> None:
    assert clean_rewrite(raw, "他后来怎么样了？") == expected


@pytest.mark.parametrize(
    ("raw", "question", "expected"),
    [
        # the model echoed the earlier question first (seen with Qwen2.5-1.5B)
        ("孙悟空是谁？\n贾宝玉是谁？", "贾宝玉是谁？", "贾宝玉是谁？"),
        # a rewrite that happens to equal an earlier question is still taken when it is all there is
        ("孙悟空是谁？", "他是谁？", "孙悟空是谁？"),
    ],
)
def test_clean_rewrite_skips_echoed_history(raw: str, question: str, expected: str) -> None:
    assert clean_rewrite(raw, question, earlier=["孙悟空是谁？"]) == expected
