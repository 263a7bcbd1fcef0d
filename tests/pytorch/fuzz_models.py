"""Random PyTorch models for sol's fuzzers: chains of 2-6 operations over the ATen ops the PyTorch
frontend claims, with random shapes, dims, keepdim, broadcasting, dtypes and non-contiguous inputs.

A model (:class:`FuzzModel`) holds several independent chains and returns one output per chain, so
that one compile (g++ dominates the cost) checks many random sub-graphs. Some steps read their
tensor twice (a reduction broadcast back, a residual around an op), some inputs are large enough
for the devices' parallel loops and tiles, two chains may share an input. Choices come from a
:class:`Chooser`: :class:`HypothesisChooser` for ``@given`` tests (``st.data()``), or
:class:`RandomChooser` for scripts, so a failure replays from its seed.

Kept free of any checking: :mod:`test_fuzz` compares outputs with eager; a training fuzzer can
import :func:`draw_model` and compare gradients instead (every float input of a case can require
grad; :attr:`FuzzCase.float_inputs` names them). Each chain describes itself as Python-like code
(:meth:`Chain.describe`), which is what a failure report prints.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

T = TypeVar("T")

MAX_DIM = 7  # random dims are 1..MAX_DIM (small: compile time, not data, is the cost)
MAX_NUMEL = 1 << 16  # a step that would make a chain's tensor larger is not taken


class Chooser(Protocol):
    """Where a generator's random choices come from."""

    def integer(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi] (both included)."""
        ...

    def choice(self, items: Sequence[T]) -> T:
        ...

    def boolean(self, p: float = 0.5) -> bool:
        ...


class RandomChooser:
    """Choices from ``random.Random(seed)``: reproducible from the seed alone."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, items: Sequence[T]) -> T:
        return items[self.rng.randrange(len(items))]

    def boolean(self, p: float = 0.5) -> bool:
        return self.rng.random() < p


class HypothesisChooser:
    """Choices drawn from hypothesis' ``st.data()`` (so hypothesis records and replays them)."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def integer(self, lo: int, hi: int) -> int:
        return int(self.data.draw(self.st.integers(lo, hi)))

    def choice(self, items: Sequence[T]) -> T:
        return items[self.integer(0, len(items) - 1)]

    def boolean(self, p: float = 0.5) -> bool:
        return self.integer(0, 999) < int(p * 1000)


# --- the tensors a chain carries -------------------------------------------------------------------


@dataclass
class Spec:
    """What the generator knows about a chain's current tensor."""

    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype.is_floating_point


# --- steps ----------------------------------------------------------------------------------------------


class Step(nn.Module):
    """One operation of a chain: ``forward(x) -> y``; parameters (conv weights, constants) live in
    the step. ``code`` is the operation as Python, with ``x`` the chain's current tensor."""

    code: str
    fn: Callable[..., Any]
    names: list[str]

    def __init__(self, code: str, fn: Callable[..., Any], **tensors: torch.Tensor | nn.Module) -> None:
        super().__init__()
        self.code = code
        self.fn = fn
        self.names = list(tensors)
        for name, t in tensors.items():
            if isinstance(t, nn.Module):
                self.add_module(name, t)
            else:
                self.register_buffer(name, t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, *(getattr(self, n) for n in self.names))


class SelectStep(Step):
    """An argmax/argmin/max(dim) step: the chain ends here, and the tensor it selected from is an
    output too, so that a checker can accept either index of a tie (``dim``: the reduced axis,
    ``keepdim``: whether it stayed)."""

    dim: int
    keepdim: bool

    def __init__(self, code: str, fn: Callable[..., Any], dim: int, keepdim: bool) -> None:
        super().__init__(code, fn)
        self.dim, self.keepdim = dim, keepdim


class PairStep(Step):
    """A step whose result is (values, indices) (a sort, a selection, a pooling with indices): the
    chain ends here and returns both, so that a checker compares the indices exactly. Its maker
    makes the values distinct first (:func:`_distinct`): no tie leaves an index ambiguous."""


class Chain(nn.Module):
    """A chain: its input (``inputs[k]`` of the model), then ``steps`` in order. The output is the
    last step's result; a chain ending in a :class:`SelectStep` returns (selected-from, indices),
    one ending in a :class:`PairStep` its (values, indices)."""

    index: int

    def __init__(self, index: int, steps: list[Step]) -> None:
        super().__init__()
        self.index = index
        self.steps = nn.ModuleList(steps)

    def forward(self, x: torch.Tensor) -> Any:
        for step in self.steps:
            if isinstance(step, SelectStep):
                return x, step(x)
            x = step(x)
        return x

    def describe(self) -> str:
        lines = [f"x = inputs[{self.index}]"]
        for step in self.steps:
            lines.append(f"x = {step.code}" if not isinstance(step, SelectStep) else f"return x, {step.code}")
        return "\n".join(lines)


class FuzzModel(nn.Module):
    """Independent chains side by side: ``forward(*inputs)`` returns one output per chain."""

    def __init__(self, chains: list[Chain]) -> None:
        super().__init__()
        self.chains = nn.ModuleList(chains)

    def chain_list(self) -> list[Chain]:
        return [c for c in self.chains if isinstance(c, Chain)]

    def forward(self, *inputs: torch.Tensor) -> tuple[Any, ...]:
        return tuple(chain(inputs[chain.index]) for chain in self.chain_list())


@dataclass
class FuzzCase:
    """A generated model with its inputs (some of them non-contiguous views)."""

    model: FuzzModel
    inputs: list[torch.Tensor]
    layouts: list[str] = field(default_factory=list)  # how each input was made, for reports

    @property
    def float_inputs(self) -> list[int]:
        return [i for i, x in enumerate(self.inputs) if x.dtype.is_floating_point]

    def describe(self, chain: int | None = None) -> str:
        """The model as code: every chain, or only ``chain``, with its input's shape and layout."""
        every = self.model.chain_list()
        chains = every if chain is None else [every[chain]]
        out = []
        for c in chains:
            x = self.inputs[c.index]
            out.append(f"# chain {every.index(c)}: input {c.index} {tuple(x.shape)} {x.dtype} "
                       f"({self.layouts[c.index]})\n{c.describe()}")
        return "\n\n".join(out)


# --- the op catalogue -----------------------------------------------------------------------------------
# A maker looks at the chain's current tensor and returns a step and the spec of its result, or
# None when the op does not apply (wrong rank or dtype, result too large).

Made = tuple[Step, Spec] | None
Maker = Callable[[Chooser, Spec], Made]


def _dim(ch: Chooser, s: Spec) -> int:
    return ch.integer(0, s.rank - 1)


def _dims(ch: Chooser, s: Spec) -> tuple[int, ...]:
    k = ch.integer(1, min(3, s.rank))
    dims = sorted({_dim(ch, s) for _ in range(k)})
    return tuple(dims)


def _reduced(s: Spec, dims: Sequence[int], keepdim: bool) -> tuple[int, ...]:
    if keepdim:
        return tuple(1 if i in dims else d for i, d in enumerate(s.shape))
    return tuple(d for i, d in enumerate(s.shape) if i not in dims)


def _rand(shape: Sequence[int], dtype: torch.dtype = torch.float32, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(tuple(shape), dtype=torch.float64) * scale).to(dtype)


def _broadcast_shape(ch: Chooser, s: Spec) -> tuple[int, ...]:
    """A shape that broadcasts against ``s``: some dims 1, maybe fewer leading dims."""
    drop = ch.integer(0, s.rank) if ch.boolean(0.3) else 0
    return tuple(1 if ch.boolean(0.4) else d for d in s.shape[drop:])


