"""The alias miner (kb/aliases.py) on real novel passages and synthetic text, its precision
cases, the alias table's query expansion and its use by the retriever, CLI and retrieval tab."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from kb.aliases import (
    MINER_REVISION,
    AliasTable,
    document_text,
    from_stored,
    is_surname_name,
    mine_aliases,
    stored_form,
)
from kb.cli import main
from kb.services import build_services
from kb.settings import load_settings
from loaders import load_document
from tests.helpers import NOVELS
from ui.render import render_expansion

needs_novels = pytest.mark.skipif(not NOVELS.is_dir(), reason="../shared/data/novels not present")


def _around(novel: str, needle: str, chars: int) -> str:
    text = load_document(NOVELS / novel).text
    at = text.find(needle)
    assert at >= 0, needle
    return text[max(0, at - chars // 2) : at + chars // 2]


# ====================================================================================== real novels
@needs_novels
@pytest.mark.parametrize(
    ("novel", "needle", "name", "aliases"),
    [
        # 「覆姓诸葛，名亮，字孔明」 and 「亮字孔明，道号卧龙先生」 in the chapters around it
        ("sanguo.gbk.txt", "覆姓诸葛，名亮", "诸葛亮", {"孔明", "卧龙", "卧龙先生"}),
        # 「吾姓关名羽，字长生，后改云长」
        ("sanguo.gbk.txt", "吾姓关名羽", "关羽", {"云长", "长生"}),
        # 「某姓吕名布，字奉先」: a courtesy name has two characters (not 奉先者也)
        ("sanguo.gbk.txt", "吾姓关名羽", "张飞", {"翼德"}),
        # 「姓孙，法名悟空」 and the name in use afterwards
        ("xiyouji.utf8-bom.txt", "法名叫做", "孙悟空", {"悟空"}),
    ],
)
def test_miner_on_passages_of_the_novels(novel: str, needle: str, name: str, aliases: set[str]) -> None:
    found = mine_aliases(_around(novel, needle, 60000))
    assert aliases <= set(found.get(name, [])), found.get(name)


@needs_novels
def test_miner_precision_on_passages() -> None:
    found = mine_aliases(_around("sanguo.gbk.txt", "吾姓关名羽", 60000))
    everything = {a for aliases in found.values() for a in aliases}
    assert "奉先者也" not in everything and found.get("吕布") == ["奉先"]
    assert not everything & {"大喜", "大怒", "夫人", "将军", "丞相", "主公"}  # emotions and titles


@needs_novels
@pytest.mark.slow  # whole novels: ~4 s each on a quiet machine
def test_miner_on_whole_novels_finds_the_names_and_no_known_false_friends() -> None:
    xyj = mine_aliases(load_document(NOVELS / "xiyouji.utf8-bom.txt").text)
    assert {"悟空"} <= set(xyj["孙悟空"]) and "八戒" in xyj["猪八戒"] and "行者" in xyj["孙行者"]
    hlm = mine_aliases(load_document(NOVELS / "hongloumeng.utf8.txt").text)
    assert {"黛玉", "潇湘妃子"} <= set(hlm["林黛玉"]) and "宝钗" in hlm["薛宝钗"]
    sg = mine_aliases(load_document(NOVELS / "sanguo.gbk.txt").text)
    assert {"孔明", "卧龙"} <= set(sg["诸葛亮"]) and "云长" in sg["关羽"] and "美髯公" in sg["关公"]
    for table in (xyj, hlm, sg):
        everything = {a for aliases in table.values() for a in aliases}
        # runs that are not names (唐僧乃 / 僧乃, 马入城 / 入城), roles shared by many (夫人, 大夫, 姨妈)
        assert not everything & {"僧乃", "入城", "夫人", "大夫", "姨妈", "姐儿", "大怒", "大惊", "太医"}
        assert not {"唐僧乃", "马入城", "王夫人"} & set(table)


# ====================================================================================== synthetic text
def test_formal_statement_and_titled_forms() -> None:
    text = "话说有一人，姓诸葛，名亮，字孔明，道号卧龙先生。孔明笑。孔明走。卧龙在此。"
    assert mine_aliases(text)["诸葛亮"] == ["卧龙", "卧龙先生", "孔明"]


def test_given_name_needs_a_speaking_person() -> None:
    story = "林黛玉道：“来了。”黛玉道：“好。”林黛玉笑道：“是。”黛玉说：“嗯。”" * 2 + "黛玉去了。林黛玉来了。"
    assert mine_aliases(story) == {"林黛玉": ["黛玉"]}


def test_naming_phrase_goes_to_the_nearby_person() -> None:
    text = (
        "许褚道：“来。”许褚道：“走。”许褚力大无穷，人皆称为“虎痴”。"
        "虎痴许褚杀来。许褚与虎痴同在。众人见了虎痴都怕。"
    )
    assert mine_aliases(text) == {"许褚": ["虎痴"]}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "这是一个字。那个字写得好。他写了一个字，又写一个字。",  # 「字」 not after a name statement
        "王夫人道：“好。”王夫人说：“来。”夫人道：“是。”夫人说：“嗯。”夫人去了。",  # a title, not a given name
        "马入城道：“好。”马入城道：“是。”入城道：“来。”入城说：“好。”入城了。",  # 入城 is no name: a verb
        "张大夫道：“好。”张大夫说：“是。”胡大夫道：“来。”胡大夫说：“嗯。”大夫道：“嗯。”大夫说：“好。”大夫来",
        "他们称为“什么”。什么什么什么。",  # stop words are never aliases
        "人皆称为“好汉”。好汉好汉好汉。",  # a naming phrase with no person nearby
    ],
)
def test_precision_cases_produce_no_alias(text: str) -> None:
    assert mine_aliases(text) == {}


def test_a_naming_phrase_about_another_person_in_its_sentence_is_no_alias_of_the_speaker() -> None:
    """「遂超拔林四娘统辖诸姬，又呼为姽婳将军」: the title is 林四娘's, who never speaks; the nearest
    *known* name before it (贾政, who tells the story) must not get it."""
    told = "贾政道：“听着。”贾政道：“好。”贾政乃道：“恒王最得意，遂超拔林四娘统辖诸姬，又呼为姽婳将军。”"
    later = "众人听了姽婳将军之事。贾政又说姽婳将军。贾政道：“姽婳将军忠义。”"
    assert "姽婳将军" not in mine_aliases(told + later).get("贾政", [])
    # the same phrase with no one else in its sentence still names the nearby person
    own = "贾政道：“听着。”贾政道：“好。”贾政为人端方，又呼为姽婳将军。"
    assert mine_aliases(own + later).get("贾政") == ["姽婳将军"]


def test_an_epithet_said_once_near_a_person_is_no_alias() -> None:
    """「都称为罗汉菩萨」 said once of 唐僧; the term's other occurrences are elsewhere (a litany)."""
    text = (
        "唐僧道：“多谢。”唐僧道：“善哉。”那几个妇人对唐僧磕头礼拜，都称为“罗汉菩萨”。"
        + "这是一段很长的别的故事，" * 20
        + "南无八宝金身罗汉菩萨。南无罗汉菩萨。"
    )
    assert mine_aliases(text) == {}


