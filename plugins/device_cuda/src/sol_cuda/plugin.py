"""Hook implementations of the CUDA device plugin. Importing this module loads no CUDA library:
the driver and NVRTC are looked up when sol first asks whether the device is available."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from sol.plugin_api import BackendRegistry, DeviceRegistry

SOL_PLUGIN_API = ">=1.5,<2"
hookimpl = pluggy.HookimplMarker("sol")


@hookimpl
def sol_register_devices(registry: DeviceRegistry) -> None:
    from sol_cuda.device import CudaDevice

    registry.register(CudaDevice())


@hookimpl
def sol_register_backends(registry: BackendRegistry) -> None:
    # The compute-bound ops as generated kernels with fused epilogues (sol_cuda.libraries) until
    # cuDNN and cuBLAS bindings claim them.
    from sol_cuda.libraries import CudaKernels
    from sol_cuda.render import CudaDialect

    registry.register(CudaKernels(CudaDialect().elementwise_ops))
