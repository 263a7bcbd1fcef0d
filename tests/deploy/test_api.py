"""``sol.deploy``'s arguments and refusals: each is a clear error before anything is compiled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import sol
from sol.deployment import check_batch_sizes, check_name
from sol.errors import SolError, UnsupportedOpError
from sol.ir import Graph, TensorType


@pytest.mark.parametrize("name", ["", "1net", "net-1", "net.so", "../evil", "a b", "net\n", "_hidden", "x" * 65,
                                  "n\u00e9t", None, 3])
def test_a_name_that_is_no_c_identifier_is_refused(name: object, tmp_path: Path) -> None:
    with pytest.raises(SolError, match="must be a C identifier"):
        sol.deploy(nn.Linear(2, 2), (1, 2), path=tmp_path / "out", name=name)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_good_names() -> None:
    for name in ("net", "resnet50", "My_Net_2", "x" * 64):
        assert check_name(name) == name


@pytest.mark.parametrize("sizes, why", [([], "empty"), ([0], "positive"), ([2, 2], "repeat"), ([1.5], "positive"),
                                         ([True], "positive")])
def test_bad_batch_sizes(sizes: list[object], why: str) -> None:
    with pytest.raises(SolError, match=why):
        check_batch_sizes(sizes)  # type: ignore[arg-type]
    assert check_batch_sizes(None) == (None,) and check_batch_sizes([8, 1]) == (8, 1)


def test_a_directory_with_files_is_refused_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(SolError, match="not empty; pass overwrite=True"):
        sol.deploy(nn.Linear(2, 2), (1, 2), path=tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(SolError, match="not a directory"):
        sol.deploy(nn.Linear(2, 2), (1, 2), path=tmp_path / "file")
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_fallback_and_training_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SolError, match="fallback=True is not possible"):
        sol.deploy(nn.Linear(2, 2), (1, 2), path=tmp_path / "a", fallback=True)
    with pytest.raises(SolError, match="inference only"):
        sol.deploy(nn.Linear(2, 2), (1, 2), path=tmp_path / "b", training=True)


class WithFFT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(self.fc(x)).abs()


def test_a_model_its_framework_must_run_in_part_is_refused_naming_the_op(tmp_path: Path) -> None:
    """No fallback in a deployment: the frontend's error names the op sol cannot compile."""
    with pytest.raises(UnsupportedOpError, match="fft"):
        sol.deploy(WithFFT().eval(), (2, 4), path=tmp_path / "out")
    assert not (tmp_path / "out").exists()


class StepCounter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps.add_(1)
        return x * self.steps


def test_a_model_that_updates_tensors_in_place_is_refused(tmp_path: Path) -> None:
    """optimize writes a forward's in-place updates back after each call; a deployed library cannot
    (its C caller knows nothing of them), so deploy refuses rather than drop them."""
    with pytest.raises(SolError, match="updates tensors in place"):
        sol.deploy(StepCounter().eval(), (2, 4), path=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_device_without_deployment_says_so(fresh_plugins, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Device.deploy's default: the reference interpreter device implements no deployment."""
    import sol.testing.interpreter

    fresh_plugins.register(sol.testing.interpreter, "interp")
    g = Graph("tiny")
    x = g.add_input("x", TensorType((2, 3)))
    g.outputs = [g.add_node("relu", [x]).output]
    with pytest.raises(SolError, match="device 'interp' cannot deploy"):
        sol.deploy(g, np.zeros((2, 3), np.float32), path=tmp_path / "out", device="interp")
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())  # nor a staging folder left behind
