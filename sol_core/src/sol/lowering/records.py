"""Typed per-op lowering records: what :class:`sol.lowering.GroupLowering` hands a device's op
templates for one I/O-bound (or loop-lowered compute-bound) stage of a fused group.

Every record carries the fields of :class:`OpRecord` (the node's op, the output's C element type
``T``, and ``x``/``y``: C pointer expressions of the first input's and the output's sub-tensors
at this outer iteration) plus the sizes and index expressions of its op family. A template reads
them as attributes (``s.planes``, ``s.runs.inner``); the macro a record is rendered with is
:attr:`OpStage.op <sol.lowering.OpStage>`. All index arithmetic is done here, once, so a new
C-family device writes loops, not address calculations. Fields hold C text (pointer and offset
expressions, literals) or numbers; nothing in them comes from model text except through
:func:`sol.sourcetext.c_string` (``GatherRecord.where``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict


class BaseFields(TypedDict):
    """The :class:`OpRecord` fields, as :class:`sol.lowering.GroupLowering` hands them to an op
    family's lowering (which adds its own and builds the record)."""

    op: str
    T: str
    x: str
    y: str


@dataclass(kw_only=True)
class OpRecord:
    op: str  # the node's op (one macro may serve several: max/avg pooling, mean/sum)
    T: str  # C element type of the output
    x: str  # first input's sub-tensor
    y: str  # the output's sub-tensor


@dataclass
class Dim:
    """One loop of a general (strided) loop nest: counter ``i<j>`` from 0 to ``extent``."""

    extent: int


@dataclass(kw_only=True)
class PlaneRecord(OpRecord):
    """An op over ``planes`` planes of H x W giving OH x OW each (pooling, resize)."""

    planes: int
    H: int
    W: int
    OH: int
    OW: int


@dataclass(kw_only=True)
class WindowRecord(OpRecord):
    """A sliding window's geometry: padding (top, bottom, left, right), stride, dilation."""

    pt: int
    pb: int
    pl: int
    pr: int
    sh: int
    sw: int
    dh: int
    dw: int


