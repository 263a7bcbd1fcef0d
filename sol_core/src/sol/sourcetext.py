"""Model text in generated source and in file names, made harmless.

A model is untrusted input: its class name, submodule names, layer names, a ``tf.function``'s
``__name__`` and the file names of its source all end up in generated code (as comments naming
where an op came from, as an error message's string) and in debug folder names. Every such piece
of text goes through one of the functions here, so that no name can end a comment, continue it
onto the next line, start a preprocessor directive or a statement, or leave a folder:

* :func:`comment_text`: text for inside a ``//`` or ``/* */`` comment of C or C++.
* :func:`c_string`: a complete C/C++ string literal.
* :func:`file_name`: one path component (a folder or file name).

Identifiers in generated code are never taken from names (they are generated: ``v3``, ``G2``),
so these three are all that model text ever needs.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

COMMENT_LIMIT = 160
"""Most characters of model text in one comment (a long module path is cut, marked with ...)."""
STRING_LIMIT = 200
"""Most characters of model text in one string literal."""
FILE_NAME_LIMIT = 48
"""Most characters of a name's readable part in a file name (a short hash follows when cut)."""

_PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F))
_LINE_BREAKS = "\n\r\v\f\x85\u2028\u2029"
# Pairs that open or close a comment: "*/" ends a /* */ comment, "/*" opens a nested one (gcc's
# -Wcomment). A space between the two characters defuses both.
_COMMENT_MARK = re.compile(r"\*(?=/)|/(?=\*)")
# "??" starts a trigraph in ISO C (clang -std=c11, gcc -trigraphs): "??/" is a backslash, which
# at the end of a line continues a // comment onto the next one.
_TRIGRAPH = re.compile(r"\?(?=\?)")
_EDGE = ("/", "*", "?")
_FILE_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_FILE_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_.-]+")


def _plain(text: object) -> str:
    """``text`` with every line break and tab a space, every other character that is not
    printable ASCII a ``?`` (decomposed first, so that accented letters keep their base letter)."""
    s = unicodedata.normalize("NFKD", str(text))
    out = []
    for ch in s:
        if ch in _PRINTABLE:
            out.append(ch)
        elif ch in _LINE_BREAKS or ch == "\t":
            out.append(" ")
        elif unicodedata.combining(ch):
            continue  # the accent of a decomposed letter: the letter itself was kept
        else:
            out.append("?")
    return "".join(out)


def _cut(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[:limit - 3] + "..." if limit > 3 else text[:max(0, limit)]


def comment_text(text: object, limit: int | None = COMMENT_LIMIT) -> str:
    """``text`` as it may stand inside a C/C++ comment of generated source: printable ASCII only,
    no line break, no backslash (which would continue a ``//`` comment onto the next line), no
    ``*/`` or ``/*``, no trigraph; at most ``limit`` characters (None: any length, for text sol
    writes itself, such as a list of op names). Backslashes become ``/`` (Windows paths stay
    readable), other characters outside printable ASCII ``?``.

    The result neither starts nor ends with ``/``, ``*`` or ``?``, so that it forms none of
    these pairs with whatever the template writes around it."""
    raw = str(text)
    if limit is not None:
        raw = raw[:4 * limit + 8]  # enough for the cut below, whatever _plain expands
    s = _plain(raw).replace("\\", "/")
    s = _COMMENT_MARK.sub(r"\g<0> ", s)
    s = _TRIGRAPH.sub("? ", s)
    if s.startswith(_EDGE):
        s = " " + s
    s = _cut(s, None if limit is None else limit - 1)
    return s + " " if s.endswith(_EDGE) else s


def c_string(text: object, limit: int | None = STRING_LIMIT) -> str:
    """A C/C++ string literal (with its quotes) holding ``text``, UTF-8 encoded: printable ASCII
    as itself, ``"`` ``\\`` and ``?`` escaped (``\\?``: no trigraph), every other byte as a
    three-digit octal escape (a following digit cannot extend it, unlike ``\\x``)."""
    s = _cut(str(text), limit)
    out = ['"']
    for byte in s.encode("utf-8", errors="replace"):
        ch = chr(byte)
        if ch in '"\\?':
            out.append("\\" + ch)
        elif ch in _PRINTABLE:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    out.append('"')
    return "".join(out)


def file_name(name: object, limit: int = FILE_NAME_LIMIT) -> str:
    """``name`` as one path component that stays inside its folder: a name of letters, digits,
    ``_ . -`` (not starting with ``.`` or ``-``) and at most ``limit`` characters is kept as it is;
    any other becomes its safe characters (others as ``_``) plus ``+`` and a hash of the whole
    name, so that distinct names stay distinct (``+`` never appears in a name kept as it is)."""
    s = str(name)
    if len(s) <= limit and _FILE_SAFE.fullmatch(s):
        return s
    digest = hashlib.sha256(s.encode("utf-8", errors="surrogatepass")).hexdigest()[:10]
    readable = _FILE_UNSAFE_CHAR.sub("_", s).lstrip(".-")[:limit]
    return f"{readable}+{digest}" if readable else f"unnamed+{digest}"
