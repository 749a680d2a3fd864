"""kb.sections: sections of novels, story collections, plays and markdown/HTML/EPUB; listing; --chapter."""

from __future__ import annotations

import itertools
from functools import cache
from pathlib import Path

import pytest

from kb.errors import KnowledgeBaseError
from kb.sections import document_sections, find_sections, resolve_section, section_text
from kb.splitter import split_text
from loaders.registry import load_document
from tests.helpers import NOVELS

COLLECTION = """聊斋志异（节选）
卷一
考城隍
　　予姊丈之祖宋公，讳焘，邑廪生。一日，病卧，见吏人持牒，牵白颠马来，云：“请赴试。”公言：“文宗未临，何遽得考？”
　　吏不言，但敦促之。公力病乘马从去，路甚生疏。
耳中人
　　谭晋玄，邑诸生也。笃信导引之术，寒暑不辍。行之数月，若有所得。
　　一日，方趺坐，闻耳中小语如蝇，曰：“可以见矣。”
卷二
偷桃
　　童时赴郡试，值春节。旧例，先一日，各行商贾，彩楼鼓吹赴藩司，名曰“演春”。
　　余从友人戏瞩。是日游人如堵。
春风
秋雨
　　此二行是诗，不是题目：后面没有散文的行才算题目吗？这一行是散文，所以“秋雨”算题目。
"""

PLAY = """雷雨（节选）
第一幕
第一场
鲁贵：（喘着气）四凤！
四凤：（只做听不见，依然滤她的汤药）
第二场
周朴园：你来干什么？
第二幕
鲁侍萍：你是萍，……凭——凭什么打我的儿子？
"""

EN_PLAY = """THE TRAGEDY OF HAMLET
ACT I
SCENE I. Elsinore. A platform before the Castle.
BERNARDO. Who's there?
SCENE II. A room of state in the Castle.
KING. Though yet of Hamlet our dear brother's death.
ACT II
SCENE I. A room in Polonius's house.
POLONIUS. Give him this money and these notes, Reynaldo.
"""

MARKDOWN = """# 用户手册

前言写在这里。

## 安装

运行 `pip install kbqa`。

```
# 这不是标题，是代码里的注释
```

### 细节

更深一层的标题属于「安装」。

## 使用

打开浏览器。
"""


@cache
def novel(name: str) -> str:
    path = NOVELS / name
    if not path.exists():
        pytest.skip(f"novel not available: {path}")
    return load_document(path).text


def sections_of(text: str, headings: tuple[tuple[int, int, str], ...] = ()) -> list:
    return document_sections(split_text(text, chunk_size=300, overlap=60, headings=headings))


@pytest.mark.parametrize(
    ("name", "count", "third"),
    [
        ("hongloumeng.utf8.txt", 120, "贾雨村夤缘复旧职"),
        ("xiyouji.utf8-bom.txt", 100, "四海千山皆拱伏"),
        ("sanguo.gbk.txt", 120, "议温明董卓叱丁原"),
    ],
)
def test_novels_list_their_chapters_in_order(name: str, count: int, third: str) -> None:
    titled = [s for s in sections_of(novel(name)) if s.title is not None]
    assert len(titled) == count
    assert [s.number for s in titled] == list(range(1, count + 1))
    assert [s.ordinal for s in titled] == list(range(1, count + 1))
    assert third in titled[2].title
    assert all(a.end <= b.start for a, b in itertools.pairwise(titled))


def test_novel_chapter_resolved_by_number_numeral_or_title() -> None:
    sections = sections_of(novel("hongloumeng.utf8.txt"))
    for wanted in ("3", "三", "第三回", "第3回", "林黛玉抛父进京都"):
        assert resolve_section(sections, wanted).number == 3, wanted
    assert resolve_section(sections, "120").number == 120
    with pytest.raises(KnowledgeBaseError, match="no section '不存在的回目'"):
        resolve_section(sections, "不存在的回目")
    with pytest.raises(KnowledgeBaseError, match="sections match '贾雨村'"):
        resolve_section(sections, "贾雨村")


def test_section_text_is_the_chapter_from_its_chunks() -> None:
    text = novel("hongloumeng.utf8.txt")
    chunks = split_text(text, chunk_size=300, overlap=60)
    third = resolve_section(document_sections(chunks), "3")
    mine = [c for c in chunks if third.first_chunk <= c.index <= third.last_chunk]
    rebuilt = section_text(mine)
    original = text[third.start : third.end]
    assert "".join(rebuilt.split()) == "".join(original.split())


def test_story_collection_volumes_and_story_titles() -> None:
    titles = [t for _, t in find_sections(COLLECTION)]
    assert titles == ["卷一", "卷一 考城隍", "卷一 耳中人", "卷二", "卷二 偷桃", "卷二 秋雨"]
    sections = sections_of(COLLECTION)
    story = resolve_section(sections, "耳中人")
    assert story.title == "卷一 耳中人"
    assert resolve_section(sections, "2").title == "卷一 考城隍"  # no numbers in titles: ordinal


