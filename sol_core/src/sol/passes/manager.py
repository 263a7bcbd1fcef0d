"""Graph passes: registered by stage, run in order, with the validator after every pass."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sol.errors import SolError
from sol.ir import Graph
from sol.passes.validate import validate
from sol.roles import NameClaims

log = logging.getLogger("sol")

STAGES = ("canonicalize", "simplify", "inference", "late")
PassFn = Callable[[Graph], bool]


@dataclass(frozen=True)
class GraphPass:
    name: str
    fn: PassFn
    stage: str
    inference_only: bool


class PassRegistry:
    """Passes by stage. ``simplify`` passes repeat until none changes the graph."""

    def __init__(self) -> None:
        self._passes: dict[str, GraphPass] = {}
        self.claims = NameClaims("pass")  # which plugin registered each pass (sol.plugins sets current_plugin)
        self.current_plugin = "?"

    def register(self, name: str, fn: PassFn, stage: str = "simplify", inference_only: bool = False) -> None:
        if stage not in STAGES:
            raise SolError(f"pass {name!r}: unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        self.claims.claim(name, self.current_plugin)
        self._passes[name] = GraphPass(name, fn, stage, inference_only)

    def remove(self, name: str) -> None:
        """Take a pass out (its plugin is withdrawn: sol.plugins)."""
        self._passes.pop(name, None)
        self.claims.release(name)

    def names(self) -> list[str]:
        return list(self._passes)

    def for_stage(self, stage: str, training: bool) -> list[GraphPass]:
        return [p for p in self._passes.values() if p.stage == stage and not (training and p.inference_only)]

    def run(self, graph: Graph, training: bool = False) -> list[str]:
        """Run every stage; return the names of the passes that changed something."""
        validate(graph, "import")
        applied: list[str] = []
        for stage in STAGES:
            passes = self.for_stage(stage, training)
            for _ in range(8 if stage == "simplify" else 1):
                changed = False
                for p in passes:
                    if p.fn(graph):
                        changed = True
                        applied.append(p.name)
                        log.debug("pass %s changed the graph", p.name)
                    validate(graph, p.name)
                if not changed:
                    break
        return applied
