"""Names and aliases mined from a knowledge base's own documents, to widen a question's keyword side.

Why: readers ask by nickname or title (齐天大圣, 孔明, 林妹妹) while the passage uses another name
(孙悟空, 诸葛亮, 黛玉), so BM25 sees no shared term. No name list is shipped: the aliases come from
the documents themselves, at ingest, one table per document, and the knowledge base's table is
their union.

**What is mined** (:func:`mine_aliases`), precision first - a wrong alias pulls in wrong passages:

1. *Formal statements*: 「姓诸葛，名亮，字孔明，道号卧龙先生」, 「姓关名羽，字长生，后改云长」,
   「姓孙，法名悟空」: the full name (surname + given name) gets the courtesy name (字/表字), the
   later or other names (后改/又字/号/道号/别号/法名/小名/乳名/绰号/混名) and their titled
   forms without 先生/居士/… (卧龙先生 → 卧龙).
2. *Given names*: a person name (rjieba's ``nr`` tag, starting with a common surname, seen at least
   :data:`MIN_NAME_COUNT` times) of surname + two characters gets the two characters when they
   occur on their own at least :data:`MIN_ALIAS_COUNT` times and are not a title (夫人, 老爷, …):
   林黛玉 → 黛玉, 孙悟空 → 悟空, 猪八戒 → 八戒.
3. *Naming phrases*: 「称为行者」, 「人皆呼为"美髯公"」, 「绰号镇山太保」, 「就除他做个‘弼马温’」, 「遂称美猴王」:
   the term named (2-4 CJK characters, ending at punctuation or a quote) is an alias of the person
   the passage is about, decided by **co-occurrence**: among the known names that occur within
   :data:`WINDOW` characters before the phrase (speakers - a name followed by 道/曰/笑道 - are not
   the person named), the one that co-occurs most often with the alias anywhere in the document,
   provided it does so for at least :data:`MIN_COOCCURRENCE` of the alias's occurrences and at
   least :data:`MIN_TOGETHER` times (an epithet said once is no alias). A phrase whose own sentence
   names another person between that name and the phrase (「遂超拔林四娘统辖诸姬，又呼为姽婳将军」)
   is skipped: it is about someone else.

Rejected on purpose: aliases shorter than 2 characters, stop words and pronouns, titles shared by
many people (大王, 夫人, 将军, …), aliases that are themselves a more frequent known name of
someone else, and aliases claimed by two different people (ambiguous: dropped from both).

**How it is used** (:meth:`AliasTable.expand`): when a question names one member of a group
(canonical name or alias), the other members are added to the question's keyword side with a lower
weight (``retrieval.alias_weight``); the dense side and the prompt are unchanged. The table is kept
per document segment as versioned JSON in the knowledge base's folder (:mod:`vector_store`), so it
is mined once per document, and derived on first use for documents ingested before aliases existed.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

ALIAS_FORMAT = 1
"""Version of the stored per-document alias JSON (``{"format", "miner", "groups": {name: [aliases]}}``)."""
MINER_REVISION = 3
"""Bump when the mining rules change: stored tables of another revision are mined again."""
MIN_NAME_COUNT = 3
MIN_ALIAS_COUNT = 3
WINDOW = 120
MIN_COOCCURRENCE = 0.3
MIN_TOGETHER = 2
"""A naming phrase's alias must occur near the person at least this often (a one-off epithet,
「都称为罗汉菩萨」 said once of 唐僧, is no alias)."""
MIN_SPEAKS = 2
SPEECH_VERBS = ("道", "曰", "笑道", "说", "问", "答", "听了", "听说")

# The common single-character surnames (百家姓's frequent part) and the compound ones.
SURNAMES = frozenset(
    "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜谢邹喻柏窦章苏潘葛奚范彭"
    "鲁韦马苗凤方俞任袁柳鲍史唐费廉岑薛雷贺倪汤殷罗毕郝邬安傅卞齐康伍余顾孟黄穆萧尹姚邵汪祁毛"
    "狄臧戴宋茅庞熊纪舒屈项祝董梁杜阮蓝闵季贾娄颜郭梅林刁钟徐邱骆高夏蔡田樊胡凌霍虞柯卢莫房裘"
    "缪解丁宣邓单杭洪包诸左石崔吉龚程嵇邢裴陆荣翁荀惠甄封芮储靳段焦巴牧侯全仇栾甘厉祖武符刘詹"
    "龙叶黎白蒲卓蔺屠蒙乔谭姬扶冉雍桑桂牛燕冀浦尚温庄晏柴瞿阎慕茹艾容廖庾耿匡寇欧聂晁敖辛阚"
    "简饶曾沙鞠巢关蒯荆游竺权盖桓猪"
)
"""Common single-character surnames, without those that are mostly function words (那, 于, 和, 时, …)."""
COMPOUND_SURNAMES = frozenset(
    "诸葛 司马 夏侯 欧阳 上官 东方 皇甫 公孙 令狐 慕容 尉迟 长孙 宇文 司徒 司空 太史 端木 "
    "轩辕 澹台 呼延 南宫 独孤 百里 东郭 西门 第五 钟离 闻人 赫连".split()
)
TITLES = frozenset(
    "夫人 老爷 太太 奶奶 姑娘 小姐 先生 将军 丞相 公子 大人 大王 和尚 道人 长老 老儿 娘子 姐姐 "
    "妹妹 哥哥 兄弟 老母 老者 师父 师兄 太守 天王 菩萨 真人 道士 童子 丫头 媳妇 嬷嬷 姨娘 大爷 "
    "二爷 三爷 老太 老爷子 主公 陛下 皇帝 天子 娘娘 元帅 都督 军师 先锋 使者 妖精 妖怪 大仙 "
    "家的 之孝 妈妈 婆子 小子 儿子 女儿 孩儿 老子 行礼 闻言 笑道 说道 姐儿 大夫 太医 姨妈 大舅 老娘 "
    "道婆 仙翁 老佛 舅舅 大姐 太后 国老 大哥 二哥 是个 国舅 皇叔 使君 员外 太公 判官 太尉 相公 "
    "大喜 大怒 大惊 大笑 大哭 大叫 大悦 大骇 大怪".split()
)
"""Words that name a role many people share: never an alias of one person."""
STOP_ALIASES = frozenset(
    "什么 甚么 怎么 这个 那个 如此 这般 一个 我们 你们 他们 自己 大家 众人 此人 其人 本人 别人 "
    "老孙 俺老孙 我老孙 贫僧 老夫 小人 在下 晚生 学生 奴才".split()
)
TITLE_SUFFIXES = ("先生", "居士", "上人", "真人", "道人", "大师", "禅师", "法师")
_CJK = r"[\u4e00-\u9fff]"
_END = r"(?=[’”\"'`」』\-，。！？；：、．,.!?;:\s）)]|$)"
_FORMAL_RE = re.compile(
    rf"(?:复|覆)?姓(?P<s>{_CJK}{{1,2}}?)[，,、\s]?(?:单名|双名|法名|名)(?:叫做|唤做|叫|唤)?"
    rf"(?P<g>{_CJK}{{1,2}}?){_END}(?P<rest>[^。！？\n]{{0,40}})"
)
_FORMAL_MORE_RE = re.compile(
    rf"(?:(?:表字|又字|后改|字)(?P<z>{_CJK}{{2}})"  # a courtesy name has two characters (字奉先者也 -> 奉先)
    rf"|(?:道号|别号|自号|号|法名|小名|乳名|绰号|混名|诨名|浑名)(?:叫做|唤做|取为|唤为|[为是曰叫唤])?[‘“\"`']?"
    rf"(?P<a>{_CJK}{{2,4}}?){_END})"
)
_NAMING_RE = re.compile(
    rf"(?:绰号|混名|诨名|浑名|别名|别号|自号|人称|人呼|呼为|称为|唤为|号为|遂称|做个(?=[‘“\"`']))"
    rf"[为是曰叫]?[‘“\"`']?(?P<a>{_CJK}{{2,4}}?){_END}"
)
_SPEECH_AFTER = re.compile(r"^(?:道|曰|笑道|笑曰|说|问|答|叫|喝|骂|听|忙|大)")


def is_surname_name(word: str) -> bool:
    """A 2-4 character word that starts with a common surname (a person-name shape)."""
    if not 2 <= len(word) <= 4 or not re.fullmatch(f"{_CJK}+", word):
        return False
    return word[:2] in COMPOUND_SURNAMES or word[0] in SURNAMES


def _good_alias(alias: str, name: str) -> bool:
    return (
        len(alias) >= 2
        and alias != name
        and alias not in TITLES
        and alias not in STOP_ALIASES
        and not alias.startswith(("一", "个", "这", "那", "此", "我", "你", "他", "她"))
    )


@dataclass
class _Miner:
    text: str
    counts: Counter[str] = field(default_factory=Counter)
    names: Counter[str] = field(default_factory=Counter)
    found: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    tokens: Counter[str] = field(default_factory=Counter)
    given: set[str] = field(default_factory=set)
    tag_of: dict[str, str] = field(default_factory=dict)
    speakers: Counter[str] | None = None

    def count(self, word: str) -> int:
        if word not in self.counts:
            self.counts[word] = self.text.count(word)
        return self.counts[word]

    def person_names(self) -> None:
        import rjieba

        tags = rjieba.tag(self.text)
        # 黛玉道 / 孔明曰 / 许褚道 are often one token: count them as the name they start with
        words = [
            (w[:-1], tag) if len(w) >= 3 and w[-1] in "道曰" and tag in ("nr", "n") else (w, tag)
            for w, tag in tags
        ]
        self.tokens = Counter(w for w, _ in words)
        for (word, tag), _n in Counter(words).most_common():
            self.tag_of.setdefault(word, tag)
        tagged = Counter(w for w, tag in words if tag in ("nr", "n") and is_surname_name(w))
        for word, n in tagged.items():
            if n >= MIN_NAME_COUNT and word not in TITLES:
                self.names[word] = n

    def speaks(self, word: str) -> bool:
        """Whether ``word`` is followed by a speech verb at least :data:`MIN_SPEAKS` times (a person)."""
        if self.speakers is None:  # one pass: the 2-4 characters before every speech verb
            self.speakers = Counter()
            verbs = re.compile("|".join(map(re.escape, SPEECH_VERBS)))
            for m in verbs.finditer(self.text):
                at = m.start()
                for size in (2, 3, 4):
                    if at >= size:
                        self.speakers[self.text[at - size : at]] += 1
        return self.speakers[word] >= MIN_SPEAKS

    def shared_title(self, given: str) -> bool:
        """True when two names with different surnames end in ``given`` (王大夫, 胡大夫: a role)."""
        owners = {
            n
            for n in self.names
            if n != given and n.endswith(given) and len(n) > len(given) and self.speaks(n)
        }
        return len(owners) >= 2

    def formal(self) -> None:
        for m in _FORMAL_RE.finditer(self.text):
            full = m.group("s") + m.group("g")
            if len(full) < 2:
                continue
            aliases = [a.group("z") or a.group("a") for a in _FORMAL_MORE_RE.finditer(m.group("rest"))]
            if len(m.group("g")) == 2:
                aliases.append(m.group("g"))
            for alias in aliases:
                if _good_alias(alias, full):
                    self.found[full].add(alias)
            self.names[full] = max(self.names[full], self.count(full))

    def given_names(self) -> None:
        for name in list(self.names):
            given = name[2:] if name[:2] in COMPOUND_SURNAMES else name[1:]
            # both must be words of the text's own segmentation (not runs such as 唐僧乃 / 僧乃)
            # and both speak in the text (黛玉道, 林黛玉笑道): 马入城 / 入城 do not
            if (
                len(given) == 2
                and _good_alias(given, name)
                and self.tokens[given] >= MIN_ALIAS_COUNT
                and self.tokens[name] >= MIN_NAME_COUNT
                and self.tag_of.get(given, "n")[0] == "n"  # a noun, not 大怒 / 召入 (verbs)
                and self.speaks(name)
                and self.speaks(given)
            ):
                if self.shared_title(given):
                    continue
                self.found[name].add(given)
                self.given.add(given)

    def naming_phrases(self) -> None:
        known = sorted((n for n in self.names if self.speaks(n) or n in self.found), key=len, reverse=True)
        if not known:
            return
        pattern = re.compile("|".join(map(re.escape, known)))
        positions: dict[str, list[int]] = defaultdict(list)
        for m in pattern.finditer(self.text):
            positions[m.group(0)].append(m.start())
        for m in _NAMING_RE.finditer(self.text):
            alias = m.group("a")
            if (
                not _good_alias(alias, "")
                or self.count(alias) < MIN_ALIAS_COUNT
                or alias in self.names
                or alias in self.given
            ):
                continue
            start = m.start()
            before = self.text[max(0, start - WINDOW) : start]
            # the person named: the nearest name before the phrase that is not a speaker, unless
            # another person-shaped name stands between them in the phrase's sentence
            # (「遂超拔林四娘统辖诸姬，又呼为姽婳将军」 names 林四娘, who never speaks, not 贾政)
            nearest = [
                n for n in pattern.finditer(before) if not _SPEECH_AFTER.match(before[n.end() : n.end() + 2])
            ]
            between = before[nearest[-1].end() :] if nearest else ""
            sentence = re.split(r"[。！？!?\n]", between)[-1]  # the phrase's own sentence
            if nearest and self._other_person(sentence, nearest[-1].group(0)):
                continue
            best = self._best_cooccurring(alias, [nearest[-1].group(0)] if nearest else [], positions)
            if best is not None:
                self.found[best].add(alias)

    def _other_person(self, text: str, name: str) -> bool:
        """Whether ``text`` holds a person name (rjieba ``nr`` with a surname) other than ``name``."""
        import rjieba

        return any(tag == "nr" and is_surname_name(w) and w not in name for w, tag in rjieba.tag(text))

    def _best_cooccurring(
        self, alias: str, candidates: Iterable[str], positions: Mapping[str, list[int]]
    ) -> str | None:
        spots = [m.start() for m in re.finditer(re.escape(alias), self.text)]
        if not spots:
            return None
        best, best_share = None, 0.0
        for name in candidates:
            if alias in name or name in alias:
                continue
            near = positions.get(name, [])
            together = sum(1 for s in spots if _has_near(near, s, WINDOW))
            share = together / len(spots)
            if together >= MIN_TOGETHER and share > best_share:
                best, best_share = name, share
        return best if best_share >= MIN_COOCCURRENCE else None


def _has_near(sorted_positions: Sequence[int], at: int, window: int) -> bool:
    import bisect

    i = bisect.bisect_left(sorted_positions, at - window)
    return i < len(sorted_positions) and sorted_positions[i] <= at + window


def mine_aliases(text: str) -> dict[str, list[str]]:
    """``{full name: [aliases]}`` mined from one document's text (see the module docstring).

    An alias claimed by two names is dropped from both (ambiguous).

    >>> mine_aliases("话说有一人，姓诸葛，名亮，字孔明，道号卧龙先生。孔明笑。孔明走。卧龙在此。")["诸葛亮"]
    ['卧龙', '卧龙先生', '孔明']
    """
    miner = _Miner(text)
    miner.person_names()
    miner.formal()
    miner.given_names()
    miner.naming_phrases()
    # an alias that has aliases of its own (孔明 -> 卧龙先生) joins them to its name (诸葛亮)
    for name in sorted(miner.found, key=lambda n: -len(miner.found[n])):
        for alias in sorted(miner.found.get(name, ())):
            if alias in miner.found and alias != name:
                miner.found[name] |= miner.found.pop(alias) - {name}
    for name, aliases in miner.found.items():
        for alias in list(aliases):
            for suffix in TITLE_SUFFIXES:
                short = alias[: -len(suffix)]
                if alias.endswith(suffix) and len(short) >= 2 and _good_alias(short, name):
                    aliases.add(short)
    owners: dict[str, set[str]] = defaultdict(set)
    for name, aliases in miner.found.items():
        for alias in aliases:
            owners[alias].add(name)
    return {
        name: sorted(a for a in aliases if len(owners[a]) == 1 and a not in miner.found)
        for name, aliases in sorted(miner.found.items())
        if any(len(owners[a]) == 1 and a not in miner.found for a in aliases)
    }


# ------------------------------------------------------------------------------------------ table
@dataclass(frozen=True)
class Expansion:
    """What a question's keyword side gained: ``matched`` member -> the terms added for it."""

    matched: dict[str, list[str]]

    @property
    def terms(self) -> list[str]:
        return list(dict.fromkeys(t for terms in self.matched.values() for t in terms))

    def __bool__(self) -> bool:
        return bool(self.matched)