def _unary(name: str, code: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Maker:
    def make(ch: Chooser, s: Spec) -> Made:
        if not s.is_float:
            return None
        return Step(code, fn), s

    make.__name__ = name
    return make


UNARY: list[Maker] = [
    _unary("relu", "F.relu(x)", F.relu),
    _unary("relu6", "F.relu6(x)", F.relu6),
    _unary("sigmoid", "torch.sigmoid(x)", torch.sigmoid),
    _unary("tanh", "torch.tanh(x)", torch.tanh),
    _unary("silu", "F.silu(x)", F.silu),
    _unary("gelu", "F.gelu(x)", F.gelu),
    _unary("gelu_tanh", "F.gelu(x, approximate='tanh')", lambda x: F.gelu(x, approximate="tanh")),
    _unary("hardswish", "F.hardswish(x)", F.hardswish),
    _unary("hardsigmoid", "F.hardsigmoid(x)", F.hardsigmoid),
    _unary("erf", "torch.erf(x)", torch.erf),
    _unary("neg", "-x", torch.neg),
    _unary("abs", "x.abs()", torch.abs),
    _unary("exp", "torch.exp(x.clamp(max=8))", lambda x: torch.exp(x.clamp(max=8))),
    _unary("log", "torch.log(x.abs() + 0.25)", lambda x: torch.log(x.abs() + 0.25)),
    _unary("sqrt", "torch.sqrt(x.abs())", lambda x: torch.sqrt(x.abs())),
    _unary("rsqrt", "torch.rsqrt(x.abs() + 0.25)", lambda x: torch.rsqrt(x.abs() + 0.25)),
    _unary("reciprocal", "torch.reciprocal(x.abs() + 0.5)", lambda x: torch.reciprocal(x.abs() + 0.5)),
    _unary("square", "torch.square(x)", torch.square),
    _unary("identity", "x.contiguous().clone()", lambda x: x.contiguous().clone()),
    _unary("dropout_eval", "F.dropout(x, 0.3, training=False)", lambda x: F.dropout(x, 0.3, training=False)),
    # trigonometric, hyperbolic, rounding: inputs kept in each function's domain (NaN is not what
    # the fuzzer compares; the special-value tests do)
    _unary("sin", "torch.sin(x)", torch.sin),
    _unary("cos", "torch.cos(x)", torch.cos),
    _unary("tan", "torch.tan(x.clamp(-1.2, 1.2))", lambda x: torch.tan(x.clamp(-1.2, 1.2))),
    _unary("asin", "torch.asin(torch.tanh(x))", lambda x: torch.asin(torch.tanh(x))),
    _unary("acos", "torch.acos(torch.tanh(x))", lambda x: torch.acos(torch.tanh(x))),
    _unary("atan", "torch.atan(x)", torch.atan),
    _unary("sinh", "torch.sinh(x.clamp(-8, 8))", lambda x: torch.sinh(x.clamp(-8, 8))),
    _unary("cosh", "torch.cosh(x.clamp(-8, 8))", lambda x: torch.cosh(x.clamp(-8, 8))),
    _unary("asinh", "torch.asinh(x)", torch.asinh),
    _unary("acosh", "torch.acosh(x.abs() + 1.0)", lambda x: torch.acosh(x.abs() + 1.0)),
    _unary("atanh", "torch.atanh(torch.tanh(x) * 0.9)", lambda x: torch.atanh(torch.tanh(x) * 0.9)),
    _unary("floor", "torch.floor(x * 3)", lambda x: torch.floor(x * 3)),
    _unary("ceil", "torch.ceil(x * 3)", lambda x: torch.ceil(x * 3)),
    _unary("round", "torch.round(x * 3)", lambda x: torch.round(x * 3)),
    _unary("trunc", "torch.trunc(x * 3)", lambda x: torch.trunc(x * 3)),
    _unary("sign", "torch.sign(x)", torch.sign),
    _unary("isnan", "torch.where(torch.isnan(x), 0.0, x)", lambda x: torch.where(torch.isnan(x), 0.0, x)),
    _unary("isinf", "torch.where(torch.isinf(x), 0.0, x)", lambda x: torch.where(torch.isinf(x), 0.0, x)),
    _unary("isposinf", "torch.where(torch.isposinf(x), 1.0, x)", lambda x: torch.where(torch.isposinf(x), 1.0, x)),
    _unary("isneginf", "torch.where(torch.isneginf(x), -1.0, x)",
           lambda x: torch.where(torch.isneginf(x), -1.0, x)),
    # the identity on real tensors
    _unary("positive", "torch.positive(x)", torch.positive),
    _unary("resolve_conj", "torch.resolve_conj(x)", torch.resolve_conj),
    _unary("resolve_neg", "torch.resolve_neg(x)", torch.resolve_neg),
    _unary("conj_physical", "torch.conj_physical(x)", torch.conj_physical),
]

# Exponentials and logarithms of other bases and arguments, the ELU family, remainders and
# roundings (the OpInfo coverage): one maker picks among them, so that they do not crowd out the rest.
MORE_UNARY: list[Maker] = [
    _unary("log1p", "torch.log1p(x.abs())", lambda x: torch.log1p(x.abs())),
    _unary("expm1", "torch.expm1(x.clamp(max=8))", lambda x: torch.expm1(x.clamp(max=8))),
    _unary("exp2", "torch.exp2(x.clamp(max=8))", lambda x: torch.exp2(x.clamp(max=8))),
    _unary("log2", "torch.log2(x.abs() + 0.25)", lambda x: torch.log2(x.abs() + 0.25)),
    _unary("log10", "torch.log10(x.abs() + 0.25)", lambda x: torch.log10(x.abs() + 0.25)),
    _unary("erfc", "torch.erfc(x)", torch.erfc),
    _unary("elu", "F.elu(x, 0.7)", lambda x: F.elu(x, 0.7)),
    _unary("selu", "F.selu(x)", F.selu),
    _unary("celu", "F.celu(x, 1.3)", lambda x: F.celu(x, 1.3)),
    _unary("signbit", "torch.where(torch.signbit(x), 1.0, x)", lambda x: torch.where(torch.signbit(x), 1.0, x)),
    _unary("logical_xor", "torch.logical_xor(x > 0, x < 0.5).to(x.dtype)",
           lambda x: torch.logical_xor(x > 0, x < 0.5).to(x.dtype)),
    _unary("fmod_scalar", "torch.fmod(x * 3, 1.5)", lambda x: torch.fmod(x * 3, 1.5)),
    _unary("remainder_scalar", "torch.remainder(x * 3, -1.5)", lambda x: torch.remainder(x * 3, -1.5)),
    # eager has no derivative of these: their operands are detached, for the training fuzzer
    _unary("rmod", "x + 2.0 % (x.detach().abs() + 0.5)", lambda x: x + 2.0 % (x.detach().abs() + 0.5)),
    _unary("floor_divide", "x + torch.floor_divide(x.detach() * 3, 0.75)",
           lambda x: x + torch.floor_divide(x.detach() * 3, 0.75)),
    _unary("div_trunc", "torch.div(x * 3, -0.75, rounding_mode='trunc')",
           lambda x: torch.div(x * 3, -0.75, rounding_mode="trunc")),
    _unary("copysign_scalar", "torch.copysign(x, -1.0)", lambda x: torch.copysign(x, -1.0)),
    _unary("angle", "torch.angle(x)", torch.angle),
    _unary("real", "torch.real(x)", torch.real),
    _unary("round_decimals", "torch.round(x * 30, decimals=-1)", lambda x: torch.round(x * 30, decimals=-1)),
    _unary("ldexp", "torch.ldexp(x, torch.full_like(x, 3, dtype=torch.int64))",
           lambda x: torch.ldexp(x, torch.full_like(x, 3, dtype=torch.int64))),
]


def _more_unary(ch: Chooser, s: Spec) -> Made:
    return ch.choice(MORE_UNARY)(ch, s)


def _indexing(ch: Chooser, s: Spec) -> Made:
    """Running sums and lookups along the last axis: cumsum, torch.gather of the maxima's
    positions, advanced indexing with a constant list of positions."""
    if not s.is_float or s.rank == 0 or s.shape[-1] == 0:
        return None
    n = s.shape[-1]
    kind = ch.choice(["cumsum", "gather", "index", "index_put", "index_copy", "copy"])
    if kind == "cumsum":
        return Step("torch.cumsum(x, -1)", lambda x: torch.cumsum(x, -1)), s
    if kind in ("index_put", "index_copy"):  # positions computed at run time: the maxima's, written over
        if kind == "index_put":
            def put(x: torch.Tensor) -> torch.Tensor:
                y = x.clone()
                y[..., x.flatten()[:1].argmax().reshape(1)] = 2.0
                return y

            return Step("y = x.clone(); y[..., x.flatten()[:1].argmax().reshape(1)] = 2.0", put), s
        return (Step("x.index_copy(-1, x.flatten()[:1].argmax().reshape(1), x[..., :1] * 3)",
                     lambda x: x.index_copy(-1, x.flatten()[:1].argmax().reshape(1), x[..., :1] * 3)), s)
    if kind == "copy":
        return Step("torch.zeros_like(x).copy_(x * 2)", lambda x: torch.zeros_like(x).copy_(x * 2)), s
    if kind == "gather":
        return (Step("torch.gather(x, -1, x.argmax(-1, keepdim=True))",
                     lambda x: torch.gather(x, -1, x.argmax(-1, keepdim=True))), Spec((*s.shape[:-1], 1), s.dtype))
    picks = [ch.integer(0, n - 1) for _ in range(2)]
    return Step(f"x[..., {picks}]", lambda x: x[..., picks]), Spec((*s.shape[:-1], 2), s.dtype)


def _param_unary(ch: Chooser, s: Spec) -> Made:
    """Element-wise ops with a random parameter."""
    if not s.is_float:
        return None
    kind = ch.choice(["leaky", "hardtanh", "clamp", "clamp_min", "clamp_max", "pow", "scalar", "rsub", "rdiv"])
    c = ch.choice([-1.5, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0])
    if kind == "leaky":
        slope = ch.choice([0.01, 0.2, 0.0, 1.5])
        return Step(f"F.leaky_relu(x, {slope})", lambda x: F.leaky_relu(x, slope)), s
    if kind == "hardtanh":
        lo = ch.choice([-1.0, -0.5, 0.0])
        return Step(f"F.hardtanh(x, {lo}, {lo + 1.5})", lambda x: F.hardtanh(x, lo, lo + 1.5)), s
    if kind == "clamp":
        return Step(f"x.clamp({c}, {c + 1.0})", lambda x: x.clamp(c, c + 1.0)), s
    if kind == "clamp_min":
        return Step(f"x.clamp(min={c})", lambda x: x.clamp(min=c)), s
    if kind == "clamp_max":
        return Step(f"x.clamp(max={c})", lambda x: x.clamp(max=c)), s
    if kind == "pow":
        e = ch.choice([2, 3, 0.5, -0.5, -1, -2, 1.5, 1])
        return Step(f"(x.abs() + 0.5) ** {e}", lambda x: (x.abs() + 0.5) ** e), s
    if kind == "scalar":
        op = ch.choice(["+", "-", "*", "/"])
        k = ch.choice([0.5, 2.0, -3.0])
        fn = {"+": lambda x: x + k, "-": lambda x: x - k, "*": lambda x: x * k, "/": lambda x: x / k}[op]
        return Step(f"x {op} {k}", fn), s
    if kind == "rsub":
        return Step(f"{c} - x", lambda x: c - x), s
    return Step("2.0 / (x.abs() + 0.5)", lambda x: 2.0 / (x.abs() + 0.5)), s


def _binary(ch: Chooser, s: Spec) -> Made:
    """x op b, b a constant of a broadcastable shape, or derived from x itself."""
    if not s.is_float:
        return None
    op = ch.choice(["add", "sub", "mul", "div", "maximum", "minimum", "pow", "where", "masked_fill", "self",
                    "atan2", "hypot", "copysign", "fmax", "fmin", "fmod", "remainder"])
    if op == "self":  # both operands from x: the value is read twice, at two shapes
        if s.rank == 0 or ch.boolean():
            return Step("x * torch.sigmoid(x)", lambda x: x * torch.sigmoid(x)), s
        return Step("x - x.mean(-1, keepdim=True)", lambda x: x - x.mean(-1, keepdim=True)), s
    shape = _broadcast_shape(ch, s)
    b = _rand(shape, s.dtype)
    left = ch.boolean(0.7)  # x on the left (operand order matters for NaN and sub/div)
    fns: dict[str, tuple[str, Callable[..., torch.Tensor]]] = {
        "add": ("x + b", lambda x, b: x + b), "sub": ("x - b", lambda x, b: x - b),
        "mul": ("x * b", lambda x, b: x * b), "div": ("x / (b.abs() + 0.5)", lambda x, b: x / (b.abs() + 0.5)),
        "maximum": ("torch.maximum(x, b)", torch.maximum), "minimum": ("torch.minimum(x, b)", torch.minimum),
        "pow": ("(x.abs() + 0.5) ** torch.tanh(b)", lambda x, b: (x.abs() + 0.5) ** torch.tanh(b)),
        "where": ("torch.where(x > b, x, b)", lambda x, b: torch.where(x > b, x, b)),
        "masked_fill": ("x.masked_fill(b > 0.5, -2.0)", lambda x, b: x.masked_fill(b > 0.5, -2.0)),
        "atan2": ("torch.atan2(x, b)", torch.atan2), "hypot": ("torch.hypot(x, b)", torch.hypot),
        "copysign": ("torch.copysign(x, b)", torch.copysign), "fmax": ("torch.fmax(x, b)", torch.fmax),
        "fmin": ("torch.fmin(x, b)", torch.fmin),
        "fmod": ("torch.fmod(x, b.abs() + 0.5)", lambda x, b: torch.fmod(x, b.abs() + 0.5)),
        "remainder": ("torch.remainder(x, b - 3.0)", lambda x, b: torch.remainder(x, b - 3.0)),
    }
    code, fn = fns[op]
    out = torch.broadcast_shapes(s.shape, shape)
    if math.prod(out) > MAX_NUMEL:
        return None
    if not left and op in ("add", "sub", "mul", "maximum", "minimum", "atan2", "hypot", "copysign", "fmax", "fmin"):
        code = code.replace("x", "@").replace("b", "x").replace("@", "b")
        return Step(f"{code}  # b: {tuple(shape)}", lambda x, b: fn(b, x), b=b), Spec(out, s.dtype)
    return Step(f"{code}  # b: {tuple(shape)}", fn, b=b), Spec(out, s.dtype)


def _compare(ch: Chooser, s: Spec) -> Made:
    """A comparison or logical op, back to float (so the chain goes on)."""
    if not s.is_float:
        return None
    c = ch.choice([0.0, 0.5, -0.3])
    kind = ch.choice(["gt", "le", "ne", "logical", "not"])
    if kind == "gt":
        return Step(f"(x > {c}).to(x.dtype)", lambda x: (x > c).to(x.dtype)), s
    if kind == "le":
        return Step(f"(x <= {c}).to(x.dtype) * x", lambda x: (x <= c).to(x.dtype) * x), s
    if kind == "ne":
        return Step("(x != 0).to(x.dtype) + x", lambda x: (x != 0).to(x.dtype) + x), s
    if kind == "logical":
        return (Step(f"torch.logical_and(x > {c}, x < 1.0).to(x.dtype) - torch.logical_or(x < -1, x > 2).to(x.dtype)",
                     lambda x: torch.logical_and(x > c, x < 1.0).to(x.dtype)
                     - torch.logical_or(x < -1, x > 2).to(x.dtype)), s)
    return Step(f"torch.logical_not(x > {c}).to(x.dtype)", lambda x: torch.logical_not(x > c).to(x.dtype)), s


def _reduce(ch: Chooser, s: Spec) -> Made:
    if s.rank == 0:
        return None
    op = ch.choice(["sum", "mean", "amax", "amin"] if s.is_float else ["sum", "amax", "amin"])
    dims = _dims(ch, s)
    keep = ch.boolean()
    fn: Any = {"sum": torch.sum, "mean": torch.mean, "amax": torch.amax, "amin": torch.amin}[op]
    d = dims[0] if len(dims) == 1 and ch.boolean(0.3) and op in ("sum", "mean") else dims
    return (Step(f"x.{op}({d}, keepdim={keep})", lambda x: fn(x, d, keepdim=keep)),
            Spec(_reduced(s, dims, keep), s.dtype if s.is_float or op != "sum" else torch.int64))


def _softmax(ch: Chooser, s: Spec) -> Made:
    if not s.is_float or s.rank == 0:
        return None
    d = ch.integer(-s.rank, s.rank - 1)
    if ch.boolean():
        return Step(f"x.softmax({d})", lambda x: x.softmax(d)), s
    return Step(f"x.log_softmax({d})", lambda x: x.log_softmax(d)), s


def _norm(ch: Chooser, s: Spec) -> Made:
    if s.dtype != torch.float32 or s.rank < 2:
        return None
    kind = ch.choice(["layer", "batch", "group", "instance"] if s.rank >= 3 else ["layer", "batch"])
    if kind == "layer":
        k = ch.integer(1, min(2, s.rank - 1))
        shape = s.shape[-k:]
        mod = nn.LayerNorm(shape, elementwise_affine=ch.boolean())
        _randomize(mod)
        return Step(f"F.layer_norm(x, {shape})  # affine: {mod.elementwise_affine}", lambda x, m: m(x), m=mod), s
    c = s.shape[1]
    if kind == "batch":
        bn = nn.BatchNorm1d(c) if s.rank in (2, 3) else nn.BatchNorm2d(c) if s.rank == 4 else None
        if bn is None:
            return None
        _randomize(bn)
        assert bn.running_var is not None and bn.running_mean is not None
        with torch.no_grad():
            bn.running_var.uniform_(0.5, 2.0)
            bn.running_mean.normal_()
        return Step(f"BatchNorm({c}).eval()(x)", lambda x, m: m(x), m=bn.eval()), s
    if kind == "group":
        g = ch.choice([d for d in (1, 2, 3, c) if c % d == 0])
        if c // g * math.prod(s.shape[2:]) < 2:  # PyTorch needs two values per group
            return None
        gn = nn.GroupNorm(g, c)
        _randomize(gn)
        return Step(f"F.group_norm(x, {g})", lambda x, m: m(x), m=gn), s
    if s.rank != 4 or s.shape[2] * s.shape[3] < 2:
        return None
    return Step("F.instance_norm(x)", lambda x: F.instance_norm(x)), s


def _randomize(mod: nn.Module) -> None:
    with torch.no_grad():
        for p in mod.parameters():
            p.normal_(0.0, 0.5)


def _layout(ch: Chooser, s: Spec) -> Made:
    """Permutes, reshapes, slices, pads, concatenations: ops that only move data."""
    kind = ch.choice(["permute", "transpose", "reshape", "flatten", "unsqueeze", "squeeze", "expand", "slice",
                      "narrow", "select", "cat", "stack", "split", "index_select", "pad", "t"])
    r = s.rank
    if kind == "permute" and r >= 2:
        perm = list(range(r))
        random.Random(ch.integer(0, 10**6)).shuffle(perm)
        return Step(f"x.permute({perm})", lambda x: x.permute(perm)), Spec(tuple(s.shape[p] for p in perm), s.dtype)
    if kind == "transpose" and r >= 2:
        a, b = ch.integer(0, r - 1), ch.integer(0, r - 1)
        swapped = list(s.shape)
        swapped[a], swapped[b] = swapped[b], swapped[a]
        return Step(f"x.transpose({a}, {b})", lambda x: x.transpose(a, b)), Spec(tuple(swapped), s.dtype)
    if kind == "t" and r == 2:
        return Step("x.t()", lambda x: x.t()), Spec(s.shape[::-1], s.dtype)
    if kind == "reshape" and r >= 1:
        if r >= 2 and ch.boolean():
            a = ch.integer(0, r - 2)
            shape = s.shape[:a] + (s.shape[a] * s.shape[a + 1],) + s.shape[a + 2:]
        else:
            a = _dim(ch, s)
            f = ch.choice([k for k in (2, 3) if s.shape[a] % k == 0] or [1])
            shape = s.shape[:a] + (f, s.shape[a] // f) + s.shape[a + 1:]
        view = ch.boolean()
        code = f"x.reshape({shape})" if not view else f"x.contiguous().view({shape})"
        fn = (lambda x: x.reshape(shape)) if not view else (lambda x: x.contiguous().view(shape))
        return Step(code, fn), Spec(shape, s.dtype)
    if kind == "flatten" and r >= 2:
        a = ch.integer(0, r - 2)
        b = ch.integer(a + 1, r - 1)
        shape = s.shape[:a] + (math.prod(s.shape[a:b + 1]),) + s.shape[b + 1:]
        return Step(f"x.flatten({a}, {b})", lambda x: x.flatten(a, b)), Spec(shape, s.dtype)
    if kind == "unsqueeze" and r < 5:
        a = ch.integer(0, r)
        return Step(f"x.unsqueeze({a})", lambda x: x.unsqueeze(a)), Spec(s.shape[:a] + (1,) + s.shape[a:], s.dtype)
    if kind == "squeeze" and 1 in s.shape:
        a = s.shape.index(1)
        return Step(f"x.squeeze({a})", lambda x: x.squeeze(a)), Spec(s.shape[:a] + s.shape[a + 1:], s.dtype)
    if kind == "expand" and 1 in s.shape:
        a = s.shape.index(1)
        n = ch.integer(2, 4)
        shape = s.shape[:a] + (n,) + s.shape[a + 1:]
        if math.prod(shape) > MAX_NUMEL:
            return None
        spec = [-1] * r
        spec[a] = n
        return Step(f"x.expand({spec}) * 1", lambda x: x.expand(spec) * 1), Spec(shape, s.dtype)
    if kind in ("slice", "narrow") and r >= 1:
        a = _dim(ch, s)
        n = s.shape[a]
        if n < 2:
            return None
        start = ch.integer(0, n - 1)
        stop = ch.integer(start + 1, n)
        if kind == "narrow":
            shape = s.shape[:a] + (stop - start,) + s.shape[a + 1:]
            return Step(f"x.narrow({a}, {start}, {stop - start})", lambda x: x.narrow(a, start, stop - start)), \
                Spec(shape, s.dtype)
        step = ch.choice([1, 1, 2, 3])
        index = (slice(None),) * a + (slice(start, stop, step),)
        shape = s.shape[:a] + (len(range(start, stop, step)),) + s.shape[a + 1:]
        return Step(f"x[{(':, ' * a)}{start}:{stop}:{step}]", lambda x: x[index]), Spec(shape, s.dtype)
    if kind == "select" and r >= 2:
        a = _dim(ch, s)
        i = ch.integer(-s.shape[a], s.shape[a] - 1)
        return Step(f"x.select({a}, {i})", lambda x: x.select(a, i)), Spec(s.shape[:a] + s.shape[a + 1:], s.dtype)
    if kind in ("cat", "stack") and r >= 1 and s.is_float and 2 * s.numel <= MAX_NUMEL:
        a = _dim(ch, s) if kind == "cat" else ch.integer(0, r)
        fn_name = ch.choice(["torch.relu", "torch.exp", "torch.neg"])
        other = {"torch.relu": torch.relu, "torch.exp": lambda x: torch.exp(x.clamp(max=8)), "torch.neg": torch.neg}
        g = other[fn_name]
        if kind == "cat":
            shape = s.shape[:a] + (2 * s.shape[a],) + s.shape[a + 1:]
            return Step(f"torch.cat([x, {fn_name}(x)], {a})", lambda x: torch.cat([x, g(x)], a)), Spec(shape, s.dtype)
        shape = s.shape[:a] + (2,) + s.shape[a:]
        return Step(f"torch.stack([x, {fn_name}(x)], {a})", lambda x: torch.stack([x, g(x)], a)), Spec(shape, s.dtype)
    if kind == "split" and r >= 1:
        a = _dim(ch, s)
        n = s.shape[a]
        if n < 2:
            return None
        k = ch.integer(1, n - 1)
        how = ch.choice(["split", "chunk", "unbind"])
        if how == "unbind":
            return Step(f"x.unbind({a})[-1]", lambda x: x.unbind(a)[-1]), Spec(s.shape[:a] + s.shape[a + 1:], s.dtype)
        if how == "chunk":
            c = ch.integer(2, n)
            size = -(-n // c)
            return Step(f"x.chunk({c}, {a})[0]", lambda x: x.chunk(c, a)[0]), \
                Spec(s.shape[:a] + (size,) + s.shape[a + 1:], s.dtype)
        return Step(f"torch.cat(x.split({k}, {a})[::-1], {a})", lambda x: torch.cat(x.split(k, a)[::-1], a)), s
    if kind == "index_select" and r >= 1:
        a = _dim(ch, s)
        n = s.shape[a]
        idx = [ch.integer(0, n - 1) for _ in range(ch.integer(1, 4))]
        shape = s.shape[:a] + (len(idx),) + s.shape[a + 1:]
        return Step(f"x.index_select({a}, torch.tensor({idx}))", lambda x, i: x.index_select(a, i),
                    i=torch.tensor(idx)), Spec(shape, s.dtype)
    if kind == "pad" and r >= 1 and s.is_float:
        k = ch.integer(1, min(2, r))
        pads = [ch.integer(0, 2) for _ in range(2 * k)]
        value = ch.choice([0.0, -1.5])
        padded = list(s.shape)
        for i in range(k):
            padded[r - 1 - i] += pads[2 * i] + pads[2 * i + 1]
        if math.prod(padded) > MAX_NUMEL:
            return None
        return Step(f"F.pad(x, {pads}, value={value})", lambda x: F.pad(x, pads, value=value)), \
            Spec(tuple(padded), s.dtype)
    return None


def _spatial(ch: Chooser, s: Spec) -> Made:
    """NCHW (or NCL) ops: convolutions, pooling, upsampling."""
    if s.dtype != torch.float32 or s.rank not in (3, 4) or min(s.shape) < 1:
        return None
    two_d = s.rank == 4
    c = s.shape[1]
    spatial = s.shape[2:]
    kind = ch.choice(["conv", "conv", "deconv", "maxpool", "avgpool", "adaptive", "upsample"] if two_d
                     else ["conv", "deconv"])
    if kind in ("conv", "deconv"):
        k = ch.integer(1, min(3, *spatial)) if kind == "conv" else ch.integer(1, 3)
        stride = ch.integer(1, 2)
        pad = ch.integer(0, k // 2)
        groups = ch.choice([g for g in (1, 2, c) if c % g == 0])
        out = groups * ch.integer(1, max(1, 6 // groups))
        dil = ch.integer(1, 2) if kind == "conv" and all(d >= 2 * (k - 1) + 1 for d in spatial) else 1
        bias = ch.boolean(0.7)
        mod: nn.Module
        if kind == "conv" and ch.boolean(0.2):  # padding given as a string: conv2d.padding
            conv = nn.Conv2d if two_d else nn.Conv1d
            same = ch.boolean()
            mod = conv(c, out, k, padding="same" if same else "valid", dilation=dil, groups=groups, bias=bias)
            out_size = [d if same else d - dil * (k - 1) for d in spatial]
            pad = "same" if same else "valid"  # type: ignore[assignment]
            stride = 1
        elif kind == "conv":
            conv = nn.Conv2d if two_d else nn.Conv1d
            mod = conv(c, out, k, stride=stride, padding=pad, dilation=dil, groups=groups, bias=bias)
            out_size = [(d + 2 * pad - dil * (k - 1) - 1) // stride + 1 for d in spatial]
        else:
            deconv = nn.ConvTranspose2d if two_d else nn.ConvTranspose1d
            opad = ch.integer(0, stride - 1)
            mod = deconv(c, out, k, stride=stride, padding=pad, output_padding=opad, groups=groups, bias=bias)
            out_size = [(d - 1) * stride - 2 * pad + k + opad for d in spatial]
        if min(out_size) < 1 or out * math.prod(out_size) * s.shape[0] > MAX_NUMEL:
            return None
        return (Step(f"{type(mod).__name__}({c}, {out}, {k}, stride={stride}, padding={pad!r}, dilation={dil}, "
                     f"groups={groups}, bias={bias})(x)", lambda x, m: m(x), m=mod),
                Spec((s.shape[0], out, *out_size), s.dtype))
    h, w = spatial
    if kind in ("maxpool", "avgpool"):
        k = ch.integer(1, min(3, h, w))
        stride = ch.integer(1, 2)
        pad = ch.integer(0, k // 2)
        ceil = ch.boolean(0.3)
        if kind == "maxpool":
            dil = ch.integer(1, 2) if min(h, w) >= 2 * (k - 1) + 1 else 1
            probe = F.max_pool2d(torch.zeros(1, 1, h, w), k, stride, pad, dil, ceil_mode=ceil)
            code = f"F.max_pool2d(x, {k}, {stride}, {pad}, {dil}, ceil_mode={ceil})"
            return Step(code, lambda x: F.max_pool2d(x, k, stride, pad, dil, ceil_mode=ceil)), \
                Spec(s.shape[:2] + tuple(probe.shape[2:]), s.dtype)
        inc = ch.boolean()
        probe = F.avg_pool2d(torch.zeros(1, 1, h, w), k, stride, pad, ceil_mode=ceil, count_include_pad=inc)
        code = f"F.avg_pool2d(x, {k}, {stride}, {pad}, ceil_mode={ceil}, count_include_pad={inc})"
        return Step(code, lambda x: F.avg_pool2d(x, k, stride, pad, ceil_mode=ceil, count_include_pad=inc)), \
            Spec(s.shape[:2] + tuple(probe.shape[2:]), s.dtype)
    if kind == "adaptive":
        size = (ch.integer(1, h), ch.integer(1, w))
        return Step(f"F.adaptive_avg_pool2d(x, {size})", lambda x: F.adaptive_avg_pool2d(x, size)), \
            Spec(s.shape[:2] + size, s.dtype)
    mode = ch.choice(["nearest", "bilinear", "bilinear-ac"])
    size = (ch.integer(1, 2 * h), ch.integer(1, 2 * w))
    if s.shape[0] * c * size[0] * size[1] > MAX_NUMEL:
        return None
    if mode == "nearest":
        return Step(f"F.interpolate(x, size={size})", lambda x: F.interpolate(x, size=size)), \
            Spec(s.shape[:2] + size, s.dtype)
    ac = mode == "bilinear-ac"
    return (Step(f"F.interpolate(x, size={size}, mode='bilinear', align_corners={ac})",
                 lambda x: F.interpolate(x, size=size, mode="bilinear", align_corners=ac)),
            Spec(s.shape[:2] + size, s.dtype))


def _linear(ch: Chooser, s: Spec) -> Made:
    """Linear layers and matrix products over the last dim."""
    if s.dtype != torch.float32 or s.rank < 1:
        return None
    kind = ch.choice(["linear", "matmul", "self", "bmm", "attention"])
    k = s.shape[-1]
    n = ch.integer(1, 8)
    if kind == "linear":
        mod = nn.Linear(k, n, bias=ch.boolean(0.7))
        shape = s.shape[:-1] + (n,)
        if math.prod(shape) > MAX_NUMEL:
            return None
        return Step(f"nn.Linear({k}, {n}, bias={mod.bias is not None})(x)", lambda x, m: m(x), m=mod), \
            Spec(shape, s.dtype)
    if kind == "matmul":
        w = _rand((k, n), scale=0.5)
        shape = s.shape[:-1] + (n,)
        if s.rank == 1:
            shape = (n,)
        if math.prod(shape) > MAX_NUMEL:
            return None
        return Step(f"x @ w  # w: {(k, n)}", lambda x, w: x @ w, w=w), Spec(shape, s.dtype)
    if s.rank < 2:
        return None
    m = s.shape[-2]
    if kind == "self":
        shape = s.shape[:-1] + (m,)
        if math.prod(shape) > MAX_NUMEL:
            return None
        return Step("x @ x.transpose(-1, -2)", lambda x: x @ x.transpose(-1, -2)), Spec(shape, s.dtype)
    if kind == "bmm":
        if s.rank != 3:
            return None
        w = _rand((s.shape[0], k, n), scale=0.5)
        return Step(f"torch.bmm(x, w)  # w: {tuple(w.shape)}", lambda x, w: torch.bmm(x, w), w=w), \
            Spec((s.shape[0], m, n), s.dtype)
    if s.rank not in (3, 4):
        return None
    causal = ch.boolean(0.3)
    masked = not causal and ch.boolean(0.4)
    if masked:
        mask = torch.rand(m, m) > 0.3
        mask[:, 0] = True  # no row fully masked: PyTorch gives 0 there, a case of its own
        return (Step("F.scaled_dot_product_attention(x, x * 0.5, x, attn_mask=mask)",
                     lambda x, mask: F.scaled_dot_product_attention(x, x * 0.5, x, attn_mask=mask), mask=mask), s)
    return (Step(f"F.scaled_dot_product_attention(x, x * 0.5, x, is_causal={causal})",
                 lambda x: F.scaled_dot_product_attention(x, x * 0.5, x, is_causal=causal)), s)


def _recurrent(ch: Chooser, s: Spec) -> Made:
    if s.dtype != torch.float32 or s.rank != 3:
        return None
    cls = ch.choice([nn.LSTM, nn.GRU])
    hidden = ch.integer(1, 6)
    first = ch.boolean()
    mod = cls(s.shape[-1], hidden, batch_first=first)
    return (Step(f"{cls.__name__}({s.shape[-1]}, {hidden}, batch_first={first})(x)[0]",
                 lambda x, m: m(x)[0], m=mod), Spec(s.shape[:-1] + (hidden,), s.dtype))


def _cast(ch: Chooser, s: Spec) -> Made:
    """dtype changes where meaningful: float <-> double, float -> exact ints -> float."""
    if s.dtype == torch.float32:
        kind = ch.choice(["double", "int"])
        if kind == "double":
            return Step("x.double()", lambda x: x.double()), Spec(s.shape, torch.float64)
        # integers from comparisons: a float -> int conversion of a computed value near an
        # integer is not a fair test (the last bit decides it)
        return (Step("(x > 0).long() + (x > 1).long() * 2 - (x < -1).long()",
                     lambda x: (x > 0).long() + (x > 1).long() * 2 - (x < -1).long()), Spec(s.shape, torch.int64))
    if s.dtype == torch.float64:
        return Step("x.float()", lambda x: x.float()), Spec(s.shape, torch.float32)
    if s.dtype == torch.int64:
        kind = ch.choice(["float", "arith", "compare"])
        if kind == "float":
            return Step("x.float() * 0.5", lambda x: x.float() * 0.5), Spec(s.shape, torch.float32)
        if kind == "arith":
            k = ch.integer(-3, 3)
            return Step(f"x * 3 + {k}", lambda x: x * 3 + k), s
        return (Step("torch.where(x > 0, x, -x) - (x == 1).long()",
                     lambda x: torch.where(x > 0, x, -x) - (x == 1).long()), s)
    return None


def _select(ch: Chooser, s: Spec) -> Made:
    """argmax/argmin/max(dim)/min(dim): ends the chain (see :class:`SelectStep`)."""
    if s.rank == 0 or s.dtype not in (torch.float32, torch.int64):
        return None
    d = _dim(ch, s)
    keep = ch.boolean()
    kind = ch.choice(["argmax", "argmin", "max", "min"])
    if kind in ("argmax", "argmin"):
        fn = torch.argmax if kind == "argmax" else torch.argmin
        return SelectStep(f"torch.{kind}(x, {d}, keepdim={keep})", lambda x: fn(x, d, keepdim=keep), d, keep), s
    fn2 = torch.max if kind == "max" else torch.min
    return SelectStep(f"torch.{kind}(x, {d}, keepdim={keep})", lambda x: tuple(fn2(x, d, keepdim=keep)), d, keep), s


def _spelling(ch: Chooser, s: Spec) -> Made:
    """Other spellings of the ops above, each its own ATen overload: tensor bounds and operands,
    whole-tensor reductions, the *_as / *_like family, aliases (mT, swapaxes, concat), splits,
    dropout variants in eval mode, dtype and device no-ops."""
    if s.dtype != torch.float32 or s.rank == 0:
        return None
    r = s.rank
    # (aliases and splits: several spellings each, drawn more often)
    kind = ch.choice(["clamp_t", "clamp_min", "clamp_max", "compare_t", "ge_scalar", "like", "as", "alias", "max_other",
                      "whole", "rpow", "rsub", "where_scalar", "masked_fill_t", "split_sizes", "tensor_split",
                      "unflatten", "squeeze_all", "dropouts", "to", "lift", "bitwise", "mm", "div_mode",
                      "pool_indices", "upsample", "alias", "alias", "split_sizes", "split_sizes", "tensor_split"])
    b = _rand(_broadcast_shape(ch, s))
    out = torch.broadcast_shapes(s.shape, tuple(b.shape))
    if math.prod(out) > MAX_NUMEL:
        return None
    wide = Spec(out, s.dtype)
    table: dict[str, tuple[str, Callable[..., torch.Tensor], Spec]] = {
        "clamp_t": ("x.clamp(min=b, max=b + 1)", lambda x, b: x.clamp(min=b, max=b + 1), wide),
        "clamp_min": ("torch.clamp_min(x, 0.3) + torch.clamp_max(x, b)",
                      lambda x, b: torch.clamp_min(x, 0.3) + torch.clamp_max(x, b), wide),
        "clamp_max": ("torch.clamp_max(x, -0.2) - torch.clamp_min(x, b)",
                      lambda x, b: torch.clamp_max(x, -0.2) - torch.clamp_min(x, b), wide),
        "compare_t": ("(x < b).float() + (x <= b).float() - (x >= b).float() + (x == b).float() - (x != b).float()",
                      lambda x, b: (x < b).float() + (x <= b).float() - (x >= b).float() + (x == b).float()
                      - (x != b).float(), wide),
        "ge_scalar": ("(x >= 0.1).float() * x", lambda x, b: (x >= 0.1).float() * x, s),
        "like": ("x + torch.ones_like(x) - torch.zeros_like(x) * torch.full_like(x, 2.0)",
                 lambda x, b: x + torch.ones_like(x) - torch.zeros_like(x) * torch.full_like(x, 2.0), s),
        "as": ("x.view_as(x) + x.reshape_as(x).type_as(x) + b.expand_as(x)",
               lambda x, b: x.view_as(x) + x.reshape_as(x).type_as(x) + b.expand_as(x), s),
        "max_other": ("torch.max(x, b) - torch.min(x, b)", lambda x, b: torch.max(x, b) - torch.min(x, b), wide),
        "whole": ("x * x.max() - x.min() + x.mean() * x.sum()",
                  lambda x, b: x * x.max() - x.min() + x.mean() * x.sum(), s),
        "rpow": ("2.0 ** x.clamp(max=8)", lambda x, b: 2.0 ** x.clamp(max=8), s),
        "rsub": ("torch.rsub(x, b)", lambda x, b: torch.rsub(x, b), wide),
        "where_scalar": ("torch.where(x > 0, x, 0.5) + torch.where(x > 1, 2.0, x) + torch.where(x < 0, -1.0, 1.0)",
                         lambda x, b: torch.where(x > 0, x, 0.5) + torch.where(x > 1, 2.0, x)
                         + torch.where(x < 0, -1.0, 1.0), s),
        "masked_fill_t": ("x.masked_fill(b > 0, torch.tensor(3.0))",
                          lambda x, b: x.masked_fill(b > 0, torch.tensor(3.0)), wide),
        "lift": ("x * torch.tensor(2.0) + torch.tensor([0.5])",
                 lambda x, b: x * torch.tensor(2.0) + torch.tensor([0.5]), s),
        "dropouts": ("F.alpha_dropout(x, 0.2, False) + F.feature_alpha_dropout(x, 0.2, False) "
                     "+ torch.feature_dropout(x, 0.2, False)",
                     lambda x, b: F.alpha_dropout(x, 0.2, training=False) + F.feature_alpha_dropout(x, 0.2, False)
                     + torch.feature_dropout(x, 0.2, False), s),
        "to": ("x.to(torch.float32) + x.to('cpu') + x.to(b) + x.to(dtype=torch.float32, copy=True) + x.detach()",
               lambda x, b: x.to(torch.float32) + x.to("cpu") + x.to(b) + x.to(dtype=torch.float32, copy=True)
               + x.detach(), s),
        "bitwise": ("(torch.bitwise_or(torch.bitwise_and(x > 0, x < b), torch.bitwise_not(x > 2))).float()",
                    lambda x, b: torch.bitwise_or(torch.bitwise_and(x > 0, x < b), torch.bitwise_not(x > 2)).float(),
                    wide),
        "div_mode": ("torch.div(x, b.abs() + 0.5, rounding_mode=None) / 2.0",
                     lambda x, b: torch.div(x, b.abs() + 0.5, rounding_mode=None) / 2.0, wide),
    }
    if kind in table:
        code, fn, spec = table[kind]
        return Step(f"{code}  # b: {tuple(b.shape)}", fn, b=b), spec
    a = _dim(ch, s)
    n = s.shape[a]
    if kind == "alias" and r >= 2:
        alias = ch.choice(["mT", "swapaxes", "swapdims", "T", "concat"])
        if alias == "T" and r == 2:
            return Step("x.T", lambda x: x.T), Spec(s.shape[::-1], s.dtype)
        if alias == "mT" or alias == "T":
            return Step("x.mT", lambda x: x.mT), Spec(s.shape[:-2] + (s.shape[-1], s.shape[-2]), s.dtype)
        if alias == "concat":
            shape = s.shape[:a] + (3 * n,) + s.shape[a + 1:]
            return Step(f"torch.concatenate([torch.concat([x, x], {a}), x], {a})",
                        lambda x: torch.concatenate([torch.concat([x, x], a), x], a)), Spec(shape, s.dtype)
        c = ch.integer(0, r - 1)
        swapped = list(s.shape)
        swapped[a], swapped[c] = swapped[c], swapped[a]
        fn = torch.swapaxes if alias == "swapaxes" else torch.swapdims
        return Step(f"torch.{alias}(x, {a}, {c})", lambda x: fn(x, a, c)), Spec(tuple(swapped), s.dtype)
    if kind == "split_sizes" and n >= 2:
        k = ch.integer(1, n - 1)
        how = ch.choice(["split", "unsafe_split", "unsafe_chunk", "split_with_sizes", "unsafe_split_with_sizes"])
        calls = {"split": lambda x: torch.cat(x.split([k, n - k], a)[::-1], a),
                 "unsafe_split": lambda x: torch.cat(torch.unsafe_split(x, k, a)[::-1], a),
                 "unsafe_chunk": lambda x: torch.cat(torch.unsafe_chunk(x, 2, a)[::-1], a),
                 "split_with_sizes": lambda x: torch.cat(torch.split_with_sizes(x, [k, n - k], a)[::-1], a),
                 "unsafe_split_with_sizes": lambda x: torch.cat(torch.unsafe_split_with_sizes(x, [k, n - k], a)[::-1],
                                                                a)}
        return Step(f"torch.cat({how}(x, {k}, {a})[::-1], {a})", calls[how]), s
    if kind == "tensor_split" and n >= 2:
        if ch.boolean():
            k = ch.integer(1, n - 1)
            return Step(f"torch.cat(x.tensor_split([{k}], {a})[::-1], {a})",
                        lambda x: torch.cat(x.tensor_split([k], a)[::-1], a)), s
        parts = ch.integer(2, n)
        return Step(f"torch.cat(x.tensor_split({parts}, {a})[::-1], {a})",
                    lambda x: torch.cat(x.tensor_split(parts, a)[::-1], a)), s
    if kind == "unflatten" and n % 2 == 0:
        shape = s.shape[:a] + (2, n // 2) + s.shape[a + 1:]
        return Step(f"x.unflatten({a}, (2, {n // 2}))", lambda x: x.unflatten(a, (2, n // 2))), Spec(shape, s.dtype)
    if kind == "squeeze_all":
        kept = tuple(d for d in s.shape if d != 1)
        if ch.boolean():
            return Step("x.unsqueeze(0).squeeze()", lambda x: x.unsqueeze(0).squeeze()), Spec(kept, s.dtype)
        ones = (0,) + tuple(i + 1 for i, d in enumerate(s.shape) if d == 1)
        return Step(f"x.unsqueeze(0).squeeze({ones})", lambda x: x.unsqueeze(0).squeeze(ones)), Spec(kept, s.dtype)
    if kind == "mm" and r >= 2:
        m, rows = ch.integer(1, 6), math.prod(s.shape[:-1])
        w, bias = _rand((s.shape[-1], m), scale=0.5), _rand((m,))
        if ch.boolean():
            return Step(f"torch.mm(x.flatten(0, -2), w)  # w: {tuple(w.shape)}",
                        lambda x, w: torch.mm(x.flatten(0, -2), w), w=w), Spec((rows, m), s.dtype)
        return Step(f"torch.addmm(bias, x.flatten(0, -2), w)  # w: {tuple(w.shape)}",
                    lambda x, w, bias: torch.addmm(bias, x.flatten(0, -2), w), w=w, bias=bias), Spec((rows, m), s.dtype)
    if kind == "pool_indices" and r == 4 and min(s.shape[2:]) >= 2:
        probe = F.max_pool2d(torch.zeros(1, 1, *s.shape[2:]), 2)
        return Step("F.max_pool2d(x, 2, return_indices=True)[0]",
                    lambda x: F.max_pool2d(x, 2, return_indices=True)[0]), Spec(s.shape[:2] + tuple(probe.shape[2:]),
                                                                                 s.dtype)
    if kind == "upsample" and r == 4:
        mode = ch.choice(["nearest", "nearest-exact", "bilinear"])
        f = ch.choice([2.0, 1.5])
        probe = F.interpolate(torch.zeros(1, 1, *s.shape[2:]), scale_factor=f, mode=mode)
        if s.shape[0] * s.shape[1] * probe.numel() > MAX_NUMEL:
            return None
        return Step(f"F.interpolate(x, scale_factor={f}, mode={mode!r})",
                    lambda x: F.interpolate(x, scale_factor=f, mode=mode)), \
            Spec(s.shape[:2] + tuple(probe.shape[2:]), s.dtype)
    return None


def _residual(ch: Chooser, s: Spec) -> Made:
    """A value read by two branches that meet again: a reduction broadcast back over its input
    (normalizing, attention-like weighting), a residual add around an op, a concatenation of a
    tensor with its own reduction. Fusion has to keep both readers of x consistent."""
    if not s.is_float or s.rank == 0:
        return None
    d = _dim(ch, s)
    kind = ch.choice(["center", "scale", "softmax_weight", "residual", "cat_reduced", "max_shift"])
    if kind == "center":
        return Step(f"x - x.mean({d}, keepdim=True)", lambda x: x - x.mean(d, keepdim=True)), s
    if kind == "scale":
        return Step(f"x / (x.abs().sum({d}, keepdim=True) + 1)", lambda x: x / (x.abs().sum(d, keepdim=True) + 1)), s
    if kind == "softmax_weight":
        return Step(f"x * x.softmax({d})", lambda x: x * x.softmax(d)), s
    if kind == "max_shift":
        return Step(f"torch.exp(x - x.amax({d}, keepdim=True))", lambda x: torch.exp(x - x.amax(d, keepdim=True))), s
    if kind == "residual":
        inner = ch.choice(UNARY)(ch, s)
        if inner is None:
            return None
        step = inner[0]
        return Step(f"x + ({step.code})", lambda x, f: x + f(x), f=step), s
    if 2 * s.numel > MAX_NUMEL:
        return None
    shape = s.shape[:d] + (s.shape[d] + 1,) + s.shape[d + 1:]
    return (Step(f"torch.cat([x, x.sum({d}, keepdim=True)], {d})",
                 lambda x: torch.cat([x, x.sum(d, keepdim=True)], d)), Spec(shape, s.dtype))


# ATen overloads the frontend claims that a model's forward does not reach through torch.export
# (internal forms that appear only after decompositions, training-mode ops, or tensors whose
# values are undefined): test_fuzz's coverage check leaves them out.
UNREACHABLE = {
    "aten._adaptive_avg_pool2d.default", "aten._log_softmax.default", "aten._softmax.default",
    "aten._native_batch_norm_legit.no_stats", "aten._native_batch_norm_legit_functional.default",
    "aten._native_batch_norm_legit_no_training.default", "aten.native_layer_norm.default",
    "aten.native_group_norm.default", "aten.convolution.default", "aten._unsafe_view.default",
    "aten.add.Scalar", "aten.sub.Scalar", "aten.mul.Scalar", "aten.div.Scalar", "aten.div.Scalar_mode",
    "aten.bitwise_and.Scalar", "aten.bitwise_or.Scalar", "aten.alias.default",
    "aten.bernoulli.p", "aten.native_dropout.default",  # training mode
    "aten.empty_like.default", "aten.new_empty.default", "aten.new_empty_strided.default",  # values undefined
    "aten._adaptive_avg_pool3d.default", "aten._cdist_forward.default", "aten._pdist_forward.default",  # decomposed
    "aten._upsample_nearest_exact2d.default", "aten.upsample_bilinear2d.default", "aten.upsample_nearest2d.default",
    "aten.numpy_T.default", "aten._to_copy.default", "aten.to.other",
    "aten._upsample_nearest_exact2d.vec", "aten.split.sizes", "aten.constant_pad_nd.default",
    "aten.conj.default", "aten._conj.default",  # torch.export drops them on real tensors
    # only after sol functionalizes in-place ops (the raw export this test reads shows index_put_ and
    # copy_): the fuzzer's y[..., i] = v and zeros_like(x).copy_(...) reach them in sol
    "aten.index_put.default", "aten.copy.default",
}


def _statistics(ch: Chooser, s: Spec) -> Made:
    """Variances, standard deviations, vector norms and any/all over random dims."""
    if not s.is_float or s.rank == 0 or s.numel == 0:
        return None
    kind = ch.choice(["var", "var_unbiased", "var_all", "std", "var_mean", "norm", "any", "any_dims", "any_all",
                      "all", "all_dim", "all_dims", "prod", "prod_all", "dist"])
    dims = _dims(ch, s)
    keep = ch.boolean()
    d = dims[0]
    if kind == "var":
        c = ch.choice([0, 1, 2])
        return (Step(f"torch.var(x, {dims}, correction={c}, keepdim={keep})",
                     lambda x: torch.var(x, dims, correction=c, keepdim=keep)), Spec(_reduced(s, dims, keep), s.dtype))
    if kind == "var_unbiased":
        return Step(f"torch.var(x, {d}, False, {keep})", lambda x: torch.var(x, d, False, keep)), \
            Spec(_reduced(s, (d,), keep), s.dtype)
    if kind == "var_all":
        return Step("torch.var(x, True).reshape(1)", lambda x: torch.var(x, True).reshape(1)), Spec((1,), s.dtype)
    if kind == "std":
        return Step(f"torch.std(x, {dims}, keepdim={keep})", lambda x: torch.std(x, dims, keepdim=keep)), \
            Spec(_reduced(s, dims, keep), s.dtype)
    if kind == "var_mean":  # var_mean.dim, or var_mean.correction where a correction is given
        c = ch.choice([None, None, 0, 2])
        kw = {} if c is None else {"correction": c}
        return (Step(f"(lambda v, m: v - m)(*torch.var_mean(x, {dims}, keepdim={keep}, **{kw}))",
                     lambda x: (lambda v, m: v - m)(*torch.var_mean(x, dims, keepdim=keep, **kw))),
                Spec(_reduced(s, dims, keep), s.dtype))
    if kind == "norm":
        order = ch.choice([2, 1, 0, 3, 0.5, math.inf, -math.inf])
        return (Step(f"torch.linalg.vector_norm(x, {order}, {dims}, {keep})",
                     lambda x: torch.linalg.vector_norm(x, order, dims, keep)), Spec(_reduced(s, dims, keep), s.dtype))
    if kind == "any":
        return Step(f"(x > 0.5).any({d}).to(x.dtype)", lambda x: (x > 0.5).any(d).to(x.dtype)), \
            Spec(_reduced(s, (d,), False), s.dtype)
    if kind == "any_dims":
        return (Step(f"torch.any(x > 0.5, dim={dims}).to(x.dtype)",
                     lambda x: torch.any(x > 0.5, dim=dims).to(x.dtype)), Spec(_reduced(s, dims, False), s.dtype))
    if kind == "prod":
        return (Step(f"torch.prod(torch.tanh(x) + 1.0, {d}, keepdim={keep})",
                     lambda x: torch.prod(torch.tanh(x) + 1.0, d, keepdim=keep)),
                Spec(_reduced(s, (d,), keep), s.dtype))
    if kind == "prod_all":
        return (Step("torch.prod(torch.tanh(x) * 0.5 + 1.0).reshape(1)",
                     lambda x: torch.prod(torch.tanh(x) * 0.5 + 1.0).reshape(1)), Spec((1,), s.dtype))
    if kind == "dist":
        p = ch.choice([2.0, 1.0, 3.0, math.inf])
        return Step(f"torch.dist(x, x * 0.5 + 1.0, {p}).reshape(1)",
                    lambda x: torch.dist(x, x * 0.5 + 1.0, p).reshape(1)), Spec((1,), s.dtype)
    if kind == "any_all":
        return Step("(x > 1.0).any().to(x.dtype).reshape(1)", lambda x: (x > 1.0).any().to(x.dtype).reshape(1)), \
            Spec((1,), s.dtype)
    if kind == "all_dim":
        return Step(f"(x > -1.0).all({d}, {keep}).to(x.dtype)", lambda x: (x > -1.0).all(d, keep).to(x.dtype)), \
            Spec(_reduced(s, (d,), keep), s.dtype)
    if kind == "all_dims":
        return (Step(f"torch.all(x > -1.0, dim={dims}).to(x.dtype)",
                     lambda x: torch.all(x > -1.0, dim=dims).to(x.dtype)), Spec(_reduced(s, dims, False), s.dtype))
    return Step("(x < 2.0).all().to(x.dtype).reshape(1)", lambda x: (x < 2.0).all().to(x.dtype).reshape(1)), \
        Spec((1,), s.dtype)


def _rearrange(ch: Chooser, s: Spec) -> Made:
    """More data movement: flips, moved axes, repeats, diagonals, broadcasts, the copy variants
    of views and the directional splits."""
    r = s.rank
    kind = ch.choice(["flip", "movedim", "movedims", "repeat", "diagonal", "linalg_diagonal", "diagonal_copy",
                      "broadcast_to", "ravel", "atleast", "permute_copy", "view_copy", "narrow_copy", "unbind_copy",
                      "hsplit", "vsplit", "dsplit", "mH", "matrix_H", "adjoint", "unfold", "cartesian_prod",
                      "slice_scatter", "diagonal_scatter", "adaptive_max_pool2d", "adaptive_max_pool3d",
                      "adaptive_avg_pool3d", "cartesian_prod"])
    if r == 0 or s.numel == 0:
        return None
    if kind.startswith("adaptive") and r in (3, 4, 5) and s.is_float:  # PyTorch pools floats only
        fn_ = getattr(F, kind)
        dims = int(kind[-2])
        if not dims <= r <= dims + 2:
            return None
        lead = s.shape[:-dims] if r > dims + 1 else (1,) * (dims + 2 - r) + s.shape[:-dims]  # as (N, C, ...)
        out = tuple(ch.integer(1, n) for n in s.shape[-dims:])
        shape = lead + s.shape[-dims:]
        return (Step(f"F.{fn_.__name__}(x.reshape({shape}), {out})", lambda x: fn_(x.reshape(shape), out)),
                Spec(lead + out, s.dtype))
    if kind in ("mH", "matrix_H", "adjoint") and r >= 2:
        if kind == "matrix_H" and r != 2:
            return None
        fn = {"mH": lambda x: x.mH, "matrix_H": lambda x: x.H, "adjoint": torch.adjoint}[kind]
        return Step(f"{kind}(x)", fn), Spec(s.shape[:-2] + (s.shape[-1], s.shape[-2]), s.dtype)
    if kind == "unfold" and s.shape[-1] >= 2:
        size, step = ch.integer(1, 2), ch.integer(1, 2)
        windows = (s.shape[-1] - size) // step + 1
        return Step(f"x.unfold(-1, {size}, {step})", lambda x: x.unfold(-1, size, step)), \
            Spec(s.shape[:-1] + (windows, size), s.dtype)
    if kind == "cartesian_prod" and r == 2 and s.shape[0] >= 2 and s.shape[1] ** 2 <= MAX_NUMEL // 2:
        return Step("torch.cartesian_prod(x[0], x[1])", lambda x: torch.cartesian_prod(x[0], x[1])), \
            Spec((s.shape[1] ** 2, 2), s.dtype)
    if kind == "slice_scatter":
        start, step = ch.integer(0, 1), ch.integer(1, 2)
        n = len(range(start, s.shape[-1], step))
        if n == 0:
            return None
        return (Step(f"torch.slice_scatter(x, x[..., {start}::{step}] * 2, -1, {start}, None, {step})",
                     lambda x: torch.slice_scatter(x, x[..., start::step] * 2, -1, start, None, step)), s)
    if kind == "diagonal_scatter" and r >= 2:
        off = ch.integer(-1, 1)
        n, m = s.shape[-2], s.shape[-1]
        if (min(n, m - off) if off >= 0 else min(n + off, m)) <= 0:
            return None
        return (Step(f"torch.diagonal_scatter(x, torch.diagonal(x, {off}, -2, -1) * -3, {off}, -2, -1)",
                     lambda x: torch.diagonal_scatter(x, torch.diagonal(x, off, -2, -1) * -3, off, -2, -1)), s)
    if kind == "flip":
        dims = _dims(ch, s)
        return Step(f"torch.flip(x, {dims})", lambda x: torch.flip(x, dims)), s
    if kind in ("movedim", "movedims") and r >= 2:
        src, dst = _dim(ch, s), _dim(ch, s)
        perm = [i for i in range(r) if i != src]
        perm.insert(dst, src)
        spec = Spec(tuple(s.shape[p] for p in perm), s.dtype)
        if kind == "movedim":
            return Step(f"torch.movedim(x, {src}, {dst})", lambda x: torch.movedim(x, src, dst)), spec
        return Step(f"torch.movedim(x, [{src}], [{dst}])", lambda x: torch.movedim(x, [src], [dst])), spec
    if kind == "repeat":
        reps = [ch.integer(1, 3) for _ in range(r + ch.integer(0, 1))]
        shape = tuple([1] * (len(reps) - r) + list(s.shape))
        out = tuple(a * b for a, b in zip(reps, shape))
        if math.prod(out) > MAX_NUMEL:
            return None
        return Step(f"x.repeat({reps})", lambda x: x.repeat(reps)), Spec(out, s.dtype)
    if kind in ("diagonal", "linalg_diagonal", "diagonal_copy") and r >= 2:
        off = ch.integer(-2, 2)
        n, m = s.shape[-2], s.shape[-1]
        length = min(n, m - off) if off >= 0 else min(n + off, m)
        if length <= 0:
            return None
        fn = {"diagonal": lambda x: torch.diagonal(x, off, -2, -1),
              "linalg_diagonal": lambda x: torch.linalg.diagonal(x, offset=off),
              "diagonal_copy": lambda x: torch.diagonal_copy(x, off, -2, -1)}[kind]
        return Step(f"torch.{kind}(x, {off})", fn), Spec(s.shape[:-2] + (length,), s.dtype)
    if kind == "broadcast_to" and r < 4:
        k = ch.integer(1, 3)
        shape = (k,) + s.shape
        if math.prod(shape) > MAX_NUMEL:
            return None
        return Step(f"torch.broadcast_to(x, {shape})", lambda x: torch.broadcast_to(x, shape)), Spec(shape, s.dtype)
    if kind == "ravel":
        return Step("x.ravel()", lambda x: x.ravel()), Spec((s.numel,), s.dtype)
    if kind == "atleast" and r <= 2:
        return Step("torch.atleast_3d(torch.atleast_2d(torch.atleast_1d(x)))",
                    lambda x: torch.atleast_3d(torch.atleast_2d(torch.atleast_1d(x)))), \
            Spec(tuple(torch.atleast_3d(torch.empty(s.shape)).shape), s.dtype)
    if kind == "permute_copy" and r >= 2:
        perm = list(reversed(range(r)))
        return Step(f"torch.permute_copy(x, {perm})", lambda x: torch.permute_copy(x, perm)), \
            Spec(s.shape[::-1], s.dtype)
    if kind == "view_copy":
        return Step("torch.view_copy(x, [-1])", lambda x: torch.view_copy(x, [-1])), Spec((s.numel,), s.dtype)
    if kind == "narrow_copy" and s.shape[0] > 1:
        return Step("torch.narrow_copy(x, 0, 1, 1)", lambda x: torch.narrow_copy(x, 0, 1, 1)), \
            Spec((1,) + s.shape[1:], s.dtype)
    if kind == "unbind_copy":
        return Step("torch.unbind_copy(x, -1)[-1]", lambda x: torch.unbind_copy(x, -1)[-1]), Spec(s.shape[:-1], s.dtype)
    dim = {"hsplit": 1 if r > 1 else 0, "vsplit": 0, "dsplit": 2}.get(kind, 9)
    if dim >= r or (kind == "vsplit" and r < 2) or s.shape[dim] < 2:
        return None
    fn_ = getattr(torch, kind)
    if ch.boolean():  # sections must divide the extent: 2 where they do, else 1 (the whole tensor)
        k = 2 if s.shape[dim] % 2 == 0 else 1
        return Step(f"torch.{kind}(x, {k})[-1]", lambda x: fn_(x, k)[-1]), \
            Spec(s.shape[:dim] + (s.shape[dim] // k,) + s.shape[dim + 1:], s.dtype)
    return Step(f"torch.{kind}(x, [1])[1]", lambda x: fn_(x, [1])[1]), \
        Spec(s.shape[:dim] + (s.shape[dim] - 1,) + s.shape[dim + 1:], s.dtype)


def _add_products(ch: Chooser, s: Spec) -> Made:
    """addmv and addbmm: a product plus a scaled bias."""
    if s.dtype != torch.float32:
        return None
    beta, alpha = ch.choice([1.0, 0.5, 0.0]), ch.choice([1.0, -2.0])
    kind = ch.choice(["add", "cdist", "pdist"])
    if kind == "cdist" and s.rank >= 2:
        p = ch.choice([2.0, 1.0, 0.0, 3.0, math.inf])
        mode = ch.choice(["use_mm_for_euclid_dist_if_necessary", "use_mm_for_euclid_dist",
                          "donot_use_mm_for_euclid_dist"])
        r2 = ch.choice([3, 30])
        y = _rand((r2, s.shape[-1]))
        return (Step(f"torch.cdist(x, y, {p}, {mode!r})  # y: {tuple(y.shape)}",
                     lambda x, y: torch.cdist(x, y, p, mode), y=y), Spec(s.shape[:-1] + (r2,)))
    if kind == "pdist" and s.rank == 2:
        p = ch.choice([2.0, 1.0, 3.0, math.inf])
        n = s.shape[0]
        return Step(f"F.pdist(x, {p})", lambda x: F.pdist(x, p)), Spec((n * (n - 1) // 2,))
    if s.rank == 2:
        v, b = _rand((s.shape[1],)), _rand((s.shape[0],))
        return (Step(f"torch.addmv(b, x, v, beta={beta}, alpha={alpha})",
                     lambda x, v, b: torch.addmv(b, x, v, beta=beta, alpha=alpha), v=v, b=b), Spec((s.shape[0],)))
    if s.rank == 3:
        n = ch.integer(1, 5)
        w, b = _rand((s.shape[0], s.shape[2], n)), _rand((s.shape[1], n))
        return (Step(f"torch.addbmm(b, x, w, beta={beta}, alpha={alpha})",
                     lambda x, w, b: torch.addbmm(b, x, w, beta=beta, alpha=alpha), w=w, b=b), Spec((s.shape[1], n)))
    return None


# --- special functions, sorting, scattering, volumes ------------------------------------------------
# Each function on a domain where it is defined and well conditioned in float32. Functions that sol
# (or eager) does not differentiate read ``d = x.detach()`` beside the chain's own ``x``: the training
# fuzzer then trains the chain through them, as eager does.


def _beside(name: str, code: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Maker:
    """``x + fn(x.detach())``: ``code`` names the detached tensor ``d``."""
    return _unary(name, f"x + {code}  # d = x.detach()", lambda x: x + fn(x.detach()))


_SP = torch.special
SPECIAL: list[Maker] = [
    # gamma family and friends: sol differentiates them
    _unary("lgamma", "torch.lgamma(x.abs() + 0.5)", lambda x: torch.lgamma(x.abs() + 0.5)),
    _unary("digamma", "torch.digamma(x.abs() + 0.5)", lambda x: torch.digamma(x.abs() + 0.5)),
    _unary("erfinv", "torch.erfinv(torch.tanh(x) * 0.9)", lambda x: torch.erfinv(torch.tanh(x) * 0.9)),
    _unary("i0", "torch.i0(x.clamp(-6, 6))", lambda x: torch.i0(x.clamp(-6, 6))),
    _unary("i0e", "torch.special.i0e(x)", _SP.i0e),
    _unary("ndtri", "torch.special.ndtri(torch.sigmoid(x) * 0.98 + 0.01)",
           lambda x: _SP.ndtri(torch.sigmoid(x) * 0.98 + 0.01)),
    _unary("erfcx", "torch.special.erfcx(x.clamp(min=-3))", lambda x: _SP.erfcx(x.clamp(min=-3))),
    _unary("log_ndtr", "torch.special.log_ndtr(x)", _SP.log_ndtr),
    # eager gives it no gradient, sol a stop_gradient: the sum's gradient is x's alone in both
    _unary("modified_bessel_i0", "x + torch.special.modified_bessel_i0(x.clamp(-6, 6))",
           lambda x: x + _SP.modified_bessel_i0(x.clamp(-6, 6))),
    # no gradient in sol (refused by name), or none in eager
    _beside("i1", "torch.special.i1(d.clamp(-6, 6))", lambda d: _SP.i1(d.clamp(-6, 6))),
    _beside("i1e", "torch.special.i1e(d)", _SP.i1e),
    _beside("modified_bessel_i1", "torch.special.modified_bessel_i1(d.clamp(-6, 6))",
            lambda d: _SP.modified_bessel_i1(d.clamp(-6, 6))),
    _beside("bessel_j0", "torch.special.bessel_j0(d.clamp(-20, 20))", lambda d: _SP.bessel_j0(d.clamp(-20, 20))),
    _beside("bessel_j1", "torch.special.bessel_j1(d.clamp(-20, 20))", lambda d: _SP.bessel_j1(d.clamp(-20, 20))),
    _beside("bessel_y0", "torch.special.bessel_y0(d.abs().clamp(0.5, 20))",
            lambda d: _SP.bessel_y0(d.abs().clamp(0.5, 20))),
    _beside("bessel_y1", "torch.special.bessel_y1(d.abs().clamp(0.5, 20))",
            lambda d: _SP.bessel_y1(d.abs().clamp(0.5, 20))),
    _beside("modified_bessel_k0", "torch.special.modified_bessel_k0(d.abs() + 0.25)",
            lambda d: _SP.modified_bessel_k0(d.abs() + 0.25)),
    _beside("modified_bessel_k1", "torch.special.modified_bessel_k1(d.abs() + 0.25)",
            lambda d: _SP.modified_bessel_k1(d.abs() + 0.25)),
    _beside("scaled_modified_bessel_k0", "torch.special.scaled_modified_bessel_k0(d.abs() + 0.25)",
            lambda d: _SP.scaled_modified_bessel_k0(d.abs() + 0.25)),
    _beside("scaled_modified_bessel_k1", "torch.special.scaled_modified_bessel_k1(d.abs() + 0.25)",
            lambda d: _SP.scaled_modified_bessel_k1(d.abs() + 0.25)),
    _beside("spherical_bessel_j0", "torch.special.spherical_bessel_j0(d.clamp(-20, 20))",
            lambda d: _SP.spherical_bessel_j0(d.clamp(-20, 20))),
    _beside("airy_ai", "torch.special.airy_ai(d.clamp(-10, 5))", lambda d: _SP.airy_ai(d.clamp(-10, 5))),
    # zeta(s, q) for s > 1, q > 0; the incomplete gamma functions for a, x > 0 (a kept moderate)
    _beside("zeta", "torch.special.zeta(d.abs().clamp(max=10) + 1.5, torch.sigmoid(d) + 0.5)",
            lambda d: _SP.zeta(d.abs().clamp(max=10) + 1.5, torch.sigmoid(d) + 0.5)),
    _beside("zeta_q_scalar", "torch.special.zeta(d.abs().clamp(max=10) + 1.5, 2.0)",
            lambda d: _SP.zeta(d.abs().clamp(max=10) + 1.5, 2.0)),
    _beside("zeta_s_scalar", "torch.special.zeta(2.5, d.abs() + 0.5)", lambda d: _SP.zeta(2.5, d.abs() + 0.5)),
    _beside("igamma", "torch.igamma(d.abs().clamp(max=10) + 0.5, d.square().clamp(max=30) + 0.1)",
            lambda d: torch.igamma(d.abs().clamp(max=10) + 0.5, d.square().clamp(max=30) + 0.1)),
    _beside("igammac", "torch.igammac(d.abs().clamp(max=10) + 0.5, d.square().clamp(max=30) + 0.1)",
            lambda d: torch.igammac(d.abs().clamp(max=10) + 0.5, d.square().clamp(max=30) + 0.1)),
]


def _polygamma(ch: Chooser, s: Spec) -> Made:
    if not s.is_float:
        return None
    n = ch.integer(0, 3)
    return Step(f"torch.polygamma({n}, x.abs() + 0.5)", lambda x: torch.polygamma(n, x.abs() + 0.5)), s


def _nextafter(ch: Chooser, s: Spec) -> Made:
    """nextafter(c, x) for a constant c (|c| >= 0.1, no subnormals) is c's neighbour on x's side:
    the step, one ulp of c, scaled to about 1 (exact in both), so that a wrong side shows."""
    if not s.is_float:
        return None
    c = _rand(_broadcast_shape(ch, s), s.dtype)
    c = torch.where(c < 0, c - 0.1, c + 0.1)
    k = 2.0 ** (23 if s.dtype == torch.float32 else 52)
    return (Step(f"x + (torch.nextafter(c, x.detach()) - c) / c.abs() * {k}  # c: {tuple(c.shape)}",
                 lambda x, c: x + (torch.nextafter(c, x.detach()) - c) / c.abs() * k, c=c), s)


def _special(ch: Chooser, s: Spec) -> Made:
    """One special function (torch.special, the gamma family), on its domain."""
    return ch.choice([*SPECIAL, _polygamma, _nextafter])(ch, s)


# The orthogonal polynomials, each with the argument's domain (code, function): [-1, 1] for
# Chebyshev's and Legendre's, [0, 1] for the shifted ones, a moderate range for the others.
POLYNOMIALS: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    **{f"chebyshev_polynomial_{k}": ("torch.tanh(d)", torch.tanh) for k in "tuvw"},
    **{f"shifted_chebyshev_polynomial_{k}": ("torch.sigmoid(d)", torch.sigmoid) for k in "tuvw"},
    "legendre_polynomial_p": ("torch.tanh(d)", torch.tanh),
    "hermite_polynomial_h": ("d.clamp(-3, 3)", lambda d: d.clamp(-3, 3)),
    "hermite_polynomial_he": ("d.clamp(-3, 3)", lambda d: d.clamp(-3, 3)),
    "laguerre_polynomial_l": ("d.abs().clamp(max=6)", lambda d: d.abs().clamp(max=6)),
}


def _polynomial(ch: Chooser, s: Spec) -> Made:
    """An orthogonal polynomial of a small degree, in its three spellings: a scalar degree, a
    scalar argument, tensors of both (degrees n: a constant of small integers). Neither eager nor
    sol differentiates them: they read x detached."""
    if not s.is_float:
        return None
    name = ch.choice(list(POLYNOMIALS))
    code, dom = POLYNOMIALS[name]
    f = getattr(torch.special, name)
    k = ch.integer(0, 5)
    c = ch.choice([0.25, 0.5, 0.75])
    n = torch.randint(0, 6, _broadcast_shape(ch, s)).to(s.dtype)
    return (Step(f"x + f({code}, {k}) + f({c}, n) + f({code}, n)  # f = torch.special.{name}, d = x.detach(), "
                 f"n: {tuple(n.shape)}",
                 lambda x, n: x + f(dom(x.detach()), k) + f(c, n) + f(dom(x.detach()), n), n=n), s)


def _distinct(s: Spec) -> torch.Tensor:
    """A random constant of x's shape, added before a sort or a pooling with indices: x's own
    ties (relu's zeros, rounding) become distinct values, so that every index is unambiguous."""
    return _rand(s.shape, s.dtype)


def _pair(code: str, fn: Callable[..., Any], s: Spec, out: Spec, ch: Chooser) -> Made:
    """A (values, indices) op of ``x + b`` (b from :func:`_distinct`): it ends the chain with
    both (:class:`PairStep`), or the chain goes on with the values."""
    b = _distinct(s)
    if ch.boolean():
        return PairStep(f"{code}  # b: {tuple(b.shape)}", lambda x, b: tuple(fn(x + b)), b=b), out
    return Step(f"{code}[0]  # b: {tuple(b.shape)}", lambda x, b: fn(x + b)[0], b=b), out


def _sorting(ch: Chooser, s: Spec) -> Made:
    """Sorts, selections, medians, searches and scans along a random dim."""
    if not s.is_float or s.rank == 0 or s.numel == 0:
        return None
    d = _dim(ch, s)
    n = s.shape[d]
    keep = ch.boolean()
    desc = ch.boolean()
    kind = ch.choice(["sort", "sort_stable", "argsort", "argsort_stable", "msort", "topk", "kthvalue", "median",
                      "median_all", "nanmedian", "nanmedian_all", "searchsorted", "searchsorted_scalar", "bucketize",
                      "bucketize_scalar", "cummax", "cummin", "cumprod", "logcumsumexp"])
    reduced = Spec(_reduced(s, (d,), keep), s.dtype)
    if kind == "sort":
        return _pair(f"torch.sort(x + b, {d}, descending={desc})", lambda y: torch.sort(y, d, descending=desc),
                     s, s, ch)
    if kind == "sort_stable":
        return _pair(f"torch.sort(x + b, stable=True, dim={d}, descending={desc})",
                     lambda y: torch.sort(y, stable=True, dim=d, descending=desc), s, s, ch)
    if kind in ("argsort", "argsort_stable"):  # the chain goes on with the int64 positions
        b = _distinct(s)
        if kind == "argsort":
            return (Step(f"torch.argsort(x + b, {d}, descending={desc})  # b: {tuple(b.shape)}",
                         lambda x, b: torch.argsort(x + b, d, descending=desc), b=b), Spec(s.shape, torch.int64))
        return (Step(f"torch.argsort(x + b, stable=True, dim={d})  # b: {tuple(b.shape)}",
                     lambda x, b: torch.argsort(x + b, stable=True, dim=d), b=b), Spec(s.shape, torch.int64))
    if kind == "msort":  # values only: ties do not matter
        return Step("torch.msort(x)", torch.msort), s
    if kind == "topk":
        k = ch.integer(1, n)
        largest = ch.boolean()
        return _pair(f"torch.topk(x + b, {k}, {d}, largest={largest})", lambda y: torch.topk(y, k, d, largest), s,
                     Spec(s.shape[:d] + (k,) + s.shape[d + 1:], s.dtype), ch)
    if kind == "kthvalue":
        k = ch.integer(1, n)
        return _pair(f"torch.kthvalue(x + b, {k}, {d}, keepdim={keep})", lambda y: torch.kthvalue(y, k, d, keep),
                     s, reduced, ch)
    if kind == "median":
        return _pair(f"torch.median(x + b, {d}, keepdim={keep})", lambda y: torch.median(y, d, keep), s, reduced, ch)
    if kind == "median_all":
        return Step("x - torch.median(x)", lambda x: x - torch.median(x)), s
    if kind in ("nanmedian", "nanmedian_all"):  # some NaN, never a whole row of them
        gaps = torch.rand(s.shape) < 0.3
        gaps.narrow(d, 0, 1).fill_(False)
        if kind == "nanmedian_all":
            return (Step(f"x - torch.nanmedian(x.masked_fill(gaps, nan))  # gaps: {tuple(gaps.shape)}",
                         lambda x, g: x - torch.nanmedian(x.masked_fill(g, math.nan)), g=gaps), s)
        b = _distinct(s)
        code = f"torch.nanmedian((x + b).masked_fill(gaps, nan), {d}, keepdim={keep})  # b, gaps: {tuple(b.shape)}"
        if ch.boolean():
            return (PairStep(code, lambda x, b, g: tuple(torch.nanmedian((x + b).masked_fill(g, math.nan), d, keep)),
                             b=b, g=gaps), reduced)
        return (Step(f"{code}[0]", lambda x, b, g: torch.nanmedian((x + b).masked_fill(g, math.nan), d, keep)[0],
                     b=b, g=gaps), reduced)
    if kind == "searchsorted":
        m = ch.integer(1, 8)
        rows = s.shape[:-1] if ch.boolean() else ()
        seq = _rand((*rows, m), s.dtype)
        side = ch.choice(["left", "right"])
        if ch.boolean(0.3):  # unsorted boundaries and the order that sorts them
            order = seq.argsort(-1)
            return (Step(f"torch.searchsorted(seq, x, side={side!r}, sorter=order)  # seq: {tuple(seq.shape)}",
                         lambda x, q, o: torch.searchsorted(q, x, side=side, sorter=o), q=seq, o=order),
                    Spec(s.shape, torch.int64))
        seq = seq.sort(-1).values
        right = side == "right"
        i32 = ch.boolean(0.3)
        return (Step(f"torch.searchsorted(seq, x, right={right}, out_int32={i32}).long()  # seq: {tuple(seq.shape)}",
                     lambda x, q: torch.searchsorted(q, x, right=right, out_int32=i32).long(), q=seq),
                Spec(s.shape, torch.int64))
    if kind == "bucketize":
        bounds = _rand((ch.integer(1, 8),), s.dtype).sort().values
        right = ch.boolean()
        return (Step(f"torch.bucketize(x, bounds, right={right})  # bounds: {tuple(bounds.shape)}",
                     lambda x, q: torch.bucketize(x, q, right=right), q=bounds), Spec(s.shape, torch.int64))
    if kind in ("searchsorted_scalar", "bucketize_scalar"):  # a scalar among x's sorted values (1-D)
        v, right = ch.choice([-0.5, 0.0, 0.3]), ch.boolean()
        if kind == "bucketize_scalar":
            return (Step(f"x + torch.bucketize({v}, torch.sort(x.flatten()).values, right={right})",
                         lambda x: x + torch.bucketize(v, torch.sort(x.flatten()).values, right=right)), s)
        return (Step(f"x + torch.searchsorted(torch.sort(x.flatten()).values, {v}, right={right})",
                     lambda x: x + torch.searchsorted(torch.sort(x.flatten()).values, v, right=right)), s)
    if kind in ("cummax", "cummin"):
        fn = torch.cummax if kind == "cummax" else torch.cummin
        return _pair(f"torch.{kind}(x + b, {d})", lambda y: fn(y, d), s, s, ch)
    if kind == "cumprod":  # relu's zeros pass unchanged: the gradient's zero cases
        return Step(f"torch.cumprod(x.clamp(-1.5, 1.5), {d})", lambda x: torch.cumprod(x.clamp(-1.5, 1.5), d)), s
    return Step(f"torch.logcumsumexp(x, {d})", lambda x: torch.logcumsumexp(x, d)), s


def _positions(s: Spec, d: int, k: int, distinct: bool) -> torch.Tensor:
    """int64 positions along ``d`` of shape ``s`` with ``k`` along ``d``: a prefix of a random
    permutation of each row (``distinct``: a scatter without reduction writes each place once,
    else the result would depend on the order of writes), or any positions (repeats)."""
    shape = s.shape[:d] + (k,) + s.shape[d + 1:]
    if distinct:
        return torch.rand(s.shape).argsort(d).narrow(d, 0, k).contiguous()
    return torch.randint(0, s.shape[d], shape)


def _scattering(ch: Chooser, s: Spec) -> Made:
    """Scatters, indexed adds and reductions, put/take, masked_scatter, embedding bags, bilinear:
    index tensors are constants drawn in range, sources have the index's shape."""
    if not s.is_float or s.rank == 0 or s.numel == 0:
        return None
    d = _dim(ch, s)
    n = s.shape[d]
    k = ch.integer(1, n)
    kind = ch.choice(["scatter", "scatter_value", "scatter_reduce_add", "scatter_value_reduce", "scatter_add",
                      "scatter_reduce", "index_add", "index_reduce", "put", "take", "take_along_dim",
                      "take_along_flat", "masked_scatter", "masked_index_put", "embedding_bag", "embedding_bag",
                      "bilinear"])
    src = f"torch.tanh(x.narrow({d}, 0, {k}))"

    def source(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x.narrow(d, 0, k))

    if kind in ("scatter", "scatter_value"):
        i = _positions(s, d, k, distinct=True)
        if kind == "scatter":
            return Step(f"x.scatter({d}, i, {src})  # i: {tuple(i.shape)}",
                        lambda x, i: x.scatter(d, i, source(x)), i=i), s
        return Step(f"x.scatter({d}, i, 1.5)  # i: {tuple(i.shape)}", lambda x, i: x.scatter(d, i, 1.5), i=i), s
    i = _positions(s, d, k, distinct=False)
    if kind in ("scatter_reduce_add", "scatter_value_reduce"):  # eager has no gradient: x detached
        how = ch.choice(["add", "multiply"])
        if kind == "scatter_value_reduce":
            return (Step(f"x + x.detach().scatter({d}, i, 1.5, reduce={how!r})  # i: {tuple(i.shape)}",
                         lambda x, i: x + x.detach().scatter(d, i, 1.5, reduce=how), i=i), s)
        return (Step(f"x + x.detach().scatter({d}, i, {src.replace('x.', 'x.detach().')}, reduce={how!r})  "
                     f"# i: {tuple(i.shape)}",
                     lambda x, i: x + x.detach().scatter(d, i, source(x.detach()), reduce=how), i=i), s)
    if kind == "scatter_add":
        return Step(f"x.scatter_add({d}, i, {src})  # i: {tuple(i.shape)}",
                    lambda x, i: x.scatter_add(d, i, source(x)), i=i), s
    if kind == "scatter_reduce":
        how = ch.choice(["sum", "prod", "mean", "amax", "amin"])
        inc = ch.boolean()
        return (Step(f"x.scatter_reduce({d}, i, {src}, {how!r}, include_self={inc})  # i: {tuple(i.shape)}",
                     lambda x, i: x.scatter_reduce(d, i, source(x), how, include_self=inc), i=i), s)
    flat = torch.randint(0, n, (k,))
    if kind == "index_add":
        alpha = ch.choice([1.0, -2.0, 0.5])
        return (Step(f"x.index_add({d}, i, {src}, alpha={alpha})  # i: {flat.tolist()}",
                     lambda x, i: x.index_add(d, i, source(x), alpha=alpha), i=flat), s)
    if kind == "index_reduce":
        how = ch.choice(["prod", "mean", "amax", "amin"])
        inc = ch.boolean()
        return (Step(f"x.index_reduce({d}, i, {src}, {how!r}, include_self={inc})  # i: {flat.tolist()}",
                     lambda x, i: x.index_reduce(d, i, source(x), how, include_self=inc), i=flat), s)
    total = s.numel
    m = ch.integer(1, min(total, 6))
    if kind == "put":  # positions from either end; without accumulate each written once
        acc = ch.boolean()
        p = torch.randint(0, total, (m,)) if acc else torch.randperm(total)[:m]
        p = torch.where(torch.rand(m) < 0.3, p - total, p)
        return (Step(f"torch.put(x, p, x.reshape(-1)[:{m}] * -2.0, accumulate={acc})  # p: {p.tolist()}",
                     lambda x, p: torch.put(x, p, x.reshape(-1)[:m] * -2.0, accumulate=acc), p=p), s)
    if kind == "take":
        shape: tuple[int, ...] = (m,) if ch.boolean() else (m, ch.integer(1, 3))
        p = torch.randint(-total, total, shape)
        return Step(f"torch.take(x, p)  # p: {p.tolist()}", lambda x, p: torch.take(x, p), p=p), Spec(shape, s.dtype)
    if kind == "take_along_dim":  # positions from either end, broadcast over some dims
        shape = tuple(k if j == d else (1 if ch.boolean(0.3) else e) for j, e in enumerate(s.shape))
        p = torch.randint(-n, n, shape)
        return (Step(f"torch.take_along_dim(x, p, {d})  # p: {shape}", lambda x, p: torch.take_along_dim(x, p, d), p=p),
                Spec(s.shape[:d] + (k,) + s.shape[d + 1:], s.dtype))
    if kind == "take_along_flat":
        p = torch.randint(0, total, (m,))  # (eager views x flat: not every strided x can)
        return (Step(f"torch.take_along_dim(x.contiguous(), p)  # p: {p.tolist()}",
                     lambda x, p: torch.take_along_dim(x.contiguous(), p), p=p), Spec((m,), s.dtype))
    if kind == "masked_scatter":
        mask = torch.rand(_broadcast_shape(ch, s)) < 0.5
        return (Step(f"x.masked_scatter(mask, torch.tanh(x) * 2)  # mask: {tuple(mask.shape)}",
                     lambda x, mask: x.masked_scatter(mask, torch.tanh(x) * 2), mask=mask), s)
    if kind == "masked_index_put":
        return _masked_index_put(ch, s)
    if kind == "embedding_bag":
        return _embedding_bag(ch, s)
    return _bilinear(ch, s)


def _masked_index_put(ch: Chooser, s: Spec) -> Made:
    """aten._unsafe_masked_index_put_accumulate (upsampling's backward decomposes into it), called
    directly: positions along dim 0 (some out of range: the op clamps them), a mask over the values."""
    n = s.shape[0]
    k = ch.integer(1, n)
    i = torch.randint(-n - 2, n + 2, (k,))
    mask = torch.rand((k,) + tuple(1 if ch.boolean() else e for e in s.shape[1:])) < 0.7
    fn = torch.ops.aten._unsafe_masked_index_put_accumulate
    return (Step(f"aten._unsafe_masked_index_put_accumulate(x, mask, [i], torch.tanh(x[:{k}]))  # i: {i.tolist()}, "
                 f"mask: {tuple(mask.shape)}", lambda x, mask, i: fn(x, mask, [i], torch.tanh(x[:k])), mask=mask, i=i),
            s)


def _embedding_bag(ch: Chooser, s: Spec) -> Made:
    """x as a table of rows (its last dim the embedding), random bags of it (empty ones too), in
    each spelling: F.embedding_bag (padding_idx), torch.embedding_bag, and the internal ops."""
    if s.dtype != torch.float32:
        return None
    width = s.shape[-1] if s.rank >= 2 else 1
    rows = s.numel // width
    bags = ch.integer(1, 4)
    sizes = [ch.integer(0, 3) for _ in range(bags)]
    if not sum(sizes):
        sizes[0] = 1
    ids = torch.randint(0, rows, (sum(sizes),))
    offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0)
    mode = ch.choice(["sum", "mean", "max"])
    weights = _rand((len(ids),)) if mode == "sum" and ch.boolean(0.3) else None
    last = ch.boolean(0.3)
    if last:
        offsets = torch.cat([offsets, torch.tensor([len(ids)])])
    pad = ch.choice([None, ch.integer(0, rows - 1)])
    form = ch.choice(["F", "torch", "_embedding_bag", "_embedding_bag_forward_only"])
    table = f"x.reshape(-1, {width})"
    out = Spec((bags, width), s.dtype)
    if form == "F":
        return (Step(f"F.embedding_bag(ids, {table}, offsets, mode={mode!r}, per_sample_weights=w, "
                     f"include_last_offset={last}, padding_idx={pad})  # ids: {ids.tolist()}, offsets: "
                     f"{offsets.tolist()}",
                     lambda x, ids, offsets, w=None: F.embedding_bag(ids, x.reshape(-1, width), offsets, mode=mode,
                                                                      per_sample_weights=w, include_last_offset=last,
                                                                      padding_idx=pad),
                     ids=ids, offsets=offsets, **({} if weights is None else {"w": weights})), out)
    code = {"sum": 0, "mean": 1, "max": 2}[mode]
    if form == "torch":
        return (Step(f"torch.embedding_bag({table}, ids, offsets, False, {code}, False, w, {last})[0]  "
                     f"# ids: {ids.tolist()}, offsets: {offsets.tolist()}",
                     lambda x, ids, offsets, w=None: torch.embedding_bag(x.reshape(-1, width), ids, offsets, False,
                                                                          code, False, w, last)[0],
                     ids=ids, offsets=offsets, **({} if weights is None else {"w": weights})), out)
    # the internal ops: padding_idx already wrapped, -1 for none; the forward-only one has no
    # derivative in eager (its backward fails): its table is x detached
    internal = getattr(torch.ops.aten, form)
    p = -1 if pad is None else pad
    detach = form == "_embedding_bag_forward_only"
    tab = table.replace("x.", "x.detach()." if detach else "x.")
    return (Step(f"aten.{form}({tab}, ids, offsets, False, {code}, False, w, {last}, {p})[0]  "
                 f"# ids: {ids.tolist()}, offsets: {offsets.tolist()}",
                 lambda x, ids, offsets, w=None: internal((x.detach() if detach else x).reshape(-1, width), ids,
                                                          offsets, False, code, False, w, last, p)[0],
                 ids=ids, offsets=offsets, **({} if weights is None else {"w": weights})), out)


def _bilinear(ch: Chooser, s: Spec) -> Made:
    if s.dtype != torch.float32:
        return None
    width, out = s.shape[-1], ch.integer(1, 4)
    shape = s.shape[:-1] + (out,)
    if out * width * width > MAX_NUMEL or math.prod(shape) > MAX_NUMEL:
        return None
    mod = nn.Bilinear(width, width, out, bias=ch.boolean(0.7))
    _randomize(mod)
    return (Step(f"nn.Bilinear({width}, {width}, {out}, bias={mod.bias is not None})(x, torch.tanh(x))",
                 lambda x, m: m(x, torch.tanh(x)), m=mod), Spec(shape, s.dtype))


def _volume(ch: Chooser, s: Spec) -> Made:
    """3-D pooling of x as (N, C, D, H, W), max pooling's own backward (called directly, as
    aten.max_pool2d_with_indices_backward), and the batch norms over the batch's statistics."""
    if s.dtype != torch.float32 or s.rank not in (3, 4, 5) or s.numel == 0:
        return None
    kind = ch.choice(["max_pool3d", "avg_pool3d", "max_pool2d_backward", "batch_stats"])
    if kind == "batch_stats":
        return _batch_stats(ch, s)
    shape = (1,) * (5 - s.rank) + s.shape
    sizes = shape[2:]
    k = tuple(ch.integer(1, min(3, e)) for e in sizes)
    stride = tuple(ch.integer(1, 2) for _ in sizes)
    pad = tuple(ch.integer(0, e // 2) for e in k)
    ceil = ch.boolean(0.3)
    if kind == "avg_pool3d":
        inc = ch.boolean()
        div = ch.choice([None, None, 2])
        probe = F.avg_pool3d(torch.zeros(1, 1, *sizes), k, stride, pad, ceil, inc, div)
        return (Step(f"F.avg_pool3d(x.reshape({shape}), {k}, {stride}, {pad}, {ceil}, {inc}, {div})",
                     lambda x: F.avg_pool3d(x.reshape(shape), k, stride, pad, ceil, inc, div)),
                Spec(shape[:2] + tuple(probe.shape[2:]), s.dtype))
    if kind == "max_pool3d":
        dil = tuple(ch.integer(1, 2) if e >= 2 * (w - 1) + 1 else 1 for e, w in zip(sizes, k))
        probe = F.max_pool3d(torch.zeros(1, 1, *sizes), k, stride, pad, dil, ceil)
        return _pair(f"F.max_pool3d((x + b).reshape({shape}), {k}, {stride}, {pad}, {dil}, {ceil}, True)",
                     lambda y: F.max_pool3d(y.reshape(shape), k, stride, pad, dil, ceil, True), s,
                     Spec(shape[:2] + tuple(probe.shape[2:]), s.dtype), ch)
    plane = (math.prod(shape[:3]), 1) + shape[3:]  # (N*C*D, 1, H, W)
    k2, stride2, pad2 = k[1:], stride[1:], pad[1:]
    b = _distinct(s)
    backward = torch.ops.aten.max_pool2d_with_indices_backward

    def fn(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = (x + b).reshape(plane)
        v, i = F.max_pool2d(y, k2, stride2, pad2, 1, ceil, True)
        return backward(torch.tanh(v), y, k2, stride2, pad2, [1, 1], ceil, i)

    return (Step(f"(v, i = F.max_pool2d(y := (x + b).reshape({plane}), {k2}, {stride2}, {pad2}, 1, {ceil}, True); "
                 f"aten.max_pool2d_with_indices_backward(torch.tanh(v), y, {k2}, {stride2}, {pad2}, [1, 1], {ceil}, i))"
                 f"  # b: {tuple(b.shape)}", fn, b=b), Spec(plane, s.dtype))


def _batch_stats(ch: Chooser, s: Spec) -> Made:
    """Batch norms over the batch's own statistics, in an eval-mode model (no running statistics
    change): F.batch_norm(training=True) without running statistics, and the ATen forms called
    directly: native_batch_norm (either mode) and _batch_norm_with_update_functional (its new
    running statistics are outputs, added to the result)."""
    c = s.shape[1]
    if s.numel // c < 2:  # PyTorch needs two values per channel
        return None
    w, bias = _rand((c,), scale=0.5) + 1.0, _rand((c,), scale=0.5)
    mean, var = _rand((c,)), torch.rand(c, dtype=torch.float64).to(torch.float32) + 0.5
    form = ch.choice(["F", "native", "native_eval", "with_update"])
    if form == "F":
        return (Step(f"F.batch_norm(x, None, None, w, bias, training=True)  # w, bias: ({c},)",
                     lambda x, w, bias: F.batch_norm(x, None, None, w, bias, training=True), w=w, bias=bias), s)
    if form in ("native", "native_eval"):
        train = form == "native"
        op = torch.ops.aten.native_batch_norm
        if train:  # no running statistics: nothing to update in place
            return (Step(f"aten.native_batch_norm(x, w, bias, None, None, True, 0.1, 1e-5)[0]  # w, bias: ({c},)",
                         lambda x, w, bias: op(x, w, bias, None, None, True, 0.1, 1e-5)[0], w=w, bias=bias), s)
        return (Step(f"aten.native_batch_norm(x, w, bias, mean, var, False, 0.1, 1e-5)[0]  # w, bias: ({c},)",
                     lambda x, w, bias, mean, var: op(x, w, bias, mean, var, False, 0.1, 1e-5)[0],
                     w=w, bias=bias, mean=mean, var=var), s)
    update = torch.ops.aten._batch_norm_with_update_functional
    along = (1, c) + (1,) * (s.rank - 2)

    def fn(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        out = update(x, w, bias, mean, var, 0.1, 1e-5)
        return out[0] + (out[4] - out[5]).reshape(along)

    return (Step(f"(lambda o: o[0] + (o[4] - o[5]).reshape({along}))(aten._batch_norm_with_update_functional(x, w, "
                 f"bias, mean, var, 0.1, 1e-5))  # w, bias, mean, var: ({c},)", fn, w=w, bias=bias, mean=mean, var=var),
            s)


# --- linear algebra, memory layout, grid sampling, segments ----------------------------------------
# sol neither differentiates the factorizations (training through them is refused by name) nor can
# eager resize a tensor that requires grad: those read ``d = x.detach()``, and the chain goes on
# without a gradient (the training fuzzer checks that sol, like eager, gives none).

_LA = torch.linalg
_ATEN = torch.ops.aten


def _matrix_ops(left: bool, upper: bool, unit: bool, trans: bool, n: int) -> dict[str, tuple[str, Callable[..., Any]]]:
    """Each op of the family as (code, fn(g, p, t, r)): g a general matrix (LU, with row swaps), p
    symmetric positive definite, t with a dominant diagonal (the solvers read one triangle), r a
    right-hand side (n x k, or k x n where it multiplies from the right)."""
    def lu(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _LA.lu_factor(g)

    def f(p: torch.Tensor) -> torch.Tensor:
        return _LA.cholesky(p, upper=upper)

    def split(o: Any) -> torch.Tensor:  # (P, L, U) of one (b, n, n) shape: each element checked
        return o[0] + o[1] * 2 + o[2] * 3

    rows = "..., None, :"  # pivots, (b, n), added along each row; info, (b,), to every element
    fourth = (2, 2, 4) if n == 4 else (n, n)
    return {
        "det": ("torch.linalg.det(g)", lambda g, p, t, r: _LA.det(g)),
        "det_torch": ("torch.det(g)", lambda g, p, t, r: torch.det(g)),
        # (their LU and pivots are left out: eager's are those of g^T where g is row-major, sol's g's)
        "_linalg_det": ("aten._linalg_det(g)[0]", lambda g, p, t, r: _ATEN._linalg_det(g)[0]),
        "logdet": ("torch.logdet(p)", lambda g, p, t, r: torch.logdet(p)),
        "slogdet": ("(lambda o: o[0] * o[1])(torch.linalg.slogdet(g))",
                    lambda g, p, t, r: (lambda o: o[0] * o[1])(_LA.slogdet(g))),
        "_linalg_slogdet": ("(lambda o: o[0] * o[1])(aten._linalg_slogdet(g))",
                            lambda g, p, t, r: (lambda o: o[0] * o[1])(_ATEN._linalg_slogdet(g))),
        "inv": ("torch.linalg.inv(g)", lambda g, p, t, r: _LA.inv(g)),
        "inverse": ("torch.inverse(p)", lambda g, p, t, r: torch.inverse(p)),
        "inv_ex": ("(lambda o: o[0] + o[1][..., None, None])(torch.linalg.inv_ex(g))",
                   lambda g, p, t, r: (lambda o: o[0] + o[1][..., None, None])(_LA.inv_ex(g))),
        "solve": (f"torch.linalg.solve(g, r, left={left})", lambda g, p, t, r: _LA.solve(g, r, left=left)),
        "solve_ex": (f"(lambda o: o[0] + o[1][..., None, None])(torch.linalg.solve_ex(g, r, left={left}))",
                     lambda g, p, t, r: (lambda o: o[0] + o[1][..., None, None])(_LA.solve_ex(g, r, left=left))),
        "_linalg_solve_ex": (f"(lambda o: o[1] + o[2][{rows}] + o[3][..., None, None] + o[0].sum(-1, keepdim=True))"
                             "(aten._linalg_solve_ex(g, r))",
                             lambda g, p, t, r: (lambda o: o[1] + o[2][..., None, :] + o[3][..., None, None]
                                                 + o[0].sum(-1, keepdim=True))(_ATEN._linalg_solve_ex(g, r))),
        "tensorinv": (f"torch.linalg.tensorinv(g[0].reshape({fourth}), {len(fourth) - 1})",
                      lambda g, p, t, r: _LA.tensorinv(g[0].reshape(fourth), len(fourth) - 1)),
        "tensorsolve": (f"torch.linalg.tensorsolve(g[0].reshape({fourth}), p[0, 0].reshape({fourth[:-1]}))",
                        lambda g, p, t, r: _LA.tensorsolve(g[0].reshape(fourth), p[0, 0].reshape(fourth[:-1]))),
        "lu_factor": (f"(lambda o: o[0] + o[1][{rows}])(torch.linalg.lu_factor(g))",
                      lambda g, p, t, r: (lambda o: o[0] + o[1][..., None, :])(lu(g))),
        "lu_factor_ex": (f"(lambda o: o[0] + o[1][{rows}] + o[2][..., None, None])(torch.linalg.lu_factor_ex(g))",
                         lambda g, p, t, r: (lambda o: o[0] + o[1][..., None, :] + o[2][..., None, None])(
                             _LA.lu_factor_ex(g))),
        "lu": ("(lambda o: o[0] + o[1] * 2 + o[2] * 3)(torch.linalg.lu(g))", lambda g, p, t, r: split(_LA.lu(g))),
        "lu_torch": (f"(lambda o: o[0] + o[1][{rows}])(torch.lu(g))",
                     lambda g, p, t, r: (lambda o: o[0] + o[1][..., None, :])(torch.lu(g))),
        "lu_solve": (f"torch.linalg.lu_solve(*torch.linalg.lu_factor(g), r, left={left}, adjoint={trans})",
                     lambda g, p, t, r: _LA.lu_solve(*lu(g), r, left=left, adjoint=trans)),
        "lu_unpack": ("(lambda o: o[0] + o[1] * 2 + o[2] * 3)(torch.lu_unpack(*torch.linalg.lu_factor(g)))",
                      lambda g, p, t, r: split(torch.lu_unpack(*lu(g)))),
        "cholesky": (f"torch.linalg.cholesky(p, upper={upper})", lambda g, p, t, r: f(p)),
        "cholesky_ex": (f"(lambda o: o[0] + o[1][..., None, None])(torch.linalg.cholesky_ex(p, upper={upper}))",
                        lambda g, p, t, r: (lambda o: o[0] + o[1][..., None, None])(_LA.cholesky_ex(p, upper=upper))),
        "cholesky_torch": (f"torch.cholesky(p, {upper})", lambda g, p, t, r: torch.cholesky(p, upper)),
        "cholesky_solve": (f"torch.cholesky_solve(r, torch.linalg.cholesky(p, upper={upper}), {upper})",
                           lambda g, p, t, r: torch.cholesky_solve(r, f(p), upper)),
        "cholesky_inverse": (f"torch.cholesky_inverse(torch.linalg.cholesky(p, upper={upper}), {upper})",
                             lambda g, p, t, r: torch.cholesky_inverse(f(p), upper)),
        "solve_triangular": (f"torch.linalg.solve_triangular(t, r, upper={upper}, left={left}, unitriangular={unit})",
                             lambda g, p, t, r: _LA.solve_triangular(t, r, upper=upper, left=left,
                                                                     unitriangular=unit)),
        "triangular_solve": (f"torch.cat(torch.triangular_solve(r, t, {upper}, {trans}, {unit}), -1)",
                             lambda g, p, t, r: torch.cat(torch.triangular_solve(r, t, upper, trans, unit), -1)),
    }


MATRIX_KINDS = list(_matrix_ops(True, True, False, False, 1))
# where the right-hand side multiplies from the left only (r is n x k)
_LEFT_ONLY = {"_linalg_solve_ex", "tensorsolve", "cholesky_solve", "triangular_solve"}


def _linalg(ch: Chooser, s: Spec) -> Made:
    """Determinants, inverses, solves and factorizations of a batch of tiny square matrices (n <= 4)
    made of x's values, well conditioned: m = tanh(x's values) as (b, n, n); g = (m + (n + 1) I)
    with its rows permuted (diagonally dominant by columns, so LAPACK's row swaps are the
    permutation's and no near-tie decides a pivot), p = m m^T + n I (eigenvalues >= n), t = m / 2
    + 2 I (the diagonal dominates either triangle), r = a few of m's columns (or rows)."""
    if not s.is_float or s.numel == 0:
        return None
    n = ch.integer(1, min(4, math.isqrt(s.numel)))
    b = ch.integer(1, min(3, s.numel // (n * n)))
    k = ch.integer(1, n)
    left, upper, unit, trans = ch.boolean(), ch.boolean(), ch.boolean(0.3), ch.boolean()
    kind = ch.choice(MATRIX_KINDS)
    left = left or kind in _LEFT_ONLY
    if kind in ("tensorinv", "tensorsolve") and ch.boolean(0.3):
        n, b, k = (1, 1, 1) if s.numel < 16 else (4, 1, k)  # the (2, 2, 4) form of a 4 x 4 matrix, or a 1 x 1
    code, op = _matrix_ops(left, upper, unit, trans, n)[kind]
    perm = torch.randperm(n)
    eye = torch.eye(n, dtype=s.dtype)
    side = f"m[..., :{k}]" if left else f"m[..., :{k}, :]"
    if ch.boolean(0.3):  # one right-hand side for the whole batch: broadcast
        side += "[:1]"

    def fn(x: torch.Tensor, eye: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        m = torch.tanh(x.detach().reshape(-1)[:b * n * n].reshape(b, n, n))
        r = m[..., :k] if left else m[..., :k, :]
        if side.endswith("[:1]"):
            r = r[:1]
        p = (m[..., :, None, :] * m[..., None, :, :]).sum(-1) + n * eye  # m @ m.mT (float64: no matmul on x86)
        return op((m + (n + 1) * eye)[..., perm, :], p, m / 2 + 2 * eye, r)

    probe = fn(torch.zeros(s.shape, dtype=s.dtype), eye, perm)
    return (Step(f"{code}  # m = torch.tanh(x.detach().reshape(-1)[:{b * n * n}].reshape({b}, {n}, {n})); "
                 f"g = (m + {n + 1} * I)[..., perm, :]; p = (m[..., :, None, :] * m[..., None, :, :]).sum(-1) "
                 f"+ {n} * I; t = m / 2 + 2 * I; r = {side}; perm: {perm.tolist()}", fn, eye=eye, perm=perm),
            Spec(tuple(probe.shape), probe.dtype))


def _window(ch: Chooser, numel: int, overlap: bool) -> tuple[list[int], list[int], int]:
    """An as_strided window (sizes, strides, storage offset) inside a contiguous tensor of
    ``numel`` elements: nested strides in a random order (a permuted, padded view: no two elements
    share a place), or with ``overlap`` sometimes a stride 0 or 1 that makes them share."""
    r = ch.integer(1, 3)
    sizes = [ch.integer(1, 4) for _ in range(r)]
    keys = [ch.integer(0, 99) for _ in range(r)]
    strides = [0] * r
    step = ch.integer(1, 2)
    for d in sorted(range(r), key=lambda j: (keys[j], j)):  # the innermost dim first
        strides[d] = step
        step = step * sizes[d] + ch.integer(0, 1)
    if overlap and ch.boolean(0.3):
        strides[ch.integer(0, r - 1)] = ch.integer(0, 1)
    while sum((z - 1) * t for z, t in zip(sizes, strides)) >= numel:
        sizes[max(range(r), key=lambda j: (sizes[j] - 1) * strides[j])] -= 1
    span = sum((z - 1) * t for z, t in zip(sizes, strides))
    return sizes, strides, ch.integer(0, numel - 1 - span)


def _strided(ch: Chooser, s: Spec) -> Made:
    """as_strided (a view, a copy, a scatter into the window) and resize (in place and the ATen
    functional forms) over a fresh contiguous copy of x: its memory layout, unlike that of an
    input or of an intermediate eager may lay out otherwise, is fixed by the program."""
    if s.numel == 0:
        return None
    kind = ch.choice(["as_strided", "as_strided_copy", "as_strided_scatter", "resize_", "resize", "resize_as_",
                      "resize_as"])
    y = "x.clone(memory_format=torch.contiguous_format)"

    def fresh(x: torch.Tensor) -> torch.Tensor:
        return x.clone(memory_format=torch.contiguous_format)

    if kind.startswith("as_strided"):
        size, stride, off = _window(ch, s.numel, overlap=kind != "as_strided_scatter")
        out = Spec(tuple(size), s.dtype)
        # a read's offset comes from a view of the copy: sol refuses an explicit one while any input of
        # the graph is itself a view into a larger storage (as the fuzzer's sliced inputs are)
        if kind == "as_strided":
            return (Step(f"{y}.reshape(-1)[{off}:].as_strided({size}, {stride})",
                         lambda x: fresh(x).reshape(-1)[off:].as_strided(size, stride)), out)
        if kind == "as_strided_copy":
            return (Step(f"torch.as_strided_copy({y}.reshape(-1)[{off}:], {size}, {stride})",
                         lambda x: torch.as_strided_copy(fresh(x).reshape(-1)[off:], size, stride)), out)
        m = math.prod(size)  # eager's gradient of it is wrong (sol refuses to train through it): x detached
        return (Step(f"torch.as_strided_scatter({y.replace('x.', 'd.')}, d.reshape(-1)[:{m}].reshape({size}) * -2, "
                     f"{size}, {stride}, {off})  # d = x.detach()",
                     lambda x: torch.as_strided_scatter(fresh(x.detach()),
                                                        x.detach().reshape(-1)[:m].reshape(size) * -2, size, stride,
                                                        off)), Spec(s.shape, s.dtype))
    shape = [ch.integer(1, MAX_DIM) for _ in range(ch.integer(1, 3))]
    while math.prod(shape) > s.numel:  # no larger: the rest would be uninitialized memory
        shape[ch.integer(0, len(shape) - 1)] //= 2
        shape = [max(e, 1) for e in shape]
    out = Spec(tuple(shape), s.dtype)
    d = "x.detach().clone(memory_format=torch.contiguous_format)"
    if kind == "resize_":
        return Step(f"{d}.resize_({shape})", lambda x: fresh(x.detach()).resize_(shape)), out
    if kind == "resize":
        return Step(f"aten.resize({d}, {shape})", lambda x: _ATEN.resize(fresh(x.detach()), shape)), out
    like = torch.zeros(shape, dtype=s.dtype)  # only its shape is read
    if kind == "resize_as_":
        return (Step(f"{d}.resize_as_(like)  # like: {tuple(shape)}",
                     lambda x, like: fresh(x.detach()).resize_as_(like), like=like), out)
    return (Step(f"aten.resize_as({d}, like)  # like: {tuple(shape)}",
                 lambda x, like: _ATEN.resize_as(fresh(x.detach()), like), like=like), out)


def _grid(ch: Chooser, s: Spec) -> Made:
    """Grid sampling of x as (N, C, H, W) or (N, C, D, H, W) at constant coordinates in
    (-1.2, 1.2) (some outside the image: the padding modes), in each spelling: F.grid_sample,
    torch.grid_sampler and the per-rank ATen ops."""
    if not s.is_float or s.numel == 0:
        return None
    dims = ch.choice([2, 3])
    if not dims <= s.rank <= dims + 2:
        return None
    shape = (1,) * (dims + 2 - s.rank) + s.shape
    out = tuple(ch.integer(1, 4) for _ in range(dims))
    g = (torch.rand((shape[0], *out, dims), dtype=torch.float64) * 2.4 - 1.2).to(s.dtype)
    modes = ["bilinear", "nearest", "bicubic"][:3 if dims == 2 else 2]
    mode, pad = ch.choice(modes), ch.choice(["zeros", "border", "reflection"])
    align = ch.boolean()
    spec = Spec(shape[:2] + out, s.dtype)
    form = ch.choice(["F", "grid_sampler", f"grid_sampler_{dims}d"])
    if form == "F":
        return (Step(f"F.grid_sample(x.reshape({shape}), g, {mode!r}, {pad!r}, {align})  # g: {tuple(g.shape)}",
                     lambda x, g: F.grid_sample(x.reshape(shape), g, mode, pad, align), g=g), spec)
    mi, pi = modes.index(mode), ["zeros", "border", "reflection"].index(pad)
    fn = getattr(torch, form)
    return (Step(f"torch.{form}(x.reshape({shape}), g, {mi}, {pi}, {align})  # g: {tuple(g.shape)}",
                 lambda x, g: fn(x.reshape(shape), g, mi, pi, align), g=g), spec)


def _segment(ch: Chooser, s: Spec) -> Made:
    """torch.segment_reduce along a random dim (constant segment lengths or offsets, per row of
    the dims before it, empty segments too: an initial value where the reduction of none would
    be NaN or inf), and torch.nonzero_static of a comparison (fewer or more places than asked)."""
    if not s.is_float or s.rank == 0 or s.numel == 0:
        return None
    if ch.boolean(0.3):
        size, fill = ch.integer(1, min(s.numel + 2, 12)), ch.choice([-1, 0, 3])
        c = ch.choice([-0.5, 0.0, 0.7])
        as_float = ch.boolean()
        return (Step(f"torch.nonzero_static(x > {c}, size={size}, fill_value={fill})"
                     + (".to(x.dtype)" if as_float else ""),
                     lambda x: (lambda i: i.to(x.dtype) if as_float else i)(
                         torch.nonzero_static(x > c, size=size, fill_value=fill))),
                Spec((size, s.rank), s.dtype if as_float else torch.int64))
    d = _dim(ch, s)
    n, segs = s.shape[d], ch.integer(1, 4)
    cuts = torch.randint(0, n + 1, s.shape[:d] + (segs - 1,)).sort(-1).values
    bounds = torch.cat([torch.zeros(s.shape[:d] + (1,), dtype=torch.int64), cuts,
                        torch.full(s.shape[:d] + (1,), n, dtype=torch.int64)], -1)
    how = ch.choice(["sum", "mean", "max", "min", "prod"])
    empty = bool((bounds.diff(dim=-1) == 0).any())
    initial = ch.choice([0.5, -1.0]) if (empty and how in ("mean", "max", "min")) or ch.boolean(0.3) else None
    spec = Spec(s.shape[:d] + (segs,) + s.shape[d + 1:], s.dtype)
    data = "x.clamp(-1.5, 1.5)" if how == "prod" else "x"  # a product of up to 40 values: bounded

    def prep(x: torch.Tensor) -> torch.Tensor:
        return x.clamp(-1.5, 1.5) if how == "prod" else x

    if ch.boolean():
        return (Step(f"torch.segment_reduce({data}, {how!r}, offsets=o, axis={d}, initial={initial})  # o: "
                     f"{bounds.tolist()}",
                     lambda x, o: torch.segment_reduce(prep(x), how, offsets=o, axis=d, initial=initial),
                     o=bounds), spec)
    lengths = bounds.diff(dim=-1)
    return (Step(f"torch.segment_reduce({data}, {how!r}, lengths=n, axis={d}, initial={initial})  "
                 f"# n: {lengths.tolist()}",
                 lambda x, n: torch.segment_reduce(prep(x), how, lengths=n, axis=d, initial=initial),
                 n=lengths), spec)


# Weighted: element-wise ops are the most common in real models and the cheapest to compile. Makers
# that pick among many spellings weigh more, so that each spelling still turns up in a few of the
# coverage test's seeds (test_generator_covers_every_claimed_op).
CATALOGUE: list[tuple[Maker, int]] = [
    *[(m, 1) for m in UNARY], (_param_unary, 6), (_indexing, 2), (_binary, 8), (_compare, 2), (_reduce, 6),
    (_softmax, 3), (_norm, 3), (_layout, 10), (_spatial, 7), (_linear, 5), (_recurrent, 1), (_cast, 2), (_spelling, 11),
    (_residual, 5), (_more_unary, 5), (_statistics, 5), (_rearrange, 9), (_add_products, 2),
    (_special, 7), (_polynomial, 3), (_sorting, 4), (_scattering, 5), (_volume, 3), (_linalg, 5), (_strided, 2),
    (_grid, 2), (_segment, 2),
]


def _pick(ch: Chooser) -> Maker:
    total = sum(w for _, w in CATALOGUE)
    k = ch.integer(0, total - 1)
    for maker, w in CATALOGUE:
        if k < w:
            return maker
        k -= w
    raise AssertionError


# --- inputs ---------------------------------------------------------------------------------------------


def draw_input(ch: Chooser) -> tuple[torch.Tensor, str]:
    """A random input tensor, sometimes a non-contiguous view (transposed, sliced, expanded).
    About one in ten is large (10^4 to 6 * 10^4 elements): large enough for the devices'
    parallel loops, tiles and strips, which small tensors never start."""
    rank = ch.choice([1, 2, 3, 3, 4, 4])
    shape = [ch.integer(1, MAX_DIM) for _ in range(rank)]
    if rank == 4:
        shape[2], shape[3] = ch.integer(2, 9), ch.integer(2, 9)
    if ch.boolean(0.1):
        shape = [ch.integer(8, 40) for _ in range(max(rank, 3))]
        while math.prod(shape) > 60000:
            shape[ch.integer(0, len(shape) - 1)] //= 2
        rank = len(shape)
    kind = ch.choice(["float"] * 8 + ["int", "double"])
    layout = ch.choice(["contiguous"] * 3 + ["transposed", "sliced", "expanded"])
    gen = torch.Generator().manual_seed(ch.integer(0, 2**31 - 1))

    def make(shape: Sequence[int]) -> torch.Tensor:
        if kind == "int":
            return torch.randint(-4, 8, tuple(shape), generator=gen)
        x = torch.randn(*shape, generator=gen, dtype=torch.float64)
        return x if kind == "double" else x.float()

    if layout == "transposed" and rank >= 2:
        a, b = ch.integer(0, rank - 1), ch.integer(0, rank - 1)
        src = list(shape)
        src[a], src[b] = src[b], src[a]
        return make(src).transpose(a, b), f"transposed({a}, {b})"
    if layout == "sliced":
        a = ch.integer(0, rank - 1)
        big = list(shape)
        big[a] = 2 * shape[a] + 1
        return make(big).narrow(a, 1, 2 * shape[a]).unfold(a, 1, 2).squeeze(-1), f"every other element of dim {a}"
    if layout == "expanded" and 1 < shape[0]:
        return make([1, *shape[1:]]).expand(*shape), "expanded along dim 0"
    return make(shape).contiguous(), "contiguous"


def draw_chain(ch: Chooser, index: int, x: torch.Tensor, min_ops: int = 2, max_ops: int = 6) -> Chain:
    spec = Spec(tuple(x.shape), x.dtype)
    want = ch.integer(min_ops, max_ops)
    steps: list[Step] = []
    tries = 0
    if x.dtype == torch.int64 and ch.boolean():  # a token chain: embedding first
        emb = nn.Embedding(8, ch.integer(1, 6))
        # inputs are in [-4, 8): folded into the table's range
        steps.append(Step(f"nn.Embedding(8, {emb.embedding_dim})(x.clamp(0, 7))", lambda x, m: m(x.clamp(0, 7)), m=emb))
        spec = Spec(spec.shape + (emb.embedding_dim,), torch.float32)
    while len(steps) < want and tries < 60:
        tries += 1
        made = _pick(ch)(ch, spec) if tries < 40 or spec.is_float else _cast(ch, spec)
        if made is None:
            continue
        step, new = made
        if new.numel > MAX_NUMEL or (new.numel == 0):
            continue
        steps.append(step)
        spec = new
        if isinstance(step, (SelectStep, PairStep)):
            break
    if ch.boolean(0.15) and spec.rank > 0 and not (steps and isinstance(steps[-1], (SelectStep, PairStep))):
        select = _select(ch, spec)
        if select is not None:
            steps.append(select[0])
    return Chain(index, steps)


def draw_model(ch: Chooser, chains: int = 6, min_ops: int = 2, max_ops: int = 6) -> FuzzCase:
    """``chains`` independent random chains as one model, with their inputs. Two chains may share
    an input (a graph input read by two parts of a network)."""
    inputs: list[torch.Tensor] = []
    layouts: list[str] = []
    built: list[Chain] = []
    torch.manual_seed(ch.integer(0, 2**31 - 1))  # parameter values: reproducible from the choices
    for _ in range(chains):
        if inputs and ch.boolean(0.2):
            k = ch.integer(0, len(inputs) - 1)
        else:
            x, how = draw_input(ch)
            inputs.append(x)
            layouts.append(how)
            k = len(inputs) - 1
        built.append(draw_chain(ch, k, inputs[k], min_ops, max_ops))
    return FuzzCase(FuzzModel(built).eval(), inputs, layouts)
