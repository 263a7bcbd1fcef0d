"""Exceptions users see. Each message says what was expected and what was given."""

from __future__ import annotations

import sys


class SolError(Exception):
    """Base class of sol's own errors."""


class PluginError(SolError):
    """A plugin is missing, duplicated, incompatible or broken."""


class UnsupportedOpError(SolError):
    """The model uses an operation sol cannot compile; names the op and where it came from."""

    def __init__(self, message: str, op: str = "", source: str | None = None) -> None:
        super().__init__(message)
        self.op = op
        self.source = source


class CompileError(SolError):
    """A device compiler failed; the message includes the compiler's output."""


class CacheError(SolError):
    """The compile cache cannot be used (e.g. not writable); names the folder and what to do."""


class DeviceUnavailableError(SolError):
    """The requested device cannot run here; says why."""


class IndexOutOfRangeError(SolError, IndexError):
    """An index read at run time (a gather's token id) lies outside its axis; an IndexError too,
    as the frameworks raise for the same input."""


class LinAlgError(SolError, ValueError):
    """A checked matrix factorization failed at run time on the data given: a singular matrix
    (a zero pivot of its LU: ``linalg.inv``, ``linalg.solve``) or one that is not positive
    definite (``linalg.cholesky``). The message names the op, its source and the position
    LAPACK's ``info`` gives (1-based).

    A ValueError, not an IndexError (nothing was indexed out of range) nor a RuntimeError: the
    failure is in the input's values, and core's programs take and return NumPy arrays, so it
    follows NumPy's ``numpy.linalg.LinAlgError`` (a ValueError). A framework whose own error
    has another base raises a subclass of both this and its own from its compiled models: the
    PyTorch frontend's is also a ``torch.linalg.LinAlgError`` (a RuntimeError), so
    ``except torch.linalg.LinAlgError`` and ``except sol.errors.LinAlgError`` both catch it."""


class SolFallbackWarning(UserWarning):
    """Some operations of the model run in its framework because sol cannot compile them (one
    warning per model, listing them). One class for every frontend, so that a filter for it
    (``warnings.simplefilter("error", SolFallbackWarning)``) works whatever the framework."""


Problem = tuple[str, str, str]  # (op type, op name, why) of one op the framework runs


class FallbackWording:
    """How a frontend words what its framework runs: the fallback warning and the
    ``fallback=False`` error list every such op with its name and why, the same way for every
    frontend (the TensorFlow, ONNX and MXNet frontends each had a copy)."""

    def __init__(self, things: str, runner: str, listing: str, where: str = "node {name!r}") -> None:
        self.things = things  # "ONNX node(s)", "TensorFlow operation(s)"
        self.runner = runner  # "ONNX Runtime", "TensorFlow"
        self.listing = listing  # "sol_onnx.supported_ops() lists the ONNX operators sol converts"
        self.where = where  # how a line names the op: "node {name!r}", "op {name!r} in layer {layer!r}"

    def lines(self, problems: list[Problem]) -> list[str]:
        """One indented line per op: ``  Type (node 'name'): why``."""
        out = []
        for kind, name, why in problems:
            layer = name.rsplit("/", 1)[0] if "/" in name else name
            out.append(f"  {kind} ({self.where.format(name=name, layer=layer)}){': ' + why if why else ''}")
        return out

    def _head(self, model: str, problems: list[Problem]) -> str:
        kinds = ", ".join(sorted({kind for kind, _, _ in problems}))
        return f"sol cannot compile {len(problems)} {self.things} of {model} ({kinds})"

    def warning(self, model: str, problems: list[Problem], parts: int) -> str:
        """The one SolFallbackWarning of a model: what the framework runs, between how many parts."""
        return (f"{self._head(model, problems)}; {self.runner} runs them and sol compiles the rest "
                f"({parts} part{'s' if parts != 1 else ''}):\n" + "\n".join(self.lines(problems))
                + f"\n{self.listing}; pass fallback=False to make this an error.")

    def error(self, model: str, problems: list[Problem]) -> UnsupportedOpError:
        """The ``fallback=False`` error: every op the framework would run (``op``/``source``: the first)."""
        text = (f"{self._head(model, problems)}:\n" + "\n".join(self.lines(problems))
                + f"\n{self.listing}; with fallback=True (the default) {self.runner} runs them and sol compiles "
                f"the rest.")
        return UnsupportedOpError(text, op=problems[0][0], source=problems[0][1])


_CALL_PLUMBING = frozenset({"contextlib"})


def user_stacklevel(*framework: str) -> int:
    """The ``stacklevel`` that makes ``warnings.warn``, called right after this, point at the
    user's line: the first frame outside sol's own packages (``sol`` and every ``sol_*``
    plugin), call plumbing (``contextlib``) and ``framework``'s top-level packages (``"torch"``;
    ``"tensorflow", "keras"``), which a warning raised from inside ``nn.Module.__call__`` or a Keras
    layer call passes through. Frontends bind their framework with ``functools.partial``, which
    adds no frame of its own (a wrapper function would shift the level by one)."""
    skipped = _CALL_PLUMBING | set(framework)
    level, frame = 1, sys._getframe(1)
    while frame is not None:
        top = str(frame.f_globals.get("__name__", "")).split(".")[0]
        if not (top == "sol" or top.startswith("sol_") or top in skipped):
            break
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
