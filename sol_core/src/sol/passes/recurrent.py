"""Split recurrent layers into their parallel and their sequential part.

``x_t W_ih^T + b_ih`` does not depend on the recurrence: computed per step it would be T small
matrix products (N rows each) that re-read ``W_ih`` every step. Hoisted out it is one ``dense``
over all T*N rows, which a library backend runs as one large GEMM (and the bias as its epilogue).
What remains, ``lstm_recurrence``/``gru_recurrence``, is the truly sequential part: per step only
``h_{t-1} W_hh^T`` and the gate non-linearities (see :mod:`sol.ops.recurrent`).
"""

from __future__ import annotations

from sol.ir import Graph


def hoist_input_projection(graph: Graph) -> bool:
    """lstm(x, h0, c0, w_ih, w_hh[, b_ih, b_hh]) -> lstm_recurrence(dense(x, w_ih) + b_ih, h0, c0,
    w_hh[, b_hh]); the same for gru. The bias stays a separate ``add`` (the canonical form that
    ``split_bias`` would produce), so a library absorbs it as its bias."""
    changed = False
    for node in list(graph.nodes):
        if node.op not in ("lstm", "gru"):
            continue
        states = 2 if node.op == "lstm" else 1
        x = node.inputs[0]
        init = node.inputs[1:1 + states]
        w_ih, w_hh = node.inputs[1 + states], node.inputs[2 + states]
        biases = node.inputs[3 + states:]
        proj = graph.add_node("dense", [x, w_ih], source=node.source)
        graph.nodes.remove(proj)  # appended: it belongs right before the layer
        graph.nodes.insert(graph.nodes.index(node), proj)
        gx = proj.output
        if biases:
            add = graph.add_node("add", [gx, biases[0]], source=node.source, after=proj)
            gx = add.output
        node.op = f"{node.op}_recurrence"
        node.inputs = [gx, *init, w_hh, *biases[1:]]
        changed = True
    return changed
