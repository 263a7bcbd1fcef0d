"""RECURRENT groups on the VE: the template context for recurrent_ncc.j2 / recurrent_vel.j2.

W_hh is re-laid out once (a "dense" prepared weight: (G*H, H) -> [H][G*H]) so that the per-step
product loads gate columns with unit stride onto the 256 lanes; its scratch ``gh`` is the
group's arena scratch from the memory plan (the VE allocates nothing itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sol.plugin_api import Group, SolError

if TYPE_CHECKING:
    from sol_sxaurora.render import NetworkRenderer


def context(r: NetworkRenderer, g: Group) -> dict[str, Any]:
    k = g.recurrent
    assert k is not None
    if k.y.dtype != "float32":
        raise SolError(f"ve: {g.nodes[0].op} supports float32 only, not {k.y.dtype}")
    gh = k.gates * k.hidden
    prep = r.prepare(k.w_hh, "dense", {"N": gh, "K": k.hidden})
    return {"cell": k.cell, "steps": k.steps, "N": k.batch, "H": k.hidden, "GH": gh, "JB": -(-gh // 256),
            "reverse": k.reverse, "last": 0 if k.reverse else k.steps - 1, "scratch": r.plan.memory.scratch[g.id],
            "wt": f"net->prep[{prep.index}]", "gx": r.sym(k.gx), "h0": r.sym(k.h0),
            "c0": r.sym(k.c0) if k.c0 is not None else "", "b_hh": r.sym(k.b_hh) if k.b_hh is not None else "",
            "y": r.sym(k.y), "h_n": r.sym(k.h_n), "c_n": r.sym(k.c_n) if k.c_n is not None else "",
            "prep": prep}
