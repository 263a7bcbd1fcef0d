"""sol: transparent neural-network acceleration.

``sol.optimize(model, *example_inputs)`` returns an object of the model's own framework type that
computes the same results faster. Importing sol loads no framework, no plugin and compiles
nothing: everything is resolved on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"  # the one place sol-core's version is written: its pyproject.toml reads it from here

__all__ = ["optimize", "optimize_many", "explain", "deploy", "device", "config", "plugins", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy attributes keep `import sol` free of plugin loading and heavy imports.
    if name in ("optimize", "optimize_many", "explain"):
        from sol import api

        return getattr(api, name)
    if name == "deploy":  # its module is sol.deployment: a submodule named deploy would replace it on import
        from sol.deployment import deploy

        return deploy
    if name == "device":
        from sol import device_select

        return device_select
    if name == "config":
        from sol.config import config

        return config
    if name == "plugins":
        import importlib

        return importlib.import_module("sol.plugins")
    raise AttributeError(f"module 'sol' has no attribute {name!r}")


def _install_frontend_aliases() -> None:
    from sol import _aliases

    _aliases.install()


_install_frontend_aliases()
