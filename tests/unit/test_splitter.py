"""Table and property tests for kb.splitter: sentences, chapters, chunk packing, offsets."""

from __future__ import annotations

import bisect
import itertools
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kb.splitter import WHITESPACE, Chunk, find_chapters, split_sentences, split_text, unshared_texts
from tests.helpers import NOVELS

IS = "\u3000"  # ideographic space, as used in real chapter headings


@cache
def read_novel(name: str, encoding: str = "utf-8", *, keep_line_ends: bool = False) -> str:
    """Read a bundled novel, optionally without newline translation (skip if data is absent)."""
    path = NOVELS / name
    if not path.exists():
        pytest.skip(f"novel not available: {path}")
    with path.open(encoding=encoding, newline="" if keep_line_ends else None) as handle:
        return handle.read()


def first_chapters(text: str, count: int) -> str:
    """The text up to (not including) the heading of chapter ``count + 1``."""
    offsets = [offset for offset, _ in find_chapters(text)]
    return text[: offsets[count]]


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


def texts(chunks: list[Chunk]) -> list[str]:
    return [c.text for c in chunks]


def check_invariants(text: str, chunks: list[Chunk], chunk_size: int, overlap: int) -> None:
    """Properties every split must have, whatever the input."""
    assert [c.index for c in chunks] == list(range(len(chunks)))
    covered = bytearray(len(text))
    for c in chunks:
        assert 0 <= c.start < c.end <= len(text)
        assert c.text == text[c.start : c.end]
        assert len(c.text) <= chunk_size
        assert c.text.strip(WHITESPACE) == c.text, "chunk span not trimmed"
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    uncovered = [i for i, ch in enumerate(text) if not covered[i] and ch not in WHITESPACE]
    assert not uncovered, f"non-whitespace chars not in any chunk: {uncovered[:10]}"
    starts = [c.start for c in chunks]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    for prev, nxt in itertools.pairwise(chunks):
        assert prev.end - nxt.start <= overlap, "overlap larger than allowed"
        assert nxt.end > prev.end, "a chunk adds no new text"
    # Chunks never cross a chapter heading, and carry the title of the chapter they start in.
    chapters = find_chapters(text)
    offsets = [offset for offset, _ in chapters]
    for c in chunks:
        assert not any(c.start < offset < c.end for offset in offsets)
        k = bisect.bisect_right(offsets, c.start) - 1
        assert c.chapter == (chapters[k][1] if k >= 0 else None)


# --------------------------------------------------------------------------- sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "你好。世界！对吗？是的；好", ["你好。", "世界！", "对吗？", "是的；", "好"], id="cjk-enders"
        ),
        pytest.param(
            "我爱Python. 它很好!你呢?Yes; no",
            ["我爱Python.", "它很好!", "你呢?", "Yes;", "no"],
            id="mixed-cn-en-punct",
        ),
        pytest.param(
            "First one. Second one! Third? ok", ["First one.", "Second one!", "Third?", "ok"], id="english"
        ),
        pytest.param("「你好。」他说", ["「你好。」", "他说"], id="corner-quote"),
        pytest.param("『好！』然后", ["『好！』", "然后"], id="double-corner-quote"),
        pytest.param("“走吧。”他说", ["“走吧。”", "他说"], id="curly-double-quote"),
        pytest.param("‘是吗？’她问", ["‘是吗？’", "她问"], id="curly-single-quote"),
        pytest.param("（全文完。）后记", ["（全文完。）", "后记"], id="fullwidth-paren"),
        pytest.param("(the end.) Next", ["(the end.)", "Next"], id="ascii-paren"),
        pytest.param('He said "Hi." She left.', ['He said "Hi."', "She left."], id="ascii-double-quote"),
        pytest.param("He said 'Hi!' and left", ["He said 'Hi!'", "and left"], id="ascii-single-quote"),
        pytest.param("她说：“我不去！”」完", ["她说：“我不去！”」", "完"], id="closer-run"),
        pytest.param("他说……我不知道。", ["他说……", "我不知道。"], id="double-ellipsis"),
        pytest.param("嗯…好吧。", ["嗯…", "好吧。"], id="single-ellipsis"),
        pytest.param("等等……”他走了", ["等等……”", "他走了"], id="ellipsis-then-quote"),
        pytest.param("Wait... what? ok", ["Wait...", "what?", "ok"], id="ascii-ellipsis"),
        pytest.param("好！？真的", ["好！？", "真的"], id="mixed-run"),
        pytest.param("Pi is 3.14 today. Yes", ["Pi is 3.14 today.", "Yes"], id="decimal-not-end"),
        pytest.param("Use e.g. this one. Ok", ["Use e.g. this one.", "Ok"], id="eg-not-end"),
        pytest.param(
            "Mr. Bennet and Mrs. Long met Dr. Who. Fine",
            ["Mr. Bennet and Mrs. Long met Dr. Who.", "Fine"],
            id="titles",
        ),
        pytest.param("see www.example.com now", ["see www.example.com now"], id="dotted-token"),
        pytest.param("版本3.14发布。好", ["版本3.14发布。", "好"], id="cn-decimal"),
        pytest.param("没有句号的第一行\n第二行", ["没有句号的第一行", "第二行"], id="newline-ends"),
        pytest.param("a line\r\nnext line\r\n", ["a line", "next line"], id="crlf"),
        pytest.param("　　段落一。\n\n　　段落二。\n", ["段落一。", "段落二。"], id="indent-trimmed"),
        pytest.param("\ufeff第一句。", ["第一句。"], id="bom-trimmed"),
        pytest.param("", [], id="empty"),
        pytest.param(" \n\u3000\t\r\n ", [], id="whitespace-only"),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