def test_an_alias_claimed_by_two_people_is_dropped() -> None:
    text = (
        "张飞道：“来。”张飞道：“走。”张飞勇猛，人皆称为“万人敌”。万人敌万人敌。"
        "关羽道：“来。”关羽道：“走。”关羽勇猛，人皆称为“万人敌”。"
    )
    assert "万人敌" not in {a for v in mine_aliases(text).values() for a in v}


def test_surname_shapes() -> None:
    assert is_surname_name("诸葛亮") and is_surname_name("孙悟空") and is_surname_name("林黛玉")
    assert not is_surname_name("那东土") and not is_surname_name("亮") and not is_surname_name("ABC")


# ====================================================================================== the table
def test_expand_adds_the_other_members_of_the_group_named() -> None:
    table = AliasTable({"孙悟空": ["悟空", "齐天大圣", "弼马温"], "诸葛亮": ["孔明", "卧龙"]})
    assert table.expand("弼马温是几品官").matched == {"弼马温": ["孙悟空", "悟空", "齐天大圣"]}
    # longest member first; a member inside it (悟空 in 孙悟空) is no second match, and
    # names the question already holds are not added again
    assert table.expand("孙悟空和孔明").matched == {
        "孙悟空": ["齐天大圣", "弼马温"],
        "孔明": ["诸葛亮", "卧龙"],
    }
    assert not table.expand("唐僧在哪里")


def test_a_member_of_two_groups_expands_nothing() -> None:
    table = AliasTable({"关羽": ["关公"], "关平": ["关公"]})
    assert not table.expand("关公在哪里")
    assert table.expand("关羽在哪里").matched == {"关羽": ["关公"]}


