"""Notice when the weights a compiled program read have changed since it was compiled.

Why: compiled programs read weights at load time (library ops copy them into their own layout,
core passes fold BatchNorm into convolution weights), so a later ``load_state_dict``, optimizer
step or ``model.fc.weight = nn.Parameter(...)`` would otherwise leave the program computing with
the old ones: a silently wrong result. Checking every call has to be cheap, so walking the module
tree (hundreds of microseconds for a ResNet) is done only when a parameter, buffer or submodule
was assigned anywhere in the process (PyTorch's global registration hooks count those); otherwise
the check reads the version counter of each tensor, which every in-place write bumps (about 0.1 us
per tensor). Not seen: replacing a tensor's memory through ``tensor.data = other``, which PyTorch
does not count as a write.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.modules import module as _module

_generation = 0
_installed = False


def _assigned(*_: Any) -> None:
    global _generation
    _generation += 1


def _install() -> None:
    global _installed
    if not _installed:
        _module.register_module_parameter_registration_hook(_assigned)
        _module.register_module_buffer_registration_hook(_assigned)
        _module.register_module_module_registration_hook(_assigned)
        _installed = True


class WeightsWatch:
    """``changed()`` is True once after ``model``'s weights were assigned or written."""

    def __init__(self, model: torch.nn.Module) -> None:
        _install()
        self.model = model
        self._generation = _generation
        self._tensors = self._collect()
        self._versions = self._read()

    def _collect(self) -> list[torch.Tensor]:
        return [*self.model.parameters(), *self.model.buffers()]

    def _read(self) -> tuple[int, ...]:
        return tuple(t._version for t in self._tensors)

    def changed(self) -> bool:
        if self._generation != _generation:
            self._generation = _generation
            tensors = self._collect()
            if len(tensors) != len(self._tensors) or any(a is not b for a, b in zip(tensors, self._tensors)):
                self._tensors = tensors
                self._versions = self._read()
                return True
        versions = self._read()
        if versions != self._versions:
            self._versions = versions
            return True
        return False
