"""Winograd's F(2x2, 3x3) for x86 convolutions (sol_x86.winograd, the runtime's WinogradConv),
through the public API against PyTorch eager: which convolutions take it (3x3, stride 1, one
group, channels in blocks of 16, not too many), odd sizes and every padding, bias or none, the
residual sum and relu of its epilogue, channels-last and NCHW tensors, batch 1 and 3; NaN and
infinity in the input or a weight (the network's exact twin runs: Winograd's sums would turn an
infinity into NaN); ``winograd=False``; and a model whose weights change after optimizing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sol

from against_eager import assert_matches_eager


def _libraries(model: nn.Module, x: torch.Tensor, **options: object) -> tuple[nn.Module, list[str]]:
    fast = sol.optimize(model, x, device="x86", **options)
    return fast, fast.program.info["libraries"].splitlines()  # type: ignore[attr-defined]


_close = assert_matches_eager


class Residual(nn.Module):
    """conv -> relu -> conv + x -> relu: both epilogues WinogradConv computes."""

    def __init__(self, c: int, padding: int | tuple[int, int] = 1, bias: bool = True) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=padding, bias=bias)
        self.b = nn.Conv2d(c, c, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(x))
        return torch.relu(self.b(y) + y)


@pytest.mark.parametrize("shape", [(1, 32, 14, 14), (3, 16, 13, 9), (2, 48, 9, 12), (1, 16, 17, 17)])
@pytest.mark.parametrize("padding", [1, 0, 2, (1, 2)])
@pytest.mark.parametrize("bias", [True, False])
def test_winograd_matches_pytorch(shape: tuple[int, int, int, int], padding: int | tuple[int, int], bias: bool) -> None:
    torch.manual_seed(0)
    model = Residual(shape[1], padding, bias).eval()
    x = torch.randn(*shape)
    fast, lines = _libraries(model, x)
    assert lines and all("winograd F(2x2,3x3)" in line for line in lines), lines
    _close(fast, model, x)
    # The same program, other values of the same shape, and a channels-last input.
    _close(fast, model, 10 * torch.randn(*shape))
    _close(fast, model, x.contiguous(memory_format=torch.channels_last))


def test_plain_convolution_and_other_output_channels() -> None:
    # No epilogue at all, C != K, and the NCHW plan (a conv whose result leaves the network).
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.Conv2d(64, 16, 3)).eval()
    x = torch.randn(2, 32, 20, 11)
    fast, lines = _libraries(model, x)
    assert len(lines) == 2 and all("winograd" in line for line in lines), lines
    _close(fast, model, x)


@pytest.mark.parametrize("conv", [
    nn.Conv2d(32, 32, 3, stride=2, padding=1),   # stride
    nn.Conv2d(32, 32, 3, padding=2, dilation=2),  # dilation
    nn.Conv2d(32, 32, 3, padding=1, groups=2),   # groups
    nn.Conv2d(32, 32, 1),                        # not 3x3
    nn.Conv2d(24, 32, 3, padding=1),             # input channels not in blocks of 16
    nn.Conv2d(512, 256, 3, padding=1),           # C * K beyond the limit
], ids=["stride", "dilation", "groups", "1x1", "channels", "large"])
def test_direct_where_winograd_does_not_fit(conv: nn.Conv2d) -> None:
    torch.manual_seed(2)
    model = nn.Sequential(conv, nn.ReLU()).eval()
    x = torch.randn(1, conv.in_channels, 16, 16)
    fast, lines = _libraries(model, x)
    assert lines and not any("winograd" in line for line in lines), lines
    _close(fast, model, x)


def test_an_epilogue_it_does_not_compute_keeps_the_direct_kernel() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.Sigmoid()).eval()
    x = torch.randn(1, 32, 16, 16)
    fast, lines = _libraries(model, x)
    assert lines and not any("winograd" in line for line in lines), lines
    _close(fast, model, x)


def test_too_few_tiles_keep_the_direct_kernel() -> None:
    model = nn.Conv2d(32, 32, 3, padding=1).eval()
    x = torch.randn(1, 32, 8, 8)  # 16 tiles of 2x2
    fast, lines = _libraries(model, x)
    assert lines and not any("winograd" in line for line in lines), lines
    _close(fast, model, x)


def test_option_false_keeps_every_convolution_direct() -> None:
    torch.manual_seed(4)
    model = Residual(32).eval()
    x = torch.randn(1, 32, 14, 14)
    fast, lines = _libraries(model, x, winograd=False)
    assert lines and not any("winograd" in line for line in lines), lines
    _close(fast, model, x)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_nonfinite_input_gives_pytorchs_answer(value: float) -> None:
    # Winograd's input transform would make inf - inf = NaN where the direct sum keeps the
    # infinity: the device's finite guard runs the exact twin for such inputs.
    torch.manual_seed(5)
    model = Residual(16).eval()
    x = torch.randn(2, 16, 12, 12)
    fast, lines = _libraries(model, x)
    assert all("winograd" in line for line in lines), lines
    bad = x.clone()
    bad[0, 3, 5, 6] = value
    bad[1, 0, 0, 0] = value
    with torch.no_grad():
        want, got = model(bad), fast(bad)
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    _close(fast, model, bad)
    _close(fast, model, x)  # and back to finite inputs


def test_nonfinite_weight_gives_pytorchs_answer() -> None:
    torch.manual_seed(6)
    model = Residual(16).eval()
    with torch.no_grad():
        # The centre tap, which never meets the zero padding (oneDNN skips padded taps where
        # PyTorch multiplies them: inf * 0 at the border differs with every kernel, direct too).
        model.a.weight[2, 1, 1, 1] = float("inf")
    x = torch.randn(1, 16, 12, 12)
    fast = sol.optimize(model, x, device="x86")
    with torch.no_grad():
        want, got = model(x), fast(x)
    assert torch.equal(torch.isnan(got), torch.isnan(want)) and torch.isinf(want).any()
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    _close(fast, model, x)


def test_changed_weights_are_transformed_again() -> None:
    # The transformed filters are a copy: a weight changed after optimizing must reach them.
    torch.manual_seed(7)
    model = Residual(32).eval()
    x = torch.randn(1, 32, 14, 14)
    fast = sol.optimize(model, x, device="x86")
    _close(fast, model, x)
    with torch.no_grad():
        model.b.weight.mul_(-2.0)
    _close(fast, model, x)


def test_nchw_plan_keeps_the_blocked_layout_between_winograd_convolutions(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without channels-last regions the convolutions meet in oneDNN's nChw16c, which
    # WinogradConv reads and writes as it is: no conversion between the two.
    monkeypatch.setenv("SOL_X86_LAYOUT", "nchw")
    torch.manual_seed(8)
    model = Residual(32).eval()
    x = torch.randn(1, 32, 14, 14)
    fast, lines = _libraries(model, x)
    assert len(lines) == 2 and all("winograd" in line for line in lines), lines
    assert "output kept" in lines[0] and "input kept" in lines[1] and "residual kept" in lines[1], lines
    _close(fast, model, x)


def test_profile_counts_the_flops_winograd_executes() -> None:
    # Core counts a 3x3 convolution's direct multiplies; Winograd does 4/9 of them, so its rows
    # would show rates above the machine's peak. The device reports what it executes and the
    # profile marks those rows (sol.profiling, program.info["executed_flops"]).
    from sol.profiling import profile
    from sol.workload import group_work

    torch.manual_seed(9)
    model = Residual(32).eval()
    x = torch.randn(2, 32, 14, 14)
    report = profile(model, x, device="x86", runs=2, measure_ceilings=False)
    rows = [r for r in report.groups if r.group.anchor is not None and r.group.anchor.op.startswith("conv2d")]
    assert len(rows) == 2 and all(r.executed for r in rows)
    tiles, c, k = 2 * 7 * 7, 32, 32
    for r in rows:
        direct = group_work(r.group).flops
        assert 2 * 16 * tiles * c * k < r.work.flops < 0.5 * direct, (r.work.flops, direct)
    text = str(report)
    assert "onednn*" in text and "*: MFLOP as the device's algorithm executes them" in text
    direct_report = profile(model, x, device="x86", runs=2, measure_ceilings=False, winograd=False)
    assert not any(r.executed for r in direct_report.groups) and "*: MFLOP" not in str(direct_report)
