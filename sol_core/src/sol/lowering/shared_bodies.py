"""Identical fused-group bodies compiled once. A transformer's twelve layers lower to twelve copies
of the same loop nests that differ only in which buffers they read and write (and in the
comments naming their source lines): the C compiler optimizes each copy again, most of a large
network's compile. A C-family device renders each fused group's body (the code after its buffer
declarations) into ``ctx["body"]``; :func:`share_identical_bodies` finds the groups whose bodies
are the same code up to the names of their buffers and locals, and gives them one shared
function that takes the buffers as arguments (``ctx["shared"]``).

Sameness is decided on the text: comments are dropped and the names the generator makes per
value (``v12`` buffers, ``r12`` registers, ``L12`` local arrays) are numbered in order of first
use. Every other token (loop bounds, constants' names, literals, helper calls) must match
exactly, so two bodies share code only where they are the same computation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_COMMENT = re.compile(r"//[^\n]*")
_VALUE_NAME = re.compile(r"\b[vrL][0-9]+\b")


@dataclass
class SharedBody:
    """One function several fused groups call: ``params`` (declarations, the first member's
    names), its ``body`` text (the first member's), the ``members``' labels."""

    name: str
    params: list[str]
    body: str
    first: dict[str, Any]
    members: list[str] = field(default_factory=list)


def _declared(decl: str) -> tuple[str, str]:
    """``("const float* __restrict v3", "v3")`` from ``const float* __restrict v3 = ...;``."""
    left = decl.split("=", 1)[0].strip()
    return left, left.split()[-1]


def _canonical(ctx: dict[str, Any]) -> tuple[tuple[Any, ...], list[str], list[str]]:
    """(key, parameter declarations, argument names) of a fused group's body: the key holds the
    body with value names numbered by first use and the parameters' types in that order."""
    declared = {sym: decl for decl, sym in map(_declared, ctx["decls"])}
    text = _COMMENT.sub("", ctx["body"])
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"@{numbers.setdefault(match.group(0), len(numbers))}"

    canonical = _VALUE_NAME.sub(number, text)
    args = [s for s in numbers if s in declared] + [s for s in declared if s not in numbers]
    params = [declared[s] for s in args]
    types = tuple(p[: len(p) - len(s)] for p, s in zip(params, args))
    return (canonical, types, tuple(numbers.get(s, -1) for s in args)), params, args


def share_identical_bodies(groups: list[dict[str, Any]], prefix: str = "sol_body") -> list[SharedBody]:
    """Mark the fused groups (contexts with ``body`` and ``decls``) whose bodies repeat: each gets
    ``ctx["shared"] = {"name": ..., "args": [...], "owner": ...}`` (its buffers in the shared
    function's parameter order; ``owner``: the first member, whose part compiles the function)
    and the shared functions are returned, in order of first use. A body that occurs once stays
    as it is (no ``shared`` key)."""
    classes: dict[tuple[Any, ...], list[tuple[dict[str, Any], list[str], list[str]]]] = {}
    for ctx in groups:
        if ctx.get("kind") == "fused" and "body" in ctx:
            key, params, args = _canonical(ctx)
            classes.setdefault(key, []).append((ctx, params, args))
    shared: list[SharedBody] = []
    for members in classes.values():
        if len(members) < 2:
            continue
        first, params, _ = members[0]
        body = SharedBody(f"{prefix}{len(shared)}", params, first["body"], first)
        for ctx, _, args in members:
            ctx["shared"] = {"name": body.name, "args": args, "owner": ctx is first}
            body.members.append(ctx["label"])
        shared.append(body)
    return shared
