"""Shared code-generation helpers for device plugins: one cached jinja2 environment per
template package, undefined variables are errors, and template errors name file and line.

Compiled templates are kept in the compile cache (``$SOL_CACHE_DIR/.jinja2``): jinja2 turns
every template into Python code in each new process, which was a fifth of a second of a warm
start (a new process finding its network in the compile cache). Entries are checked against
the template's source by jinja2 itself, written atomically, and a damaged or unwritable one
only costs compiling the template again.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import jinja2

from sol import cache
from sol.errors import SolError

log = logging.getLogger("sol")


class TemplateError(SolError):
    """A device template failed to render; the message names the template, line and cause."""


class _TemplateCodeCache(jinja2.FileSystemBytecodeCache):
    """jinja2's file cache, made harmless: a damaged entry is a miss, a failed write is ignored."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception as exc:  # truncated or foreign file: compile the template again
            log.debug("sol: compiled-template cache entry unusable (%s)", exc)
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError as exc:  # read-only or full cache: the next process compiles it again
            log.debug("sol: could not keep a compiled template (%s)", exc)


def _template_code_cache() -> jinja2.BytecodeCache | None:
    folder = cache.cache_dir() / ".jinja2"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return _TemplateCodeCache(str(folder))


@functools.cache
def environment(package: str, folder: str = "templates") -> jinja2.Environment:
    """The jinja2 environment for templates shipped as package data in ``package/folder``."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, folder),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        bytecode_cache=_template_code_cache(),
    )


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
