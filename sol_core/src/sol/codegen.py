"""Shared code-generation helpers for device plugins: one cached jinja2 environment per
template package, undefined variables are errors, and template errors name file and line."""

from __future__ import annotations

import functools
from typing import Any

import jinja2

from sol.errors import SolError


class TemplateError(SolError):
    """A device template failed to render; the message names the template, line and cause."""


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