def test_story_titles_only_inside_a_volume() -> None:
    text = "考城隍\n　　予姊丈之祖宋公，讳焘，邑廪生。一日，病卧。\n"
    assert find_sections(text) == []


def test_chinese_play_acts_and_scenes() -> None:
    titles = [t for _, t in find_sections(PLAY)]
    assert titles == ["第一幕", "第一幕 第一场", "第一幕 第二场", "第二幕"]
    sections = sections_of(PLAY)
    assert resolve_section(sections, "第二幕").title == "第二幕"
    assert resolve_section(sections, "第一幕 第二场").title == "第一幕 第二场"


def test_english_play_acts_and_scenes() -> None:
    titles = [t for _, t in find_sections(EN_PLAY)]
    assert titles == [
        "ACT I",
        "ACT I SCENE I. Elsinore. A platform before the Castle.",
        "ACT I SCENE II. A room of state in the Castle.",
        "ACT II",
        "ACT II SCENE I. A room in Polonius's house.",
    ]
    assert "KING." in section_text(
        [
            c
            for c in split_text(EN_PLAY, chunk_size=200, overlap=0)
            if c.chapter == "ACT I SCENE II. A room of state in the Castle."
        ]
    )


def test_prose_mentioning_acts_is_not_a_heading() -> None:
    text = "He read the act in one evening.\nAct 2 of the plan was simple, he said, and went home.\n"
    assert find_sections(text) == []


def test_markdown_headings_from_the_loader(tmp_path: Path) -> None:
    path = tmp_path / "manual.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    doc = load_document(path)
    assert [(lvl, t) for _, lvl, t in doc.headings] == [
        (1, "用户手册"),
        (2, "安装"),
        (3, "细节"),
        (2, "使用"),
    ]
    chunks = split_text(doc.text, chunk_size=40, overlap=0, headings=doc.headings)
    titles = [s.title for s in document_sections(chunks)]
    assert titles == ["用户手册", "安装", "使用"]  # level 3 belongs to its level-2 section
    install = resolve_section(document_sections(chunks), "安装")
    text = section_text([c for c in chunks if install.first_chunk <= c.index <= install.last_chunk])
    assert "更深一层" in text and "这不是标题" in text


def test_html_headings_from_the_loader(tmp_path: Path) -> None:
    path = tmp_path / "book.html"
    path.write_text(
        "<html><body><h1>第一部分 <b>起</b></h1><p>开头的话。</p><h2>甲节</h2><p>甲的内容。</p>"
        "<h2>乙节</h2><p>乙的内容。</p></body></html>",
        encoding="utf-8",
    )
    doc = load_document(path)
    assert [(lvl, t) for _, lvl, t in doc.headings] == [(1, "第一部分 起"), (2, "甲节"), (2, "乙节")]
    for offset, _, title in doc.headings:
        assert doc.text[offset : offset + len(title)] == title
    chunks = split_text(doc.text, chunk_size=300, overlap=0, headings=doc.headings)
    assert [s.title for s in document_sections(chunks)] == ["第一部分 起", "甲节", "乙节"]


def test_epub_chapters_from_the_table_of_contents(tmp_path: Path) -> None:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("kbqa-sections")
    book.set_title("故事集")
    one = epub.EpubHtml(title="开始", file_name="c1.xhtml", lang="zh")
    one.content = "<html><body><p>开始的内容。</p></body></html>"
    two = epub.EpubHtml(title="结束", file_name="c2.xhtml", lang="zh")
    two.content = "<html><body><h1>结束</h1><p>结束的<b>内容</b>。</p></body></html>"
    book.add_item(one)
    book.add_item(two)
    book.toc = (epub.Link("c1.xhtml", "开始", "c1"), epub.Link("c2.xhtml", "结束", "c2"))
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", one, two]
    path = tmp_path / "book.epub"
    epub.write_epub(str(path), book)
    doc = load_document(path)
    for offset, _, title in doc.headings:
        assert doc.text[offset : offset + len(title)] == title
    chunks = split_text(doc.text, chunk_size=300, overlap=0, headings=doc.headings)
    assert [s.title for s in document_sections(chunks)] == ["开始", "结束"]


def test_table_of_contents_lines_are_not_sections() -> None:
    text = (
        "目录\n第一回 甲\n第二回 乙\n\n第一回 甲\n甲的故事很长。" + "甲" * 50 + "。\n第二回 乙\n乙的故事。\n"
    )
    sections = sections_of(text)
    titled = [s for s in sections if s.title is not None]
    assert [s.title for s in titled] == ["第一回 甲", "第二回 乙"]
    assert "甲的故事" in text[titled[0].start : titled[0].end]
