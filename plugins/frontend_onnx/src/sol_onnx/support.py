"""Which converted nodes the target device cannot compile, asked while importing: core's
:class:`~sol.plugin_api.DeviceSupport` (the planner's questions node by node; a node it flags
runs in ONNX Runtime). With ``fallback=False`` nothing is asked: the planner's own error names the
op and the device. Which device: the one ``optimize`` resolved (``options["device"]``,
:func:`target_device`); the session checks the cut against the device a program was compiled for
(:func:`sol_onnx.session.SolInferenceSession.from_compiled`).
"""

from __future__ import annotations

from sol.plugin_api import DeviceSupport, target_device

__all__ = ["DeviceSupport", "target_device"]