# --------------------------------------------------------------------------- chapters


@pytest.mark.parametrize(
    ("line", "title"),
    [
        ("第一回　灵根育孕源流出　心性修持大道生", "第一回　灵根育孕源流出　心性修持大道生"),
        ("第一回  甄士隐梦幻识通灵 贾雨村风尘怀闺秀", "第一回  甄士隐梦幻识通灵 贾雨村风尘怀闺秀"),
        ("  第三章 xx  ", "第三章 xx"),
        ("第十回", "第十回"),
        ("第一二零回  甄士隐详说太虚情", "第一二零回  甄士隐详说太虚情"),
        ("第12节：标题", "第12节：标题"),
        ("第三卷 风起", "第三卷 风起"),
        ("第十回 二愚賭氣", "第十回 二愚賭氣"),
        ("《》目录 第一回　灵根育孕源流出", "第一回　灵根育孕源流出"),
        ("Chapter 1", "Chapter 1"),
        ("CHAPTER IV", "CHAPTER IV"),
        ("Chapter 12. Title", "Chapter 12. Title"),
        ("chapter 7: The End", "chapter 7: The End"),
    ],
)
def test_heading_lines_are_chapters(line: str, title: str) -> None:
    text = f"前言。\n{line}\n正文第一句。"
    assert find_chapters(text) == [(text.index(line.strip()), title)]


@pytest.mark.parametrize(
    "line",
    [
        "他读到第三回时睡着了。",
        "第三回的故事很精彩",
        "第三回 讲的是孙悟空大闹天宫。",
        "    第四回中既将薛家母子在荣府内寄居等事略已表明，此回则暂不能写矣．",
        "第一回是民国元年我初到北京的时候",
        "第三章 " + "很长的标题" * 10,
        "卷三",
        "In Chapter 3 we see",
        "Chapter mix",
        "Chapters 1 to 3",
    ],
)
def test_prose_lines_are_not_chapters(line: str) -> None:
    assert find_chapters(f"前言。\n{line}\n正文。") == []


def test_mid_sentence_chapter_mention_does_not_split() -> None:
    text = "第一回 开端\n他说第三回最好看。\n第三回的故事很精彩。\n第二回 继续\n完。"
    chunks = split_text(text, chunk_size=100, overlap=0)
    assert [(c.chapter, c.text) for c in chunks] == [
        ("第一回 开端", "第一回 开端\n他说第三回最好看。\n第三回的故事很精彩。"),
        ("第二回 继续", "第二回 继续\n完。"),
    ]


HONGLOUMENG_TITLES = [
    "第一回  甄士隐梦幻识通灵\u3000贾雨村风尘怀闺秀",
    "第二回  贾夫人仙逝扬州城\u3000冷子兴演说荣国府",
    "第三回   贾雨村夤缘复旧职\u3000林黛玉抛父进京都",
]
XIYOUJI_TITLES = [
    f"第一回{IS}灵根育孕源流出{IS}心性修持大道生",
    f"第二回{IS}悟彻菩提真妙理{IS}断魔归本合元神",
    f"第三回{IS}四海千山皆拱伏{IS}九幽十类尽除名",
]


