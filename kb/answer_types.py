"""Numbers in questions: the form of answer a question asks for when it is a number with its unit,
and the numbers a question names itself.

Why: readers ask 「那根铁棒有多重」, 「老院主说自己多大岁数」, 「宝玉乡试中了第几名」. The passage that
answers holds 「一万三千五百斤」, 「二百七十岁」, 「第七名」, while BM25 and the embedder only see the
question's other words, so the answering chunk often sits a few places below chunks that talk about
the same thing without saying the number. Matching the *type* of the expected answer is the oldest
trick of question answering systems (the answer-type classifiers of TREC QA); here it is a small
lift for the candidates whose text holds a number of the asked kind (``retrieval.answer_type_weight``,
measured in docs/RETRIEVAL.md, 'Answer types and the numbers a question names').

The same module finds the numbers a question itself names (:func:`question_numbers`: 「1992年4月，
罗保铭担任什么职务」): a candidate that says that number the same way is lifted too
(``retrieval.number_match_weight``), which picks the one post of a CV, the one record of a season.

Only questions whose answer is a quantity, an ordinal, an age, a length, a weight, a duration, a sum
of money or a date get a type; any other question (who, what, where, why) gets None and nothing
changes for it. The rules read simplified Chinese: the retriever passes the question and the
chunks through the keyword index's script folding first, so traditional text matches too.

>>> t = answer_type("孙悟空从东海龙宫拿走的那根铁棒有多重？")
>>> t.label, t.matches("重一万三千五百斤"), t.matches("好一根铁棒")
('weight', True, False)
>>> answer_type("宝玉乡试中了第几名？").matches("中了第七名举人")
True
>>> answer_type("唐僧住在哪里？") is None
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NUMBER = r"[零〇○一二两三四五六七八九十百千万亿廿卅半\d]+"
"""A number as novels and modern text write it (Chinese numerals, Arabic digits after width folding)."""
MEASURE_WORDS = (
    "卷天年人个两斤里丈尺寸岁次回匹口座名位件本首句字日月遍难员条只头张把间层门步株般样下点文贯元块米"
)
"""Single-character units and classifiers a counted answer ends in (三十六般, 三千六百株, 五十脊杖 …)."""
_DATE = rf"(?:初[一二三四五六七八九十]|{NUMBER}[年月日号]|元宵|端午|中秋|除夕|大年|清明|重阳|七夕|正月|腊月)"


@dataclass(frozen=True)
class AnswerType:
    """A kind of answer and the pattern of text that can hold one."""

    label: str
    pattern: re.Pattern[str]

    def matches(self, text: str) -> bool:
        """Whether ``text`` holds an answer of this type."""
        return self.pattern.search(text) is not None


def _type(label: str, unit: str) -> AnswerType:
    return AnswerType(label, re.compile(f"{NUMBER}{unit}"))


# (label, question pattern, answer unit); the first rule that matches the question wins
_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("age", re.compile(r"多大(?:岁数|年纪|年龄|年岁)|几岁|多少岁|年方几何"), "岁"),
    ("weight", re.compile(r"多重|多沉|多少(?:斤|公斤|千克|吨)"), "(?:斤|两|钧|吨|公斤|千克|克)"),
    ("duration", re.compile(r"多久|多长时间|多少时间"), "(?:年|个月|月|日|天|载|时辰|小时|分钟|秒|周|星期)"),
    (
        "length",
        re.compile(r"多长|多高|多远|多宽|多深|多粗|多大"),
        "(?:寸|尺|丈|里|米|公里|千米|厘米|毫米|长|高|远|宽|深)",
    ),
    (
        "money",
        re.compile(r"(?:多少|几)(?:银子|钱|两银子|银两|费用|钱财|两)|要价多少|值多少"),
        "(?:两|贯|文|钱|元|块|万元|亿元|美元)",
    ),
)
_ORDINAL = re.compile(r"第几([^\s，,。？?、的])")
_DATE_QUESTION = re.compile(
    r"哪一天|哪天|哪一日|什么日子|什么时候|何时|哪一年|哪年|何年|哪个月|几月|几号|生日"
)
_COUNT = re.compile(rf"(?<![那这好十没])(?:多少|几)(?!乎)([{MEASURE_WORDS}])?")


def answer_type(question: str) -> AnswerType | None:
    """The answer type of ``question`` (simplified Chinese), or None when its answer has no
    predictable form.

    >>> [answer_type(q).label for q in ("他说自己多大岁数？", "一跃跳了多远？", "扣了多少银子？", "生在哪一天？")]
    ['age', 'length', 'money', 'date']
    >>> t = answer_type("借了多少条船？")
    >>> t.label, t.matches("二十只船"), t.matches("二十条船")
    ('count', False, True)
    >>> answer_type("会多少般变化？").matches("三十六般变化"), answer_type("几乎送命的是谁？")
    (True, None)
    >>> answer_type("寓居会馆那几年靠做什么打发日子？") is None  # 那几年: "those years", not a question
    True
    """
    m = _ORDINAL.search(question)
    if m:
        return AnswerType("ordinal", re.compile(f"第{NUMBER}{re.escape(m.group(1))}"))
    for label, asks, unit in _RULES:
        if asks.search(question):
            return _type(label, unit)
    if _DATE_QUESTION.search(question):
        return AnswerType("date", re.compile(_DATE))
    m = _COUNT.search(question)
    if m:
        return _type("count", m.group(1) or f"[{MEASURE_WORDS}]")
    return None


# ------------------------------------------------------------------ numbers the question names
_NAMED_NUMBER = r"(?:\d+(?:\.\d+)?|[零〇两一二三四五六七八九十百千万亿]{2,}|[两一二三四五六七八九十百千万])"
_NAMED_UNIT = r"[年月日号岁回卷斤两里丈尺寸个名次天人只条支匹万亿%]"
_NAMED = re.compile(
    rf"(?<![第哪几多零〇两一二三四五六七八九十百千万亿\d])(?:(?:{_NAMED_NUMBER}{_NAMED_UNIT})+|\d{{2,}})"
)
_SPECIFIC = re.compile(r"\d|[零〇两一二三四五六七八九十百千万亿]{2,}")
"""A number specific enough to match on: any digit, or a Chinese numeral of two characters or more
(十万, 五百; not the 一个 / 三天 / 两人 of every page)."""


def question_numbers(question: str) -> list[str]:
    """The numbers ``question`` itself names, each with its units as written (「1992年4月」,
    「2008年」, 「十万支」), in order, without repeats: in a passage that says the same number the
    same way, they pick out the one fact of many alike (a CV's posts by date).

    >>> question_numbers("1992年4月，罗保铭担任什么职务？")
    ['1992年4月']
    >>> question_numbers("诸葛亮答应三天交出十万支箭，他借了多少条船？"), question_numbers("唐僧住在哪里？")
    (['十万支'], [])

    Not numbers named: ordinals and question words (第一次, 哪一天, 几个), and small Chinese numbers
    with a common unit (一个, 三天, 两人), which every page says.
    """
    return [n for n in dict.fromkeys(_NAMED.findall(question)) if len(n) >= 2 and _SPECIFIC.search(n)]


__all__ = ["MEASURE_WORDS", "NUMBER", "AnswerType", "answer_type", "question_numbers"]
