"""Progress of long steps (tracing a model, compiling its parts, building a runtime library) on a
terminal, and the same events on ``logging.getLogger("sol")``.

Core, devices and frontends wrap each long step in :func:`step`::

    with progress.step("compiling 4 parts", total=4) as s:
        for part in parts:
            build(part)
            s.advance()

On a terminal (stderr is a TTY and ``SOL_PROGRESS`` is not ``0``) the steps in flight are drawn
with rich, one line each (spinner, description, count, elapsed time), and erased when the last
one ends; anywhere else nothing is drawn. Every step logs its start and its end with the time it
took at INFO, each advance at DEBUG: ``SOL_LOG=info`` tells the same story in a log.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("sol")

_OFF = ("0", "false", "no", "off")


def enabled() -> bool:
    """Whether steps are drawn: stderr is a terminal and ``SOL_PROGRESS`` does not turn them off."""
    if os.environ.get("SOL_PROGRESS", "").strip().lower() in _OFF:
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


def _printable(text: str) -> str:
    """A description for a terminal line: model names are untrusted, and a control character (an
    escape sequence, a line break) must not move the cursor or restyle the terminal."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


class _Display:
    """The one rich progress display all steps in flight share (a console has one live display at
    a time): started by the first step that is drawn, stopped (and erased) with the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: Any = None
        self._tasks = 0

    def add(self, description: str, total: int | None) -> Any:
        """A task id, or None when nothing is drawn (not a terminal, turned off, rich missing)."""
        with self._lock:
            if self._progress is None:
                if not enabled():
                    return None
                self._progress = _new_progress()
                if self._progress is None:
                    return None
                self._progress.start()
            self._tasks += 1
            return self._progress.add_task(description, total=total, count=_count(0, total))

    def advance(self, task: Any, done: int, total: int | None) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.update(task, completed=done, count=_count(done, total))

    def remove(self, task: Any) -> None:
        with self._lock:
            if self._progress is None:
                return
            self._tasks -= 1
            if self._tasks > 0:
                self._progress.remove_task(task)
                return
            progress, self._progress = self._progress, None
            progress.stop()  # draws the last state, then erases the display (transient)


def _count(done: int, total: int | None) -> str:
    return f"{done}/{total}" if total is not None else ""


def _new_progress() -> Any:
    """rich's Progress on stderr, or None if rich cannot be imported (progress is a courtesy:
    never a reason for a compile to fail)."""
    try:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    except ImportError:
        return None
    # enabled() has seen a terminal; force_terminal keeps rich from deciding otherwise.
    console = Console(file=sys.stderr, force_terminal=True)
    # markup=False: a description holds model names, never rich markup.
    return Progress(SpinnerColumn(), TextColumn("sol: {task.description}", markup=False),
                    TextColumn("{task.fields[count]}", markup=False), TimeElapsedColumn(),
                    console=console, transient=True)


_DISPLAY = _Display()


class Step:
    """One step in flight; :meth:`advance` counts its finished units (parts, kernels, ...)."""

    def __init__(self, description: str, total: int | None, task: Any) -> None:
        self.description = description
        self.total = total
        self.done = 0
        self._task = task

    def advance(self, n: int = 1) -> None:
        self.done += n
        log.debug("sol: %s: %s", self.description, _count(self.done, self.total) or self.done)
        if self._task is not None:
            _DISPLAY.advance(self._task, self.done, self.total)


@contextmanager
def step(description: str, total: int | None = None, *, background: bool = False) -> Iterator[Step]:
    """A long step: logged at its start and end, drawn on a terminal while it runs.

    ``total``: the units it consists of (the caller calls :meth:`Step.advance` as each ends).
    ``background``: work on a thread that nobody may be waiting for (e.g. a build started ahead
    of time): logged only, never drawn, since its line would stay on a terminal the user may
    already be typing in. Whoever later waits for that work makes a step of the wait."""
    text = _printable(description)
    log.info("sol: %s ...", text)
    t0 = time.perf_counter()
    task = None if background else _DISPLAY.add(text, total)
    finished = False
    try:
        yield Step(text, total, task)
        finished = True
    finally:
        if task is not None:
            _DISPLAY.remove(task)
        outcome = "done" if finished else "stopped (an error or an interrupt)"
        log.info("sol: %s: %s in %.2f s", text, outcome, time.perf_counter() - t0)
