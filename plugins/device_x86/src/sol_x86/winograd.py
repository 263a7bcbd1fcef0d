"""When a convolution runs as Winograd's F(2x2, 3x3): the runtime library's WinogradConv
(templates/sol_x86_winograd.hpp), chosen per library group by the renderer.

Measured on this CPU against oneDNN 3.2's direct kernel (both threads, in one process, medians of
30; the issue note has the table): ResNet's 3x3 layers at 56x56x64, 28x28x128 and 14x14x256
ran 1.3-1.6x faster at batch 1 and 8; at 7x7x512 the transformed weights (16 x 512 x 512 floats)
are streamed from memory for every chunk of tiles and it ran at 0.3-0.7x (batch 1) and 1.1x
(batch 8). Hence the limits below.

Winograd's sums are exact only for finite inputs (an infinity turns into inf - inf = NaN), so a
group uses it only where :mod:`sol.passes.finite` proves the convolution's input and weight
finite given finite graph inputs and parameters; the device checks that premise at run time and
runs the network's exact twin (no Winograd) where it fails. Its rounding differs from the direct
sum's by a few float32 ulps of the output's magnitude (measured: at most 1e-6 of max |y|).
"""

from __future__ import annotations

from collections.abc import Sequence

from sol_x86.libraries import PostOp

BLOCK = 16  # both channel counts in whole blocks of nChw16c
MAX_CHANNEL_PRODUCT = 256 * 256  # C * K: above, the transformed weights leave the caches
MIN_TILES = 32  # 2x2 output tiles over the batch: below, too little to split over the threads
OPTION = "winograd"  # optimize(..., winograd=False) keeps every convolution direct


def fits(x_dims: Sequence[int], w_dims: Sequence[int], y_dims: Sequence[int], stride: Sequence[int],
         dilation: Sequence[int], groups: int, static_weights: bool, post: list[PostOp]) -> bool:
    """Whether a convolution (dims as oneDNN sees them: NCHW, OIHW; ``dilation`` oneDNN's, 0 for
    dense taps) and its epilogue (without the bias) are what WinogradConv computes: 3x3, stride 1,
    no dilation, one group, weights known at load time, then optionally a residual sum, then
    optionally relu. The runtime checks the same (WinogradConv::fits) and keeps the direct
    kernel where it disagrees."""
    if len(x_dims) != 4 or groups != 1 or not static_weights:
        return False
    if tuple(w_dims[2:]) != (3, 3) or tuple(stride) != (1, 1) or tuple(dilation) != (0, 0):
        return False
    c, k = x_dims[1], w_dims[0]
    if c % BLOCK or k % BLOCK or c * k > MAX_CHANNEL_PRODUCT:
        return False
    if y_dims[0] * ((y_dims[2] + 1) // 2) * ((y_dims[3] + 1) // 2) < MIN_TILES:
        return False
    kinds = [("relu" if p.kind == "eltwise" and p.alg == "eltwise_relu" and p.alpha == 0 and p.beta == 0 else p.kind)
             for p in post]
    return kinds in ([], ["sum"], ["relu"], ["sum", "relu"])


def executed_flops(y_dims: Sequence[int], c: int, post: list[PostOp]) -> float:
    """The FLOPs WinogradConv executes (a multiply-add is 2), for the profile's roofline
    (``program.info["executed_flops"]``): the sixteen products, 2 * 16 * tiles * C * K; the input
    transform, 32 additions per tile and input channel (B^T d B); the output transform, 24 per tile
    and output channel (A^T M A); one operation per output element for the bias and for each
    epilogue step."""
    n, k, oh, ow = y_dims
    tiles = n * ((oh + 1) // 2) * ((ow + 1) // 2)
    return float(2 * 16 * tiles * c * k + 32 * tiles * c + 24 * tiles * k + (1 + len(post)) * n * k * oh * ow)
