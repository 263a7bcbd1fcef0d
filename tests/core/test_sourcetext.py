"""sol.sourcetext: model text made harmless for generated C/C++ comments, string literals and
file names, for arbitrary text (hypothesis) and for the known attacks."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sol.sourcetext import COMMENT_LIMIT, c_string, comment_text, file_name

# Everything text can hold, weighted towards what matters in C: line breaks, backslashes, comment
# marks, question marks (trigraphs), NUL, controls, non-ASCII, lone surrogates.
_C_HOSTILE = st.sampled_from(list("\n\r\\/*?#\"'\0\t\x0b\x0c\x85\u2028\u2029é\udcff\uff0f\uff3c\ufe56"))
TEXT = st.lists(st.one_of(_C_HOSTILE, st.characters()), max_size=400).map("".join)
_FORBIDDEN = ("\\", "*/", "/*", "??", "\n", "\r")

ATTACKS = [
    'p\n__builtin_puts("INJECTED");\n//',
    "Net\n#error X\n",
    "\n#include </etc/passwd>\n",
    "f\n__attribute__((constructor)) static void pwn(){}\n//",
    "ends with a backslash\\",
    "continued ??/",
    "block */ int x; /*",
    "nul\0byte",
    "../../x",
]


@given(TEXT)
def test_comment_text_is_inert_printable_ascii(text: str) -> None:
    out = comment_text(text)
    assert all(0x20 <= ord(c) < 0x7F for c in out), out
    assert not any(bad in out for bad in _FORBIDDEN), out
    assert len(out) <= COMMENT_LIMIT


@given(TEXT, st.sampled_from(["/", "*", "?"]), st.sampled_from(["/", "*", "?"]))
def test_comment_text_forms_no_pair_with_its_neighbours(text: str, before: str, after: str) -> None:
    out = comment_text(text)
    assume(out)
    assert not any(bad in before + out + after for bad in ("*/", "/*", "??")), out


@given(TEXT, st.integers(min_value=1, max_value=300))
def test_comment_text_respects_any_limit(text: str, limit: int) -> None:
    assert len(comment_text(text, limit)) <= max(limit, 1)


def test_comment_text_keeps_plain_text_readable() -> None:
    assert comment_text("model.layer1.0.conv1 (zoo.py:21)") == "model.layer1.0.conv1 (zoo.py:21)"
    assert comment_text("C:\\models\\net.py") == "C:/models/net.py"
    assert comment_text("café") == "cafe"
    assert comment_text("x" * 1000).endswith("...")
    assert comment_text("#1 conv2d, " * 100, None) == "#1 conv2d, " * 100  # sol's own text: not cut


@pytest.mark.parametrize("attack", ATTACKS)
def test_comment_text_defuses_known_attacks(attack: str) -> None:
    out = comment_text(attack)
    assert "\n" not in out and "\\" not in out and "??" not in out and "*/" not in out and "\0" not in out


def _parse_c_string(literal: str) -> bytes:
    """The bytes a C compiler makes of the string literal (the escapes c_string writes)."""
    assert literal[0] == literal[-1] == '"'
    out, i, body = bytearray(), 0, literal[1:-1]
    while i < len(body):
        c = body[i]
        assert c != '"', "unescaped quote"
        if c == "\\":
            nxt = body[i + 1]
            if nxt in "01234567":
                digits = re.match(r"[0-7]{1,3}", body[i + 1:])
                assert digits is not None and len(digits.group()) == 3
                out.append(int(digits.group(), 8))
                i += 4
                continue
            assert nxt in '"\\?', f"unexpected escape \\{nxt}"
            out.append(ord(nxt))
            i += 2
            continue
        out.append(ord(c))
        i += 1
    return bytes(out)


@given(TEXT)
def test_c_string_is_a_literal_of_exactly_the_text(text: str) -> None:
    literal = c_string(text, limit=None)
    assert all(0x20 <= ord(c) < 0x7F for c in literal)
    assert "??" not in literal  # no trigraph, even in strict ISO C modes
    assert _parse_c_string(literal) == text.encode("utf-8", errors="replace")


@given(TEXT)
def test_file_name_is_one_safe_component(name: str) -> None:
    out = file_name(name)
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*", out), out
    assert out not in (".", "..") and "/" not in out and len(out) <= 48 + 11


@given(TEXT, TEXT)
def test_distinct_names_get_distinct_file_names(a: str, b: str) -> None:
    assume(a != b)
    assert file_name(a) != file_name(b)


def test_file_name_keeps_ordinary_names() -> None:
    assert file_name("ResNet50") == "ResNet50"
    assert file_name("network.cpp") == "network.cpp"
    assert file_name("..").startswith("unnamed+")
    assert file_name("../../x").startswith("_.._x+") and file_name("__x") == "__x"
