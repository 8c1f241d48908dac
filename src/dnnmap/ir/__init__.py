"""dnnmap's intermediate representation: a torch-free dataflow graph of ATen ops."""

from dnnmap.ir.classify import classify
from dnnmap.ir.enums import CapturePath, DType, ExecutionMode, OpClass, Role, Tf32Mode
from dnnmap.ir.graph import Graph, Op, Tensor
from dnnmap.ir.serialize import SCHEMA_VERSION, from_json, graph_from_dict, graph_to_dict, to_json

__all__ = [
    "SCHEMA_VERSION",
    "CapturePath",
    "DType",
    "ExecutionMode",
    "Graph",
    "Op",
    "OpClass",
    "Role",
    "Tensor",
    "Tf32Mode",
    "classify",
    "from_json",
    "graph_from_dict",
    "graph_to_dict",
    "to_json",
]
