"""Where an exported ATen node came from in the user's model, for node sources and error messages.

``torch.export`` records, per node, the ``nn.Module`` path that was running
(``meta["nn_module_stack"]``) and the Python stack (``meta["stack_trace"]``). Users care about
their own code, not PyTorch's internals, so the reported line is the innermost frame that is not
inside the ``torch`` package (e.g. the ``self.conv(x)`` call rather than ``F.conv2d`` in torch).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
from torch import fx

import sol
import sol_pytorch

# Frames inside torch or inside sol itself (tracing starts in sol's own code) are not the user's.
_NOT_USER = tuple(os.path.dirname(os.path.abspath(m.__file__ or "")) + os.sep for m in (torch, sol, sol_pytorch))
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>[^\n]+)\n(?P<code>[^\n]*)')
_DYNAMO_ROOT = re.compile(r"^L\['self'\]\.?")
ROOT = "model"
"""How the user's top-level module is called in messages (``model.layer1.0.conv1``)."""


@dataclass(frozen=True)
class Frame:
    file: str
    line: int
    code: str

    @property
    def short(self) -> str:
        return f"{os.path.basename(self.file)}:{self.line}"

    @property
    def full(self) -> str:
        return f"{self.file}:{self.line}"


def user_frame(node: fx.Node) -> Frame | None:
    """The innermost stack frame of ``node`` that lies outside the torch and sol packages."""
    found = None
    for m in _FRAME.finditer(node.meta.get("stack_trace") or ""):
        path = os.path.abspath(m.group("file"))
        if not path.startswith(_NOT_USER):
            found = Frame(m.group("file"), int(m.group("line")), m.group("code").strip())
    return found


def module_path(node: fx.Node) -> tuple[str, str]:
    """(``model.layer1.0.conv1``, ``Conv2d``): the innermost module running when ``node`` ran."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ROOT, ""
    path, kind = list(stack.values())[-1]
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__qualname__", str(kind))
    path = _DYNAMO_ROOT.sub("", str(path))  # torch.compile's graphs name the model L['self']
    return (f"{ROOT}.{path}" if path else ROOT), kind_name.rsplit(".", 1)[-1]


def describe(node: fx.Node) -> str:
    """Short form for ``Node.source``: ``model.layer1.0.conv1 (zoo.py:21)``."""
    path, _ = module_path(node)
    frame = user_frame(node)
    return f"{path} ({frame.short})" if frame else path


def describe_long(node: fx.Node) -> str:
    """Long form for error messages: module path and type, full file path, line and code."""
    path, kind = module_path(node)
    where = f"{path} ({kind})" if kind else path
    frame = user_frame(node)
    if frame is None:
        return f"in {where}"
    code = f": {frame.code}" if frame.code else ""
    return f"in {where} at {frame.full}{code}"