@pytest.mark.parametrize(
    ("name", "encoding", "titles", "preamble_start"),
    [
        ("hongloumeng.utf8.txt", "utf-8", HONGLOUMENG_TITLES, "《红楼梦》曹雪芹"),
        ("xiyouji.utf8-bom.txt", "utf-8", XIYOUJI_TITLES, "《西游记》"),
        (
            "sanguo.gbk.txt",
            "gb18030",
            [
                f"第一回{IS}宴桃园豪杰三结义{IS}斩黄巾英雄首立功",
                f"第二回{IS}张翼德怒鞭督邮{IS}何国舅谋诛宦竖",
                f"第三回{IS}议温明董卓叱丁原{IS}馈金珠李肃说吕布",
            ],
            None,
        ),
        ("pride_and_prejudice.txt", "utf-8", ["Chapter 1", "Chapter 2", "Chapter 3"], None),
    ],
)
def test_real_novel_first_three_chapters(
    name: str, encoding: str, titles: list[str], preamble_start: str | None
) -> None:
    excerpt = first_chapters(read_novel(name, encoding), 3)
    chapters = find_chapters(excerpt)
    assert [title for _, title in chapters] == titles

    chunks = split_text(excerpt)
    check_invariants(excerpt, chunks, 300, 60)
    preamble = [c for c in chunks if c.chapter is None]
    if preamble_start is None:
        assert preamble == []
    else:
        assert preamble and preamble[0].text.startswith(preamble_start)  # BOM is not in a chunk
    for offset, title in chapters:
        first = next(c for c in chunks if c.chapter == title)
        assert first.start == offset, "the heading line opens the chapter's first chunk"
        assert first.text.splitlines()[0].endswith(title)


def test_real_novel_chapter_counts() -> None:
    assert len(find_chapters(read_novel("hongloumeng.utf8.txt"))) == 120
    assert len(find_chapters(read_novel("xiyouji.utf8-bom.txt"))) == 100
    assert len(find_chapters(read_novel("pride_and_prejudice.txt"))) == 61
    # 阿Q正传's nine chapters; 社戏's "第一回是民国元年……" line is prose.
    nahan = find_chapters(read_novel("nahan.utf8.txt"))
    assert [title for _, title in nahan][:2] == [f"第一章{IS}序", f"第二章{IS}优胜记略"]
    assert len(nahan) == 9


def test_hongloumeng_crlf_and_prose_mention_of_chapter() -> None:
    """The real file has CRLF line ends and a "第四回中……" prose line that is no heading."""
    raw = read_novel("hongloumeng.utf8.txt", keep_line_ends=True)
    excerpt = first_chapters(raw, 5)
    assert "\r\n" in excerpt and "第四回中既将" in excerpt
    chapters = find_chapters(excerpt)
    assert len(chapters) == 5 and all("\r" not in title for _, title in chapters)
    chunks = split_text(excerpt)
    check_invariants(excerpt, chunks, 300, 60)
    mention = next(c for c in chunks if "第四回中既将" in c.text)
    assert mention.chapter is not None and mention.chapter.startswith("第五回")


# --------------------------------------------------------------------------- chunk packing


@pytest.mark.parametrize("text", ["", " ", "\n\n", "\u3000\u3000\r\n\t", "\ufeff "])
def test_empty_and_whitespace_input(text: str) -> None:
    assert split_text(text) == []


@pytest.mark.parametrize(
    ("text", "chunk_size", "overlap", "expected"),
    [
        pytest.param("一二。三四。五六。", 6, 0, ["一二。三四。", "五六。"], id="overlap-0"),
        pytest.param(
            "甲甲甲甲。乙乙乙乙。丙丙丙丙。",
            10,
            3,
            ["甲甲甲甲。乙乙乙乙。", "丙丙丙丙。"],
            id="overlap-smaller-than-a-sentence",
        ),
        pytest.param(
            "甲甲。乙乙。丙丙。丁丁。戊戊。己己。",
            12,
            7,
            ["甲甲。乙乙。丙丙。丁丁。", "丙丙。丁丁。戊戊。己己。"],
            id="overlap-spans-several-sentences",
        ),
        pytest.param(
            "甲甲。乙乙。丙丙。丁丁。",
            6,
            5,
            ["甲甲。乙乙。", "乙乙。丙丙。", "丙丙。丁丁。"],
            id="overlap-near-chunk-size-still-progresses",
        ),
        pytest.param(
            "甲甲。乙乙。丙丙丙丙丙丙丙丙。",
            9,
            3,
            ["甲甲。乙乙。", "丙丙丙丙丙丙丙丙。"],
            id="overlap-only-if-next-sentence-fits",
        ),
        pytest.param("One. Two. Three.", 11, 4, ["One. Two.", "Two. Three."], id="english-overlap"),
        pytest.param("短句。", 300, 60, ["短句。"], id="single-sentence"),
    ],
)
def test_packing_and_overlap(text: str, chunk_size: int, overlap: int, expected: list[str]) -> None:
    chunks = split_text(text, chunk_size=chunk_size, overlap=overlap)
    assert texts(chunks) == expected
    check_invariants(text, chunks, chunk_size, overlap)