class AliasTable:
    """The alias groups of one knowledge base: a canonical name and its aliases per group.

    >>> t = AliasTable({"孙悟空": ["悟空", "齐天大圣", "行者"]})
    >>> t.expand("齐天大圣住在哪里").matched
    {'齐天大圣': ['孙悟空', '悟空', '行者']}
    >>> t.expand("唐僧住在哪里").matched
    {}
    """

    def __init__(self, groups: Mapping[str, Sequence[str]] | None = None) -> None:
        self.groups: dict[str, list[str]] = {k: list(v) for k, v in (groups or {}).items()}
        member_of: dict[str, set[str]] = defaultdict(set)
        for name, aliases in self.groups.items():
            member_of[name].add(name)
            for alias in aliases:
                member_of[alias].add(name)
        # a string naming two groups is ambiguous: it expands nothing
        self._member = {m: next(iter(g)) for m, g in member_of.items() if len(g) == 1}
        self._pattern = (
            re.compile("|".join(map(re.escape, sorted(self._member, key=len, reverse=True))))
            if self._member
            else None
        )

    @classmethod
    def merge(cls, tables: Iterable[Mapping[str, Sequence[str]]]) -> AliasTable:
        groups: dict[str, set[str]] = defaultdict(set)
        for table in tables:
            for name, aliases in table.items():
                groups[name].update(aliases)
        return cls({name: sorted(aliases) for name, aliases in groups.items()})

    def __len__(self) -> int:
        return len(self.groups)

    def expand(self, question: str) -> Expansion:
        """The other members of every group a question names (longest match first, no overlaps)."""
        if self._pattern is None:
            return Expansion({})
        matched: dict[str, list[str]] = {}
        named = {m.group(0) for m in self._pattern.finditer(question)}
        for member in sorted(named, key=len, reverse=True):
            name = self._member[member]
            group = [name, *self.groups[name]]
            added = [m for m in group if m != member and m not in question]
            if added and not any(member in other for other in matched):
                matched[member] = added
        return Expansion(matched)

    def to_json(self) -> dict[str, Any]:
        return {"groups": self.groups}