def test_merge_and_the_stored_form() -> None:
    merged = AliasTable.merge([{"孙悟空": ["悟空"]}, {"孙悟空": ["行者"], "猪八戒": ["八戒"]}])
    assert merged.groups == {"孙悟空": ["悟空", "行者"], "猪八戒": ["八戒"]}
    stored = stored_form({"孙悟空": ["悟空"]})
    assert stored["miner"] == MINER_REVISION and from_stored(json.loads(json.dumps(stored))) == {
        "孙悟空": ["悟空"]
    }
    assert from_stored({**stored, "miner": MINER_REVISION - 1}) is None  # older rules: mined again
    assert from_stored({"format": 99}) is None and from_stored(None) is None


def test_document_text_from_overlapping_chunks() -> None:
    chunks = [
        SimpleNamespace(text="孙悟空大", start=0, end=4),
        SimpleNamespace(text="悟空大闹天宫", start=1, end=7),
        SimpleNamespace(text="天宫", start=5, end=7),
    ]
    assert document_text(chunks) == "孙悟空大闹天宫"


def test_render_expansion_is_escaped() -> None:
    from kb.retrieval import QueryExpansion

    html = render_expansion(QueryExpansion({"<b>齐天大圣": ["孙悟空"]}, ["花果山"]))
    assert "&lt;b&gt;齐天大圣" in html and "孙悟空" in html and "花果山" in html
    assert render_expansion(QueryExpansion()) == ""


# ====================================================================================== in retrieval
STORY = (
    "第一回 石猴出世\n"
    + "那猴姓孙，法名悟空。孙悟空道：“我去也。”孙悟空道：“好。”悟空道：“来。”悟空说：“是。”"
    + "玉帝封他做个‘弼马温’。那弼马温在御马监养马。弼马温嫌官小，打出天门，悟空回花果山。" * 3
    + "\n第二回 别的事\n"
    + "弼马温这官职，原来未入流，最是低微。天马千匹。"
    + "\n第三回 再别的\n"
    + "那孙悟空在水帘洞里与群猴饮酒作乐，水帘洞铁板桥下通东海。" * 4
)


@pytest.fixture
def story_home(tmp_path: Path) -> Path:
    doc = tmp_path / "story.txt"
    doc.write_text(STORY, encoding="utf-8")
    home = tmp_path / "home"
    svc = build_services(load_settings(home=home, profile="mock", env={}))
    svc.ingestor.add("s", [str(doc)])
    return home


def _svc(home: Path, **retrieval):
    return build_services(
        load_settings(home=home, profile="mock", overrides={"retrieval": retrieval}, env={})
    )


def test_aliases_are_mined_at_ingest_and_expand_the_keyword_side(story_home: Path) -> None:
    svc = _svc(story_home, mode="keyword")
    assert list((story_home / "kb" / "s" / "segments").glob("*.aliases.json"))  # kept beside the segment
    table = svc.retriever.alias_table("s")
    assert "悟空" in table.groups["孙悟空"]
    hits, expansion = svc.retriever.retrieve_explained("s", "悟空住在哪里的洞", top_k=3)
    assert expansion.aliases == {"悟空": ["孙悟空"]}
    assert any("水帘洞" in h.text for h in hits)
    off, none = _svc(story_home, mode="keyword", aliases=False).retriever.retrieve_explained(
        "s", "悟空住在哪里的洞"
    )
    assert not none and off


def test_aliases_of_old_knowledge_bases_are_derived_from_the_stored_chunks(story_home: Path) -> None:
    for path in (story_home / "kb" / "s" / "segments").glob("*.aliases.json"):
        path.unlink()  # as written before aliases existed
    svc = _svc(story_home)
    assert "悟空" in svc.retriever.alias_table("s").groups["孙悟空"]
    assert list((story_home / "kb" / "s" / "segments").glob("*.aliases.json"))  # and kept


def test_cli_search_shows_the_expansion(story_home: Path) -> None:
    out = io.StringIO()
    argv = ["--home", str(story_home), "--profile", "mock", "search", "--kb", "s", "悟空的洞"]
    assert main(argv, out=out) == 0
    assert "aliases: 悟空 -> 孙悟空" in out.getvalue()
    out = io.StringIO()
    assert main([*argv, "--json"], out=out) == 0
    assert json.loads(out.getvalue())["expansion"]["aliases"] == {"悟空": ["孙悟空"]}


def test_retrieval_tab_shows_the_expansion(story_home: Path) -> None:
    from ui.app import create_app

    app = create_app(_svc(story_home))
    html = app.retrieval.search("s", "悟空的洞", 3, 0.0)
    assert "孙悟空" in html and "rt-expansion" in html
