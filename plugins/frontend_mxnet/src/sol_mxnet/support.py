"""Which converted nodes the target device cannot compile, asked while importing: core's
:class:`~sol.plugin_api.DeviceSupport` (the planner's questions node by node; a node it flags
runs in MXNet like any operator sol cannot convert). Which device: the one ``optimize`` resolved
(``options["device"]``, :func:`target_device`).
"""

from __future__ import annotations

from sol.plugin_api import DeviceSupport, target_device

__all__ = ["DeviceSupport", "target_device"]