def stored_form(groups: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The JSON object stored per document (versioned, with the miner's revision)."""
    return {
        "format": ALIAS_FORMAT,
        "miner": MINER_REVISION,
        "groups": {k: list(v) for k, v in groups.items()},
    }


def from_stored(data: Any) -> dict[str, list[str]] | None:
    """The groups of a stored object; None when it is of another format or miner revision (re-mine)."""
    if (
        not isinstance(data, dict)
        or data.get("format") != ALIAS_FORMAT
        or data.get("miner") != MINER_REVISION
    ):
        return None
    groups = data.get("groups")
    if not isinstance(groups, dict):
        return None
    return {
        str(k): [str(a) for a in v]
        for k, v in groups.items()
        if isinstance(v, list) and all(isinstance(a, str) for a in v)
    }


# ------------------------------------------------------------------------------------------ storage
def document_text(chunks: Sequence[Any]) -> str:
    """A document's text rebuilt from its chunks in order (``start``/``end`` offsets; overlaps
    counted once), for documents whose alias table was not mined at ingest.

    >>> from types import SimpleNamespace as C
    >>> document_text([C(text="abcd", start=0, end=4), C(text="cdef", start=2, end=6)])
    'abcdef'
    """
    out: list[str] = []
    end = 0
    for chunk in chunks:
        if chunk.end <= end:
            continue
        out.append(chunk.text[max(0, end - chunk.start) :])
        end = chunk.end
    return "".join(out)


def ensure_document_aliases(store: Any, segment: str, text: str) -> dict[str, list[str]]:
    """The stored alias groups of one document's segment, mined from ``text`` and kept beside
    the segment (``<seg>.aliases.json``) when missing or of another miner revision."""
    groups = from_stored(store.read_segment_extra(segment, "aliases"))
    if groups is None:
        started = time.perf_counter()
        groups = mine_aliases(text)
        try:
            store.write_segment_extra(segment, "aliases", stored_form(groups))
        except OSError as exc:  # read-only knowledge base: use it, mine again next time
            log.warning("cannot keep the alias table of segment %s: %s", segment, exc)
        log.info(
            "mined %d alias groups from segment %s in %.1f s",
            len(groups),
            segment,
            time.perf_counter() - started,
        )
    return groups


def table_for(store: Any, snapshot: Any, fold: Callable[[str], str] | None = None) -> AliasTable:
    """The alias table of a knowledge base version: the union of its documents' tables (each
    mined once; documents ingested before aliases existed are mined from their stored chunks).

    ``fold`` (the keyword tokenizer's normalisation) puts every name into the keyword index's
    script, so a simplified question finds the aliases of a traditional novel."""
    tables = []
    for entry in snapshot.documents.values():
        data = from_stored(store.read_segment_extra(entry.segment, "aliases"))
        if data is None:
            chunks = [snapshot.chunks[r] for r in snapshot.rows_of(entry.doc_id)]
            data = ensure_document_aliases(store, entry.segment, document_text(chunks))
        if fold is not None:
            data = {fold(name): [fold(a) for a in aliases] for name, aliases in data.items()}
        tables.append(data)
    return AliasTable.merge(tables)


__all__ = [
    "ALIAS_FORMAT",
    "MINER_REVISION",
    "AliasTable",
    "Expansion",
    "document_text",
    "ensure_document_aliases",
    "from_stored",
    "is_surname_name",
    "mine_aliases",
    "stored_form",
    "table_for",
]
