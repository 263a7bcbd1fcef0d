"""Checks on generated C/C++ source that model text must not be able to break (the injection
tests of tests/x86, tests/tensorflow and tests/sxaurora)."""

from __future__ import annotations

from pathlib import Path


def code_only(text: str) -> str:
    """``text`` with its comments and string/char literals blanked out, as a C preprocessor
    sees it: a backslash at the end of a line joins the next one first (so a ``//`` comment
    continued that way swallows that line, as it would in the compiler)."""
    text = text.replace("\\\n", "")
    out, i, n = [], 0, len(text)
    while i < n:
        two = text[i:i + 2]
        if two == "//":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif two == "/*":
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        elif text[i] in "\"'":
            quote, j = text[i], i + 1
            while j < n and text[j] != quote:
                j += 2 if text[j] == "\\" else 1
            out.append(quote + quote)
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def assert_inert(text: str, markers: list[str]) -> None:
    """``text`` (a generated source) is printable ASCII, has no trigraph and no line that ends
    in a backslash, and each marker of injected code occurs (if at all) only inside comments or
    string literals."""
    bad = sorted({c for c in text if not (c == "\n" or 0x20 <= ord(c) < 0x7F)})
    assert not bad, f"characters outside printable ASCII: {bad!r}"
    assert "??" not in text, "a trigraph may form"
    continued = [line for line in text.splitlines() if line.endswith("\\")]
    assert not continued, f"lines continued by a backslash: {continued[:3]}"
    code = code_only(text)
    for marker in markers:
        assert marker not in code, f"{marker!r} reached the code outside comments"


def sources(folder: Path, suffixes: tuple[str, ...] = (".cpp", ".c", ".hpp", ".h")) -> dict[Path, str]:
    """Every generated source under ``folder`` (a SOL_DEBUG_DIR)."""
    return {p: p.read_text() for p in sorted(folder.rglob("*")) if p.suffix in suffixes and p.is_file()}


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())
