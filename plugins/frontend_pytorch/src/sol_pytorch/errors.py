"""sol's run-time errors as PyTorch users catch them.

A compiled model whose checked factorization fails on the data (a singular matrix given to
``torch.linalg.inv`` / ``solve``, one not positive definite to ``torch.linalg.cholesky``) raises
core's :class:`sol.errors.LinAlgError`, a ValueError as NumPy's. Eager PyTorch raises
``torch.linalg.LinAlgError``, a RuntimeError, for the same input, and code written for eager
catches that: the entry points of compiled models (:func:`torch_errors`) re-raise it as
:class:`LinAlgError` here, which is both, with the same message (the op, where it came from and
LAPACK's info). An index out of range needs nothing: core's IndexOutOfRangeError is already the
IndexError eager raises for an embedding's bad token id.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from sol.plugin_api import LinAlgError as SolLinAlgError

F = TypeVar("F", bound=Callable[..., Any])


class LinAlgError(SolLinAlgError, torch.linalg.LinAlgError):
    """A failed factorization check of a compiled model: ``except torch.linalg.LinAlgError``
    (eager's, a RuntimeError) and ``except sol.errors.LinAlgError`` both catch it."""


def torch_errors(call: F) -> F:
    """``call`` (an entry point running compiled programs) with sol's LinAlgError raised as
    :class:`LinAlgError`; its traceback is kept, down to the program that failed."""

    @functools.wraps(call)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except SolLinAlgError as exc:
            if isinstance(exc, torch.linalg.LinAlgError):
                raise  # already PyTorch's (a compiled model called inside another one)
            raise LinAlgError(*exc.args).with_traceback(exc.__traceback__) from None

    return run  # type: ignore[return-value]
