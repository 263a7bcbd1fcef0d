"""A roofline model of a VE Type 20B, for ``sol inspect`` where no VE is at hand.

Each group's time is max(flops / peak, bytes / bandwidth) plus a fixed cost for starting its
parallel loop on the VE's cores. ``bytes`` is what crosses the group's boundary (its inputs,
parameters included, and outputs), read or written once from HBM2: the model assumes a group's
working set stays in the 16 MB last-level cache while the group runs, which is what the depth-first
fusion aims for; a group whose boundary traffic alone exceeds the LLC is reported as such. Copies
between host and VE over PCIe are a separate figure (``transfer``): they happen per call, not per
group. These are estimates, and every caller labels them so.
"""

from __future__ import annotations

from dataclasses import dataclass

from sol.plugin_api import Estimate, Group, GroupKind, Node, Plan, Storage, Value


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

# Rough operation counts per output element of element-wise ops without a single VE instruction.
_TRANSCENDENTAL = {"exp": 10, "log": 10, "tanh": 12, "erf": 12, "sigmoid": 12, "silu": 13, "gelu": 16,
                   "pow": 20, "sqrt": 4, "rsqrt": 5, "div": 4}


def node_flops(node: Node) -> float:
    """Floating-point operations of one node (multiply-add = 2)."""
    y = node.outputs[0]
    a = node.attrs
    if node.op == "conv2d":
        n, o, oh, ow = y.shape
        _, cg, kh, kw = node.inputs[1].shape
        return 2.0 * n * o * oh * ow * cg * kh * kw + (y.type.numel if len(node.inputs) == 3 else 0)
    if node.op == "conv_transpose2d":  # every input pixel meets every weight of its group
        n, c, h, w = node.inputs[0].shape
        _, og, kh, kw = node.inputs[1].shape
        return 2.0 * n * c * h * w * og * kh * kw + (y.type.numel if len(node.inputs) == 3 else 0)
    if node.op == "resize2d":
        return 9.0 * y.type.numel if a["mode"] == "bilinear" else 0.0
    if node.op in ("lstm_recurrence", "gru_recurrence"):  # per step: h @ W_hh^T, then the gates
        w_hh = node.inputs[3 if node.op == "lstm_recurrence" else 2]
        per_unit = 4 * _TRANSCENDENTAL["sigmoid"] if node.op == "lstm_recurrence" else 3 * _TRANSCENDENTAL["sigmoid"]
        return 2.0 * y.type.numel * w_hh.shape[0] + float(y.type.numel * (per_unit + 6))
    if node.op == "dense":
        k = node.inputs[0].shape[-1]
        return 2.0 * y.type.numel * k + (y.type.numel if len(node.inputs) == 3 else 0)
    if node.op == "matmul":
        return 2.0 * y.type.numel * node.inputs[0].shape[-1]
    if node.op in ("max_pool2d", "avg_pool2d"):
        return float(y.type.numel * a["kernel"][0] * a["kernel"][1])
    if node.op in ("adaptive_avg_pool2d", "mean", "sum"):
        return float(node.inputs[0].type.numel)
    if node.op in ("softmax", "log_softmax"):
        return float(y.type.numel * (3 + _TRANSCENDENTAL["exp"]))
    if node.op in ("concat", "transpose", "reshape", "identity", "dropout", "gather"):
        return 0.0
    if node.op == "batch_norm":
        return 2.0 * y.type.numel
    return float(y.type.numel * _TRANSCENDENTAL.get(node.op, 1))


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
    flops = sum(node_flops(n) for n in group.nodes)
    moved = _bytes(group.inputs + group.outputs) - _unread_table_bytes(group)
    single = all(v.dtype != "float64" for v in group.outputs)
    compute = flops / (ve.fp32_flops if single else ve.fp64_flops)
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
