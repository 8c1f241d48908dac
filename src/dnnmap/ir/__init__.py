"""dnnmap's intermediate representation: a torch-free dataflow graph of ATen ops."""

from dnnmap.ir.classify import classify
from dnnmap.ir.enums import CapturePath, DType, OpClass, Role
from dnnmap.ir.graph import Graph, Op, Tensor
from dnnmap.ir.serialize import SCHEMA_VERSION, from_json, graph_from_dict, graph_to_dict, to_json

__all__ = [
    "SCHEMA_VERSION",
    "CapturePath",
    "DType",
    "Graph",
    "Op",
    "OpClass",
    "Role",
    "Tensor",
    "classify",
    "from_json",
    "graph_from_dict",
    "graph_to_dict",
    "to_json",
]
