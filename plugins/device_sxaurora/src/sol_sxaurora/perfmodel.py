"""A roofline model of a VE Type 20B, for ``sol inspect`` where no VE is at hand.

Each group's time is max(operations / peak, bytes / bandwidth) plus a fixed cost for starting
its parallel loop on the VE's cores. The FLOPs are the op table's (``OpDef.flops``, the counts
every report uses); the operations add only what a transcendental function costs the VE beyond
its 1 FLOP (:func:`function_overhead`). ``bytes`` is what crosses the group's boundary (its inputs,
parameters included, and outputs), read or written once from HBM2: the model assumes a group's
working set stays in the 16 MB last-level cache while the group runs, which is what the depth-first
fusion aims for; a group whose boundary traffic alone exceeds the LLC is reported as such. Copies
between host and VE over PCIe are a separate figure (``transfer``): they happen per call, not per
group. These are estimates, and every caller labels them so.
"""

from __future__ import annotations

from dataclasses import dataclass

from sol.plugin_api import Estimate, Group, GroupKind, Node, Plan, Storage, Value, node_flops


@dataclass(frozen=True)
class VectorEngine:
    name: str = "VE Type 20B"
    cores: int = 8
    ghz: float = 1.6
    fp64_flops: float = 2.45e12
    fp32_flops: float = 4.9e12  # packed single precision (two fp32 per 64-bit lane)
    hbm_bytes_per_s: float = 1.53e12
    llc_bytes: int = 16 * 2**20
    pcie_bytes_per_s: float = 12e9  # PCIe Gen3 x16, achievable
    parallel_start_s: float = 1e-6  # fork/join of a parallel loop over the 8 cores

    @property
    def basis(self) -> str:
        return (f"roofline on {self.name}: {self.cores} cores at {self.ghz} GHz, {self.fp32_flops / 1e12:.1f} TFLOP/s "
                f"fp32 / {self.fp64_flops / 1e12:.2f} fp64, {self.hbm_bytes_per_s / 1e12:.2f} TB/s HBM2, "
                f"{self.llc_bytes >> 20} MB LLC")


TYPE_20B = VectorEngine()

# The op table counts a function (exp, tanh, a division) as 1 FLOP per element
# (sol.workload); the VE has no single instruction for it. What one costs beyond that FLOP, in
# vector operations per element, is this model's only addition to the op table's counts.
_FUNCTION_COST = {"exp": 10, "log": 10, "tanh": 12, "erf": 12, "sigmoid": 12, "silu": 13, "gelu": 16,
                  "pow": 20, "sqrt": 4, "rsqrt": 5, "div": 4}
# Functions per output element of ops that are not one function themselves: softmax's exp, the
# gates of a recurrence step (per hidden unit: LSTM 3 sigmoids and 2 tanh, GRU 2 and 1).
_FUNCTIONS_INSIDE = {"softmax": ("exp",), "log_softmax": ("exp",),
                     "lstm_recurrence": ("sigmoid",) * 3 + ("tanh",) * 2,
                     "gru_recurrence": ("sigmoid",) * 2 + ("tanh",)}


def function_overhead(node: Node) -> float:
    """Operations the VE spends on ``node``'s transcendental functions beyond the op table's
    1 FLOP each (``_FUNCTION_COST`` minus 1, per function, per output element)."""
    functions = _FUNCTIONS_INSIDE.get(node.op, (node.op,) if node.op in _FUNCTION_COST else ())
    return float(sum(_FUNCTION_COST[f] - 1 for f in functions) * node.outputs[0].type.numel)


def ve_operations(node: Node) -> float:
    """What the compute roof divides: the op table's FLOPs (:func:`sol.workload.node_flops`,
    every op's ``OpDef.flops``) plus the VE's function overhead."""
    return node_flops(node) + function_overhead(node)


def _bytes(values: list[Value]) -> int:
    return sum(v.type.nbytes for v in dict.fromkeys(values))


def _unread_table_bytes(group: Group) -> int:
    """A gather reads only the rows its indices pick (an embedding lookup touches a few rows of
    a large table): the bytes of a table that only gathers read, less the rows they copy."""
    saved = 0
    for table in dict.fromkeys(n.inputs[0] for n in group.nodes if n.op == "gather"):
        readers = [n for n in group.nodes if table in n.inputs]
        if all(n.op == "gather" and n.inputs[0] is table and table not in n.inputs[1:] for n in readers):
            copied = sum(n.outputs[0].type.nbytes for n in readers)
            saved += max(table.type.nbytes - copied, 0)
    return saved


def estimate(group: Group, plan: Plan, ve: VectorEngine = TYPE_20B) -> Estimate | None:
    if group.kind is GroupKind.ALIAS:
        return None
    flops = sum(node_flops(n) for n in group.nodes)  # the op table's count, as every report has it
    moved = _bytes(group.inputs + group.outputs) - _unread_table_bytes(group)
    single = all(v.dtype != "float64" for v in group.outputs)
    compute = sum(ve_operations(n) for n in group.nodes) / (ve.fp32_flops if single else ve.fp64_flops)
    memory = moved / ve.hbm_bytes_per_s
    bound = "compute" if compute >= memory else "memory"
    if moved > ve.llc_bytes:
        bound += ", exceeds LLC"
    parallel = group.kind is GroupKind.LIBRARY or (group.kernel is not None and group.kernel.outer_size > 1)
    seconds = max(compute, memory) + (ve.parallel_start_s if parallel else 0.0)
    if group.recurrent is not None:  # the steps run one after another: two parallel loops per step
        seconds += 2 * group.recurrent.steps * ve.parallel_start_s
    return Estimate(seconds, ve.basis, flops=flops, bytes=float(moved), bound=bound)


def transfer(plan: Plan, ve: VectorEngine = TYPE_20B) -> Estimate:
    """Host <-> VE copies of one call: every input in, every output back, over PCIe."""
    mem = plan.memory
    ins = [v for v in plan.graph.inputs if mem.slots[v].storage is Storage.INPUT]
    moved = _bytes(ins) + _bytes(list(plan.graph.outputs))
    return Estimate(moved / ve.pcie_bytes_per_s, f"PCIe Gen3 x16 at {ve.pcie_bytes_per_s / 1e9:.0f} GB/s",
                    bytes=float(moved), bound="transfer")
