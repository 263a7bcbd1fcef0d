"""The conformance cases now live in the kit (``sol.testing.cases``); this name stays for the
repository's tests that share them (core's gradient checks, the VE's ncc variant)."""

from __future__ import annotations

from sol.testing.cases import (  # noqa: F401
    BINARY,
    CASES,
    PATTERNS,
    POSITIVE_UNARY,
    SPECIAL_EXCLUDED,
    UNARY,
    Case,
    Input,
    Step,
    in_domain,
)