@dataclass(kw_only=True)
class PoolRecord(PlaneRecord, WindowRecord):
    """max/avg pooling with a kh x kw window."""

    kh: int
    kw: int
    count_include_pad: bool
    divisor: int | None
    nan_ignore: bool

    @property
    def owlo(self) -> int:
        """First output column whose window starts inside the input (left padding ends)."""
        return min(-(-self.pl // self.sw), self.OW)

    @property
    def owhi(self) -> int:
        """One past the last output column whose window ends inside the input: columns in
        [owlo, owhi) need no bounds test (a vectorizable interior)."""
        hi = (self.W - 1 - (self.kw - 1) * self.dw + self.pl) // self.sw + 1
        return max(min(hi, self.OW), self.owlo)


@dataclass(kw_only=True)
class PoolNhwcRecord(WindowRecord):
    """max/avg pooling over ``images`` channels-last images of H x W x C giving OH x OW x C each."""

    images: int
    H: int
    W: int
    C: int
    OH: int
    OW: int
    kh: int
    kw: int
    nan_ignore: bool
    count_include_pad: bool
    divisor: int | None


@dataclass(kw_only=True)
class AdaptivePoolRecord(PlaneRecord):
    pass


@dataclass(kw_only=True)
class SoftmaxRecord(OpRecord):
    """softmax / log_softmax over ``L`` elements spaced ``post`` apart, ``pre`` blocks.
    ``nan``/``masked_rows``: the frameworks' special-value rules (:mod:`sol.ops.reduce`)."""

    pre: int
    L: int
    post: int
    nan: str
    masked_rows: str


@dataclass
class Run:
    """Adjacent dims of one kind merged into one: ``extent`` elements ``stride`` apart;
    ``div`` (kept runs): the run's index is ``k / div % extent`` for output counter ``k``."""

    extent: int
    stride: int
    div: int = 1


@dataclass(kw_only=True)
class ReduceRuns:
    """A reduction as runs of kept and reduced dims (see :func:`sol.lowering.reduce_runs`)."""

    kept: list[Run]
    reduced: list[Run]
    inner: int
    inner_reduced: bool
    outer: int
    tile: int
    tiles: int
    parallel: bool
    work: int


@dataclass(kw_only=True)
class ReduceRecord(OpRecord):
    """mean / sum / variance / max / min. ``contiguous``: the reduced axes are adjacent (then
    ``pre``, ``red``, ``post``), else the general form (``dims``, ``in_offset``, ``out_offset``
    over counters ``i<j>``). ``centre`` (variance): the mean, shaped like the output. ``first``
    (max/min, general form): the condition that an element is the first along every reduced axis."""

    scale: str
    out_numel: int
    runs: ReduceRuns
    contiguous: bool
    pre: int = 0
    red: int = 0
    post: int = 0
    dims: list[Dim] = field(default_factory=list)
    in_offset: str = "0"
    out_offset: str = "0"
    centre: str = ""
    first: str = ""


@dataclass
class ConcatPart:
    x: str
    len: int
    offset: int


@dataclass(kw_only=True)
class ConcatRecord(OpRecord):
    pre: int
    post: int
    total: int
    parts: list[ConcatPart]


COPY_BLOCK = 16
"""A blocked copy's tile side (:class:`CopyRecord`): one 64-byte line of float32 each way."""


@dataclass
class CopyDim:
    """One loop of a simplified copy (:func:`sol.lowering.loops.copy_plan`): ``extent`` > 1
    iterations of counter ``c<j>``, ``src`` and ``dst`` elements apart in x and y."""

    extent: int
    src: int
    dst: int


@dataclass(kw_only=True)
class CopyRecord(OpRecord):
    """transpose / slice: ``y[out_offset] = x[in_offset]`` over ``dims``.

    The same copy simplified, for devices that block and parallelize it: ``plan``, its loops
    (dims of extent 1 dropped, dims both tensors walk contiguously merged), ``src_at`` and
    ``dst_at`` the offsets over their counters ``c<j>``; ``tile``, where the innermost loop
    reads x with a stride, the loop that reads it contiguously (tile those two against each
    other in ``block`` x ``block`` tiles, so that both tensors are walked a cache line at a
    time), else None; ``parallel``,
    no enclosing parallel loop (the op may start threads for ``work`` elements)."""

    dims: list[Dim]
    in_offset: str
    out_offset: str
    plan: list[CopyDim] = field(default_factory=list)
    src_at: str = "0"
    dst_at: str = "0"
    tile: int | None = None
    block: int = COPY_BLOCK
    parallel: bool = False
    work: int = 0


@dataclass(kw_only=True)
class PadRecord(CopyRecord):
    """``y[out_offset] = inside ? x[in_offset] : value``."""

    inside: str
    value: str


@dataclass(kw_only=True)
class GatherRecord(OpRecord):
    idx: str
    TI: str
    pre: int
    count: int
    L: int
    post: int
    axis: int
    where: str  # a C string literal naming the op for index errors
    wrap: bool


@dataclass(kw_only=True)
class ArgReduceRecord(OpRecord):
    TX: str
    pre: int
    L: int
    post: int


@dataclass(kw_only=True)
class Resize2dRecord(PlaneRecord):
    """Nearest/bilinear resize from tables of source rows/columns (and blend weights)."""

    bilinear: bool
    h0: list[int]
    w0: list[int]
    h1: list[int] = field(default_factory=list)
    w1: list[int] = field(default_factory=list)
    lh0: list[str] = field(default_factory=list)
    lh1: list[str] = field(default_factory=list)
    lw0: list[str] = field(default_factory=list)
    lw1: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class PoolBackwardRecord(PlaneRecord, WindowRecord):
    """max-pooling gradient; ``g``: the output gradient."""

    kh: int
    kw: int
    g: str


@dataclass(kw_only=True)
class ConvGeometry(WindowRecord):
    """A 2-D convolution's sizes: input (N, C, H, W), output (N, O, OH, OW), a kh x kw kernel,
    ``CG``/``OG`` input/output channels per group (C / groups, O / groups)."""

    N: int
    C: int
    H: int
    W: int
    O: int  # noqa: E741
    CG: int
    OG: int
    OH: int
    OW: int
    kh: int
    kw: int


@dataclass(kw_only=True)
class ConvBackwardRecord(ConvGeometry):
    """Convolution gradient (data or weights) as a loop nest; ``g``: the output gradient."""

    g: str


# --- compute-bound ops as a LIBRARY group of the reference loops (sol.lowering.compute) -----------


@dataclass(kw_only=True)
class ConvRecord(ConvGeometry):
    """conv2d (weight (O, CG, kh, kw)) or conv_transpose2d (weight (C, OG, kh, kw); its output
    padding is in OH/OW). ``w``: the weight, ``b``: the bias ("" when the node has none: core's
    passes may have moved it into an element-wise add after the op)."""

    w: str
    b: str


@dataclass(kw_only=True)
class DenseRecord(OpRecord):
    """dense: y (R, N) = x (R, K) @ w (N, K)^T (+ b), every leading dim of x folded into R."""

    w: str
    b: str
    R: int
    N: int
    K: int


@dataclass(kw_only=True)
class MatmulRecord(OpRecord):
    """matmul: ``B`` output matrices (M, N) = x (M, K) @ w (K, N), ``w`` the second operand;
    ``x_off``/``w_off``: the element offset of each output matrix's operands (a broadcast batch
    dim repeats an offset), so one flat loop over ``B`` covers every batch shape."""

    w: str
    M: int
    K: int
    N: int
    B: int
    x_off: list[int]
    w_off: list[int]


@dataclass(kw_only=True)
class GatherBackwardRecord(OpRecord):
    idx: str
    I: str  # noqa: E741
    pre: int
    size: int
    inner: int
    nidx: int
    wrap: bool
    g: str


# --- gather_elements and cumsum (sol.lowering.index) ---------------------------------------------


@dataclass(kw_only=True)
class ScatterRecord(OpRecord):
    """index_put along the middle axis of (pre, L, post): y is x with, for each j < J, the slice
    ``upd[a, j, :]`` written at position ``idx[j]`` (negative: from the end). A position outside
    [-L, L) is reported and nothing is written for it."""

    idx: str
    TI: str
    upd: str
    pre: int
    L: int
    J: int
    post: int
    axis: int
    where: str  # a C string literal naming the op for index errors


@dataclass(kw_only=True)
class GatherElementsRecord(OpRecord):
    """torch.gather: for every output position (a loop nest over ``dims``, counters ``i<j>``),
    ``idx[out_offset]`` picks the element ``x[x_offset + index * stride]`` (``x_offset``: the
    position's offset in x without the axis term). An index outside [0, L) is reported, its
    element zeroed and never read."""

    idx: str
    TI: str
    dims: list[Dim]
    out_offset: str
    x_offset: str
    stride: int
    L: int
    axis: int
    where: str  # a C string literal naming the op for index errors


@dataclass(kw_only=True)
class ScatterElementsRecord(OpRecord):
    """torch.scatter / scatter_reduce: y is x (copied unless y is x), then for every index
    position (a loop nest over ``dims``, counters ``i<j>``, row-major) the update
    ``upd[upd_offset]`` is combined into ``y[y_offset + idx[idx_offset] * stride]`` by
    ``reduction`` (none, sum, prod, amax, amin; amax/amin: a NaN update wins, a NaN kept). Where
    ``init`` is not empty (include_self=False), a first pass sets every named position to it
    (a C expression of type T). An index outside [0, L) is reported, nothing written."""

    idx: str
    TI: str
    upd: str
    dims: list[Dim]
    idx_offset: str
    upd_offset: str
    y_offset: str
    stride: int
    L: int
    size: int  # elements of x (and y)
    axis: int
    reduction: str
    init: str
    where: str  # a C string literal naming the op for index errors


@dataclass(kw_only=True)
class CumsumRecord(OpRecord):
    """A running sum along the middle axis of (pre, L, post): ``ACC`` is the accumulator's C type
    (double for floating point, PyTorch's CPU rule; the element type for integers)."""

    pre: int
    L: int
    post: int
    ACC: str


# --- the sort family: argsort, searchsorted, scan (sol.lowering.sort) ----------------------------


@dataclass(kw_only=True)
class ArgsortRecord(OpRecord):
    """A stable sort of each column of (pre, L, post) along L: ``y`` (int64, ``T``) receives the
    positions in sorted order; ``TX`` is x's C type. ``descending``: largest first (NaN is the
    largest value either way; equal values keep their order)."""

    TX: str
    pre: int
    L: int
    post: int
    descending: bool


@dataclass(kw_only=True)
class SearchsortedRecord(OpRecord):
    """``rows`` x ``M`` values (``vals``) searched in boundary rows of ``N`` (``x``; one row shared
    by all when ``shared``, else row r for the values of row r); ``y``: int64 positions. ``TX`` is
    the boundaries' and values' C type; ``right``: the first boundary > v instead of >= v."""

    vals: str
    TX: str
    rows: int
    M: int
    N: int
    shared: bool
    right: bool


@dataclass(kw_only=True)
class ScanRecord(OpRecord):
    """An inclusive running ``kind`` (prod, logsumexp, argmax, argmin) along the middle axis of
    (pre, L, post); ``TX``: x's C type, ``ACC``: the accumulator's (double for floats, PyTorch's
    CPU rule; for argmax/argmin x's own type)."""

    TX: str
    ACC: str
    kind: str
    pre: int
    L: int
    post: int


# --- matrix factorizations: lu_factor, lu_permutation, triangular_solve, cholesky ----------------
# (sol.lowering.factor). Each handles ``batch`` matrices one after the other; ``check``: a failed
# factorization (a zero pivot, a minor not positive definite) reports
# sol_linalg_error(net, info, where, reason_head, reason_tail) (C string literals: the message is
# where, then the reason with LAPACK's info between its two pieces), or sol_index_error(where) for
# a dialect without ``linalg_errors``.


@dataclass(kw_only=True)
class LuFactorRecord(OpRecord):
    """getf2 of ``batch`` (M, N) matrices of ``x`` into ``y`` (M, N + 1 each: packed LU, then the
    K = min(M, N) 1-based pivots in column N, as values of ``T``)."""

    batch: int
    M: int
    N: int
    K: int
    check: bool
    where: str
    reason_head: str
    reason_tail: str


@dataclass(kw_only=True)
class LuPermutationRecord(OpRecord):
    """``batch`` rows of K pivots (``x``, C type ``TX``) -> rows of M int64 positions (``y``)."""

    TX: str
    batch: int
    K: int
    M: int
    where: str


@dataclass(kw_only=True)
class TriangularSolveRecord(OpRecord):
    """op(A) X = B for ``batch`` (N, N) matrices ``x`` and (N, K) right sides ``b`` into ``y``:
    ``transpose`` reads A[j][i] for A[i][j]; ``upper`` is op(A)'s triangle (back substitution);
    ``unit``: a diagonal of ones, not read."""

    b: str
    batch: int
    N: int
    K: int
    upper: bool
    unit: bool
    transpose: bool


@dataclass(kw_only=True)
class CholeskyRecord(OpRecord):
    """potrf (lower) of ``batch`` (N, N) matrices ``x`` into ``y`` (N, N + 1 each: L, then info in
    row 0 of column N), sums in double."""

    batch: int
    N: int
    check: bool
    where: str
    reason_head: str
    reason_tail: str
