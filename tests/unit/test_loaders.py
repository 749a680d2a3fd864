"""Loaders: the real novels, one generated file per format, every bad-input case, fuzzing."""

from __future__ import annotations

import os
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loaders import LoadedDocument, LoaderError, load_document, supported_extensions
from loaders.normalise import iter_lines, normalise_text
from tests.helpers import NOVELS

needs_data = pytest.mark.skipif(not NOVELS.is_dir(), reason=f"shared data not found at {NOVELS}")


# ---------------------------------------------------------------- registry


def test_supported_extensions() -> None:
    assert {".txt", ".md", ".pdf", ".docx", ".epub", ".html", ".htm", ".csv"} <= supported_extensions()
    assert all(ext == ext.lower() and ext.startswith(".") for ext in supported_extensions())


def test_unsupported_extension_names_file_and_alternatives(tmp_path: Path) -> None:
    path = tmp_path / "notes.xyz"
    path.write_text("hello")
    with pytest.raises(LoaderError) as info:
        load_document(path)
    message = str(info.value)
    assert message.startswith("notes.xyz: unsupported file type .xyz; supported: ")
    assert ".txt" in message and ".pdf" in message


def test_extension_is_case_insensitive(tmp_path: Path) -> None:
    path = tmp_path / "README.TXT"
    path.write_text("Hello world.\n", encoding="utf-8")
    assert load_document(path).text == "Hello world."
    assert load_document(str(path)).source == str(path)


# ---------------------------------------------------------------- real novels

NOVEL_ENCODINGS = {
    "xiyouji.utf8-bom.txt": "utf-8-sig",
    "xiyouji.gb18030.txt": "gb18030",
    "sanguo.gbk.txt": "gb18030",
    "hongloumeng.utf8.txt": "utf-8",
    "nahan.utf8.txt": "utf-8",
    "pride_and_prejudice.txt": "ascii",
}


@needs_data
@pytest.mark.parametrize("name", sorted(NOVEL_ENCODINGS))
def test_novel_loads_cleanly(name: str) -> None:
    doc = load_document(NOVELS / name)
    assert doc.metadata["encoding"] == NOVEL_ENCODINGS[name]
    assert doc.metadata["format"] == "txt"
    assert "\ufffd" not in doc.text
    assert "\r" not in doc.text and "\ufeff" not in doc.text
    assert "\n\n" not in doc.text
    assert all(line == line.strip() and line for line in doc.text.split("\n"))
    assert len(doc.text) > 80_000


@needs_data
def test_novel_content_survives_normalisation() -> None:
    """Only whitespace changes: every other character is kept, in order."""
    raw = (NOVELS / "sanguo.gbk.txt").read_bytes().decode("gb18030")
    doc = load_document(NOVELS / "sanguo.gbk.txt")
    assert "".join(doc.text.split()) == "".join(raw.split())


@needs_data
def test_bom_file_starts_with_title_not_bom() -> None:
    doc = load_document(NOVELS / "xiyouji.utf8-bom.txt")
    assert doc.text.startswith("《西游记》\n")
    assert doc.metadata["bom"] == "yes"


