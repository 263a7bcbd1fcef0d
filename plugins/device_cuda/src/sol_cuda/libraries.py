"""Convolution, dense and matmul on the GPU as this plugin's own kernels (backend
``cuda-kernels``): one thread per output element, the element-wise ops after the op applied in
registers before the one store (bias, BatchNorm's affine, activation, residual add: any op the
dialect renders, in any operand position), as cuDNN's and cuBLASLt's fused epilogues would.

cuDNN and cuBLAS bindings (issue #18 item 3) are not written yet: until they claim these ops,
these kernels do; they are correct everywhere (the host emulation runs them in the suite) and
far from a vendor library's speed on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable

from sol.plugin_api import Backend, Graph, Node, fits_epilogue

ANCHORS = ("conv2d", "conv_transpose2d", "dense", "matmul")
FLOAT_DTYPES = ("float32", "float64")


def _floats(node: Node) -> bool:
    return all(v.dtype in FLOAT_DTYPES for v in (*node.inputs, *node.outputs))


class CudaKernels(Backend):
    """sol's CUDA kernels for the compute-bound ops, with fused element-wise epilogues."""

    name = "cuda-kernels"
    device = "cuda"
    priority = 0

    def __init__(self, elementwise_ops: Callable[[], frozenset[str]]) -> None:
        self.elementwise_ops = elementwise_ops  # asked when planning: registration loads no template

    def claims(self, node: Node, graph: Graph) -> bool:
        if node.op not in ANCHORS or not _floats(node):
            return False
        if node.op in ("conv2d", "conv_transpose2d"):
            return node.inputs[0].type.rank == 4
        return True

    def absorbs(self, anchor: Node, chain: list[Node], node: Node, graph: Graph) -> bool:
        return fits_epilogue(anchor, node, self.elementwise_ops())
