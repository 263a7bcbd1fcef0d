"""Operators ONNX defines as functions of other operators, expanded into their bodies.

Why: many newer or composite operators (``Attention``, ``Softplus``, ``HardSwish``, ``Celu``,
``Range`` ...) carry their definition as a function body in ONNX's own operator schema. Where sol
has no converter for such a node (or its converter refuses a use), converting that body instead
gives the operator exactly as ONNX defines it, with no semantics of sol's own to get wrong. The
body's internal tensors get names of their own (``<op>#<n>#<name>``), which only key the
importer's table of tensors (like every ONNX name, they reach no generated code and no path).
"""

from __future__ import annotations

import itertools
from typing import Any

import onnx
from onnx import AttributeProto, FunctionProto, NodeProto, TypeProto

_COUNT = itertools.count()


def function_body(node: NodeProto, opset: int, input_types: list[TypeProto | None]) -> list[NodeProto] | None:
    """The nodes computing ``node`` by its schema's function body at ``opset``, or None where
    ONNX defines none (or one this expansion cannot take: subgraph attributes)."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except onnx.defs.SchemaError:
        return None
    proto = _function(schema, node, opset, input_types)
    if proto is None or any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for n in proto.node
                            for a in n.attribute):
        return None
    prefix = f"{node.op_type}#{next(_COUNT)}#"
    names = {formal: (node.input[i] if i < len(node.input) else "") for i, formal in enumerate(proto.input)}
    names.update({formal: node.output[i] for i, formal in enumerate(proto.output)
                  if i < len(node.output) and node.output[i]})
    given = {a.name: a for a in node.attribute}
    defaults = {a.name: a for a in proto.attribute_proto}
    return [_renamed(n, names, prefix, given, defaults) for n in proto.node]


def _function(schema: Any, node: NodeProto, opset: int, input_types: list[TypeProto | None]) -> FunctionProto | None:
    plain = [v for v in schema.function_opset_versions if v <= opset]
    if plain:
        proto = FunctionProto()
        proto.ParseFromString(schema.get_function_with_opset_version(max(plain)))
        return proto
    dependent = [v for v in schema.context_dependent_function_opset_versions if v <= opset]
    if not dependent or any(t is None for t in input_types):
        return None
    try:
        body = schema.get_context_dependent_function_with_opset_version(
            max(dependent), node.SerializeToString(), [t.SerializeToString() for t in input_types])  # type: ignore[union-attr]
    except Exception:  # the schema's builder refuses these types or attributes
        return None
    proto = FunctionProto()
    proto.ParseFromString(body)
    return proto


def _renamed(inner: NodeProto, names: dict[str, str], prefix: str, given: dict[str, AttributeProto],
             defaults: dict[str, AttributeProto]) -> NodeProto:
    out = NodeProto()
    out.CopyFrom(inner)
    out.name = prefix + (inner.name or (inner.output[0] if inner.output else "node"))
    for seq in (out.input, out.output):
        renamed = [names.get(n, prefix + n) if n else "" for n in seq]
        del seq[:]
        seq.extend(renamed)
    attributes = []
    for a in inner.attribute:
        if a.ref_attr_name:  # an attribute of the function: the node's value, else the function's default
            source = given.get(a.ref_attr_name) or defaults.get(a.ref_attr_name)
            if source is None:
                continue
            resolved = AttributeProto()
            resolved.CopyFrom(source)
            resolved.name = a.name
            attributes.append(resolved)
        else:
            attributes.append(a)
    del out.attribute[:]
    out.attribute.extend(attributes)
    return out