@needs_data
def test_gb18030_only_characters_are_decoded() -> None:
    raw = (NOVELS / "xiyouji.gb18030.txt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("gbk")
    doc = load_document(NOVELS / "xiyouji.gb18030.txt")
    assert "菩提萨\ue485。" in doc.text  # a GB18030-only code (FE BE) next to ordinary text


@needs_data
def test_nahan_hard_wrapped_sentences_are_joined() -> None:
    raw = (NOVELS / "nahan.utf8.txt").read_text(encoding="utf-8")
    assert "久而不闻\n其香" in raw
    doc = load_document(NOVELS / "nahan.utf8.txt")
    lines = doc.text.split("\n")
    assert "“入芝兰之室，久而不闻其香”⑶，只以为很是嚷嚷罢了。" in doc.text
    # a wrapped line that happens to end with 。 is still joined (it reached the wrap width)
    assert "劝伊养蜂，养鸡，养猪，养牛，养骆驼。后来仲密家果然有了许多小鸡" in doc.text
    # paragraphs stay separate lines
    assert "“寂寞呀，寂寞呀，在沙漠上似的寂寞呀！”" in lines
    assert any(line.startswith("这应该是真实的，但在我却未曾感得") for line in lines)
    assert any(line.startswith("我可是觉得在北京仿佛没有春和秋。") for line in lines)


@needs_data
def test_english_hard_wrap_joined_with_spaces() -> None:
    doc = load_document(NOVELS / "pride_and_prejudice.txt")
    lines = doc.text.split("\n")
    assert lines[0] == "Chapter 1"
    assert lines[1] == (
        "It is a truth universally acknowledged, that a single man in possession "
        "of a good fortune, must be in want of a wife."
    )
    assert "It is Mr. Bingley, I am sure!" in doc.text  # "Mr." at a line end does not end it
    assert sum(line.startswith("Chapter ") for line in lines) == 61


@needs_data
@pytest.mark.parametrize(
    ("name", "first", "count"),
    [
        ("hongloumeng.utf8.txt", "第一回  甄士隐梦幻识通灵\u3000贾雨村风尘怀闺秀", 120),
        ("sanguo.gbk.txt", "第一回\u3000宴桃园豪杰三结义\u3000斩黄巾英雄首立功", 120),
    ],
)
def test_chapter_headings_stay_on_their_own_lines(name: str, first: str, count: int) -> None:
    lines = load_document(NOVELS / name).text.split("\n")
    assert first in lines
    headings = [line for line in lines if line.startswith("第") and "回" in line[:6] and len(line) < 40]
    assert len(headings) >= count


# ---------------------------------------------------------------- normalisation rules


def test_line_endings_and_bom() -> None:
    assert list(iter_lines(["\ufeffa\r", "\nb\rc\r\n", "d"])) == ["a", "b", "c", "d"]
    assert normalise_text("第一段。\r\n\r\n第二段。\r") == "第一段。\n第二段。"


def test_join_rules() -> None:
    assert normalise_text("这是一句被\n硬换行的话。\n\n下一段。") == "这是一句被硬换行的话。\n下一段。"
    assert normalise_text("A sentence broken\nacross lines.") == "A sentence broken across lines."
    assert normalise_text("a well-\nknown fact") == "a well-known fact"
    assert normalise_text("说道：\n“走吧。”") == "说道：“走吧。”"
    # a finished sentence on a short line ends the paragraph when the text is not hard-wrapped
    assert normalise_text("第一句。\n第二句。") == "第一句。\n第二句。"
    # indented paragraph start, heading, separator rule
    assert normalise_text("上一段没有句号\n\u3000\u3000新的一段") == "上一段没有句号\n新的一段"
    assert normalise_text("引子没有句号\n第二回 开始\n正文") == "引子没有句号\n第二回 开始\n正文"
    assert normalise_text("Preface text\nChapter 2\nBody") == "Preface text\nChapter 2\nBody"
    assert normalise_text("---------\n正文") == "---------\n正文"


def test_markdown_structure_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text(
        "# 标题\n正文第一行\n接着第二行。\n\n- 列表一\n- 列表二\n\n```\ncode  line\n    indented\n```\n",
        encoding="utf-8",
    )
    doc = load_document(path)
    assert doc.metadata["format"] == "md"
    assert doc.text.split("\n") == [
        "# 标题",
        "正文第一行接着第二行。",
        "- 列表一",
        "- 列表二",
        "```",
        "code  line",
        "    indented",
        "```",
    ]


# ---------------------------------------------------------------- generated files per format


def make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF: one Helvetica text content stream per page, correct xref."""
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, lines in enumerate(pages):
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td", *(f"({line}) Tj T*" for line in lines), "ET"]
        stream = "\n".join(ops).encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
def two_page_pdf(tmp_path: Path) -> Path:
    path = tmp_path / "report.pdf"
    path.write_bytes(make_pdf([["First page line one", "continues here."], ["Second page text."]]))
    return path


def test_pdf_pages_and_offsets(two_page_pdf: Path) -> None:
    doc = load_document(two_page_pdf)
    assert doc.text == "First page line one continues here.\nSecond page text."
    assert doc.pages == ((0, 1), (36, 2))
    assert doc.text[doc.pages[1][0] :].startswith("Second page")
    assert doc.metadata["format"] == "pdf"
    assert doc.metadata["page_count"] == "2"


def test_pdf_skips_blank_pages_in_page_map(tmp_path: Path) -> None:
    path = tmp_path / "gap.pdf"
    path.write_bytes(make_pdf([["Page one."], [], ["Page three."]]))
    doc = load_document(path)
    assert doc.pages == ((0, 1), (10, 3))
    assert doc.text == "Page one.\nPage three."


@pytest.mark.parametrize("algorithm", [None, "AES-256"])
def test_encrypted_pdf_is_rejected(two_page_pdf: Path, tmp_path: Path, algorithm: str | None) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=str(two_page_pdf))
    writer.encrypt("secret", algorithm=algorithm)
    path = tmp_path / "locked.pdf"
    writer.write(path)
    with pytest.raises(LoaderError, match="encrypted PDF"):
        load_document(path)


def test_pdf_with_only_an_owner_password_is_read(two_page_pdf: Path, tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=str(two_page_pdf))
    writer.encrypt("", owner_password="owner")
    path = tmp_path / "no-copy.pdf"
    writer.write(path)
    assert load_document(path).pages == ((0, 1), (36, 2))


@pytest.mark.parametrize("keep", [60, 200, 400])
def test_truncated_pdf(two_page_pdf: Path, tmp_path: Path, keep: int) -> None:
    path = tmp_path / "cut.pdf"
    path.write_bytes(two_page_pdf.read_bytes()[:keep])
    with pytest.raises(LoaderError, match="corrupt or truncated PDF"):
        load_document(path)


def test_scanned_pdf_without_text(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    path = tmp_path / "scan.pdf"
    writer.write(path)
    with pytest.raises(LoaderError, match="no extractable text"):
        load_document(path)


def test_not_a_pdf(tmp_path: Path) -> None:
    path = tmp_path / "fake.pdf"
    path.write_text("just text")
    with pytest.raises(LoaderError, match="not a PDF"):
        load_document(path)


def test_docx_paragraphs_and_tables_in_order(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.core_properties.title = "测试文档"
    document.add_heading("第一章 总则", level=1)
    document.add_paragraph("这是第一段。")
    table = document.add_table(rows=2, cols=3)
    for col, value in enumerate(["姓名", "年龄", "城市"]):
        table.cell(0, col).text = value
    for col, value in enumerate(["张三", "30", "北京"]):
        table.cell(1, col).text = value
    document.add_paragraph("表格之后的段落。")
    path = tmp_path / "doc.docx"
    document.save(str(path))

    doc = load_document(path)
    assert doc.text.split("\n") == [
        "第一章 总则",
        "这是第一段。",
        "姓名 | 年龄 | 城市",
        "张三 | 30 | 北京",
        "表格之后的段落。",
    ]
    assert doc.metadata["title"] == "测试文档"
    assert doc.metadata["format"] == "docx"


def test_docx_that_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "old.docx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)  # an OLE2 (.doc) header
    with pytest.raises(LoaderError, match=r"not a \.docx file"):
        load_document(path)


def test_docx_zip_without_document(tmp_path: Path) -> None:
    path = tmp_path / "junk.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not word")
    with pytest.raises(LoaderError, match=r"corrupt \.docx"):
        load_document(path)


def make_epub(path: Path) -> None:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("kbqa-test")
    book.set_title("测试书")
    book.set_language("zh")
    book.add_author("作者甲")
    one = epub.EpubHtml(title="第一章 开始", file_name="c1.xhtml", lang="zh")
    one.content = "<html><body><p>第一章的内容。</p><script>alert('x')</script></body></html>"
    two = epub.EpubHtml(title="第二章 结束", file_name="c2.xhtml", lang="zh")
    two.content = "<html><body><h1>第二章 结束</h1><p>第二章的<b>内容</b>。</p></body></html>"
    book.add_item(one)
    book.add_item(two)
    book.toc = (epub.Link("c1.xhtml", "第一章 开始", "c1"), epub.Link("c2.xhtml", "第二章 结束", "c2"))
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", two, one]  # reading order differs from manifest order on purpose
    epub.write_epub(str(path), book)


def test_epub_spine_order_and_chapter_titles(tmp_path: Path) -> None:
    path = tmp_path / "book.epub"
    make_epub(path)
    doc = load_document(path)
    assert doc.text.split("\n") == ["第二章 结束", "第二章的内容。", "第一章 开始", "第一章的内容。"]
    assert doc.metadata["title"] == "测试书"
    assert doc.metadata["author"] == "作者甲"
    assert "alert" not in doc.text


def test_epub_that_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "book.epub"
    path.write_text("<html>not an epub</html>")
    with pytest.raises(LoaderError, match="not an EPUB"):
        load_document(path)


def test_epub_zip_without_container(tmp_path: Path) -> None:
    path = tmp_path / "book.epub"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip")
    with pytest.raises(LoaderError, match="corrupt EPUB"):
        load_document(path)


HTML = """<!doctype html><html><head><meta charset="gbk"><title>页面标题</title>
<style>p { color: red }</style><script>var secret = "脚本内容";</script></head>
<body><h1>大标题</h1><p>第一段
文字，<b>加粗</b>继续。</p><div>Second <i>para</i>
  here.</div><noscript>开启脚本</noscript>
<table><tr><th>A</th><th>B</th></tr><tr><td>1</td><td>2</td></tr></table>
<ul><li>条目一</li><li>条目二</li></ul></body></html>"""


def test_html_visible_text_and_headings(tmp_path: Path) -> None:
    path = tmp_path / "page.HTM"
    path.write_bytes(HTML.encode("gbk"))
    doc = load_document(path)
    assert doc.text.split("\n") == [
        "大标题",
        "第一段文字，加粗继续。",
        "Second para here.",
        "A | B",
        "1 | 2",
        "条目一",
        "条目二",
    ]
    assert doc.metadata["title"] == "页面标题"
    assert doc.metadata["encoding"] == "gb18030"
    assert "脚本" not in doc.text and "color" not in doc.text


def test_html_without_declaration_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_bytes("<p>話說天下大勢，分久必合，合久必分。</p>".encode("big5"))
    doc = load_document(path)
    assert doc.text == "話說天下大勢，分久必合，合久必分。"
    assert doc.metadata["encoding"] == "big5"


def test_html_with_only_script(tmp_path: Path) -> None:
    path = tmp_path / "app.html"
    path.write_text("<html><head><script>run()</script></head><body></body></html>")
    with pytest.raises(LoaderError, match="no visible text"):
        load_document(path)


def test_csv_rows_as_column_value_lines(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes('姓名,年龄,城市\r\n张三,30,北京\r\n李四,,"上海,浦东"\r\n'.encode("gbk"))
    doc = load_document(path)
    assert doc.text == "姓名: 张三; 年龄: 30; 城市: 北京\n姓名: 李四; 城市: 上海,浦东"
    assert doc.metadata["encoding"] == "gb18030"
    assert doc.metadata["rows"] == "2"


def test_csv_utf8_bom_semicolons_and_extra_cells(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes("name;score\nAda;90;extra\nBob;85\n".encode("utf-8-sig"))
    doc = load_document(path)
    assert doc.text == "name: Ada; score: 90; column 3: extra\nname: Bob; score: 85"
    assert doc.metadata["encoding"] == "utf-8-sig"


def test_csv_header_only(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("a,b,c\n")
    with pytest.raises(LoaderError, match="no data rows"):
        load_document(path)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("extension", sorted(supported_extensions()))
def test_zero_byte_file_is_empty(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"empty{extension}"
    path.write_bytes(b"")
    with pytest.raises(LoaderError, match="empty file"):
        load_document(path)


@pytest.mark.parametrize(
    "data",
    [b"   \n\t\r\n", "\u3000\u3000\n \n".encode(), b"\xef\xbb\xbf", "  \n ".encode("utf-16")],
    ids=["ascii", "ideographic-space", "bom-only", "utf-16"],
)
def test_whitespace_only_file_is_empty(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "blank.txt"
    path.write_bytes(data)
    with pytest.raises(LoaderError) as info:
        load_document(path)
    assert str(info.value) == "blank.txt: empty file"


@pytest.mark.parametrize("extension", [".txt", ".md", ".csv", ".html"])
def test_binary_file_renamed_as_text(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"image{extension}"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(5000))
    with pytest.raises(LoaderError, match="binary content, not text"):
        load_document(path)


def test_text_whose_tail_is_not_in_the_detected_encoding(tmp_path: Path) -> None:
    path = tmp_path / "mixed.txt"
    path.write_bytes(("中文内容。\n" * 20000).encode("utf-8") + "后面是GBK。".encode("gbk"))
    with pytest.raises(LoaderError) as info:
        load_document(path)
    assert "cannot decode" in str(info.value) and "utf-8" in str(info.value)


def test_unknown_legacy_encoding_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "french.txt"
    path.write_bytes("Les élèves étaient très contents de leur journée à la plage.".encode("cp1252"))
    with pytest.raises(LoaderError, match="unknown text encoding"):
        load_document(path)


def test_directory_and_missing_file(tmp_path: Path) -> None:
    folder = tmp_path / "folder.txt"
    folder.mkdir()
    with pytest.raises(LoaderError, match="is a directory"):
        load_document(folder)
    with pytest.raises(LoaderError, match="file not found"):
        load_document(tmp_path / "missing.pdf")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("hidden")
    path.chmod(0)
    try:
        with pytest.raises(LoaderError, match="permission denied"):
            load_document(path)
    finally:
        path.chmod(0o600)


def test_large_single_line_file_memory_is_bounded(tmp_path: Path) -> None:
    """A 16 MiB one-line file: peak Python allocation stays near two copies of the text.

    Measured on a 50 MB single line: about 2x the text size (101 MB for ASCII, 67 MB for
    UTF-8 Chinese, 100 MB for GB18030); the raw bytes are never held whole.
    """
    size = 16 * 1024 * 1024
    path = tmp_path / "one-line.txt"
    path.write_bytes(b"abcdefghi " * (size // 10))
    tracemalloc.start()
    try:
        doc = load_document(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(doc.text) == size // 10 * 10 - 1  # the trailing space is stripped
    assert "\n" not in doc.text
    assert peak < 2.5 * size


# ---------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.binary(max_size=3000), extension=st.sampled_from(sorted(supported_extensions())))
def test_random_bytes_load_or_raise_loader_error(tmp_path: Path, data: bytes, extension: str) -> None:
    path = tmp_path / f"fuzz{extension}"
    path.write_bytes(data)
    try:
        doc = load_document(path)
    except LoaderError as err:
        assert str(err).startswith(f"fuzz{extension}: ")
        return
    assert isinstance(doc, LoadedDocument) and doc.text


@FUZZ
@given(data=st.binary(max_size=2000))
def test_random_pdf_bodies_raise_loader_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.pdf"
    path.write_bytes(b"%PDF-1.4\n" + data)
    with pytest.raises(LoaderError):
        load_document(path)


TEXT_ALPHABET = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufeff")


@FUZZ
@given(text=st.text(alphabet=TEXT_ALPHABET | st.sampled_from("\n\r\t "), min_size=1, max_size=500))
def test_random_utf8_text_round_trips_through_the_text_loader(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.txt"
    path.write_bytes(text.encode("utf-8"))
    try:
        doc = load_document(path)
    except LoaderError as err:
        assert not text.strip() and err.reason == "empty file"
        return
    assert doc.metadata["encoding"] in ("ascii", "utf-8")
    assert "".join(doc.text.split()) == "".join(text.split())  # only whitespace may change
    assert "\r" not in doc.text
