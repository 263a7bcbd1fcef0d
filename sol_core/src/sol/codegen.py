"""Shared code-generation helpers for device plugins: one cached jinja2 environment per
template package, undefined variables are errors, and template errors name file and line.

Compiled templates are kept in the compile cache (``$SOL_CACHE_DIR/.jinja2``): jinja2 turns
every template into Python code in each new process, which was a fifth of a second of a warm
start (a new process finding its network in the compile cache). A compiled template is a
marshalled code object, which Python unmarshals without checking: damaged bytes can crash the
interpreter or become other code. So each file carries the SHA-256 of its bytes and is used only
when that matches (:func:`sol.cache.read_checked`); jinja2 itself checks it against the
template's source. Files are written atomically, and a damaged or unwritable one only costs
compiling the template again.

Templates write model text (a network's name, where an op came from) only through the
``comment`` filter (:func:`sol.sourcetext.comment_text`), e.g. ``// {{ name | comment }}``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import jinja2

from sol import cache
from sol.errors import SolError
from sol.sourcetext import c_string, comment_text

log = logging.getLogger("sol")


class TemplateError(SolError):
    """A device template failed to render; the message names the template, line and cause."""


class _TemplateCodeCache(jinja2.BytecodeCache):
    """Compiled templates as checksummed files in the compile cache: a damaged, truncated or
    foreign file is a miss (never unmarshalled), a failed write is ignored."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, bucket: jinja2.bccache.Bucket) -> Path:
        return self.folder / f"{bucket.key}.code"  # the key is jinja2's SHA-1 hex of the template's name

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        data = cache.read_checked(self._path(bucket))
        if data is None:
            return
        try:
            bucket.bytecode_from_string(data)
        except Exception as exc:  # written by another Python or jinja2: compile the template again
            log.debug("sol: compiled-template cache entry unusable (%s)", exc)
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            cache.write_checked(self._path(bucket), bucket.bytecode_to_string())
        except OSError as exc:  # read-only or full cache: the next process compiles it again
            log.debug("sol: could not keep a compiled template (%s)", exc)


def _template_code_cache() -> jinja2.BytecodeCache | None:
    folder = cache.cache_dir() / cache.TEMPLATES
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return _TemplateCodeCache(folder)


@functools.cache
def environment(package: str, folder: str = "templates") -> jinja2.Environment:
    """The jinja2 environment for templates shipped as package data in ``package/folder``; it
    also finds the C-family generator's shipped templates, as ``sol/<name>``
    (:data:`sol.lowering.TEMPLATES`)."""
    from sol.lowering.cfamily import template_loader

    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([template_loader(), jinja2.PackageLoader(package, folder)]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        bytecode_cache=_template_code_cache(),
    )
    env.filters["comment"] = comment_text
    env.filters["c_string"] = c_string
    return env


def render(package: str, template: str, folder: str = "templates", **context: Any) -> str:
    """Render one template; re-raise failures with the template name, line and context keys."""
    env = environment(package, folder)
    try:
        return env.get_template(template).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{package}/{folder}/{exc.filename or template}:{exc.lineno}: {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{package}/{folder}/{template}: {exc.message} "
                            f"(context has: {', '.join(sorted(context))})") from exc
    except Exception as exc:
        line = _template_line(exc)
        raise TemplateError(f"{package}/{folder}/{template}{line}: {type(exc).__name__}: {exc}") from exc


def _template_line(exc: Exception) -> str:
    tb = exc.__traceback__
    line = ""
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(".j2"):
            line = f":{tb.tb_lineno}"
        tb = tb.tb_next
    return line
