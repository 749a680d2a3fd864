"""Encoding detection: table tests over the same text in every supported encoding, plus fuzz."""

from __future__ import annotations

import codecs
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loaders.encoding import (
    SAMPLE_SIZE,
    EncodingError,
    choose_sample,
    decode_bytes,
    detect_encoding,
    plausibility,
)

SIMPLIFIED = (
    "第一回 知识库问答系统\n话说天下大势，分久必合，合久必分。我们明天要去图书馆看书，然后再去吃饭。\n"
    "KBQA 2024: 本地运行，无需联网！\n"
)
TRADITIONAL = (
    "第一回 知識庫問答系統\n話說天下大勢，分久必合，合久必分。我們明天要去圖書館看書，然後再去吃飯。\n"
    "臺灣是一個美麗的島嶼，這裡的人們非常熱情。\n"
)
OUTSIDE_GBK = "𠮷䶮"  # CJK Extension B and A: only GB18030 (4-byte sequences) has them
WITH_RARE = SIMPLIFIED + "人名用字：" + OUTSIDE_GBK + "。\n"

CASES = [
    # (id, data, reported encoding, expected text)
    ("utf-8", SIMPLIFIED.encode("utf-8"), "utf-8", SIMPLIFIED),
    ("utf-8-sig", SIMPLIFIED.encode("utf-8-sig"), "utf-8-sig", SIMPLIFIED),
    ("utf-16-le-bom", codecs.BOM_UTF16_LE + SIMPLIFIED.encode("utf-16-le"), "utf-16-le", SIMPLIFIED),
    ("utf-16-be-bom", codecs.BOM_UTF16_BE + SIMPLIFIED.encode("utf-16-be"), "utf-16-be", SIMPLIFIED),
    ("utf-16-le", SIMPLIFIED.encode("utf-16-le"), "utf-16-le", SIMPLIFIED),
    ("utf-16-be", SIMPLIFIED.encode("utf-16-be"), "utf-16-be", SIMPLIFIED),
    ("utf-16-le-traditional", TRADITIONAL.encode("utf-16-le"), "utf-16-le", TRADITIONAL),
    ("utf-32-le-bom", codecs.BOM_UTF32_LE + SIMPLIFIED.encode("utf-32-le"), "utf-32-le", SIMPLIFIED),
    ("gbk", SIMPLIFIED.encode("gbk"), "gb18030", SIMPLIFIED),
    ("gb2312", SIMPLIFIED.encode("gb2312"), "gb18030", SIMPLIFIED),
    ("gb18030-outside-gbk", WITH_RARE.encode("gb18030"), "gb18030", WITH_RARE),
    ("big5", TRADITIONAL.encode("big5"), "big5", TRADITIONAL),
    ("ascii", b"Chapter 1\nIt is a truth universally acknowledged.\n", "ascii", None),
]


def test_rare_characters_really_are_outside_gbk() -> None:
    with pytest.raises(UnicodeEncodeError):
        OUTSIDE_GBK.encode("gbk")


@pytest.mark.parametrize(("data", "encoding", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_detect_and_decode_table(data: bytes, encoding: str, text: str | None) -> None:
    guess = detect_encoding(data)
    assert guess.name == encoding
    decoded = decode_bytes(data)
    assert decoded.encoding == encoding
    assert decoded.text == (text if text is not None else data.decode("ascii"))
    assert "\ufffd" not in decoded.text
    assert decoded.bom == (encoding == "utf-8-sig" or data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030", "big5", "utf-16-le"])
def test_sample_cut_inside_a_multibyte_character(encoding: str) -> None:
    text = (TRADITIONAL if encoding == "big5" else SIMPLIFIED) * 50
    data = text.encode(encoding)
    for cut in range(101, 106):  # some of these cut a character in half
        guess = detect_encoding(data[:cut], complete=False)
        assert guess.codec in ("utf-8", "gb18030", "cp950", "utf-16-le")
        assert data.decode(guess.codec) == text


def test_same_cut_sample_is_rejected_when_it_claims_to_be_complete() -> None:
    data = SIMPLIFIED.encode("utf-8")
    cut = data[: data.index("知".encode()) + 1]  # ends with a lone lead byte
    with pytest.raises(EncodingError):
        detect_encoding(cut, complete=True)
    assert detect_encoding(cut, complete=False).name == "utf-8"


def test_binary_data_is_rejected() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(4000)
    with pytest.raises(EncodingError, match="binary content"):
        detect_encoding(png)
    with pytest.raises(EncodingError, match="binary content"):
        detect_encoding(b"plain text\x01\x02\x03\x04 with many control bytes\x05\x06")


def test_empty_sample_is_an_error() -> None:
    with pytest.raises(EncodingError, match="empty"):
        detect_encoding(b"")


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Les élèves étaient très contents de leur journée à la plage, où ils ont nagé.", "cp1252"),
        ("café, naïve, résumé.", "latin-1"),
        ("한국어 텍스트입니다. 이것은 테스트입니다. 대한민국의 수도는 서울입니다.", "euc-kr"),
        ("日本語のテキストです。これはテストです。東京は日本の首都です。", "shift_jis"),
    ],
)
def test_unsupported_encodings_fail_loudly_instead_of_mojibake(text: str, encoding: str) -> None:
    with pytest.raises(EncodingError) as info:
        decode_bytes(text.encode(encoding))
    assert "tried utf-8, gb18030, big5" in info.value.reason


def test_whole_data_is_decoded_strictly_after_a_good_sample() -> None:
    good = ("中文" * 40000).encode("utf-8")  # 240,000 bytes, far beyond the sample
    assert len(good) > SAMPLE_SIZE
    with pytest.raises(EncodingError) as info:
        decode_bytes(good + b"\xff\xfe tail")
    assert "utf-8" in info.value.reason
    assert f"byte {len(good)}" in info.value.reason


def test_long_ascii_preface_does_not_hide_the_encoding() -> None:
    preface = b"Project preface in English.\n" * 4000  # > 64 KiB of ASCII
    body = SIMPLIFIED.encode("gbk")
    sample, complete = choose_sample(preface + body)
    assert sample.startswith(body[:2])
    assert complete
    decoded = decode_bytes(preface + body)
    assert decoded.encoding == "gb18030"
    assert decoded.text.endswith(SIMPLIFIED)


def test_plausibility_prefers_the_right_decoding() -> None:
    data = SIMPLIFIED.encode("gbk")
    right = plausibility(data.decode("gb18030"))
    wrong = plausibility(TRADITIONAL.encode("big5").decode("gb18030"))
    assert right.acceptable
    assert right.score > 1.5
    assert wrong.score < right.score


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_decode_or_raise_encoding_error(data: bytes) -> None:
    try:
        decoded = decode_bytes(data)
    except EncodingError as err:
        assert err.reason
        return
    assert isinstance(decoded.text, str)
    assert "\x00" not in decoded.text


TEXT_ALPHABET = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufeff")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=TEXT_ALPHABET, min_size=1, max_size=400))
def test_valid_utf8_round_trips(text: str) -> None:
    decoded = decode_bytes(text.encode("utf-8"))
    assert decoded.text == text
    assert decoded.encoding == ("ascii" if text.isascii() else "utf-8")