@pytest.mark.parametrize(("chunk_size", "overlap"), [(300, 60), (120, 0), (80, 30), (50, 49)])
def test_sentences_are_not_cut_when_they_fit(chunk_size: int, overlap: int) -> None:
    text = read_novel("nahan.utf8.txt")[:20000]
    spans = split_sentences(text)
    starts = {s for s, e in spans if e - s <= chunk_size}
    ends = {e for s, e in spans if e - s <= chunk_size}
    chunks = split_text(text, chunk_size=chunk_size, overlap=overlap)
    check_invariants(text, chunks, chunk_size, overlap)
    long_spans = [(s, e) for s, e in spans if e - s > chunk_size]
    for c in chunks:
        inside_long = any(s <= c.start < e or s < c.end <= e for s, e in long_spans)
        if not inside_long:
            assert c.start in starts and c.end in ends, f"chunk cuts a sentence: {c.text!r}"


def test_chunks_fill_up_to_chunk_size() -> None:
    """Greedy packing: a chunk stops only because the next sentence would not fit."""
    text = "".join(f"第{i}句话，长度不一{'啊' * (i % 7)}。" for i in range(200))
    spans = split_sentences(text)
    chunks = split_text(text, chunk_size=100, overlap=0)
    check_invariants(text, chunks, 100, 0)
    for c, nxt in itertools.pairwise(chunks):
        next_sentence_end = next(e for s, e in spans if s == nxt.start)
        assert next_sentence_end - c.start > 100


@pytest.mark.parametrize(
    ("text", "chunk_size", "overlap", "expected"),
    [
        pytest.param("一" * 700 + "。", 300, 0, ["一" * 300, "一" * 300, "一" * 100 + "。"], id="hard-cut"),
        pytest.param(
            "甲" * 200 + "，" + "乙" * 200 + "，" + "丙" * 50 + "。",
            300,
            0,
            ["甲" * 200 + "，", "乙" * 200 + "，" + "丙" * 50 + "。"],
            id="cut-after-comma",
        ),
        pytest.param(
            "前。" + "甲" * 20 + "、" + "乙" * 20 + "。后。",
            30,
            0,
            ["前。" + "甲" * 20 + "、", "乙" * 20 + "。后。"],
            id="cut-after-dunhao-then-pack",
        ),
    ],
)
def test_long_sentence_is_cut(text: str, chunk_size: int, overlap: int, expected: list[str]) -> None:
    chunks = split_text(text, chunk_size=chunk_size, overlap=overlap)
    assert texts(chunks) == expected
    check_invariants(text, chunks, chunk_size, overlap)


def test_long_sentence_pieces_overlap_at_soft_breaks() -> None:
    text = "，".join(f"第{i:02d}段话" for i in range(60)) + "。"  # one 359-char sentence
    chunks = split_text(text, chunk_size=100, overlap=20)
    check_invariants(text, chunks, 100, 20)
    assert len(chunks) > 3
    for prev, nxt in itertools.pairwise(chunks):
        assert 0 < prev.end - nxt.start <= 20
        assert text[nxt.start - 1] == "，", "pieces start right after a comma"
        assert prev.text.endswith("，")


def test_long_english_sentence_is_cut_between_words() -> None:
    words = [f"word{i}" for i in range(80)]
    text = " ".join(words) + "."
    chunks = split_text(text, chunk_size=50, overlap=12)
    check_invariants(text, chunks, 50, 12)
    for c in chunks:
        assert all(w.strip(".") in words for w in c.text.split()), c.text


def test_offsets_and_indexes_on_mixed_text() -> None:
    text = '\ufeff  前言很短。\n\n第一回 开始\n　　她说：「你好。」He said "hi." 3.14 is pi!\n\n\n第二回 结束\n最后……完。  '
    chunks = split_text(text, chunk_size=12, overlap=4)
    check_invariants(text, chunks, 12, 4)
    assert chunks[0].text == "前言很短。" and chunks[0].chapter is None
    assert {c.chapter for c in chunks} == {None, "第一回 开始", "第二回 结束"}
    assert chunks[-1].text == "最后……完。"


# --------------------------------------------------------------------------- pages


def test_page_mapping() -> None:
    text = "".join(f"第{i}页的句子。" for i in range(30))
    pages = [(10, 1), (60, 2), (150, 3)]
    chunks = split_text(text, chunk_size=40, overlap=10, pages=pages)
    check_invariants(text, chunks, 40, 10)
    assert chunks[0].page is None  # starts before the first page offset
    for c in chunks:
        expected = None
        for offset, page in pages:
            if offset <= c.start:
                expected = page
        assert c.page == expected
    assert {c.page for c in chunks} == {None, 1, 2, 3}
    # The page map need not be sorted; no page map means no pages.
    assert split_text(text, chunk_size=40, overlap=10, pages=pages[::-1]) == chunks
    assert all(c.page is None for c in split_text(text, chunk_size=40, overlap=10))


# --------------------------------------------------------------------------- misc


@pytest.mark.parametrize(("chunk_size", "overlap"), [(0, 0), (-5, 0), (10, 10), (10, -1), (10, 20)])
def test_bad_parameters_raise(chunk_size: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        split_text("你好。", chunk_size=chunk_size, overlap=overlap)


def test_whitespace_constant_matches_str_isspace() -> None:
    assert {chr(c) for c in range(0x110000) if chr(c).isspace()} == set(WHITESPACE) - {"\ufeff", "\u200b"}


# --------------------------------------------------------------------------- property test

TOKENS = [
    *"天地人你我他的了是不在有个这中大来上国和说们到",
    *"。！？；…，、.!?;,:",
    *"”’」』）)\"'「『“‘（(",
    *"abcXYZ019",
    " ",
    "\u3000",
    "\n",
    "\r\n",
    "\n\n",
    "……",
    "...",
    "3.14",
    "Mr. ",
    "e.g. ",
    "\n第三回 标题\n",
    "\n第十二章\n",
    "\nChapter 4\n",
    "第三回",
    "。。。",
]


@st.composite
def split_cases(draw: st.DrawFn) -> tuple[str, int, int]:
    text = "".join(draw(st.lists(st.sampled_from(TOKENS), max_size=120)))
    chunk_size = draw(st.integers(min_value=1, max_value=60))
    overlap = draw(st.integers(min_value=0, max_value=chunk_size - 1))
    return text, chunk_size, overlap


@settings(max_examples=300, deadline=None)
@given(split_cases())
def test_split_text_invariants(case: tuple[str, int, int]) -> None:
    text, chunk_size, overlap = case
    chunks = split_text(text, chunk_size=chunk_size, overlap=overlap)
    check_invariants(text, chunks, chunk_size, overlap)
    assert (chunks == []) == (text.strip(WHITESPACE) == "")
    for s, e in split_sentences(text):
        assert 0 <= s < e <= len(text) and text[s:e].strip(WHITESPACE) == text[s:e]


# --------------------------------------------------------------------------- unshared_texts


@pytest.mark.parametrize(
    ("name", "size", "overlap"),
    [
        ("hongloumeng.utf8.txt", 300, 60),
        ("pride_and_prejudice.txt", 120, 30),
        ("hongloumeng.utf8.txt", 300, 0),
    ],
)
def test_unshared_texts_embed_every_character_once(name: str, size: int, overlap: int) -> None:
    text = (NOVELS / name).read_text(encoding="utf-8")[20_000:60_000]
    chunks = split_text(text, chunk_size=size, overlap=overlap)
    parts = unshared_texts(chunks)
    assert len(parts) == len(chunks)
    covered: set[int] = set()
    prev_end = None
    for chunk, part in zip(chunks, parts, strict=True):
        begin = max(chunk.start, prev_end) if prev_end is not None else chunk.start
        if text[begin : chunk.end].strip():
            assert part == text[begin : chunk.end]  # the chunk's new text, exactly
            span = set(range(begin, chunk.end))
            assert not span & covered  # never embedded twice
            covered |= span
        else:
            assert part == chunk.text  # nothing new: the whole chunk, never an empty text
        prev_end = chunk.end
    every = {i for c in chunks for i in range(c.start, c.end) if not text[i].isspace()}
    assert every <= covered  # and every character of every chunk is embedded somewhere
    if overlap:
        assert sum(map(len, parts)) < sum(len(c.text) for c in chunks)
